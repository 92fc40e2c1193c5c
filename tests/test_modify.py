"""Changing a deployed environment in place, with real processes: excluding and including a role
subtree (processes kept, catch-up to the environment's state), through the Python API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aliecs import Core, ModifyError
from aliecs.errors import RestartNeededError
from aliecs.events import EnvironmentEvent
from aliecs.pytest_plugin import isolated_nodes
from aliecs.testing import poll_until
from tests.conftest import RepoBuilder, pid_alive
from tests.doc_examples import ROOT, blocks

pytestmark = pytest.mark.usefixtures("no_leaked_processes")

# A fake task that records every transition request it gets (event and arguments) in a file
# named after its task id.
RECORDING_TASK = """\
name: recfake
control:
  mode: direct
wants:
  cpu: 0.01
  memory: 1
defaults:
  fake_args: ""
command:
  shell: true
  value: "exec aliecs-fake-task --record {{ record_dir }}/{{ task_id }}.jsonl {{ fake_args }}"
properties:
  greeting: "{{ greeting }}"
"""

DETECTORS = """\
name: detectors
defaults:
  record_dir: "/nonexistent"
  greeting: "hello"
  flaky_greeting: "hi"
  flaky_args: ""
roles:
  - name: "flp{{ i }}"
    for: {begin: "0", end: "2", var: i}
    task: {load: recfake}
  - name: monitoring
    roles:
      - name: qc
        task: {load: recfake, critical: false}
  - name: flaky
    vars:
      fake_args: "{{ flaky_args }}"
      greeting: "{{ flaky_greeting }}"
    task: {load: recfake}
"""


def modify_repo(repo: RepoBuilder) -> RepoBuilder:
    return repo.task("recfake", RECORDING_TASK).workflow("detectors", DETECTORS)


def recorded(record_dir: Path, task_id: str) -> list[dict[str, object]]:
    path = record_dir / f"{task_id}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_name(env_tasks: list, suffix: str):  # type: ignore[no-untyped-def]
    return next(task for task in env_tasks if task.name.endswith(suffix))


async def test_excluded_subtree_keeps_its_processes_and_skips_transitions_then_catches_up(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    modify_repo(repo)
    records = tmp_path / "records"
    records.mkdir()
    async with Core.embedded(
        state_dir=tmp_path / "state", repository=repo.repository, nodes=isolated_nodes(1)
    ) as core:
        events = core.events.subscribe()
        env = await core.new_environment("detectors", vars={"record_dir": str(records)})
        pids = {task.id: task.pid for task in env.tasks}

        excluded = await env.exclude("flp1")  # relative to the root role
        flp1 = by_name(env.tasks, ".flp1")
        assert excluded == [flp1.id] and flp1.excluded and env.excluded == {"detectors.flp1": ""}
        assert "(excluded)" in str(env.tree())

        await env.transition("CONFIGURE")
        await env.transition("START_ACTIVITY")
        tasks = env.tasks
        assert by_name(tasks, ".flp1").state == "STANDBY"  # ignored by CONFIGURE and START
        assert {t.state for t in tasks if not t.excluded} == {"RUNNING"}
        assert env.tree().state == "RUNNING"  # left out of the aggregate
        assert [r["event"] for r in recorded(records, flp1.id)] == []

        with pytest.raises(ModifyError, match="critical tasks"):
            await env.include("detectors.flp1")  # a critical subtree mid-run needs it allowed
        await env.include("detectors.flp1", allow_running=True)
        flp1 = by_name(env.tasks, ".flp1")
        assert flp1.state == "RUNNING" and not flp1.excluded and env.excluded == {}
        requests = recorded(records, flp1.id)
        assert [r["event"] for r in requests] == ["CONFIGURE", "START"]
        assert requests[1]["args"]["runNumber"] == str(env.run_number)  # type: ignore[index]
        assert requests[0]["args"]["greeting"] == "hello"  # type: ignore[index]

        await env.transition("STOP_ACTIVITY")
        assert {t.state for t in env.tasks} == {"CONFIGURED"}
        assert {t.id: t.pid for t in env.tasks} == pids  # no process was restarted
        assert all(pid_alive(pid) for pid in pids.values())

        events.close()
        seen = [
            (event.transition, event.transition_status)
            async for event in events
            if isinstance(event, EnvironmentEvent) and event.transition in ("EXCLUDE", "INCLUDE")
        ]
        assert seen == [("EXCLUDE", "DONE_OK"), ("INCLUDE", "STARTED"), ("INCLUDE", "DONE_OK")]
        await env.destroy()
    assert not any(pid_alive(pid) for pid in pids.values())


async def test_non_critical_subtree_leaves_and_rejoins_during_a_run(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    modify_repo(repo)
    async with Core.embedded(
        state_dir=tmp_path / "state", repository=repo.repository, nodes=isolated_nodes(1)
    ) as core:
        env = await core.new_environment("detectors", vars={"record_dir": str(tmp_path)})
        await env.transition("CONFIGURE")
        await env.transition("START_ACTIVITY")
        await env.exclude("detectors.monitoring")  # non-critical: allowed during the run
        qc = by_name(env.tasks, ".qc")
        await env.transition("STOP_ACTIVITY")
        assert by_name(env.tasks, ".qc").state == "RUNNING"  # STOP passed it by; still alive
        assert pid_alive(qc.pid) and env.state == "CONFIGURED"
        await env.transition("START_ACTIVITY")
        run = env.run_number
        await env.include("monitoring")  # from its old run: STOP, RESET, CONFIGURE, START
        requests = recorded(tmp_path, qc.id)
        assert [r["event"] for r in requests][-4:] == ["STOP", "RESET", "CONFIGURE", "START"]
        assert requests[-1]["args"]["runNumber"] == str(run)  # type: ignore[index]
        assert by_name(env.tasks, ".qc").pid == qc.pid
        await env.destroy()


async def test_a_subtree_that_cannot_catch_up_stays_excluded_with_the_reason(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    modify_repo(repo)
    async with Core.embedded(
        state_dir=tmp_path / "state", repository=repo.repository, nodes=isolated_nodes(1)
    ) as core:
        env = await core.new_environment(
            "detectors", vars={"record_dir": str(tmp_path), "flaky_args": "--fail-on CONFIGURE"}
        )
        await env.exclude("flaky")
        await env.transition("CONFIGURE")  # would fail with the flaky task in it
        with pytest.raises(ModifyError, match="stays excluded") as caught:
            await env.include("flaky")
        assert "detectors.flaky" in str(caught.value)
        assert env.state == "CONFIGURED" and env.excluded["detectors.flaky"]
        assert by_name(env.tasks, ".flaky").excluded
        await env.transition("START_ACTIVITY")  # the environment goes on without it
        await env.destroy()


async def test_bad_requests_name_what_is_wrong_and_change_nothing(tmp_path: Path, repo: RepoBuilder) -> None:
    modify_repo(repo)
    async with Core.embedded(
        state_dir=tmp_path / "state", repository=repo.repository, nodes=isolated_nodes(1)
    ) as core:
        env = await core.new_environment("detectors", vars={"record_dir": str(tmp_path)})
        with pytest.raises(ModifyError, match=r"no role 'nope' \(roles: detectors.flp0"):
            await env.exclude("nope")
        with pytest.raises(ModifyError, match="root role"):
            await env.exclude("detectors")
        with pytest.raises(ModifyError, match="is not excluded"):
            await env.include("flp0")
        await env.exclude("monitoring.qc")
        await env.exclude("monitoring")  # folds the excluded qc into it
        assert env.excluded == {"detectors.monitoring": ""}
        with pytest.raises(ModifyError, match="already excluded"):
            await env.exclude("monitoring.qc")
        await env.include("monitoring")
        assert env.excluded == {} and not any(t.excluded for t in env.tasks)
        await env.transition("EXIT")
        with pytest.raises(ModifyError, match="cannot exclude a role in state DONE"):
            await env.exclude("flp0")
        await env.destroy()


async def test_a_restarted_core_keeps_the_excluded_subtree(tmp_path: Path, repo: RepoBuilder) -> None:
    modify_repo(repo)
    state = tmp_path / "state"
    options = {
        "state_dir": state,
        "repository": repo.repository,
        "nodes": isolated_nodes(1),
        "outlive_core": True,
    }
    core = Core.embedded(**options)  # type: ignore[arg-type]
    await core.start()
    try:
        env = await core.new_environment("detectors", vars={"record_dir": str(tmp_path)})
        await env.transition("CONFIGURE")
        await env.scale("flp", 4)  # flp0..flp3
        await env.set_vars({"flaky_greeting": "restored"})
        await env.exclude("flp2")
        pids = {task.id: task.pid for task in env.tasks}
    finally:
        await core.detach()
    async with Core.embedded(**options) as core:  # type: ignore[arg-type]
        (env,) = await core.environments()
        assert env.user_vars["flaky_greeting"] == "restored"
        assert sorted(t.name for t in env.tasks if ".flp" in t.name)[-1] == "detectors.flp3"
        assert env.excluded == {"detectors.flp2": ""}
        assert [t.name for t in env.tasks if t.excluded] == ["detectors.flp2"]
        assert {t.id: t.pid for t in env.tasks} == pids
        # The restored core knows what each task was configured and started with: only the task
        # the new value changes is reconfigured, and none needs a restart.
        result = await env.set_vars({"flaky_greeting": "again"})
        assert result.reconfigured == (by_name(env.tasks, ".flaky").id,) and not result.restarted
        await env.transition("START_ACTIVITY")
        assert by_name(env.tasks, ".flp2").state == "CONFIGURED" and env.tree().state == "RUNNING"
        await env.include("flp2", allow_running=True)
        assert by_name(env.tasks, ".flp2").state == "RUNNING"
        await env.destroy()


async def test_new_values_reconfigure_only_the_tasks_they_change_processes_kept(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    modify_repo(repo)
    async with Core.embedded(
        state_dir=tmp_path / "state", repository=repo.repository, nodes=isolated_nodes(1)
    ) as core:
        env = await core.new_environment("detectors", vars={"record_dir": str(tmp_path)})
        await env.transition("CONFIGURE")
        pids = {task.id: task.pid for task in env.tasks}
        flaky = by_name(env.tasks, ".flaky")
        assert env.task_command(flaky.id)[1]["greeting"] == "hi"

        result = await env.set_vars({"flaky_greeting": "bonjour"})
        assert result.reconfigured == (flaky.id,) and not result.added and not result.restarted
        assert [r["event"] for r in recorded(tmp_path, flaky.id)] == ["CONFIGURE", "RESET", "CONFIGURE"]
        assert recorded(tmp_path, flaky.id)[-1]["args"]["greeting"] == "bonjour"  # type: ignore[index]
        others = [t for t in env.tasks if t.id != flaky.id]
        assert all([r["event"] for r in recorded(tmp_path, t.id)] == ["CONFIGURE"] for t in others)
        assert {t.id: t.pid for t in env.tasks} == pids and env.state == "CONFIGURED"
        assert env.user_vars["flaky_greeting"] == "bonjour"

        with pytest.raises(RestartNeededError, match=r"detectors\.flaky") as caught:
            await env.set_vars({"flaky_args": "--latency-all 0.01"})
        assert caught.value.tasks == ["detectors.flaky"] and "flaky_args" not in env.user_vars
        result = await env.set_vars({"flaky_args": "--latency-all 0.01"}, restart=True)
        assert result.restarted == (flaky.id,)
        restarted = by_name(env.tasks, ".flaky")
        assert restarted.pid != flaky.pid and restarted.state == "CONFIGURED" and not pid_alive(flaky.pid)
        assert {t.id: t.pid for t in env.tasks if t.id != flaky.id} == {t.id: pids[t.id] for t in others}
        await env.transition("START_ACTIVITY")
        assert {t.state for t in env.tasks} == {"RUNNING"}
        await env.destroy()


async def test_scaling_copypush_moves_data_to_new_sinks_without_restarting_the_sampler(
    tmp_path: Path,
) -> None:
    async with Core.embedded(state_dir=tmp_path / "state", nodes=isolated_nodes(2)) as core:
        env = await core.new_environment("copypush")  # sinks 0..2
        await env.transition("CONFIGURE")
        await env.transition("START_ACTIVITY")
        run = env.run_number
        sampler = by_name(env.tasks, ".sampler")
        before = {t.name: t.pid for t in env.tasks}

        result = await env.scale("sink", 5)
        assert len(result.added) == 2 and not result.removed and not result.restarted
        sinks = sorted((t for t in env.tasks if ".sink" in t.name), key=lambda t: t.name)
        assert [t.name for t in sinks][-2:] == ["copypush.sink3", "copypush.sink4"]
        assert all(t.state == "RUNNING" for t in sinks) and env.state == "RUNNING"
        assert {t.name: t.pid for t in env.tasks if t.name in before} == before
        for sink in sinks[3:]:
            await wait_for_text(Path(sink.log_path), f"run {run}: first message received")

        result = await env.scale("copypush.sink1", 2)  # any role of the iterator names it
        assert len(result.removed) == 3
        assert sorted(t.name for t in env.tasks) == ["copypush.sampler", "copypush.sink0", "copypush.sink1"]
        assert not any(pid_alive(t.pid) for t in sinks[2:])
        assert by_name(env.tasks, ".sampler").pid == sampler.pid and pid_alive(sampler.pid)
        await env.transition("STOP_ACTIVITY")
        await env.transition("START_ACTIVITY")  # data still flows to the two sinks left
        for sink in sinks[:2]:
            await wait_for_text(Path(sink.log_path), f"run {env.run_number}: first message received")
        assert by_name(env.tasks, ".sampler").pid == sampler.pid
        assert len(env.tree().children) == 3
        await env.destroy()


async def test_set_vars_of_an_iterator_variable_scales_it(tmp_path: Path) -> None:
    async with Core.embedded(state_dir=tmp_path / "state", nodes=isolated_nodes(1)) as core:
        env = await core.new_environment("copypush")
        await env.transition("CONFIGURE")
        result = await env.set_vars({"last_sink": "3"})
        assert len(result.added) == 1 and by_name(env.tasks, ".sink3").state == "CONFIGURED"
        with pytest.raises(ModifyError, match=r"no iterator 'sampler' \(iterators: copypush.sink\)"):
            await env.scale("sampler", 2)
        await env.destroy()


async def wait_for_text(path: Path, text: str, timeout: float = 30.0) -> None:
    await poll_until(lambda: path.exists() and text in path.read_text(), f"{text!r} in {path}", timeout, 0.05)


def test_the_readme_example_runs(tmp_path: Path) -> None:
    (example,) = [b for b in blocks(ROOT / "README.md") if b.file == "reshape.py"]
    body = "from aliecs.testing import isolated_nodes\n" + example.body.replace(
        "nodes=2", "nodes=isolated_nodes(2)"
    )
    result = subprocess.run(
        [sys.executable, "-c", body], cwd=tmp_path, capture_output=True, text=True, timeout=100
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["CONFIGURED", "6", "2"], result.stdout
