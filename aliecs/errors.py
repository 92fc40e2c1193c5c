"""The exceptions a user of aliecs can catch.

Every error names what failed and where (environment, task, role path, file), because the person
reading it is an operator in the middle of data taking who must decide what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class AliecsError(Exception):
    """Base of every error aliecs raises on purpose."""


class UnknownWorkflowError(AliecsError):
    """The requested workflow template does not exist in the configuration repository."""


class UnknownEnvironmentError(AliecsError):
    """No environment with this id is known to the core."""


class UnknownTaskError(AliecsError):
    """No task with this id in any environment."""


class InvalidTransitionError(AliecsError):
    """The event is not allowed from the environment's current state; nothing was changed."""

    def __init__(self, env_id: str, event: str, state: str, allowed: list[str]) -> None:
        self.env_id = env_id
        self.event = event
        self.state = state
        self.allowed = allowed
        choices = ", ".join(allowed) if allowed else "none"
        super().__init__(
            f"environment {env_id}: transition {event} is not allowed from state {state} "
            f"(allowed from {state}: {choices})"
        )


class EnvironmentBusyError(AliecsError):
    """Another transition is already running on this environment."""


@dataclass(frozen=True)
class TaskError:
    """What went wrong with one task during a transition."""

    task_id: str
    name: str
    host: str
    message: str
    critical: bool = True

    def __str__(self) -> str:
        kind = "" if self.critical else " (non-critical)"
        return f"task {self.name} [{self.task_id}] on {self.host}{kind}: {self.message}"


@dataclass
class TransitionError(AliecsError):
    """A transition failed: carries the environment's resulting state and each task's error."""

    env_id: str
    event: str
    state: str
    task_errors: list[TaskError] = field(default_factory=list)
    reason: str = ""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"environment {self.env_id}: {self.event} failed, environment is now {self.state}"
        if self.reason:
            head += f": {self.reason}"
        lines = [head, *(f"  - {err}" for err in self.task_errors)]
        return "\n".join(lines)


class DeploymentError(AliecsError):
    """Tasks could not be placed on any node (constraints or resources not satisfiable)."""


class ModifyError(AliecsError):
    """An exclude, include, reconfiguration or scaling of a deployed environment was refused or
    failed; the message names the role path and what to do next."""


class RestartNeededError(ModifyError):
    """New variables would change the command line of running tasks: they need a restart, which
    must be asked for explicitly (`restart=True`, `--restart`). Nothing was changed."""

    def __init__(self, env_id: str, tasks: list[str]) -> None:
        self.tasks = tasks
        shown = ", ".join(tasks[:10]) + (f" and {len(tasks) - 10} more" if len(tasks) > 10 else "")
        super().__init__(
            f"environment {env_id}: the new values change the command line of {shown}: "
            "they need a restart (ask for it: restart=True, --restart); nothing was changed"
        )
