"""What the core asks of a node's executor and what it answers, independent of the transport.

The same values travel in-process (an executor agent embedded in the core, as the scale benchmarks
use) and over the executor protocol (`protos/executor.proto`, see `aliecs.executor.wire`), so the
core's environments are written once for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aliecs.executor.process import LaunchSpec

# Talking to the executor of the core's own protocol version only; see protos/executor.proto.
PROTOCOL_VERSION = 2
#: Largest message either side of the executor protocol reads, in bytes: the executor its requests
#: (`aliecs.executor.service`), the core the executor's replies and events (`aliecs.executor.link`).
#: A batch carries one node's tasks (a launch order is about 1 KB), so this holds tens of thousands
#: of them; a larger message is refused (RESOURCE_EXHAUSTED) before its body is read.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class LaunchOrder:
    """Start one task: its process, and for controllable tasks the OCC port it will serve."""

    spec: LaunchSpec
    control_port: int | None
    controllable: bool


@dataclass(frozen=True)
class TransitionOrder:
    """One OCC transition of one task; `arguments` are merged over the batch's common arguments."""

    task_id: str
    src_state: str
    event: str
    arguments: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskResult:
    """The executor's answer for one task of a batch."""

    task_id: str
    ok: bool
    state: str
    pid: int = 0
    error: str = ""
    # The executor's last event number when this task's step began (see protos/executor.proto).
    since_seq: int = 0
    # A launch that failed because the task's control port was taken on the node: worth a retry on
    # another port (see `actors.environment.steps.deploy`).
    port_in_use: bool = False


@dataclass(frozen=True)
class TaskStatus:
    """What an executor reports about a task it runs (at registration, for reconciliation)."""

    task_id: str
    name: str
    pid: int
    control_port: int
    state: str
    alive: bool
    controllable: bool


@dataclass(frozen=True)
class HookOutcome:
    """How a hook task ended: `returncode` None when it outlived its timeout and was killed."""

    returncode: int | None
    log_tail: tuple[str, ...] = ()


class ExecutorUnavailableError(RuntimeError):
    """The node's executor cannot be reached (dead, stopped, or its core link is down)."""
