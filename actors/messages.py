"""Messages exchanged by the actors of the supervision tree (told, never asked, unless noted)."""

from __future__ import annotations

from dataclasses import dataclass

from aliecs.executor.process import ExitInfo


@dataclass(frozen=True)
class ProcessExited:
    """A task process ended. `expected` is True when we asked for it (kill, EXIT)."""

    task_id: str
    exit: ExitInfo
    expected: bool
    log_tail: tuple[str, ...] = ()
    seq: int = 0  # the executor's event number (see protos/executor.proto), once numbered


@dataclass(frozen=True)
class BasicTaskTerminated:
    """A basic task's process ended on its own while RUNNING (the original's BASIC_TASK_TERMINATED):
    not a death but the end of its work, which the environment weighs like END_OF_STREAM."""

    task_id: str
    exit: ExitInfo
    log_tail: tuple[str, ...] = ()
    seq: int = 0


@dataclass(frozen=True)
class DeviceEvent:
    """A device event from a task's OCC EventStream (END_OF_STREAM, TASK_INTERNAL_ERROR, ...)."""

    task_id: str
    type: str
    seq: int = 0


@dataclass(frozen=True)
class ChildChanged:
    """A role's child (task or role) has a new state or status; critical decides if it counts."""

    child_id: str
    state: str
    status: str
    critical: bool


@dataclass(frozen=True)
class TaskDied:
    """Sent by a task actor to its environment when its process ended without being asked to."""

    task_id: str
    description: str
    critical: bool


@dataclass(frozen=True)
class TaskDeviceEvent:
    """Forwarded by a task actor to its environment. For BASIC_TASK_TERMINATED, `exit_code` and
    `detail` (how the process ended, its last output) say why."""

    task_id: str
    type: str
    critical: bool
    exit_code: int = 0
    detail: str = ""


@dataclass(frozen=True)
class ForgetProcess:
    """Tells an executor that a task's process actor is no longer needed (its process is gone)."""

    task_id: str


@dataclass(frozen=True)
class TaskLost:
    """The core cannot reach the task's executor, or the executor no longer runs the task."""

    task_id: str
    reason: str


@dataclass(frozen=True)
class TaskReconciled:
    """The task's executor answers again and still runs the task (pid, state as it reports them)."""

    task_id: str
    pid: int
    state: str
