"""Issue 11: ports avoid the kernel's ephemeral range, and data channels bind on the node's address."""

from __future__ import annotations

from pathlib import Path

import zmq

from aliecs.cluster.ports import EPHEMERAL_RANGE_FILE, PortAllocator, PortRange, ephemeral_range
from aliecs.examples.copypush import Sampler, node_bind_address
from aliecs.pytest_plugin import isolated_nodes


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
