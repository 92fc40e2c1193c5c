"""The hook engine end to end: call roles and hook tasks at trigger points, with weights and awaits.

Calls use the built-in `testplugin`: `Test(label)` records labels per environment (read with
`core_testplugin(core).recorded(env.id)`), `Fail()` fails, `Wait(gate)` blocks until `Open(gate)`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from actors.hooks import HookEngine, HookPlan, parse_trigger
from aliecs import Core, TransitionError
from aliecs.events import CallEvent, EnvironmentEvent, EventBus, TaskEvent
from aliecs.executor.process import ExitInfo
from aliecs.integration import CallContext
from aliecs.testing import core_testplugin
from aliecs.workflow.template import Role, load_workflow
from tests.conftest import RepoBuilder

pytestmark = pytest.mark.usefixtures("no_leaked_processes")

ORDERED = """\
name: ordered
roles:
  - name: worker
    task: {load: fake}
  - name: a
    call: {func: 'testplugin.Test("before+10")', trigger: before_CONFIGURE+10}
  - name: b
    call: {func: 'testplugin.Test("before-5")', trigger: before_CONFIGURE-5}
  - name: c
    call: {func: 'testplugin.Test("leave")', trigger: leave_DEPLOYED}
  - name: h
    call: {func: 'testplugin.Test("leave+5")', trigger: leave_DEPLOYED+5}
  - name: d
    call: {func: 'testplugin.Test("enter")', trigger: enter_CONFIGURED}
  - name: e
    call: {func: 'testplugin.Test("after+1")', trigger: after_CONFIGURE+1}
  - name: f
    call: {func: 'testplugin.Test("after-1")', trigger: after_CONFIGURE-1}
  - name: g
    call: {func: 'testplugin.Test("before")', trigger: before_CONFIGURE}
  - name: sor-neg
    call: {func: 'testplugin.Test("sor-neg:" + run_number)', trigger: before_START_ACTIVITY-10}
  - name: sor-pos
    call: {func: 'testplugin.Test("sor-pos:" + run_number)', trigger: before_START_ACTIVITY+10}
  - name: eor
    call: {func: 'testplugin.Test("eor:" + run_number)', trigger: after_STOP_ACTIVITY}
  - name: destroyed
    call: {func: 'testplugin.Test("destroy")', trigger: DESTROY}
"""

GUARDED = """\
name: guarded
defaults:
  fail_critical: "false"
  fail_soft: "false"
  fail_late: "false"
  unknown: "false"
roles:
  - name: worker
    task: {load: fake}
  - name: hard
    enabled: "{{ fail_critical }}"
    call: {func: 'testplugin.Fail("no beam")', trigger: before_CONFIGURE-1}
  - name: soft
    enabled: "{{ fail_soft }}"
    call: {func: 'testplugin.Fail("soft failure")', trigger: before_CONFIGURE, critical: false}
  - name: late
    enabled: "{{ fail_late }}"
    call: {func: 'testplugin.Fail("too late")', trigger: after_CONFIGURE}
  - name: typo
    enabled: "{{ unknown }}"
    call: {func: 'testplugin.Nope()', trigger: before_CONFIGURE}
  - name: next
    call: {func: 'testplugin.Test("next")', trigger: before_CONFIGURE+1}
  - name: on-error
    call: {func: 'testplugin.Test("on-error")', trigger: enter_ERROR}
"""

AWAITING = """\
name: awaiting
defaults:
  await_point: after_CONFIGURE
roles:
  - name: worker
    task: {load: fake}
  - name: waiter
    call:
      func: 'testplugin.Wait("gate")'
      trigger: before_CONFIGURE
      await: "{{ await_point }}"
      timeout: "{{ wait_timeout }}"
  - name: opener
    call: {func: 'testplugin.Open("gate")', trigger: enter_CONFIGURED}
"""

HOOK_TASK = """\
name: hookcmd
control: {mode: basic}
wants: {cpu: 0.01, memory: 1}
defaults:
  hook_command: "true"
command:
  shell: true
  value: "{{ hook_command }}"
"""

WITH_HOOK_TASK = """\
name: withhook
defaults:
  hook_timeout: 10s
roles:
  - name: worker
    task: {load: fake}
  - name: check
    task:
      load: hookcmd
      trigger: before_CONFIGURE
      timeout: "{{ hook_timeout }}"
      critical: {critical}
"""


def hook_repo(repo: RepoBuilder, critical: str = "true") -> RepoBuilder:
    return (
        repo.workflow("ordered", ORDERED)
        .workflow("guarded", GUARDED)
        .workflow("awaiting", AWAITING)
        .task("hookcmd", HOOK_TASK)
        .workflow("withhook", WITH_HOOK_TASK.replace("{critical}", critical))
    )


async def test_calls_run_in_weight_order_across_triggers(tmp_path: Path, repo: RepoBuilder) -> None:
    hook_repo(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        subscription = core.events.subscribe()
        env = await core.new_environment("ordered")
        await env.transition("CONFIGURE")
        assert core_testplugin(core).recorded(env.id) == [
            "before-5",
            "before",
            "before+10",
            "leave",
            "leave+5",
            "enter",
            "after-1",
            "after+1",
        ]
        started = await env.transition("START_ACTIVITY")
        # The run number exists only for the non-negative weights of before_START_ACTIVITY.
        assert core_testplugin(core).recorded(env.id)[-2:] == ["sor-neg:", f"sor-pos:{started.run_number}"]
        stopped = await env.transition("STOP_ACTIVITY")
        # ... and until the after_STOP_ACTIVITY hooks (end-of-run calls) have seen it, as in the original.
        assert core_testplugin(core).recorded(env.id)[-1] == f"eor:{started.run_number}"
        assert stopped.run_number == 0 and env.run_number == 0
        await env.destroy()
        assert core_testplugin(core).recorded(env.id)[-1] == "destroy"
        subscription.close()
        events = [event async for event in subscription]
    steps = [
        (e.transition_step, e.transition_status)
        for e in events
        if isinstance(e, EnvironmentEvent) and e.transition == "CONFIGURE" and e.transition_step
    ]
    assert steps == [
        (step, "ONGOING")
        for step in (
            "before_CONFIGURE",
            "leave_DEPLOYED",
            "tasks_CONFIGURE",
            "enter_CONFIGURED",
            "after_CONFIGURE",
        )
        for _starting_then_finished in range(2)
    ]
    calls = [(e.path, e.status) for e in events if isinstance(e, CallEvent) and e.path == "ordered.a"]
    assert calls == [("ordered.a", "STARTED"), ("ordered.a", "DONE_OK")]

    # The tasks' transition runs after every leave_DEPLOYED hook and before enter_CONFIGURED.
    def index(predicate: Callable[[object], bool]) -> int:
        return next(i for i, e in enumerate(events) if predicate(e))

    configured = index(lambda e: isinstance(e, TaskEvent) and e.state == "CONFIGURED")
    last_leave = index(lambda e: isinstance(e, CallEvent) and e.path == "ordered.h" and e.status == "DONE_OK")
    first_enter = index(lambda e: isinstance(e, CallEvent) and e.path == "ordered.d")
    assert last_leave < configured < first_enter


async def test_environment_without_hooks_publishes_every_step_as_the_original(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    # The original's FSM callbacks announce each step of a transition, hooks or not: before_X,
    # leave_S, tasks_X, enter_S', after_X, each "transition step starting" then "... finished"
    # (ONGOING; DONE_ERROR if it failed), tasks_X finished in the state the tasks reached.
    hook_repo(repo)
    repo.workflow("plain", "name: plain\nroles:\n  - name: worker\n    task: {load: fake}\n")
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        subscription = core.events.subscribe()
        env = await core.new_environment("plain")
        await env.transition("CONFIGURE")
        await env.destroy()
        subscription.close()
        events = [event async for event in subscription]
    steps = [
        (e.transition_step, e.message, e.transition_status, e.state)
        for e in events
        if isinstance(e, EnvironmentEvent) and e.transition == "CONFIGURE" and e.transition_step
    ]
    starting, finished = "transition step starting", "transition step finished"
    assert steps == [
        ("before_CONFIGURE", starting, "ONGOING", "DEPLOYED"),
        ("before_CONFIGURE", finished, "ONGOING", "DEPLOYED"),
        ("leave_DEPLOYED", starting, "ONGOING", "DEPLOYED"),
        ("leave_DEPLOYED", finished, "ONGOING", "DEPLOYED"),
        ("tasks_CONFIGURE", starting, "ONGOING", "DEPLOYED"),
        ("tasks_CONFIGURE", finished, "ONGOING", "CONFIGURED"),
        ("enter_CONFIGURED", starting, "ONGOING", "CONFIGURED"),
        ("enter_CONFIGURED", finished, "ONGOING", "CONFIGURED"),
        ("after_CONFIGURE", starting, "ONGOING", "CONFIGURED"),
        ("after_CONFIGURE", finished, "ONGOING", "CONFIGURED"),
    ]
    assert not any(isinstance(e, CallEvent) for e in events)


async def test_a_call_is_awaited_at_its_await_point(tmp_path: Path, repo: RepoBuilder) -> None:
    hook_repo(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        # Awaited at after_CONFIGURE: the opener at enter_CONFIGURED runs meanwhile.
        env = await core.new_environment("awaiting", vars={"wait_timeout": "30s"})
        result = await env.transition("CONFIGURE")
        assert env.state == "CONFIGURED" and result.warnings == ()
        await env.destroy()
        # Awaited where it starts: nothing opens the gate before its timeout.
        env = await core.new_environment(
            "awaiting", vars={"wait_timeout": "0.2s", "await_point": "before_CONFIGURE"}
        )
        with pytest.raises(TransitionError, match=r"awaiting.waiter at before_CONFIGURE\+0.*within 0.2s"):
            await env.transition("CONFIGURE")
        assert env.state == "ERROR"
        await env.destroy()


async def test_critical_call_failure_cancels_the_transition(tmp_path: Path, repo: RepoBuilder) -> None:
    hook_repo(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("guarded", vars={"fail_critical": "true"})
        with pytest.raises(TransitionError, match=r"guarded.hard at before_CONFIGURE-1: .*no beam") as caught:
            await env.transition("CONFIGURE")
        assert caught.value.state == "ERROR" and env.state == "ERROR"
        # Later weights of the trigger were skipped; GO_ERROR's hooks ran.
        assert core_testplugin(core).recorded(env.id) == ["on-error"]
        assert {t.state for t in env.tasks} == {"STANDBY"}  # the tasks never got CONFIGURE
        await env.destroy()


async def test_non_critical_call_failure_is_a_warning(tmp_path: Path, repo: RepoBuilder) -> None:
    hook_repo(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("guarded", vars={"fail_soft": "true"})
        result = await env.transition("CONFIGURE")
        assert env.state == "CONFIGURED" and core_testplugin(core).recorded(env.id) == ["next"]
        assert any("guarded.soft" in w and "soft failure" in w for w in result.warnings)
        await env.destroy()


async def test_unknown_plugin_function_names_the_role(tmp_path: Path, repo: RepoBuilder) -> None:
    hook_repo(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("guarded", vars={"unknown": "true"})
        with pytest.raises(TransitionError, match=r"guarded.typo .*unknown name \"testplugin.Nope\""):
            await env.transition("CONFIGURE")
        await env.destroy()


async def test_failure_after_the_state_change_keeps_it_but_raises(tmp_path: Path, repo: RepoBuilder) -> None:
    hook_repo(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        subscription = core.events.subscribe()
        env = await core.new_environment("guarded", vars={"fail_late": "true"})
        with pytest.raises(TransitionError, match=r"guarded.late at after_CONFIGURE\+0: .*too late"):
            await env.transition("CONFIGURE")
        subscription.close()
        events = [event async for event in subscription]
        failed = next(
            e
            for e in events
            if isinstance(e, EnvironmentEvent)
            and e.transition == "CONFIGURE"
            and e.transition_status == "DONE_ERROR"
            and not e.transition_step
        )
        assert failed.state == "CONFIGURED"  # the change stayed, then GO_ERROR followed
        assert {t.state for t in env.tasks} == {"CONFIGURED"} and env.state == "ERROR"
        assert core_testplugin(core).recorded(env.id) == ["next", "on-error"]
        await env.destroy()


async def test_hook_task_success(tmp_path: Path, repo: RepoBuilder) -> None:
    hook_repo(repo)
    marker = tmp_path / "hook-ran"
    async with Core.embedded(state_dir=tmp_path / "state", repository=repo.repository) as core:
        env = await core.new_environment("withhook", vars={"hook_command": f"echo ran > {marker}"})
        assert not marker.exists()  # hook tasks are not deployed
        await env.transition("CONFIGURE")
        assert marker.read_text() == "ran\n" and env.state == "CONFIGURED"
        assert [t.name for t in env.tasks] == ["withhook.worker"]
        await env.destroy()


async def test_hook_task_failure_and_timeout(tmp_path: Path, repo: RepoBuilder) -> None:
    hook_repo(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("withhook", vars={"hook_command": "echo broken; exit 4"})
        with pytest.raises(TransitionError, match=r"withhook.check at before_CONFIGURE\+0: .*code 4.*broken"):
            await env.transition("CONFIGURE")
        assert env.state == "ERROR"
        await env.destroy()
        env = await core.new_environment(
            "withhook", vars={"hook_command": "exec sleep 30", "hook_timeout": "0.3s"}
        )
        with pytest.raises(TransitionError, match=r"still running after 0.3s, killed"):
            await env.transition("CONFIGURE")
        await env.destroy()


async def test_non_critical_hook_task_failure_is_a_warning(tmp_path: Path, repo: RepoBuilder) -> None:
    hook_repo(repo, critical="false")
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("withhook", vars={"hook_command": "exit 2"})
        result = await env.transition("CONFIGURE")
        assert env.state == "CONFIGURED"
        assert any("withhook.check" in w and "code 2" in w for w in result.warnings)
        await env.destroy()


def test_trigger_expressions_split_at_the_last_sign() -> None:
    assert parse_trigger("before_CONFIGURE+2") == ("before_CONFIGURE", 2)
    assert parse_trigger("enter_CONFIGURED-666") == ("enter_CONFIGURED", -666)
    assert parse_trigger(" after_DESTROY ") == ("after_DESTROY", 0)


async def test_hook_task_result_becomes_role_variables(repo: RepoBuilder) -> None:
    hook_repo(repo)
    workflow = load_workflow(repo.repository, "withhook")
    runs: list[tuple[str, float]] = []

    async def run_task(role: Role, timeout: float) -> tuple[ExitInfo | None, tuple[str, ...]]:
        runs.append((role.path, timeout))
        return ExitInfo(0), ("hello", "world")

    engine = HookEngine(HookPlan(workflow.root), "env1", EventBus(), {}, run_task, dict, lambda *_: None)
    assert await engine.fire("before_CONFIGURE") == []
    assert await engine.fire("after_CONFIGURE") == []  # nothing there: not even step events
    role = workflow.root.find("withhook.check")
    assert role is not None and runs == [("withhook.check", 10.0)]
    assert role.user_vars["taskResult.exitCode"] == "0"
    assert role.user_vars["taskResult.stdout"] == "hello\nworld"
    assert role.user_vars["taskResult.finalStatus"] == "FINISHED"


class RecordingPlugin:
    """A harness's own integration: `dcs.PrepareForRun()` answers and records who called it."""

    name = "dcs"

    def __init__(self) -> None:
        self.callers: list[tuple[str, str]] = []

    def functions(self, call: CallContext) -> dict[str, Callable[..., str]]:
        def prepare_for_run() -> str:
            self.callers.append((call.environment_id, call.role_path))
            return "prepared"

        return {"PrepareForRun": prepare_for_run}


async def test_a_harness_plugs_in_its_own_integration(tmp_path: Path, repo: RepoBuilder) -> None:
    repo.workflow(
        "withdcs",
        """\
        name: withdcs
        roles:
          - name: worker
            task: {load: fake}
          - name: pfr
            call: {func: dcs.PrepareForRun(), trigger: before_CONFIGURE}
        """,
    )
    dcs = RecordingPlugin()
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository, plugins={"dcs": dcs}) as core:
        env = await core.new_environment("withdcs")
        await env.transition("CONFIGURE")
        assert dcs.callers == [(env.id, "withdcs.pfr")]
        await env.destroy()
