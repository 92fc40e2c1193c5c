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


@dataclass(frozen=True)
class DeviceEvent:
    """A device event from a task's OCC EventStream (END_OF_STREAM, TASK_INTERNAL_ERROR, ...)."""

    task_id: str
    type: str


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
    """Forwarded by a task actor to its environment."""

    task_id: str
    type: str
    critical: bool


@dataclass(frozen=True)
class ForgetProcess:
    """Tells an executor that a task's process actor is no longer needed (its process is gone)."""

    task_id: str
