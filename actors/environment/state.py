"""What one environment knows, shared by the rooms of its actor (engine, steps, changes, journal).

The environment is one actor with one mailbox: its transitions, runtime changes and reactions to
task events never run at the same time. Its code is split by job (see `actors.environment`), and
every part works on this one `EnvironmentState`, passed as the first argument of plain functions
rather than inherited through mixins: what a step reads and changes is then visible in its
signature, and a step can be read without knowing the class hierarchy of the actor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from actors.context import EnvironmentContext
from actors.environment import wiring
from actors.environment.entries import TaskEntry
from actors.runtime import AsyncActorRef
from aliecs.cluster.scheduler_interface import Placement
from aliecs.environment import subtrees
from aliecs.environment.fsm import EnvironmentStateMachine
from aliecs.executor.process import LaunchSpec
from aliecs.model import EnvironmentRecord
from aliecs.workflow.template import Role, Workflow

if TYPE_CHECKING:
    from actors.role import RoleActor


@dataclass(eq=False)
class EnvironmentState:
    record: EnvironmentRecord
    # The expanded workflow the environment runs now (replaced by `reshape`).
    workflow: Workflow
    context: EnvironmentContext
    fsm: EnvironmentStateMachine = field(default_factory=EnvironmentStateMachine)
    root: AsyncActorRef[RoleActor] | None = None
    entries: dict[str, TaskEntry] = field(default_factory=dict)
    # Role actors by path (to tell an excluded subtree's parent to leave it out of its aggregate).
    role_refs: dict[str, AsyncActorRef[RoleActor]] = field(default_factory=dict)
    # Excluded subtrees: role path -> why it stays excluded ("" when excluded on request). The
    # record's own dict (the API reads it there).
    excluded: dict[str, str] = field(default_factory=dict)
    # START_ACTIVITY sent so far (START's `cleanup` argument).
    start_count: int = 0
    # Tasks that reported the end of their data stream during the run (auto-stop).
    end_of_stream: set[str] = field(default_factory=set)
    # Between START_ACTIVITY's run number and the end of the run (run events are sent meanwhile).
    run_active: bool = False

    def included(self) -> list[TaskEntry]:
        """The tasks that take part in transitions (not excluded)."""
        return [entry for entry in self.entries.values() if not entry.record.excluded]

    def members(self, path: str) -> list[TaskEntry]:
        """The tasks of the role subtree at `path`."""
        return [entry for entry in self.entries.values() if subtrees.under(entry.role.path, path)]

    def is_excluded(self, task_id: str) -> bool:
        entry = self.entries.get(task_id)
        return entry is not None and entry.record.excluded

    def timeout(self, event: str) -> float:
        return wiring.event_timeout(self.workflow, event)

    def task_stack(self, role: Role, task_id: str, hostname: str) -> dict[str, str]:
        return wiring.task_stack(role, task_id, hostname, self.record.id)

    def launch_spec(self, role: Role, task_id: str, placement: Placement) -> LaunchSpec:
        return wiring.launch_spec(role, task_id, placement, self.record.id, self.context.log_dir)

    async def mark_excluded(self, role: Role | None, excluded: bool) -> None:
        """Flag the subtree's tasks and make its parent role leave it out of (or count it again in)
        its aggregate."""
        if role is None:
            return
        for entry in self.members(role.path):
            entry.record.excluded = excluded
        if role.parent is not None:
            await self.role_refs[role.parent.path].proxy().exclude_child(role.path, excluded)

    async def settle_roles(self) -> None:
        """Let the role tree recompute its aggregate states (after tasks changed)."""
        if self.root is not None:  # None only before `build`
            await self.root.proxy().settle()
