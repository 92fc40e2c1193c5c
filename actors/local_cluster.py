"""The local cluster scheduler: simulated nodes on this machine, each with its executor.

It keeps each node's remaining cpu and memory and allocates control and data ports from the node's
ranges. Static ports a task class wants (`wants.ports`) must be free when the task is placed and
are reserved until it is released; all simulated nodes are this machine, so they share one
`PortReservations` (made here, owned by this actor, not by the process): a static port held by any
task of this cluster is taken on every node. A batch is placed all-or-nothing per task: a task
that does not fit gets a failure naming the reason, and the others are still placed (the
environment decides whether that is fatal).

It implements `aliecs.cluster.scheduler_interface.Scheduler`. Its default `RetryPolicy` tries once: the
local nodes' resources are held only by this core's own environments, which a deployment cannot
wait for; with a policy of more tries, a task that did not fit for want of cpu, memory or a port
is tried again alone (the answer then comes as an awaitable, so other environments' calls go on).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.runtime import AsyncioActor
from aliecs.cluster.inventory import NodeSpec
from aliecs.cluster.placement import NodeCapacity, choose_node, constraints_hold, explain_mismatch
from aliecs.cluster.ports import (
    PortAllocator,
    PortExhaustedError,
    PortReservations,
    PortUnavailableError,
)
from aliecs.cluster.scheduler_interface import (
    NO_RETRY,
    DeployRequest,
    Placement,
    PlacementFailure,
    PlacementResult,
    RetryPolicy,
    place_retrying,
)
from aliecs.executor.link import ExecutorLink
from aliecs.executor.orders import TaskResult
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
        retry: RetryPolicy = NO_RETRY,
    ) -> None:
        super().__init__()
        self.retry = retry
        self.nodes = {node.hostname: node for node in nodes}
        self.node_address = node_address
        # Each node's executor (a process of its own by default; see aliecs.cluster.executors).
        self.executors = executors
        self.reservations = PortReservations()  # one machine: every node's ports in one book
        self.capacity = {
            node.hostname: NodeCapacity(
                node.hostname, node.attributes, node.cpu, node.memory, port_free=self.reservations.free
            )
            for node in nodes
        }
        held = self.reservations
        self.control_ports = {
            n.hostname: PortAllocator(n.control_ports, f"{n.hostname} control ports", reservations=held)
            for n in nodes
        }
        self.data_ports = {
            n.hostname: PortAllocator(n.data_ports, f"{n.hostname} data ports", reservations=held)
            for n in nodes
        }
        self.allocations: dict[str, _Allocation] = {}
        self.ipc_dir = Path(tempfile.gettempdir()) / f"aliecs-ipc-{os.getuid()}"

    def place(self, requests: list[DeployRequest]) -> list[PlacementResult] | asyncio.Future[Any]:
        """One try at once; the retries a policy allows, if any are needed, in the background."""
        first = self._place_once(requests)
        if self.retry.attempts == 1 or not any(
            isinstance(result, PlacementFailure) and result.retryable for result in first
        ):
            return first
        return asyncio.ensure_future(place_retrying(self._try_again, requests, self.retry, first))

    async def _try_again(self, requests: list[DeployRequest]) -> list[PlacementResult]:
        return self._place_once(requests)

    def _place_once(self, requests: list[DeployRequest]) -> list[PlacementResult]:
        results: list[PlacementResult] = []
        capacities = list(self.capacity.values())
        for request in requests:
            task_id = request.placement.task_id
            node = choose_node(request.placement, capacities)
            if node is None:
                results.append(
                    PlacementFailure(
                        task_id,
                        f"no node fits: {explain_mismatch(request.placement, capacities)}",
                        # Resources and ports come free again; node attributes never change.
                        retryable=any(
                            constraints_hold(request.placement.constraints, node.attributes)
                            for node in capacities
                        ),
                    )
                )
                continue
            allocation = _Allocation(
                node.hostname, request.placement.wants.cpu, request.placement.wants.memory
            )
            self.allocations[task_id] = allocation
            try:
                allocation.static_ports = self.reservations.reserve(request.placement.static_ports)
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
                results.append(PlacementFailure(task_id, f"{node.hostname}: wanted {exc}", retryable=True))
                continue
            except PortExhaustedError as exc:
                self.release([task_id])
                results.append(PlacementFailure(task_id, str(exc), retryable=True))
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

    def move_control_port(self, placement: Placement) -> Placement:
        """The placement with another control port: its port was taken on the node (by a program
        this core knows nothing of) before the task could bind it. The new port is allocated first,
        so the taken one is not handed straight back (the allocator also skips ports it cannot bind)."""
        allocation = self.allocations[placement.task_id]
        allocator = self.control_ports[placement.hostname]
        port = self._port(allocator, allocation)
        if placement.control_port is not None:
            allocation.ports.remove((allocator, placement.control_port))
            allocator.release(placement.control_port)
        return dataclasses.replace(placement, control_port=port)

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
            self.reservations.release(allocation.static_ports)
            capacity = self.capacity[allocation.hostname]
            capacity.cpu_free += allocation.cpu
            capacity.memory_free += allocation.memory

    def kill(self, task_ids: list[str]) -> asyncio.Future[Any]:
        """Kill placed tasks through their nodes' executors, one batch per node (answered as an
        awaitable: the scheduler goes on meanwhile)."""
        by_node: dict[str, list[str]] = {}
        for task_id in task_ids:
            allocation = self.allocations.get(task_id)
            if allocation is not None:
                by_node.setdefault(allocation.hostname, []).append(task_id)
        return asyncio.ensure_future(self._kill(by_node))

    async def _kill(self, by_node: dict[str, list[str]]) -> list[TaskResult]:
        answers = await asyncio.gather(*(self.executors[host].kill(ids) for host, ids in by_node.items()))
        return [result for answer in answers for result in answer]

    def status(self) -> dict[str, str]:
        return {task_id: allocation.hostname for task_id, allocation in self.allocations.items()}

    def on_stop(self) -> None:
        self.release(list(self.allocations))
