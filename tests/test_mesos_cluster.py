"""The core on (emulated) Apache Mesos: the MesosAdapter as the scheduler, real executor processes
launched by the emulator's agents, real task processes under them.

The emulator (tests/mesos_emulator) runs in the test's process; what it launches are processes.
The same workflow runs on the local cluster too (`test_the_same_workflow_runs_on_the_local_cluster`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aliecs import Core, TransitionError
from aliecs.testing import isolated_nodes
from tests.conftest import RepoBuilder
from tests.mesos_emulator.cluster import Emulator, EmulatorConfig

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
    first = Core.embedded(state_dir=state, repository=workflows.repository, mesos=emulator.url, outlive_core=True)
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


def test_local_nodes_unchanged(repo: RepoBuilder) -> None:
    assert isolated_nodes(3)[0].attributes == {"machine_id": "node00"}
