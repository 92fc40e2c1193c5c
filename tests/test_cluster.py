"""Local cluster building blocks: inventory, ports, placement, durations."""

import asyncio
import contextlib
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from actors.local_cluster import LocalClusterActor
from aliecs.cluster.inventory import InventoryError, NodeSpec, default_nodes, load_inventory
from aliecs.cluster.placement import (
    NodeCapacity,
    PlacementRequest,
    Wants,
    choose_node,
    constraints_hold,
    explain_mismatch,
)
from aliecs.cluster.ports import (
    PortAllocator,
    PortExhaustedError,
    PortRange,
    PortReservations,
    PortUnavailableError,
    parse_port_list,
)
from aliecs.cluster.scheduler_interface import (
    DeployRequest,
    Placement,
    PlacementFailure,
    RetryPolicy,
    Scheduler,
)
from aliecs.durations import parse_duration
from aliecs.testing import isolated_nodes


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
        "    cpu: 4\n    control_ports: 31000-31099\n    detectors: [TPC, ITS]\n"
        "  - hostname: flp002\n    detectors: MFT\n"
    )
    nodes = load_inventory(path)
    assert nodes[0].cpu == 4 and nodes[0].control_ports == PortRange(31000, 31099)
    assert nodes[1].attributes == {}
    assert (nodes[0].detectors, nodes[1].detectors) == (("TPC", "ITS"), ("MFT",))
    path.write_text("nodes:\n  - hostname: a\n    detectors: [tpc]\n")
    with pytest.raises(InventoryError, match=r"nodes\[0\]: detector names are upper-case"):
        load_inventory(path)
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


def test_parse_port_list_expands_ranges_and_names_the_descriptor() -> None:
    assert parse_port_list("29003-29005, 29001,29004", "task class t") == (29001, 29003, 29004, 29005)
    assert parse_port_list("", "task class t") == ()
    with pytest.raises(ValueError, match=r"task class broken: wants.ports '29010-29000'"):
        parse_port_list("29010-29000", "task class broken")
    with pytest.raises(ValueError, match=r"task class huge: wants.ports '70000'"):
        parse_port_list("70000", "task class huge")


def test_choose_node_needs_every_wanted_port_free_and_says_which_is_not() -> None:
    taken = {29001}
    nodes = [
        NodeCapacity("a", {}, 4.0, 100, port_free=lambda port: port not in taken),
        NodeCapacity("b", {}, 1.0, 100, port_free=lambda port: port != 29002),
    ]
    request = PlacementRequest("t", "t", Wants(cpu=0.5), static_ports=(29000, 29001))
    assert choose_node(request, nodes) is nodes[1]  # "a" has more cpu but holds 29001
    assert nodes[0].cpu_free == 4.0 and nodes[1].cpu_free == pytest.approx(0.5)
    blocked = PlacementRequest("u", "u", static_ports=(29001, 29002))
    assert choose_node(blocked, nodes) is None
    assert (
        explain_mismatch(blocked, nodes)
        == "a: wanted port 29001 is not free; b: wanted port 29002 is not free"
    )


def free_port(*, besides: tuple[int, ...] = ()) -> int:
    """A port nothing on this machine holds right now (the kernel picks it), other than `besides`."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in besides:
            return port


def test_static_ports_are_reserved_until_released() -> None:
    reservations = PortReservations()
    port = free_port()
    assert reservations.free(port)
    assert reservations.reserve([port]) == (port,)
    assert not reservations.free(port)
    with pytest.raises(PortUnavailableError, match=f"port {port} is not free"):
        reservations.reserve([port])
    # Dynamic allocation from the same book skips a statically reserved port.
    allocator = PortAllocator(PortRange(port, port), "dyn", reservations=reservations)
    with pytest.raises(PortExhaustedError):
        allocator.allocate()
    reservations.release([port])
    assert reservations.free(port)
    assert allocator.allocate() == port and port in reservations
    allocator.release(port)
    assert port not in reservations


def test_static_port_bound_by_a_foreign_socket_is_not_free() -> None:
    reservations = PortReservations()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        assert not reservations.free(busy)
        with pytest.raises(PortUnavailableError, match=str(busy)):
            reservations.reserve([busy])


def test_reserve_is_all_or_nothing() -> None:
    reservations = PortReservations()
    first = free_port()
    second = free_port(besides=(first,))
    reservations.reserve([second])
    with pytest.raises(PortUnavailableError, match=str(second)):
        reservations.reserve([first, second])
    assert reservations.free(first)


def test_reservations_are_per_book_not_per_process() -> None:
    """Two cores in one process keep separate books: each may reserve the port the other holds."""
    port = free_port()
    ours, theirs = PortReservations(), PortReservations()
    assert ours.reserve([port]) == theirs.reserve([port]) == (port,)
    assert PortAllocator(PortRange(port, port), "own book").allocate() == port


def local_cluster(count: int) -> LocalClusterActor:
    """A scheduler used through its plain methods (not started: placement needs no executors)."""
    nodes = isolated_nodes(count)
    return LocalClusterActor(nodes, dict.fromkeys(node.hostname for node in nodes))  # type: ignore[arg-type]


def static_request(task_id: str, ports: tuple[int, ...], controllable: bool = False) -> DeployRequest:
    return DeployRequest(PlacementRequest(task_id, task_id, static_ports=ports), controllable=controllable)


async def test_scheduler_reserves_static_ports_and_releases_them() -> None:
    cluster = local_cluster(2)
    port = free_port()
    first, second = cluster.place([static_request("one", (port,)), static_request("two", (port,))])
    try:
        assert isinstance(first, Placement)
        assert isinstance(second, PlacementFailure)
        assert second.reason == (
            f"no node fits: node00: wanted port {port} is not free; node01: wanted port {port} is not free"
        )
        assert "two" not in cluster.allocations
        assert not cluster.reservations.free(port)
    finally:
        cluster.release(["one"])
    assert cluster.reservations.free(port)
    (again,) = cluster.place([static_request("three", (port,))])
    assert isinstance(again, Placement)
    cluster.on_stop()  # releases whatever is still allocated
    assert cluster.reservations.free(port)


async def test_two_clusters_in_one_process_each_reserve_the_same_static_port() -> None:
    """Each local cluster owns its reservations: another core's (or test's) cluster in the same
    process does not see them, while the nodes of one cluster share them (one machine)."""
    port = free_port()
    first, second = local_cluster(2), local_cluster(2)
    placed = [cluster.place([static_request("t", (port,))])[0] for cluster in (first, second)]
    assert all(isinstance(result, Placement) for result in placed)
    (again,) = first.place([static_request("u", (port,))])
    assert isinstance(again, PlacementFailure)
    assert again.reason == (
        f"no node fits: node00: wanted port {port} is not free; node01: wanted port {port} is not free"
    )
    for cluster in (first, second):
        cluster.on_stop()
        assert cluster.reservations.free(port)


async def test_failed_placement_gives_back_its_static_ports() -> None:
    cluster = local_cluster(1)
    node = cluster.nodes["localhost"]
    blocker = PortAllocator(node.control_ports, "blocker", reservations=cluster.reservations)
    with contextlib.suppress(PortExhaustedError):
        while True:  # take every control port there is
            blocker.allocate()
    port = free_port(besides=tuple(blocker.in_use))
    try:
        (failure,) = cluster.place([static_request("t", (port,), controllable=True)])
        assert isinstance(failure, PlacementFailure) and "no free port left" in failure.reason
        assert cluster.reservations.free(port) and cluster.allocations == {}
    finally:
        blocker.release_all()


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == pytest.approx(0.5)
    assert parse_duration("2.5") == 2.5
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("soon")


def cpu_request(task_id: str, cpu: float, constraints: dict[str, str] | None = None) -> DeployRequest:
    return DeployRequest(
        PlacementRequest(task_id, task_id, Wants(cpu=cpu), constraints or {}), controllable=False
    )


def one_cpu_cluster(node: NodeSpec, retry: RetryPolicy) -> LocalClusterActor:
    executors = dict.fromkeys([node.hostname])
    return LocalClusterActor([replace(node, cpu=1.0)], executors, retry=retry)  # type: ignore[arg-type]


async def test_local_cluster_retries_only_what_failed_until_it_fits() -> None:
    node = isolated_nodes(1)[0]
    cluster = one_cpu_cluster(node, RetryPolicy(3, 0.05))
    (first,) = cluster.place([cpu_request("first", 1.0)])
    assert isinstance(first, Placement)
    waiting = cluster.place([cpu_request("second", 1.0)])
    assert isinstance(waiting, asyncio.Future)  # not placed yet: retried in the background
    cluster.release(["first"])  # frees the cpu before the next try
    (second,) = await waiting
    assert isinstance(second, Placement) and second.hostname == node.hostname
    assert cluster.status() == {"second": node.hostname}
    cluster.on_stop()


async def test_local_cluster_retry_is_bounded_and_constraints_are_final() -> None:
    node = isolated_nodes(1)[0]
    cluster = one_cpu_cluster(node, RetryPolicy(2, 0.01))
    results = await cluster.place([cpu_request("big", 2.0), cpu_request("fits", 1.0)])  # type: ignore[misc]
    big, fits = results
    assert isinstance(fits, Placement)
    assert isinstance(big, PlacementFailure) and big.task_id == "big"
    assert big.reason == f"no node fits: {node.hostname}: needs 2.0 cpu, 0 free (after 2 tries)"
    # No node has the attribute: no retry can help, the answer is immediate.
    (never,) = cluster.place([cpu_request("never", 0.1, {"machine_id": "elsewhere"})])
    assert isinstance(never, PlacementFailure) and not never.retryable
    assert never.reason == f"no node fits: {node.hostname}: constraints machine_id=elsewhere not met"
    cluster.on_stop()


def test_the_local_cluster_and_the_mesos_adapter_are_both_schedulers() -> None:
    from actors.mesos_adapter import MesosAdapter

    # mypy checks the assignment structurally against the Protocol; the loop checks at run time.
    schedulers: list[type[Scheduler]] = [LocalClusterActor, MesosAdapter]
    for scheduler in schedulers:
        for method in ("place", "release", "kill", "status", "adopt"):
            assert callable(getattr(scheduler, method)), (scheduler, method)
