"""The records that actors publish about themselves, and the snapshots handed to users.

Each record is written by exactly one actor (its owner) and read by anyone on the same event loop:
the API and CLIs can show live state without sending a message into a mailbox that may be busy with
a long transition. Snapshots (`TaskInfo`, `RoleTree`) are frozen copies safe to keep.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aliecs.events import RequestUser

if TYPE_CHECKING:
    from aliecs.workflow.template import Workflow

#: Transitions kept in an environment's `history`, oldest dropped first: an environment that stays up
#: for months through thousands of runs must not grow with them (about 0.5 KB per transition). Read
#: when an environment is created; set `aliecs.model.HISTORY_LIMIT` before to keep more or fewer.
HISTORY_LIMIT = 1000

UNKNOWN = "UNKNOWN"
UNDEFINED = "UNDEFINED"


@dataclass(frozen=True)
class TaskInfo:
    id: str
    name: str
    class_name: str
    host: str
    pid: int
    state: str
    status: str
    critical: bool
    role_path: str = ""
    log_path: str = ""
    error: str = ""
    executor_id: str = ""
    # Left out of the environment's transitions and aggregates (`Environment.exclude`), process kept.
    excluded: bool = False


@dataclass(frozen=True)
class TaskCommand:
    """How a task process was started (GetTask's command info)."""

    value: str
    arguments: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # `KEY=value`
    shell: bool = False


@dataclass
class TaskRecord:
    id: str
    name: str
    class_name: str
    role_path: str
    critical: bool
    host: str = ""
    pid: int = 0
    state: str = UNKNOWN
    status: str = UNDEFINED
    control_port: int = 0
    log_path: str = ""
    error: str = ""
    # Which executor runs it (the node's executor; deploymentInfo.executorId in the control API).
    executor_id: str = ""
    # Set by the environment at DEPLOY (command) and CONFIGURE (the arguments sent: channels, properties).
    command: TaskCommand | None = None
    properties: dict[str, str] = field(default_factory=dict)
    excluded: bool = False

    def info(self) -> TaskInfo:
        return TaskInfo(
            id=self.id,
            name=self.name,
            class_name=self.class_name,
            host=self.host,
            pid=self.pid,
            state=self.state,
            status=self.status,
            critical=self.critical,
            role_path=self.role_path,
            log_path=self.log_path,
            error=self.error,
            executor_id=self.executor_id,
            excluded=self.excluded,
        )


@dataclass
class RoleRecord:
    name: str
    path: str
    state: str = UNKNOWN
    status: str = UNDEFINED
    children: list[RoleRecord] = field(default_factory=list)
    task: TaskRecord | None = None
    excluded: bool = False  # the root of an excluded subtree


@dataclass(frozen=True)
class RoleTree:
    """A snapshot of an environment's role tree with each role's aggregated state."""

    name: str
    path: str
    state: str
    status: str
    task: TaskInfo | None
    children: tuple[RoleTree, ...]
    excluded: bool = False

    @classmethod
    def of(cls, record: RoleRecord) -> RoleTree:
        return cls(
            name=record.name,
            path=record.path,
            state=record.state,
            status=record.status,
            task=record.task.info() if record.task else None,
            children=tuple(cls.of(child) for child in record.children),
            excluded=record.excluded,
        )

    def walk(self) -> list[RoleTree]:
        nodes = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes

    def lines(self) -> list[str]:
        """A text tree: `[ STATE ] name  -> task host pid` per role, children indented."""

        def label(node: RoleTree) -> str:
            text = f"[ {node.state} ] {node.name}"
            if node.excluded:
                text += " (excluded)"
            if node.task is not None:
                text += f"  -> {node.task.state:<10} {node.task.host} pid {node.task.pid or '-'}"
                if not node.task.critical:
                    text += " (non-critical)"
            return text

        out = [label(self)]

        def visit(node: RoleTree, prefix: str) -> None:
            for index, child in enumerate(node.children):
                last = index == len(node.children) - 1
                out.append(prefix + ("└── " if last else "├── ") + label(child))
                visit(child, prefix + ("    " if last else "│   "))

        visit(self, "")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


@dataclass(frozen=True)
class TransitionResult:
    event: str
    from_state: str
    to_state: str
    started_ms: int
    duration_s: float
    run_number: int
    warnings: tuple[str, ...] = ()


def _bounded_history() -> deque[TransitionResult]:
    return deque(maxlen=HISTORY_LIMIT)


@dataclass
class EnvironmentRecord:
    id: str
    workflow: str
    created_ms: int
    user_vars: dict[str, str]
    state: str = "STANDBY"
    run_number: int = 0
    last_run_number: int = 0
    current_transition: str = ""
    root: RoleRecord | None = None
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    history: deque[TransitionResult] = field(default_factory=_bounded_history)
    error: str = ""
    # Start and end of start-of-run and end-of-run (ms since the epoch) of the current or last run.
    run_start_time_ms: int = 0
    run_start_completion_time_ms: int = 0
    run_end_time_ms: int = 0
    run_end_completion_time_ms: int = 0
    # The expanded workflow the environment was made from (role variables, descriptions).
    template: Workflow | None = field(default=None, repr=False)
    # Who asked for the latest operation (creation, transition, teardown); listed or not by default.
    last_request_user: RequestUser | None = None
    public: bool = True
    requested_workflow: str = ""  # as asked for: `[repo/workflows/]name[@revision]`
    # Excluded role subtrees (path -> why it stays excluded, "" when on request); the environment's.
    excluded: dict[str, str] = field(default_factory=dict)
    # Iterator counts set by scaling (`Environment.scale`), by iterator key (see `Workflow.iterators`).
    iterator_counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ModifyResult:
    """What a change of variables or scale did, as task ids: `added` tasks were deployed and
    brought to the environment's state, `removed` ones released, `reconfigured` ones got RESET and
    CONFIGURE with their new arguments (processes kept), `restarted` ones a new process, and
    `pending` ones get their new arguments at the next CONFIGURE (the environment is RUNNING)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    reconfigured: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()

    def summary(self) -> str:
        parts = [
            f"{len(ids)} {name}"
            for name, ids in (
                ("added", self.added),
                ("removed", self.removed),
                ("reconfigured", self.reconfigured),
                ("restarted", self.restarted),
                ("pending reconfiguration", self.pending),
            )
            if ids
        ]
        return ", ".join(parts) or "nothing to change"
