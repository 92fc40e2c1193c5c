"""Local cluster building blocks: inventory, ports, placement, durations."""

import socket
from pathlib import Path

import pytest

from aliecs.cluster.inventory import InventoryError, default_nodes, load_inventory
from aliecs.cluster.placement import NodeCapacity, PlacementRequest, Wants, choose_node, constraints_hold
from aliecs.cluster.ports import PortAllocator, PortExhaustedError, PortRange
from aliecs.durations import parse_duration


def test_default_nodes_have_disjoint_port_ranges() -> None:
    nodes = default_nodes(3)
    assert [n.hostname for n in nodes] == ["node00", "node01", "node02"]
    spans = [set(range(n.control_ports.first, n.control_ports.last + 1)) for n in nodes]
    assert not (spans[0] & spans[1]) and not (spans[1] & spans[2])
    with pytest.raises(InventoryError):
        default_nodes(0)


def test_inventory_yaml(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "nodes:\n"
        "  - hostname: flp001\n    attributes: {machine_id: flp001}\n"
        "    cpu: 4\n    control_ports: 31000-31099\n"
        "  - hostname: flp002\n"
    )
    nodes = load_inventory(path)
    assert nodes[0].cpu == 4 and nodes[0].control_ports == PortRange(31000, 31099)
    assert nodes[1].attributes == {}
    path.write_text("nodes:\n  - hostname: a\n    colour: red\n")
    with pytest.raises(InventoryError, match=r"nodes\[0\]: unknown node keys \['colour'\]"):
        load_inventory(path)


def test_port_allocator_skips_busy_ports_and_exhausts_clearly() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        allocator = PortAllocator(PortRange(busy, busy + 1), "test")
        got = allocator.allocate()
        assert got == busy + 1
    allocator.release(got)
    tiny = PortAllocator(PortRange(got, got), "tiny")
    tiny.allocate()
    with pytest.raises(PortExhaustedError, match="tiny: no free port left"):
        tiny.allocate()
    tiny.release_all()


def test_constraints_are_strict_and() -> None:
    attributes = {"machine_id": "flp001", "role": "flp,qc"}
    assert constraints_hold({"machine_id": "flp001", "role": "qc"}, attributes)
    assert not constraints_hold({"machine_id": "flp002", "role": "qc"}, attributes)
    assert not constraints_hold({"machine_id": "flp001", "missing": "x"}, attributes)


def test_choose_node_deducts_resources() -> None:
    nodes = [NodeCapacity("a", {}, 1.0, 100), NodeCapacity("b", {}, 2.0, 100)]
    request = PlacementRequest("t", "t", Wants(cpu=1.5, memory=10))
    assert choose_node(request, nodes) is nodes[1]
    assert nodes[1].cpu_free == pytest.approx(0.5)
    assert choose_node(request, nodes) is None


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == pytest.approx(0.5)
    assert parse_duration("2.5") == 2.5
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("soon")
