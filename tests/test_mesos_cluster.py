"""The core on (emulated) Apache Mesos: the MesosAdapter as the scheduler, real executor processes
launched by the emulator's agents, real task processes under them.

The emulator (tests/mesos_emulator) runs in the test's process; what it launches are processes.
The same workflow runs on the local cluster too (`test_the_same_workflow_runs_on_the_local_cluster`).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from actors.mesos_adapter import MesosAdapter
from aliecs import Core, TransitionError
from aliecs.api import Environment
from aliecs.cluster.inventory import NodeSpec
from aliecs.cluster.placement import PlacementRequest, Wants
from aliecs.cluster.scheduler_interface import DeployRequest, Placement, RetryPolicy, answer
from aliecs.testing import isolated_nodes, wait_for_environment_state
from tests.conftest import RepoBuilder, pid_alive
from tests.core_process import start_core, stop_or_kill
from tests.mesos_emulator.cluster import Emulator, EmulatorConfig
from tests.occ_helpers import free_port

pytestmark = pytest.mark.usefixtures("no_leaked_processes")

# Three roles, each pinned to one agent by a different attribute (machine_id first).
SPREAD = """\
name: spread
roles:
  - name: first
    constraints: [{attribute: machine_id, value: agent-1}]
    task: {load: fake}
  - name: second
    constraints: [{attribute: detector, value: TPC}]
    task: {load: fake}
  - name: third
    constraints: [{attribute: rack, value: r3}]
    task: {load: fake}
"""

NOWHERE = """\
name: nowhere
roles:
  - name: fits
    task: {load: fake}
  - name: never
    constraints: [{attribute: detector, value: ITS}]
    task: {load: fake}
"""

ATTRIBUTES = {"agent-2": {"detector": "TPC"}, "agent-3": {"rack": "r3"}}


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    config = EmulatorConfig(
        agents=3,
        attributes=ATTRIBUTES,
        heartbeat_interval=1.0,
        allocation_interval=0.2,
        work_dir=tmp_path / "mesos",
    )
    async with Emulator(config) as running:
        yield running


@pytest.fixture
def workflows(repo: RepoBuilder) -> RepoBuilder:
    return repo.workflow("spread", SPREAD).workflow("nowhere", NOWHERE)


async def test_an_unsatisfiable_constraint_fails_placement_naming_task_and_constraint(
    tmp_path: Path, emulator: Emulator, workflows: RepoBuilder
) -> None:
    async with Core.embedded(
        state_dir=tmp_path / "state", repository=workflows.repository, mesos=emulator.url
    ) as core:
        with pytest.raises(TransitionError) as caught:
            await core.new_environment("nowhere")
        (task_error,) = caught.value.task_errors
        assert task_error.name == "nowhere.never"
        assert "undeployable: no offer fits" in task_error.message
        for agent in ("agent-1", "agent-2", "agent-3"):
            assert f"{agent}: constraints detector=ITS not met" in task_error.message
        assert "(after 5 tries)" in task_error.message
        assert await core.environments() == []
    saved = tmp_path / "state" / "mesos-framework.json"
    assert not saved.exists()  # the framework was torn down: nothing to fail over to


async def test_framework_id_is_private_and_reused_after_detach(
    tmp_path: Path, emulator: Emulator, workflows: RepoBuilder
) -> None:
    state = tmp_path / "state"
    first = Core.embedded(
        state_dir=state, repository=workflows.repository, mesos=emulator.url, outlive_core=True
    )
    await first.start()
    saved = state / "mesos-framework.json"
    framework_id = json.loads(saved.read_text())["framework_id"]
    assert saved.stat().st_mode & 0o777 == 0o600
    await first.detach()
    async with Core.embedded(
        state_dir=state, repository=workflows.repository, mesos=emulator.url, outlive_core=True
    ) as second:
        assert json.loads(saved.read_text())["framework_id"] == framework_id
        assert second.mesos == emulator.url


def agent_like_nodes() -> list[NodeSpec]:
    """Local nodes named and labelled like the emulated agents, for the same workflow."""
    nodes = isolated_nodes(3)
    return [
        replace(
            node,
            hostname=f"agent-{number}",
            attributes={"machine_id": f"agent-{number}", **ATTRIBUTES.get(f"agent-{number}", {})},
        )
        for number, node in enumerate(nodes, start=1)
    ]


def hosts(env: Environment) -> dict[str, str]:
    return {task.name.rsplit(".", 1)[-1]: task.host for task in env.tasks}


async def full_cycle(core: Core) -> list[int]:
    """DEPLOY the spread workflow, run it through a whole cycle, destroy it; returns its task pids."""
    env = await core.new_environment("spread")
    assert env.state == "DEPLOYED"
    assert hosts(env) == {"first": "agent-1", "second": "agent-2", "third": "agent-3"}
    pids = [task.pid for task in env.tasks]
    assert all(pid > 0 for pid in pids) and len(set(pids)) == 3
    for event, state, task_state in (
        ("CONFIGURE", "CONFIGURED", "CONFIGURED"),
        ("START_ACTIVITY", "RUNNING", "RUNNING"),
        ("STOP_ACTIVITY", "CONFIGURED", "CONFIGURED"),
        ("RESET", "DEPLOYED", "STANDBY"),
    ):
        result = await env.transition(event)
        assert result.to_state == state and env.state == state
        assert all(task.state == task_state for task in env.tasks)
    await env.destroy()
    assert await core.environments() == []
    return pids


async def test_a_workflow_with_constraints_runs_a_full_cycle_on_three_agents(
    tmp_path: Path, emulator: Emulator, workflows: RepoBuilder
) -> None:
    async with Core.embedded(
        state_dir=tmp_path / "state", repository=workflows.repository, mesos=emulator.url
    ) as core:
        pids = await full_cycle(core)
        assert not any(pid_alive(pid) for pid in pids)
        # Each agent runs one executor, launched by the emulator with the first task placed there.
        executors = {agent.hostname: [e.pid for e in agent.executors.values()] for agent in emulator.agents}
        assert all(len(pids) == 1 for pids in executors.values()), executors
        # A second environment reuses the running executors (no new executor process).
        await full_cycle(core)
        again = {agent.hostname: [e.pid for e in agent.executors.values()] for agent in emulator.agents}
        assert again == executors


async def test_the_same_workflow_runs_on_the_local_cluster(tmp_path: Path, workflows: RepoBuilder) -> None:
    async with Core.embedded(
        state_dir=tmp_path / "state", repository=workflows.repository, nodes=agent_like_nodes()
    ) as core:
        pids = await full_cycle(core)
    assert not any(pid_alive(pid) for pid in pids)


async def test_losing_an_agent_loses_its_tasks_and_a_critical_one_puts_the_environment_in_error(
    tmp_path: Path, emulator: Emulator, workflows: RepoBuilder
) -> None:
    async with Core.embedded(
        state_dir=tmp_path / "state", repository=workflows.repository, mesos=emulator.url
    ) as core:
        env = await core.new_environment("spread")
        await env.transition("CONFIGURE")
        emulator.lose_agent("agent-3")
        await wait_for_environment_state(core, env, "ERROR")
        (third,) = [task for task in env.tasks if task.name.endswith("third")]
        assert "agent-3" in third.error or "agent-3" in env.error
        await env.destroy()


async def test_a_rescinded_offer_and_a_master_restart_are_survived(
    tmp_path: Path, emulator: Emulator, workflows: RepoBuilder
) -> None:
    async with Core.embedded(
        state_dir=tmp_path / "state", repository=workflows.repository, mesos=emulator.url
    ) as core:
        env = await core.new_environment("spread")
        emulator.rescind_offers()  # whatever the framework holds now is gone
        assert (await env.transition("CONFIGURE")).to_state == "CONFIGURED"
        await emulator.restart_master(downtime=0.5)
        # Control does not go through the master: the run goes on while it comes back.
        started = await env.transition("START_ACTIVITY")
        assert started.to_state == "RUNNING" and all(task.state == "RUNNING" for task in env.tasks)
        assert (await env.transition("STOP_ACTIVITY")).to_state == "CONFIGURED"
        await env.destroy()
        # Offers flow again after the re-subscription: a new environment deploys.
        assert len(await full_cycle(core)) == 3


async def test_a_core_restart_resubscribes_as_the_same_framework_and_readopts_the_tasks(
    tmp_path: Path, emulator: Emulator, workflows: RepoBuilder
) -> None:
    state = tmp_path / "state"
    first = Core.embedded(
        state_dir=state, repository=workflows.repository, mesos=emulator.url, outlive_core=True
    )
    await first.start()
    try:
        env = await first.new_environment("spread")
        await env.transition("CONFIGURE")
        env_id = env.id
        pids = {task.id: task.pid for task in env.tasks}
        framework_id = json.loads((state / "mesos-framework.json").read_text())["framework_id"]
    finally:
        await first.detach()
    assert all(pid_alive(pid) for pid in pids.values())  # Mesos keeps them through the failover timeout
    async with Core.embedded(
        state_dir=state, repository=workflows.repository, mesos=emulator.url, outlive_core=True
    ) as second:
        (framework,) = emulator.state()["frameworks"]
        assert framework["id"] == framework_id
        (restored,) = await second.environments()
        assert restored.id == env_id and restored.state == "CONFIGURED"
        assert {task.id: task.pid for task in restored.tasks} == pids
        assert hosts(restored) == {"first": "agent-1", "second": "agent-2", "third": "agent-3"}
        await restored.transition("START_ACTIVITY")
        await restored.transition("STOP_ACTIVITY")
        await restored.destroy()
    assert not any(pid_alive(pid) for pid in pids.values())


async def test_a_placement_waiting_for_offers_does_not_hold_up_another(
    tmp_path: Path, emulator: Emulator
) -> None:
    """Two environments' placements: one waits for an offer that never fits (its retries are a
    minute apart), the other is placed meanwhile; the adapter's mailbox never waits for offers."""
    adapter = MesosAdapter.start(emulator.url, tmp_path, 60.0, RetryPolicy(2, 60.0))
    try:
        await answer(adapter.proxy().wait_subscribed(10.0))
        never = DeployRequest(PlacementRequest("never", "never", Wants(0.1, 1), {"detector": "ITS"}))
        fits = DeployRequest(
            PlacementRequest("fits", "fits", Wants(0.1, 1), {"detector": "TPC"}), controllable=True
        )
        waiting = asyncio.ensure_future(answer(adapter.proxy().place([never])))
        (placed,) = await answer(adapter.proxy().place([fits]))
        assert isinstance(placed, Placement) and placed.hostname == "agent-2"
        assert placed.control_port is not None and 61400 <= placed.control_port < 61800  # agent-2's ports
        assert not waiting.done()
        assert await answer(adapter.proxy().status()) == {"fits": "agent-2"}
        await answer(adapter.proxy().release(["fits"]))
    finally:
        await adapter.stop()
    with pytest.raises(RuntimeError, match="the Mesos scheduler stopped"):
        await waiting


async def test_a_non_leading_master_redirects_the_framework_to_the_leader(tmp_path: Path) -> None:
    config = EmulatorConfig(agents=1, standby=True, heartbeat_interval=1.0, work_dir=tmp_path / "mesos")
    async with Emulator(config) as cluster:
        assert cluster.standby_url is not None
        adapter = MesosAdapter.start(cluster.standby_url, tmp_path, 60.0)
        try:
            await answer(adapter.proxy().wait_subscribed(10.0))
            client = await adapter.proxy().client
            assert client.url == f"{cluster.url}/api/v1/scheduler"
            (framework,) = cluster.state()["frameworks"]
            assert framework["id"] == client.framework_id
        finally:
            await adapter.stop()


async def test_aliecs_core_runs_as_a_mesos_framework(tmp_path: Path, emulator: Emulator) -> None:
    core = await start_core(tmp_path, free_port(), "--mesos", emulator.url, "--http-port", "0")
    try:
        assert any(f"Mesos framework on master {emulator.url}" in line for line in core.lines), core.lines
        (framework,) = emulator.state()["frameworks"]
        assert framework["name"] == "aliecs" and framework["connected"]
        assert (core.state_dir / "mesos-framework.json").stat().st_mode & 0o777 == 0o600
    finally:
        await stop_or_kill(core)
    assert core.process.returncode == 0, core.lines
    assert emulator.state()["frameworks"] == []  # a core that stops normally tears the framework down


def test_the_mesos_demo_runs_the_full_cycle_and_leaves_nothing_running() -> None:
    """What `make demo-mesos` runs: the copypush cycle on three emulated agents, exit 0, no process left."""
    result = subprocess.run(
        [sys.executable, "-m", "aliecs.mesos.demo", "--seconds", "0.5"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for event in ("DEPLOY", "CONFIGURE", "START_ACTIVITY", "STOP_ACTIVITY", "RESET", "EXIT"):
        assert f"=== {event}:" in result.stdout
    assert "Mesos emulator: master http://" in result.stdout
    assert all(f"agent-{n} pid" in result.stdout for n in (1, 2, 3))  # the tasks spread over the agents
    assert "all 4 task processes are gone" in result.stdout
    assert "no executor or task process is left" in result.stdout
