"""The local cluster scheduler: simulated nodes on this machine, each with its executor.

It keeps each node's remaining cpu and memory and allocates control and data ports from the node's
ranges. Static ports a task class wants (`wants.ports`) must be free when the task is placed and
are reserved until it is released; all simulated nodes are this machine, so a static port held by
any task of this process is taken on every node. A batch is placed all-or-nothing per task: a task
that does not fit gets a failure naming the reason, and the others are still placed (the
environment decides whether that is fatal).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from actors.runtime import AsyncioActor
from aliecs.cluster.inventory import NodeSpec
from aliecs.cluster.placement import NodeCapacity, choose_node, explain_mismatch
from aliecs.cluster.ports import (
    PortAllocator,
    PortExhaustedError,
    PortUnavailableError,
    release_static,
    reserve_static,
    static_port_free,
)
from aliecs.cluster.scheduling import DeployRequest, Placement, PlacementFailure
from aliecs.executor.link import ExecutorLink
from aliecs.workflow.channels import Endpoint

if TYPE_CHECKING:
    from actors.proxies import SchedulerProxy  # noqa: F401 (named in the actor's base class)

log = logging.getLogger(__name__)


class _Allocation:
    __slots__ = ("cpu", "hostname", "memory", "ports", "static_ports")

    def __init__(self, hostname: str, cpu: float, memory: float) -> None:
        self.hostname = hostname
        self.cpu = cpu
        self.memory = memory
        self.ports: list[tuple[PortAllocator, int]] = []
        self.static_ports: tuple[int, ...] = ()


class LocalClusterActor(AsyncioActor["SchedulerProxy"]):
    def __init__(
        self,
        nodes: list[NodeSpec],
        executors: dict[str, ExecutorLink],
        node_address: str = "127.0.0.1",
    ) -> None:
        super().__init__()
        self.nodes = {node.hostname: node for node in nodes}
        self.node_address = node_address
        # Each node's executor (a process of its own by default; see aliecs.cluster.executors).
        self.executors = executors
        self.capacity = {
            node.hostname: NodeCapacity(
                node.hostname, node.attributes, node.cpu, node.memory, port_free=static_port_free
            )
            for node in nodes
        }
        self.control_ports = {
            n.hostname: PortAllocator(n.control_ports, f"{n.hostname} control ports") for n in nodes
        }
        self.data_ports = {n.hostname: PortAllocator(n.data_ports, f"{n.hostname} data ports") for n in nodes}
        self.allocations: dict[str, _Allocation] = {}
        self.ipc_dir = Path(tempfile.gettempdir()) / f"aliecs-ipc-{os.getuid()}"

    def place(self, requests: list[DeployRequest]) -> list[Placement | PlacementFailure]:
        results: list[Placement | PlacementFailure] = []
        capacities = list(self.capacity.values())
        for request in requests:
            task_id = request.placement.task_id
            node = choose_node(request.placement, capacities)
            if node is None:
                results.append(
                    PlacementFailure(
                        task_id, f"no node fits: {explain_mismatch(request.placement, capacities)}"
                    )
                )
                continue
            allocation = _Allocation(
                node.hostname, request.placement.wants.cpu, request.placement.wants.memory
            )
            self.allocations[task_id] = allocation
            try:
                allocation.static_ports = reserve_static(request.placement.static_ports)
                control_port = None
                if request.controllable:
                    control_port = self._port(self.control_ports[node.hostname], allocation)
                endpoints = {}
                for channel in request.channels:
                    if channel.addressing == "ipc":
                        self.ipc_dir.mkdir(parents=True, exist_ok=True)
                        path = f"ipc://{self.ipc_dir}/{task_id[:12]}-{channel.name}"
                        endpoints[channel.name] = Endpoint(path, path)
                    else:
                        port = self._port(self.data_ports[node.hostname], allocation)
                        endpoints[channel.name] = Endpoint(
                            f"tcp://*:{port}", f"tcp://{self.node_address}:{port}"
                        )
            except PortUnavailableError as exc:
                # Taken between choose_node's check and now (a foreign program bound it).
                self.release([task_id])
                results.append(PlacementFailure(task_id, f"{node.hostname}: wanted {exc}"))
                continue
            except PortExhaustedError as exc:
                self.release([task_id])
                results.append(PlacementFailure(task_id, str(exc)))
                continue
            results.append(
                Placement(
                    task_id=task_id,
                    hostname=node.hostname,
                    address=self.node_address,
                    executor=self.executors[node.hostname],
                    control_port=control_port,
                    endpoints=endpoints,
                )
            )
        return results

    def adopt(
        self,
        task_id: str,
        hostname: str,
        address: str,
        control_port: int | None,
        endpoints: dict[str, Endpoint],
    ) -> Placement:
        """Take back the placement of a task that kept running through a restart of the core: its
        ports are marked taken again (cpu and memory are not journaled and stay free)."""
        allocation = self.allocations[task_id] = _Allocation(hostname, 0.0, 0.0)
        if control_port is not None:
            self.control_ports[hostname].take(control_port)
            allocation.ports.append((self.control_ports[hostname], control_port))
        for endpoint in endpoints.values():
            if endpoint.connect_address.startswith("tcp://"):
                port = int(endpoint.connect_address.rsplit(":", 1)[1])
                self.data_ports[hostname].take(port)
                allocation.ports.append((self.data_ports[hostname], port))
        return Placement(task_id, hostname, address, self.executors[hostname], control_port, endpoints)

    @staticmethod
    def _port(allocator: PortAllocator, allocation: _Allocation) -> int:
        port = allocator.allocate()
        allocation.ports.append((allocator, port))
        return port

    def release(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            allocation = self.allocations.pop(task_id, None)
            if allocation is None:
                continue
            for allocator, port in allocation.ports:
                allocator.release(port)
            release_static(allocation.static_ports)
            capacity = self.capacity[allocation.hostname]
            capacity.cpu_free += allocation.cpu
            capacity.memory_free += allocation.memory

    def on_stop(self) -> None:
        self.release(list(self.allocations))
