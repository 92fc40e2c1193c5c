"""Issue 11: ports avoid the kernel's ephemeral range, and data channels bind on the node's address."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import zmq

from actors.local_cluster import LocalClusterActor
from aliecs import Core
from aliecs.cluster.ports import EPHEMERAL_RANGE_FILE, PortAllocator, PortRange, ephemeral_range
from aliecs.cluster.scheduler_interface import Placement
from aliecs.examples.copypush import Sampler, node_bind_address
from aliecs.executor.orders import TaskResult
from aliecs.executor.wire import results_from_wire, results_to_wire
from aliecs.generated import aliecs_executor as pb
from aliecs.occ.client import OccClient
from aliecs.pytest_plugin import isolated_nodes
from tests.conftest import RepoBuilder


def test_ephemeral_range_is_read_from_the_kernel(tmp_path: Path) -> None:
    custom = tmp_path / "ip_local_port_range"
    custom.write_text("15000\t65000\n")
    assert ephemeral_range(custom) == PortRange(15000, 65000)
    custom.write_text("nonsense")
    assert ephemeral_range(custom) is None and ephemeral_range(tmp_path / "missing") is None
    if EPHEMERAL_RANGE_FILE.exists():
        assert ephemeral_range() is not None


def test_ports_outside_the_ephemeral_range_are_handed_out_first() -> None:
    (node,) = isolated_nodes(1)
    first = node.control_ports.first
    allocator = PortAllocator(PortRange(first, first + 9), "node", ephemeral=PortRange(first, first + 4))
    try:
        ports = [allocator.allocate() for _ in range(10)]
    finally:
        allocator.release_all()
    assert ports[:5] == list(range(first + 5, first + 10))
    assert sorted(ports[5:]) == list(range(first, first + 5))


def test_copypush_binds_its_data_channel_on_the_node_address() -> None:
    assert node_bind_address("tcp://*:5555", "10.0.0.7") == "tcp://10.0.0.7:5555"
    assert node_bind_address("tcp://0.0.0.0:5555", "10.0.0.7") == "tcp://10.0.0.7:5555"
    assert node_bind_address("ipc:///tmp/x", "10.0.0.7") == "ipc:///tmp/x"
    (node,) = isolated_nodes(1)
    port = node.data_ports.first
    sampler = Sampler("s", 16, 1.0)
    try:
        sampler.open_channel(
            {
                "chans.data.0.address": f"tcp://*:{port}",
                "chans.data.0.method": "bind",
                "chans.data.0.type": "push",
            }
        )
        assert sampler.socket is not None
        assert sampler.socket.getsockopt(zmq.LAST_ENDPOINT) == f"tcp://127.0.0.1:{port}".encode()
    finally:
        sampler.close_channel()
        sampler.context.term()


ONE_FAKE = """\
name: solo
roles:
  - name: only
    task: {load: fake}
"""


@pytest.mark.usefixtures("no_leaked_processes")
async def test_control_port_taken_between_placement_and_launch_is_retried_on_another(
    tmp_path: Path, repo: RepoBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A program of someone else's binds the task's control port after the scheduler chose it (the
    # race of 20 environments created at once): the executor finds it taken, the core gives the
    # task another port and launches it again. Before, DEPLOY failed "control port already in use".
    repo.workflow("solo", ONE_FAKE)
    squatters: list[socket.socket] = []
    place = LocalClusterActor.place

    def place_then_squat(self: LocalClusterActor, requests: list[Any]) -> list[Any]:
        placements = place(self, requests)
        for placement in placements:
            if not squatters and isinstance(placement, Placement) and placement.control_port:
                squatter = socket.socket()
                squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                squatter.bind(("127.0.0.1", placement.control_port))
                squatter.listen()
                squatters.append(squatter)
        return placements

    monkeypatch.setattr(LocalClusterActor, "place", place_then_squat)
    try:
        async with Core.embedded(
            state_dir=tmp_path / "state", nodes=isolated_nodes(1), repository=repo.repository
        ) as core:
            env = await core.new_environment("solo")
            (task,) = env.tasks
            taken = squatters[0].getsockname()[1]
            assert env.state == "DEPLOYED" and task.state == "STANDBY"
            environ = Path(f"/proc/{task.pid}/environ").read_bytes().split(b"\0")
            (port,) = [int(item.split(b"=")[1]) for item in environ if item.startswith(b"OCC_CONTROL_PORT=")]
            assert port != taken
            async with OccClient("127.0.0.1", port, timeout=10) as client:
                assert await client.get_state(timeout=10) == ("STANDBY", task.pid)
            await env.transition("CONFIGURE")
            assert env.tasks[0].state == "CONFIGURED"
            await env.destroy()
    finally:
        for squatter in squatters:
            squatter.close()
    assert squatters, "the control port was never taken: the test did not exercise the retry"


def test_a_launch_refused_for_a_taken_port_says_so_over_the_executor_protocol() -> None:
    taken = TaskResult("t1", False, "ERROR", error="control port 5 is already in use", port_in_use=True)
    started = TaskResult("t2", True, "STANDBY", pid=7)
    reply = pb.BatchReply().parse(bytes(results_to_wire([taken, started])))
    assert results_from_wire(reply) == [taken, started]
    assert not results_from_wire(reply)[1].port_in_use
