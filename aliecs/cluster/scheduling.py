"""The scheduler interface shared by the local cluster and (later) the Mesos adapter.

Environments ask to place a batch of tasks and get back, per task, either a `Placement` (which node,
which executor to talk to, which ports were allocated) or a `PlacementFailure` saying why not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aliecs.cluster.placement import PlacementRequest
from aliecs.workflow.channels import Endpoint

if TYPE_CHECKING:
    from aliecs.executor.link import ExecutorLink


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
