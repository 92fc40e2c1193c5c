"""The scheduler interface shared by the local cluster and the Mesos adapter (`Scheduler`,
`RetryPolicy`, `answer()`).

Environments ask to place a batch of tasks and get back, per task, either a `Placement` (which node,
which executor to talk to, which ports were allocated) or a `PlacementFailure` naming the task and
the constraint or resource that failed. Both schedulers (`actors.local_cluster.LocalClusterActor`,
`actors.mesos_adapter.MesosAdapter`) are actors with the methods of `Scheduler`; environments call
them through proxies, so a method may answer at once or with an awaitable, and a placement that has
to wait (for offers, for a retry) never holds up another environment's call.

Retries: a task that does not fit is tried again, alone, a bounded number of times (`RetryPolicy`;
the original tries 5 times, 1 s apart); what was placed stays placed meanwhile. A failure that no
retry can cure (no node has the wanted attributes at all) is final at once.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aliecs.cluster.placement import PlacementRequest
from aliecs.workflow.channels import Endpoint

if TYPE_CHECKING:
    from aliecs.executor.link import ExecutorLink
    from aliecs.executor.orders import TaskResult


@dataclass(frozen=True)
class ChannelRequest:
    name: str
    addressing: str = "tcp"  # "tcp" or "ipc"


@dataclass(frozen=True)
class DeployRequest:
    placement: PlacementRequest
    channels: tuple[ChannelRequest, ...] = ()
    controllable: bool = True


@dataclass(frozen=True)
class Placement:
    task_id: str
    hostname: str
    address: str  # how peers reach this node's ports
    executor: ExecutorLink  # how to reach the node's executor
    control_port: int | None
    endpoints: dict[str, Endpoint] = field(default_factory=dict)


@dataclass(frozen=True)
class PlacementFailure:
    task_id: str
    reason: str
    # Whether trying again later may succeed (resources or ports taken now), as opposed to a
    # constraint no node of the cluster can ever meet.
    retryable: bool = False


PlacementResult = Placement | PlacementFailure


@dataclass(frozen=True)
class RetryPolicy:
    """How often a task that did not fit is tried again: `attempts` tries in all, `interval` apart."""

    attempts: int = 5
    interval: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= 100:
            raise ValueError(f"placement retry attempts must be 1..100, got {self.attempts}")
        if not 0 <= self.interval <= 60:
            raise ValueError(f"placement retry interval must be 0..60 s, got {self.interval}")


# The original's deployment loop: 5 tries, 1 s apart.
ORIGINAL_RETRY = RetryPolicy(5, 1.0)
NO_RETRY = RetryPolicy(1, 0.0)


class Scheduler(Protocol):
    """What an environment needs from the cluster it runs on (local nodes or Mesos agents).

    Every method may return its value or an awaitable of it (actor proxies make both awaitable).
    """

    def place(
        self, requests: list[DeployRequest]
    ) -> list[PlacementResult] | Awaitable[list[PlacementResult]]:
        """One result per request, in order; constraints on node attributes (machine_id first)
        and wants (cpu, memory, ports) must all hold. Retries per the scheduler's `RetryPolicy`."""
        ...

    def release(self, task_ids: list[str]) -> Awaitable[None] | None:
        """Give back the resources and ports of tasks that ended (or were never launched)."""
        ...

    def kill(self, task_ids: list[str]) -> list[TaskResult] | Awaitable[list[TaskResult]]:
        """Make sure the tasks' processes are gone, wherever they run."""
        ...

    def status(self) -> dict[str, str] | Awaitable[dict[str, str]]:
        """Where each placed task is: task id -> hostname."""
        ...

    def move_control_port(self, placement: Placement) -> Placement | Awaitable[Placement]:
        """The placement with another control port, its own having been taken on the node before
        the task could bind it; raises PortExhaustedError when there is no other."""
        ...

    def adopt(
        self,
        task_id: str,
        hostname: str,
        address: str,
        control_port: int | None,
        endpoints: dict[str, Endpoint],
    ) -> Placement | Awaitable[Placement]:
        """Take back a task that kept running through a restart of the core."""
        ...


async def answer(reply: Awaitable[Any]) -> Any:
    """The value of a scheduler call made through an actor proxy. A handler that has to wait (for
    offers, for a retry) answers with an awaitable instead of waiting in its mailbox, so that other
    environments' calls go on meanwhile; the caller awaits that in turn."""
    result = await reply
    while inspect.isawaitable(result):
        result = await result
    return result


async def place_retrying(
    attempt: Callable[[list[DeployRequest]], Awaitable[list[PlacementResult]]],
    requests: Sequence[DeployRequest],
    policy: RetryPolicy,
    first: list[PlacementResult] | None = None,
) -> list[PlacementResult]:
    """Place `requests` with `attempt`, trying again only the tasks whose failure is retryable,
    up to `policy.attempts` tries in all, `policy.interval` apart. `first` is the result of a first
    try already made. A final failure says how many tries it took."""
    final: dict[str, PlacementResult] = {}
    pending = list(requests)
    results = first
    for number in range(1, policy.attempts + 1):
        if results is None:
            results = await attempt(pending)
        retry = []
        for request, result in zip(pending, results, strict=True):
            if isinstance(result, PlacementFailure) and result.retryable and number < policy.attempts:
                retry.append(request)
            elif isinstance(result, PlacementFailure) and result.retryable and number > 1:
                final[result.task_id] = PlacementFailure(
                    result.task_id, f"{result.reason} (after {number} tries)", retryable=True
                )
            else:
                final[result.task_id] = result
        if not retry:
            break
        pending, results = retry, None
        await asyncio.sleep(policy.interval)  # the retry interval of the policy
    return [final[request.placement.task_id] for request in requests]
