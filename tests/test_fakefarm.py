"""The fake task farm: many real OCC endpoints in one process, driven by a real embedded core."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from actors.farm_executor import FarmExecutorActor
from aliecs import Core, TransitionError
from aliecs.fakefarm import Behaviour, FarmClient
from aliecs.occ import OccClient
from aliecs.occ.states import Event
from tests.conftest import RepoBuilder, pid_alive
from tests.fakefarm_helpers import farm_nodes, farm_repo

pytestmark = pytest.mark.usefixtures("no_leaked_processes")


async def test_fifty_farm_tasks_go_through_a_full_cycle(tmp_path: Path, repo: RepoBuilder) -> None:
    farm_repo(repo, "farm50", good=49, bad=1)
    async with Core.embedded(
        state_dir=tmp_path / "state",
        nodes=farm_nodes(),
        repository=repo.repository,
        executor_class=FarmExecutorActor,
    ) as core:
        env = await core.new_environment("farm50")
        tasks = env.tasks
        assert len(tasks) == 50
        assert {(t.state, t.status) for t in tasks} == {("STANDBY", "ACTIVE")}
        farm_pids = {t.pid for t in tasks}
        assert len(farm_pids) == 1 and pid_alive(farm_pids.pop())  # one farm process serves them all
        for event, state in (
            ("CONFIGURE", "CONFIGURED"),
            ("START_ACTIVITY", "RUNNING"),
            ("STOP_ACTIVITY", "CONFIGURED"),
            ("RESET", "DEPLOYED"),
        ):
            await env.transition(event)
            assert env.state == state
        assert {t.state for t in env.tasks} == {"STANDBY"}
        await env.transition("EXIT")
        assert env.state == "DONE"
        assert {t.state for t in env.tasks} == {"DONE"}
        await env.destroy()


async def test_injected_failures_raise_a_transition_error_naming_the_tasks(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    farm_repo(repo, "flaky", good=5, bad=3, bad_args="--fail-rate 1.0")
    async with Core.embedded(
        state_dir=tmp_path / "state",
        nodes=farm_nodes(),
        repository=repo.repository,
        executor_class=FarmExecutorActor,
    ) as core:
        env = await core.new_environment("flaky")
        with pytest.raises(TransitionError) as caught:
            await env.transition("CONFIGURE")
        failed = {error.name.split(".")[-1] for error in caught.value.task_errors}
        assert failed == {"bad0", "bad1", "bad2"}
        assert all("ERROR" in error.message for error in caught.value.task_errors)
        assert env.state == "ERROR"
        states = {t.name.split(".")[-1]: t.state for t in env.tasks}
        assert {states[f"bad{i}"] for i in range(3)} == {"ERROR"}
        assert {states[f"good{i}"] for i in range(5)} == {"CONFIGURED"}
        await env.destroy()


async def test_bad_farm_options_fail_deploy_with_the_reason(tmp_path: Path, repo: RepoBuilder) -> None:
    farm_repo(repo, "typo", good=1, bad=1, bad_args="--fail-rate 7")
    async with Core.embedded(
        state_dir=tmp_path / "state",
        nodes=farm_nodes(),
        repository=repo.repository,
        executor_class=FarmExecutorActor,
    ) as core:
        with pytest.raises(TransitionError, match=r"a rate is between 0 and 1"):
            await core.new_environment("typo")


async def test_an_endpoint_leaves_after_exit_and_the_farm_says_so() -> None:
    gone: dict[int, int] = {}
    left = asyncio.Event()

    def on_exit(port: int, code: int) -> None:
        gone[port] = code
        left.set()

    farm = FarmClient(on_exit)
    await farm.start()
    try:
        await farm.open(27290, ["--latency", "0"])
        async with OccClient("127.0.0.1", 27290) as client:
            assert (await client.get_state(timeout=5.0))[0] == "STANDBY"
            assert (await client.transition("STANDBY", "EXIT", timeout=5.0)).state == "DONE"
        await asyncio.wait_for(left.wait(), 10.0)
        assert gone == {27290: 0}
        await farm.open(27291, [])
        await farm.close(27291)
        assert gone[27291] < 0  # closed on request: not a clean exit
    finally:
        await farm.stop()
    assert not farm.alive


def test_behaviour_options_and_distributions() -> None:
    behaviour = Behaviour.parse(["fakefarm-task", "--latency", "0.5", "--latency-dist", "uniform"])
    rng = random.Random(1)
    delays = [behaviour.delay(rng) for _ in range(200)]
    assert all(0.0 <= d <= 1.0 for d in delays) and len(set(delays)) > 1
    assert Behaviour.parse(["--latency", "0.2"]).delay(rng) == 0.2
    assert Behaviour.parse(["x", "--fail-on", "start"]).fails(Event.START, rng)
    assert not Behaviour.parse([]).fails(Event.START, rng)
    rate = Behaviour.parse(["--fail-rate", "0.5"])
    outcomes = [rate.fails(Event.CONFIGURE, rng) for _ in range(400)]
    assert 100 < sum(outcomes) < 300
    with pytest.raises(ValueError, match="--fail-rate"):
        Behaviour.parse(["--fail-rate", "2"])
