"""The template language to full fidelity: kinds, stages, layers, includes, calls, hooks, channels,
and clear one-line errors (file, line, role path) for bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from aliecs.cli.coconut_template import expand as expand_command
from aliecs.workflow.channels import Endpoint, bind_channels, endpoint_keys, resolve_target
from aliecs.workflow.errors import TemplateError
from aliecs.workflow.jit import CommandGenerator, JitRegistry
from aliecs.workflow.providers import MemoryStore, Providers, YamlInventory
from aliecs.workflow.template import load_workflow
from tests.conftest import RepoBuilder

BASIC = """\
name: basic-hook
control: {mode: basic}
wants: {cpu: 0.1, memory: 1, ports: "29000-29010,30000"}
limits: {cpu: 1}
command:
  value: "echo {{ message }}"
"""

FAIRMQ = """\
name: fmq
control: {mode: fairmq}
wants: {cpu: 0.1, memory: 1}
defaults:
  rate: "{{ fmq_rate }}"
bind:
  - name: out
    type: push
    global: "proxy-{{ it }}"
    rateLogging: "{{ rate }}"
constraints:
  - {attribute: machine_type, value: flp}
command:
  value: "run --rate {{ rate }}"
"""


@pytest.fixture
def tasks(repo: RepoBuilder) -> RepoBuilder:
    repo.task("basic-hook", BASIC)
    repo.task("fmq", FAIRMQ)
    return repo


def test_stages_layers_and_key_presence(tasks: RepoBuilder) -> None:
    tasks.workflow(
        "w",
        """\
        name: w
        defaults:
          a: root-a
          empty: "set"
        vars:
          b: "{{ a }}"
        roles:
          - name: child
            defaults:
              a: child-a
              b: child-b       # loses to the parent's var b: vars beat defaults at every level
              d: "{{ a }}"     # stage 1 sees the parent's snapshot: root-a, not child-a
              empty: ""        # key presence wins, even empty
            vars:
              c: "{{ a }}"     # stage 2 sees the role's own defaults: child-a
            task: {load: fmq}
        """,
    )
    workflow = load_workflow(tasks.repository, "w", {"fmq_rate": "5"})
    (child,) = workflow.tasks()
    assert child.stack["b"] == "root-a"
    assert child.stack["d"] == "root-a"
    assert child.stack["c"] == "child-a"
    assert child.stack["empty"] == ""
    # User vars beat vars beat defaults, and an empty user var is still present.
    assert load_workflow(tasks.repository, "w", {"fmq_rate": "5", "b": "u"}).tasks()[0].stack["b"] == "u"
    assert load_workflow(tasks.repository, "w", {"fmq_rate": "5", "c": ""}).tasks()[0].stack["c"] == ""


def test_public_values_and_untagged_mappings(tasks: RepoBuilder) -> None:
    tasks.workflow(
        "w",
        """\
        name: !public w
        defaults:
          shown: !public
            value: "yes"
            type: string
          dropped:
            value: "no"
        roles:
          - name: t
            task: {load: basic-hook}
            vars: {message: "{{ shown }}"}
        """,
    )
    workflow = load_workflow(tasks.repository, "w", {})
    assert workflow.public
    assert workflow.root.stack["shown"] == "yes" and "dropped" not in workflow.root.stack


def test_calls_hooks_and_iterators(tasks: RepoBuilder) -> None:
    tasks.workflow(
        "w",
        """\
        name: w
        roles:
          - name: "n{{ i }}"
            for: {begin: "1", end: "3", var: i}
            enabled: "{{ i != '2' }}"
            roles:
              - name: hook
                vars: {message: "hi {{ i }}"}
                task: {load: basic-hook, trigger: before_CONFIGURE+5, critical: false}
              - name: data
                task: {load: fmq}
          - name: calls
            roles:
              - name: start
                call:
                  func: odc.Start()
                  trigger: before_START_ACTIVITY+100
                  await: after_START_ACTIVITY-10
                  critical: false
                  return: odc_result
              - name: plain
                call: {func: "dcs.EndOfRun()", trigger: after_STOP_ACTIVITY-50}
              - name: off
                enabled: "false"
                call: {func: "{{ broken(", trigger: x}
        """,
    )
    workflow = load_workflow(tasks.repository, "w", {"fmq_rate": "1"})
    assert [r.path for r in workflow.tasks()] == ["w.n1.data", "w.n3.data"]
    hooks = workflow.hooks()
    assert [r.path for r in hooks] == ["w.n1.hook", "w.n3.hook"]
    hook = hooks[0].task
    assert hook is not None
    assert (hook.trigger, hook.await_, hook.timeout, hook.critical, hook.control_mode) == (
        "before_CONFIGURE+5", "before_CONFIGURE+5", "30s", False, "hook",
    )  # fmt: skip
    start, plain = (r.call for r in workflow.calls())
    assert start is not None and plain is not None
    assert (start.func, start.await_, start.timeout, start.critical, start.return_var) == (
        "odc.Start()", "after_START_ACTIVITY-10", "30s", False, "odc_result",
    )  # fmt: skip
    assert (plain.await_, plain.critical) == ("after_STOP_ACTIVITY-50", True)
    # The environment deploys only data-flow children.
    assert [c.name for c in workflow.root.find("w.n1").deployable_children()] == ["data"]  # type: ignore[union-attr]
    assert workflow.root.find("w.calls").deployable_children() == []  # type: ignore[union-attr]
    task_class = workflow.tasks()[0].task.task_class  # type: ignore[union-attr]
    assert workflow.tasks()[0].task.task_class.ports == ""  # type: ignore[union-attr]
    assert task_class.name == "fmq"


def test_task_descriptor_rendering_and_channels(tasks: RepoBuilder) -> None:
    tasks.workflow(
        "w",
        """\
        name: w
        constraints:
          - {attribute: machine_id, value: flp001}
          - {attribute: rack, value: r1}
        roles:
          - name: "p{{ it }}"
            for: {range: '["a", "b"]', var: it}
            constraints:
              - {attribute: machine_id, value: "flp-{{ it }}"}
            bind:
              - {name: ctl, type: rep, addressing: ipc, sndBufSize: "10"}
            task: {load: fmq}
          - name: consumer
            connect:
              - {name: in, type: pull, target: "::proxy-a", rateLogging: "{{ fmq_rate }}"}
              - {name: in2, type: pull, target: "{{ Parent().Path }}.pb:out"}
            task: {load: fmq}
        """,
    )
    workflow = load_workflow(tasks.repository, "w", {"fmq_rate": "7"})
    pa, pb, consumer = workflow.tasks()
    assert pa.constraints == {"machine_id": "flp-a", "rack": "r1"}
    assert pa.task is not None
    assert pa.task.task_class.constraints == {"machine_type": "flp"}
    stack = pa.task.task_class.stack_for(pa.stack)
    assert pa.task.task_class.render_command(stack, pa.path).value == "run --rate 7"
    binds = {c.name: c for c in bind_channels(pa, stack)}
    assert binds["out"].global_name == "proxy-a" and binds["out"].rate_logging == "7"
    assert binds["ctl"].addressing == "ipc" and binds["ctl"].snd_buf_size == "10"
    endpoints: dict[tuple[str, str], Endpoint] = {}
    for role in (pa, pb):
        assert role.task is not None
        for channel in bind_channels(role, role.task.task_class.stack_for(role.stack)):
            for key in endpoint_keys(role.path, channel):
                endpoints[key] = Endpoint(f"tcp://*:{len(endpoints)}", f"tcp://{role.name}:{channel.name}")
    connects = {c.name: c for c in consumer.connect}
    assert resolve_target(connects["in"], consumer.path, endpoints) == "tcp://pa:out"
    assert resolve_target(connects["in2"], consumer.path, endpoints) == "tcp://pb:out"
    assert connects["in"].rate_logging == "7"


def test_includes_and_cycles(tasks: RepoBuilder) -> None:
    tasks.workflow(
        "inner",
        """\
        name: inner
        defaults: {message: "inner-default", seen: "{{ outer_value }}"}
        roles:
          - name: t
            task: {load: basic-hook}
        """,
    )
    tasks.workflow(
        "outer",
        """\
        name: outer
        roles:
          - name: sub
            defaults: {outer_value: "from-include"}
            include: inner
        """,
    )
    workflow = load_workflow(tasks.repository, "outer", {})
    (task,) = workflow.tasks()
    assert task.path == "outer.sub.t"
    assert task.stack["seen"] == "from-include"
    assert workflow.root.find("outer.sub").kind == "include"  # type: ignore[union-attr]
    tasks.workflow("a", "name: a\nroles:\n  - name: x\n    include: b\n")
    tasks.workflow("b", "name: b\nroles:\n  - name: y\n    include: a\n")
    with pytest.raises(
        TemplateError, match=r"b.yaml:4: role a.x.y: include cycle: .*a@local -> .*b@local -> .*a@local"
    ):
        load_workflow(tasks.repository, "a", {})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "roles:\n  - name: a\n    call: {func: x(), trigger: t, colour: red}\n",
            r"w.yaml:4: role w.a: unknown keys \['colour'\] in 'call'",
        ),
        (
            "roles:\n  - name: a\n    include: x\n    roles: []\n",
            r"w.yaml:3: role w: a role needs exactly one of",
        ),
        (
            "roles:\n  - name: 'a{{ i }}'\n    for: {range: 'abc', var: i}\n    task: {load: fmq}\n",
            r"w.yaml:4: role w: for.range must render to a JSON list, got 'abc'",
        ),
        (
            "roles:\n  - name: 'a{{ i }}'\n    for: {range: '{\"k\": 1}', var: i}\n    task: {load: fmq}\n",
            r"for.range must render to a JSON list",
        ),
        (
            "roles:\n  - name: a\n    vars: {x: '{{ nope }}'}\n    task: {load: fmq}\n",
            r'w.yaml:4: role w.a: unknown name "nope"',
        ),
        (
            "roles:\n  - name: a\n    enabled: '{{ made.Up() }}'\n    task: {load: fmq}\n",
            r'w.yaml:4: role w.a: unknown name "made"',
        ),
        ("roles:\n  - name: a\n    include: missing\n", r"w.yaml:4: role w.a: cannot include 'missing'"),
        ("roles:\n  - name: a\n    include: other/workflows/x@v1\n", r"no repository manager is configured"),
        (
            "roles:\n  - name: a\n    call: {func: x(), trigger: t, critical: maybe}\n",
            r"w.yaml:4: role w.a: critical must be true or false, got 'maybe'",
        ),
        ("roles:\n  - name: a\n    task: {load: fmq}\n   bad: [\n", r"w.yaml:\d+:\d+: "),
    ],
)
def test_bad_input_is_one_clear_line(tasks: RepoBuilder, body: str, message: str) -> None:
    tasks.workflow("w", "name: w\n" + body)
    with pytest.raises(TemplateError, match=message) as caught:
        load_workflow(tasks.repository, "w", {"fmq_rate": "1"})
    assert "\n" not in str(caught.value)


def test_bad_task_descriptor_names_its_file_line_and_the_role(tasks: RepoBuilder) -> None:
    tasks.task(
        "broken", "name: broken\nwants: {cpu: 1, memory: 1}\ncontrol: {mode: teleport}\ncommand: {value: x}\n"
    )
    tasks.workflow("w", "name: w\nroles:\n  - name: a\n    task: {load: broken}\n")
    with pytest.raises(
        TemplateError, match=r"tasks/broken.yaml:3: role w.a: control mode 'teleport' is not one of"
    ):
        load_workflow(tasks.repository, "w", {})


def test_service_namespaces_and_jit_fallback(tasks: RepoBuilder, tmp_path: Path) -> None:
    (tasks.root / "jit").mkdir()
    (tasks.root / "jit" / "proc").write_text("o2-not-installed-workflow --det {{ detector }} | o2-dpl-run\n")
    fallback = tmp_path / "exports"
    (fallback / "workflows").mkdir(parents=True)
    (fallback / "tasks").mkdir()
    (fallback / "workflows" / "proc.yaml").write_text(
        "name: proc\nroles:\n  - name: p\n    task: {load: fmq}\n"
    )
    (fallback / "tasks" / "fmq.yaml").write_text(FAIRMQ)
    tasks.workflow(
        "w",
        """\
        name: w
        vars:
          detector: "{{ inventory.DetectorForHost('flp001') }}"
          cfg: "{{ config.Resolve('readout', 'PHYSICS', 'flp001', 'cfg') }}"
          rt: "{{ runtime.Get('trg', 'x') }}"
        roles:
          - name: dpl
            include: "{{ dpl.GenerateFromUri('proc') }}"
        """,
    )
    from aliecs.workflow.repository import DirectoryRepository

    store = MemoryStore({"components/readout/ANY/any/cfg": "payload", "runtime/trg/x": "42"})
    providers = Providers(inventory=YamlInventory({"flp001": {"detector": "TST"}}), store=store)
    jit = JitRegistry(CommandGenerator(fallback=DirectoryRepository(fallback, name="exports")))
    workflow = load_workflow(tasks.repository, "w", {"fmq_rate": "1"}, providers=providers, jit=jit)
    assert workflow.root.stack["detector"] == "TST"
    assert workflow.root.stack["cfg"] == "readout/ANY/any/cfg"
    assert workflow.root.stack["rt"] == "42"
    (proc,) = workflow.tasks()
    assert proc.path == "w.dpl.p"
    with pytest.raises(
        TemplateError,
        match=r"role w.dpl: .*cannot generate the DPL workflow for jit/proc "
        r"\(o2-dpl-run, o2-not-installed-workflow not installed\)",
    ):
        load_workflow(tasks.repository, "w", {"fmq_rate": "1"}, providers=providers)


def test_cli_expand_json_and_text(tasks: RepoBuilder) -> None:
    tasks.workflow(
        "w",
        """\
        name: w
        roles:
          - name: t
            constraints: [{attribute: machine_id, value: flp001}]
            task: {load: fmq}
          - name: c
            call: {func: odc.Start(), trigger: before_START_ACTIVITY}
        """,
    )
    runner = CliRunner()
    result = runner.invoke(
        expand_command, ["w", "--repo", str(tasks.root), "-e", "fmq_rate=3", "-e", "it=z", "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["tasks"][0]["path"] == "w.t"
    assert document["tasks"][0]["class"] == "fmq"
    assert document["tasks"][0]["command"] == "run --rate 3"
    assert document["tasks"][0]["host"] == "flp001"
    (call,) = document["calls"]
    assert call == {
        "path": "w.c",
        "func": "odc.Start()",
        "trigger": "before_START_ACTIVITY",
        "await": "before_START_ACTIVITY",
        "timeout": "30s",
        "critical": True,
        "return": "",
    }
    text = runner.invoke(expand_command, ["w", "--repo", str(tasks.root), "-e", "fmq_rate=3", "-e", "it=z"])
    assert text.exit_code == 0
    assert "w.t [task fmq (fairmq)] host=flp001" in text.output
    assert "command: run --rate 3" in text.output
    assert "w.c [call] func=odc.Start() trigger=before_START_ACTIVITY" in text.output
    bad = runner.invoke(expand_command, ["w", "--repo", str(tasks.root)])
    assert bad.exit_code == 1
    assert 'unknown name "fmq_rate"' in bad.output
    unreachable = runner.invoke(expand_command, ["w", "--repo", "file:///nonexistent/x.git"])
    assert unreachable.exit_code == 1 and "cannot fetch repository" in unreachable.output


def test_jit_runs_the_dpl_command_when_installed(
    tasks: RepoBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for an O2 DPL executable: writes the sub-workflow named by --o2-control.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "o2-stand-in-workflow"
    program.write_text(
        "#!/bin/sh\n"
        'while [ "$1" != "--o2-control" ]; do shift; done\n'
        'printf "name: %s\\nroles:\\n  - name: gen\\n    task: {load: fmq}\\n" "$2" > "$2.yaml"\n'
    )
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    tasks.workflow(
        "w",
        """\
        name: w
        roles:
          - name: dpl
            include: "{{ dpl.Generate('o2-stand-in-workflow --det ' + det) }}"
        """,
    )
    workflow = load_workflow(tasks.repository, "w", {"fmq_rate": "1", "det": "TST"})
    (generated,) = workflow.tasks()
    assert generated.path == "w.dpl.gen"
    assert workflow.root.find("w.dpl").include.startswith("jit-")  # type: ignore[union-attr]


def test_configure_property_map_and_fixed_bind_targets() -> None:
    from aliecs.workflow.channels import channel_keys, effective_endpoint
    from aliecs.workflow.template import Channel

    fixed = Channel(name="qc", type="sub", target="tcp://*:47730", transport="zeromq", rate_logging="60")
    allocated = Endpoint("tcp://*:30001", "tcp://10.0.0.1:30001")
    endpoint = effective_endpoint(fixed, allocated, "10.0.0.2")
    assert endpoint == Endpoint("tcp://*:47730", "tcp://10.0.0.2:47730")
    plain = Channel(name="data", type="push")
    assert effective_endpoint(plain, allocated, "10.0.0.2") is allocated
    assert channel_keys(fixed, endpoint.bind_address, "bind") == {
        "chans.qc.numSockets": "1",
        "chans.qc.0.address": "tcp://*:47730",
        "chans.qc.0.method": "bind",
        "chans.qc.0.type": "sub",
        "chans.qc.0.transport": "zeromq",
        "chans.qc.0.sndBufSize": "1000",
        "chans.qc.0.rcvBufSize": "1000",
        "chans.qc.0.rateLogging": "60",
    }
