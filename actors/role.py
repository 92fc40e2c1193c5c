"""Role actors: the inner nodes of an environment's role tree.

A role's state and status are aggregates of its critical children (see
`aliecs.environment.aggregate`). Children tell their parent about every change; the role keeps
counts so each update is O(1) even with thousands of siblings, and tells its own parent only when
its aggregate changes. `settle()` walks the tree top-down so that, after a transition, every
aggregate reflects all updates sent before it (mailboxes are FIFO).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from actors.messages import ChildChanged
from actors.runtime import AsyncActorRef, AsyncioActor
from actors.task import TaskActor
from aliecs.environment.aggregate import StateTally
from aliecs.events import EventBus, RoleEvent
from aliecs.model import RoleRecord, TaskRecord
from aliecs.workflow.template import Role

if TYPE_CHECKING:
    from actors.environment import EnvironmentActor
    from actors.proxies import RoleProxy  # noqa: F401 (named in the actor's base class)

# Children started per event loop iteration while building (see `RoleActor.build`).
_BUILD_CHUNK = 200


class RoleActor(AsyncioActor["RoleProxy"]):
    def __init__(
        self,
        role: Role,
        record: RoleRecord,
        environment: AsyncActorRef[EnvironmentActor],
        parent: AsyncActorRef[RoleActor] | None,
        bus: EventBus,
        environment_id: str,
    ) -> None:
        super().__init__()
        self.bus = bus
        self.environment_id = environment_id
        self.role = role
        self.record = record
        self.environment = environment
        self.parent = parent
        self.tally = StateTally()
        self.role_children: dict[str, AsyncActorRef[RoleActor]] = {}
        self.task_children: dict[str, AsyncActorRef[TaskActor]] = {}
        self.critical = False
        # Tally keys (task ids, role paths) of the children that count towards the aggregate, and of
        # the excluded ones among them (left out while excluded; see `exclude_child`).
        self.counted: set[str] = set()
        self.excluded: set[str] = set()

    async def build(self, new_task_id: Any) -> list[tuple[Role, TaskRecord, AsyncActorRef[TaskActor]]]:
        """Create the subtree's actors; returns every task (role spec, record, actor) below this role.

        `new_task_id` is a callable giving fresh task ids (the environment owns id allocation).
        """
        tasks: list[tuple[Role, TaskRecord, AsyncActorRef[TaskActor]]] = []
        for index, child in enumerate(self.role.deployable_children()):
            if index and index % _BUILD_CHUNK == 0:
                # Starting thousands of task actors in one go would block the event loop for a second
                # (at 10,000 tasks): let timers, RPCs and events through every chunk.
                await asyncio.sleep(0)
            tasks.extend(await self._build_child(child, new_task_id))
        self._publish(notify=False)
        return tasks

    async def _build_child(
        self, child: Role, new_task_id: Any
    ) -> list[tuple[Role, TaskRecord, AsyncActorRef[TaskActor]]]:
        child_record = RoleRecord(name=child.name, path=child.path)
        self.record.children.append(child_record)
        if child.task is not None:
            task_record = TaskRecord(
                id=new_task_id(),
                name=child.path,
                class_name=child.task.task_class.identifier,
                role_path=child.path,
                critical=child.task.critical,
            )
            child_record.task = task_record
            ref = self.start_child(
                TaskActor,
                task_record,
                child_record,
                self.environment,
                self.actor_ref,
                self.bus,
                self.environment_id,
            )
            self.task_children[child.path] = ref
            if task_record.critical:
                self.critical = True
                self.counted.add(task_record.id)
                self.tally.set(task_record.id, task_record.state, task_record.status)
            return [(child, task_record, ref)]
        role_ref = self.start_child(
            RoleActor,
            child,
            child_record,
            self.environment,
            self.actor_ref,
            self.bus,
            self.environment_id,
        )
        self.role_children[child.path] = role_ref
        tasks = await role_ref.proxy().build(new_task_id)
        child_critical = await role_ref.proxy().critical
        if child_critical:
            self.critical = True
            self.counted.add(child.path)
            self.tally.set(child.path, child_record.state, child_record.status)
        return tasks

    async def add_child(
        self, child: Role, new_task_id: Any
    ) -> list[tuple[Role, TaskRecord, AsyncActorRef[TaskActor]]]:
        """A role the workflow gained at runtime (scaling): its actors, built as `build` does."""
        tasks = await self._build_child(child, new_task_id)
        self._publish(notify=True)
        return tasks

    async def remove_child(self, path: str) -> None:
        """A role the workflow lost at runtime: stop its actors (its tasks are already gone) and
        drop it from this role's record and aggregate."""
        child = next((c for c in self.record.children if c.path == path), None)
        if child is None:
            return
        key = child.task.id if child.task is not None else child.path
        self.record.children.remove(child)
        ref = self.task_children.pop(path, None) or self.role_children.pop(path, None)
        self.counted.discard(key)
        self.excluded.discard(key)
        if key in self.tally:
            self.tally.remove(key)
        if ref is not None:
            await ref.stop()
        self._publish(notify=True)

    def retarget(self, role: Role) -> None:
        """The same role in a re-expanded workflow (new variables): keep its spec current."""
        self.role = role

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildChanged) and message.critical and message.child_id not in self.excluded:
            self.tally.set(message.child_id, message.state, message.status)
            self._publish(notify=True)
        return None

    def _publish(self, notify: bool) -> None:
        state, status = self.tally.state, self.tally.status
        if (state, status) == (self.record.state, self.record.status):
            return
        self.record.state, self.record.status = state, status
        self.bus.publish(RoleEvent(self.environment_id, self.role.name, self.role.path, state, status))
        if notify and self.parent is not None:
            self.parent.tell(ChildChanged(self.role.path, state, status, self.critical))

    async def settle(self) -> tuple[str, str]:
        """Bring this subtree's aggregates up to date with every update already sent; returns ours."""
        for path, ref in self.role_children.items():
            state, status = await ref.proxy().settle()
            if path in self.tally and path not in self.excluded:
                self.tally.set(path, state, status)
        self._publish(notify=False)
        return self.record.state, self.record.status

    async def role_refs(self) -> dict[str, AsyncActorRef[RoleActor]]:
        """Every role actor of this subtree by role path, this one included."""
        refs: dict[str, AsyncActorRef[RoleActor]] = {self.role.path: self.actor_ref}
        for ref in self.role_children.values():
            refs.update(await ref.proxy().role_refs())
        return refs

    def exclude_child(self, path: str, excluded: bool) -> None:
        """Leave the child at `path` out of this role's aggregate (or count it again). Its own
        subtree keeps aggregating; only its weight here changes."""
        child = next((c for c in self.record.children if c.path == path), None)
        if child is None:
            raise KeyError(f"role {self.role.path} has no child {path!r}")
        child.excluded = excluded
        key = child.task.id if child.task is not None else child.path
        if excluded:
            self.excluded.add(key)
            if key in self.tally:
                self.tally.remove(key)
        else:
            self.excluded.discard(key)
            if key in self.counted:
                self.tally.set(key, child.state, child.status)
        self._publish(notify=True)
