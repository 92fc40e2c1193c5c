"""The in-process fake executor: environments of hundreds of tasks with no process and no gRPC."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from actors.fake_executor import FakeExecutorActor
from aliecs import Core, TransitionError
from tests.conftest import RepoBuilder
from tests.fakefarm_helpers import fake_nodes, farm_repo

pytestmark = pytest.mark.usefixtures("no_leaked_processes")


async def test_five_hundred_tasks_go_through_a_full_cycle(tmp_path: Path, repo: RepoBuilder) -> None:
    farm_repo(repo, "fake500", good=499, bad=1)
    async with Core.embedded(
        state_dir=tmp_path / "state",
        nodes=fake_nodes(),
        repository=repo.repository,
        executor_class=FakeExecutorActor,
    ) as core:
        env = await core.new_environment("fake500")
        tasks = env.tasks
        assert len(tasks) == 500
        assert {t.host for t in tasks} == {"fake0", "fake1"}
        assert {(t.state, t.status, t.pid) for t in tasks} == {("STANDBY", "ACTIVE", os.getpid())}
        for event, state, task_state in (
            ("CONFIGURE", "CONFIGURED", "CONFIGURED"),
            ("START_ACTIVITY", "RUNNING", "RUNNING"),
            ("STOP_ACTIVITY", "CONFIGURED", "CONFIGURED"),
            ("RESET", "DEPLOYED", "STANDBY"),
            ("EXIT", "DONE", "DONE"),
        ):
            await env.transition(event)
            assert env.state == state
            assert env.tree().state == (state if state != "DEPLOYED" else "STANDBY")
            assert {t.state for t in env.tasks} == {task_state}
        await env.destroy()
        assert await core.environments() == []


async def test_injected_failure_is_a_transition_error(tmp_path: Path, repo: RepoBuilder) -> None:
    farm_repo(repo, "failing", good=20, bad=2, bad_args="--fail-on START")
    async with Core.embedded(
        state_dir=tmp_path / "state",
        nodes=fake_nodes(),
        repository=repo.repository,
        executor_class=FakeExecutorActor,
    ) as core:
        env = await core.new_environment("failing")
        await env.transition("CONFIGURE")
        with pytest.raises(TransitionError) as caught:
            await env.transition("START_ACTIVITY")
        assert {error.name.split(".")[-1] for error in caught.value.task_errors} == {"bad0", "bad1"}
        assert env.state == "ERROR"
        await env.transition("RECOVER")
        assert env.state == "DEPLOYED"
        assert {t.state for t in env.tasks} == {"STANDBY"}
        await env.destroy()
