"""The spine end to end: real processes, real OCC over gRPC on loopback, the Python API."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import pytest

from aliecs import (
    Core,
    EnvironmentBusyError,
    InvalidTransitionError,
    TransitionError,
    UnknownWorkflowError,
)
from aliecs.testing import poll_until as wait_for
from tests.conftest import RepoBuilder, pid_alive

pytestmark = pytest.mark.usefixtures("no_leaked_processes")

TWO_FAKES = """\
name: {name}
defaults:
  victim_args: ""
  victim_critical: "true"
roles:
  - name: "worker{{{{ i }}}}"
    for:
      begin: "0"
      end: "1"
      var: i
    task:
      load: fake
  - name: victim
    vars:
      fake_args: "{{{{ victim_args }}}}"
    task:
      load: fake
      critical: {critical}
"""


def fakes(repo: RepoBuilder, name: str = "fakes", critical: str = "true") -> RepoBuilder:
    return repo.workflow(name, TWO_FAKES.format(name=name, critical=critical))


async def test_copypush_full_cycle_moves_data(tmp_path: Path) -> None:
    async with Core.embedded(state_dir=tmp_path / "state", nodes=2) as core:
        env = await core.new_environment("copypush")
        assert env.state == "DEPLOYED"
        tasks = env.tasks
        assert sorted(t.name.split(".")[-1] for t in tasks) == ["sampler", "sink0", "sink1", "sink2"]
        assert {t.host for t in tasks} == {"node00", "node01"}
        assert all(t.state == "STANDBY" and t.status == "ACTIVE" and pid_alive(t.pid) for t in tasks)
        assert env.run_number == 0

        await env.transition("CONFIGURE")
        assert env.state == "CONFIGURED"
        tree = env.tree()
        assert tree.state == "CONFIGURED"
        assert {node.state for node in tree.walk()} == {"CONFIGURED"}

        started = await env.transition("START_ACTIVITY")
        assert env.state == "RUNNING" and env.run_number == started.run_number > 0
        sinks = [t for t in env.tasks if ".sink" in t.name]
        await wait_for(
            lambda: all("first message received" in Path(s.log_path).read_text() for s in sinks),
            "every sink to receive data",
        )

        stopped = await env.transition("STOP")
        assert stopped.to_state == "CONFIGURED" and env.run_number == 0
        assert env.last_run_number == started.run_number
        counts = []
        for sink in sinks:
            matches = re.findall(r"received (\d+) messages", Path(sink.log_path).read_text())
            assert matches, f"{sink.name} reported nothing"
            counts.append(int(matches[-1]))
        assert sum(counts) > 0

        await env.transition("RESET")
        await env.transition("EXIT")
        assert env.state == "DONE"
        pids = [t.pid for t in tasks]
        await env.destroy()
        assert not any(pid_alive(pid) for pid in pids)
        assert await core.environments() == []


async def test_run_numbers_unique_across_environments_and_restarts(tmp_path: Path, repo: RepoBuilder) -> None:
    fakes(repo)
    seen = []
    for _restart in range(2):
        async with Core.embedded(state_dir=tmp_path / "state", repository=repo.repository) as core:
            first = await core.new_environment("fakes")
            second = await core.new_environment("fakes")
            for env in (first, second, first):
                if env.state == "DEPLOYED":
                    await env.transition("CONFIGURE")
                else:
                    await env.transition("STOP_ACTIVITY")
                await env.transition("START_ACTIVITY")
                seen.append(env.run_number)
    assert len(seen) == len(set(seen)) == 6
    assert seen == sorted(seen)


async def test_unknown_workflow_is_named_and_nothing_is_created(tmp_path: Path) -> None:
    async with Core.embedded(state_dir=tmp_path) as core:
        with pytest.raises(UnknownWorkflowError, match=r"no workflow named 'nope'.*copypush"):
            await core.new_environment("nope")
        assert await core.environments() == []


async def test_missing_command_fails_deploy_and_leaves_nothing(tmp_path: Path, repo: RepoBuilder) -> None:
    repo.task(
        "ghost",
        """\
        name: ghost
        wants: {cpu: 0.01, memory: 1}
        command:
          value: /nonexistent/ghost-binary
        """,
    ).workflow(
        "haunted",
        """\
        name: haunted
        roles:
          - name: healthy
            task: {load: fake}
          - name: ghost
            task: {load: ghost}
        """,
    )
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        with pytest.raises(TransitionError) as caught:
            await core.new_environment("haunted")
        error = caught.value
        assert error.event == "DEPLOY" and error.state == "ERROR"
        assert [e.name for e in error.task_errors] == ["haunted.ghost"]
        assert "/nonexistent/ghost-binary" in str(error) and "not found" in str(error)
        assert await core.environments() == []


async def test_crash_during_configure(tmp_path: Path, repo: RepoBuilder) -> None:
    fakes(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("fakes", vars={"victim_args": "--crash-on CONFIGURE"})
        victim = next(t for t in env.tasks if t.name.endswith("victim"))
        with pytest.raises(TransitionError) as caught:
            await env.transition("CONFIGURE")
        assert env.state == "ERROR" and caught.value.state == "ERROR"
        (error,) = caught.value.task_errors
        assert (
            error.task_id == victim.id
            and "CONFIGURE" in error.message
            and "exited with code 3" in error.message
        )
        await env.destroy()
        assert not pid_alive(victim.pid)


async def test_invalid_transition_changes_nothing(tmp_path: Path, repo: RepoBuilder) -> None:
    fakes(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("fakes")
        with pytest.raises(InvalidTransitionError, match="START_ACTIVITY is not allowed from state DEPLOYED"):
            await env.transition("START_ACTIVITY")
        with pytest.raises(InvalidTransitionError, match=r"unknown event|not allowed"):
            await env.transition("FLY")
        assert env.state == "DEPLOYED"
        assert all(t.state == "STANDBY" for t in env.tasks)


async def test_task_that_never_answers_hits_the_deadline(tmp_path: Path, repo: RepoBuilder) -> None:
    fakes(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment(
            "fakes", vars={"victim_args": "--hang-on CONFIGURE", "configure_timeout": "1s"}
        )
        with pytest.raises(TransitionError) as caught:
            await env.transition("CONFIGURE")
        (error,) = caught.value.task_errors
        assert error.name == "fakes.victim" and "no answer within 1s" in error.message
        assert env.state == "ERROR"


async def test_crash_on_start_differs_from_slow_start(tmp_path: Path, repo: RepoBuilder) -> None:
    fakes(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        with pytest.raises(TransitionError, match=r"crashed on start: process exited with code 2"):
            await core.new_environment("fakes", vars={"victim_args": "--crash-on-start"})
        with pytest.raises(TransitionError, match=r"too slow to start: .* within 1s"):
            await core.new_environment(
                "fakes", vars={"victim_args": "--slow-start 30", "startup_timeout": "1s"}
            )
        assert await core.environments() == []


async def test_non_critical_failure_is_only_a_warning(tmp_path: Path, repo: RepoBuilder) -> None:
    fakes(repo, critical="false")
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("fakes", vars={"victim_args": "--fail-on CONFIGURE"})
        result = await env.transition("CONFIGURE")
        assert env.state == "CONFIGURED"
        assert any("victim" in warning for warning in result.warnings)
        victim = next(t for t in env.tasks if t.name.endswith("victim"))
        assert victim.state == "ERROR" and not victim.critical
        assert env.tree().state == "CONFIGURED"  # non-critical tasks are left out of the aggregate


async def test_critical_death_while_running_goes_to_error_then_recover_restarts(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    fakes(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("fakes")
        await env.transition("CONFIGURE")
        await env.transition("START_ACTIVITY")
        victim = next(t for t in env.tasks if t.name.endswith("victim"))
        os.kill(victim.pid, signal.SIGKILL)
        await wait_for(lambda: env.state == "ERROR", "the environment to enter ERROR")
        dead = next(t for t in env.tasks if t.id == victim.id)
        assert dead.state == "ERROR" and "SIGKILL" in dead.error
        assert env.run_number == 0
        await env.transition("RECOVER")
        assert env.state == "DEPLOYED"
        restarted = next(t for t in env.tasks if t.id == victim.id)
        assert restarted.pid != victim.pid and pid_alive(restarted.pid)
        assert all(t.state == "STANDBY" for t in env.tasks)
        await env.transition("CONFIGURE")
        assert env.state == "CONFIGURED"


async def test_concurrent_transition_is_refused_as_busy(tmp_path: Path, repo: RepoBuilder) -> None:
    fakes(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("fakes", vars={"victim_args": "--latency CONFIGURE=0.5"})
        first = asyncio.ensure_future(env.transition("CONFIGURE"))
        await wait_for(lambda: env.current_transition == "CONFIGURE", "CONFIGURE to start")
        with pytest.raises(EnvironmentBusyError, match="busy with CONFIGURE"):
            await env.transition("RESET")
        await first
        assert env.state == "CONFIGURED"


async def test_every_state_change_is_published(tmp_path: Path, repo: RepoBuilder) -> None:
    from aliecs.events import EnvironmentEvent, RoleEvent, RunEvent, TaskEvent

    fakes(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        subscription = core.events.subscribe()
        env = await core.new_environment("fakes")
        for event in ("CONFIGURE", "START_ACTIVITY", "STOP_ACTIVITY"):
            await env.transition(event)
        run = env.last_run_number
        await env.destroy()
        subscription.close()
        events = [event async for event in subscription]
    transitions = [
        (e.transition, e.transition_status)
        for e in events
        if isinstance(e, EnvironmentEvent) and e.environment_id == env.id
    ]
    for name in ("DEPLOY", "CONFIGURE", "START_ACTIVITY", "STOP_ACTIVITY", "RESET", "EXIT"):
        assert transitions.index((name, "STARTED")) < transitions.index((name, "DONE_OK"))
    task_states = {(e.task_id, e.state) for e in events if isinstance(e, TaskEvent)}
    for task in env.tasks:
        assert {(task.id, s) for s in ("STANDBY", "CONFIGURED", "RUNNING", "DONE")} <= task_states
    roles = [e for e in events if isinstance(e, RoleEvent) and e.role_path == "fakes"]
    root_states = iter(e.state for e in roles)
    assert all(state in root_states for state in ("STANDBY", "CONFIGURED", "RUNNING", "CONFIGURED", "DONE"))
    runs = [(e.transition, e.transition_status, e.run_number) for e in events if isinstance(e, RunEvent)]
    assert runs == [
        ("START_ACTIVITY", "STARTED", run),  # start of SOR
        ("START_ACTIVITY", "DONE_OK", run),  # end of SOR
        ("STOP_ACTIVITY", "STARTED", run),  # start of EOR
        ("STOP_ACTIVITY", "DONE_OK", run),  # end of EOR
    ]
    sor = [e.timestamp_ns for e in events if isinstance(e, RunEvent)]
    assert sor == sorted(sor)


async def test_destroyed_environment_refuses_transitions(tmp_path: Path, repo: RepoBuilder) -> None:
    from aliecs import UnknownEnvironmentError

    fakes(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("fakes")
        await env.destroy()
        await env.destroy()  # idempotent
        with pytest.raises(UnknownEnvironmentError, match=f"environment {env.id} was destroyed"):
            await env.transition("CONFIGURE")
        assert env.state == "DONE"


async def test_run_timestamps_and_events_when_a_run_fails(tmp_path: Path, repo: RepoBuilder) -> None:
    from aliecs.events import RunEvent

    fakes(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("fakes", vars={"victim_args": "--fail-on STOP"})
        await env.transition("CONFIGURE")
        subscription = core.events.subscribe()
        await env.transition("START_ACTIVITY")
        record = env._record
        assert 0 < record.run_start_time_ms <= record.run_start_completion_time_ms
        with pytest.raises(TransitionError):
            await env.transition("STOP_ACTIVITY")
        assert env.state == "ERROR"
        assert (
            record.run_start_completion_time_ms <= record.run_end_time_ms <= record.run_end_completion_time_ms
        )
        subscription.close()
        runs = [(e.transition, e.transition_status) async for e in subscription if isinstance(e, RunEvent)]
    assert runs == [
        ("START_ACTIVITY", "STARTED"),
        ("START_ACTIVITY", "DONE_OK"),
        ("STOP_ACTIVITY", "STARTED"),
        ("STOP_ACTIVITY", "DONE_ERROR"),
        ("GO_ERROR", "STARTED"),
        ("GO_ERROR", "DONE_OK"),
    ]
