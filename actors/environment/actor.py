"""The environment actor: one environment's mailbox, and the messages it takes.

Its mailbox is the environment's serialisation point: one transition at a time, and task deaths or
device events that arrive meanwhile are handled after the running transition, in order. The work
is done by the rooms of this package (see `actors.environment`), all on the one
`EnvironmentState` this actor owns: the split is of the code, not of the actor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from actors.context import EnvironmentContext
from actors.environment import modify, persistence, steps
from actors.environment.announce import announce_step
from actors.environment.engine import TransitionEngine
from actors.environment.entries import TaskEntry, new_task_id
from actors.environment.state import EnvironmentState
from actors.environment.steps.exit import kill_all
from actors.environment.wiring import run_variables
from actors.hooks import HookEngine, HookError, HookPlan, HookTaskLauncher
from actors.messages import TaskDeviceEvent, TaskDied
from actors.role import RoleActor
from actors.runtime import AsyncioActor
from aliecs.environment import fsm as states
from aliecs.environment.fsm import normalize_event
from aliecs.errors import InvalidTransitionError, TransitionError
from aliecs.executor.orders import TaskStatus
from aliecs.model import EnvironmentRecord, ModifyResult, RoleRecord, TransitionResult
from aliecs.workflow.template import Workflow

if TYPE_CHECKING:
    from actors.proxies import EnvironmentProxy  # noqa: F401 (named in the actor's base class)

log = logging.getLogger(__name__)

# Task entries let go of per loop iteration when a destroyed environment is dropped.
_DROP_SLICE = 500


class EnvironmentActor(AsyncioActor["EnvironmentProxy"]):
    def __init__(self, record: EnvironmentRecord, workflow: Workflow, context: EnvironmentContext) -> None:
        super().__init__()
        self.record = record
        self.env = EnvironmentState(record, workflow, context, excluded=record.excluded)
        env = self.env
        self.hooks = HookEngine(
            HookPlan(workflow.root),
            record.id,
            context.bus,
            context.plugins,
            HookTaskLauncher(context.scheduler, env.launch_spec),
            lambda: run_variables(env.record),
            lambda trigger, finished, error: announce_step(env, trigger, finished, error),
        )
        self.engine = TransitionEngine(env, self.hooks, steps.STEPS, steps.PREPARATIONS)

    # -- construction ----------------------------------------------------------------------------

    async def build(self, task_ids: list[str] | None = None) -> None:
        """Create the role tree's actors (no process is started before DEPLOY). `task_ids`, in
        role-tree order, gives the tasks the ids they had (restoring from the journal)."""
        env = self.env
        root_spec = env.workflow.root
        self.record.root = RoleRecord(name=root_spec.name, path=root_spec.path)
        env.root = self.start_child(
            RoleActor, root_spec, self.record.root, self.actor_ref, None, env.context.bus, self.record.id
        )
        ids = iter(task_ids) if task_ids is not None else None
        next_id = new_task_id if ids is None else (lambda: next(ids))
        for role, task_record, ref in await env.root.proxy().build(next_id):
            env.entries[task_record.id] = TaskEntry(role, task_record, ref)
            self.record.tasks[task_record.id] = task_record
        env.role_refs = await env.root.proxy().role_refs()
        env.context.gc.settle()

    # -- transitions -----------------------------------------------------------------------------

    async def transition(self, event: str) -> TransitionResult:
        return await self.engine.run(normalize_event(event))

    async def destroy(self, allow_running: bool = True) -> None:
        """Bring the environment down (STOP, RESET, EXIT as needed); its processes are gone after."""
        env = self.env
        if env.fsm.state == states.RUNNING and not allow_running:
            raise InvalidTransitionError(self.record.id, "DESTROY", states.RUNNING, ["STOP_ACTIVITY"])
        try:
            for event, from_state in (
                (states.STOP_ACTIVITY, states.RUNNING),
                (states.RESET, states.CONFIGURED),
                (states.EXIT, None),
            ):
                if (from_state is None or env.fsm.state == from_state) and env.fsm.can(event):
                    await self.engine.run(event)
        except TransitionError as exc:
            log.warning("environment %s: orderly teardown failed, killing its tasks: %s", self.record.id, exc)
        finally:
            hook_errors: list[HookError] = []
            if env.fsm.state != states.DONE:  # EXIT did not run: the teardown leaves this state
                hook_errors += await self.hooks.fire(f"leave_{env.fsm.state}")
            await kill_all(env)  # DESTROY hooks of every weight run after the release, as in the original
            hook_errors += await self.hooks.fire("DESTROY")
            hook_errors += await self.hooks.fire("after_DESTROY")
            await self.hooks.cancel_pending()
            for error in hook_errors:
                log.warning("environment %s: teardown: %s", self.record.id, error)
            if env.fsm.state != states.DONE:
                env.fsm.force(states.DONE)
            self.record.state = states.DONE
            self.record.run_number = 0
            env.context.gc.release()
            if env.context.journal is not None:
                await asyncio.to_thread(env.context.journal.remove, self.record.id)

    async def drop_tasks(self) -> None:
        """Let go of a destroyed environment's per-task objects a slice at a time (`actors.gc_policy`).

        Task refs, mailboxes and entries hold no cycles of their own: they are garbage only because
        the environment actor that holds them is in cycles, so left to the collector they are all
        freed in the one full collection that follows, stalling the loop (~170 ms at 10,000 tasks).
        Dropped here, reference counting frees each slice at once, between which the loop runs.
        """
        entries = self.env.entries
        ids = list(entries)
        for start in range(0, len(ids), _DROP_SLICE):
            for task_id in ids[start : start + _DROP_SLICE]:
                del entries[task_id]
            await asyncio.sleep(0)

    # -- changing the deployed environment in place (actors.environment.modify) ------------------

    async def exclude(self, path: str, allow_running: bool = False) -> list[str]:
        """Leave the subtree at `path` out of every transition and aggregate (see `modify.exclude`)."""
        return await modify.exclude(self.env, path, allow_running)

    async def include(self, path: str, allow_running: bool = False) -> list[str]:
        """Bring the excluded subtree at `path` back in (see `modify.include`)."""
        return await modify.include(self.env, path, allow_running)

    async def reshape(
        self,
        workflow: Workflow,
        variables: dict[str, str],
        counts: dict[str, int],
        restart: bool = False,
        reconfigure_all: bool = False,
        operation: str = "SET_VARS",
    ) -> ModifyResult:
        """Move to `workflow`, a new expansion of the template (see `modify.reshape`)."""
        return await modify.reshape(
            self.env, self.hooks, workflow, variables, counts, restart, reconfigure_all, operation
        )

    # -- the journal (actors.environment.persistence) ----------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Where the environment stands, as the journal keeps it (JSON)."""
        return persistence.snapshot(self.env)

    async def restore(self, snapshot: dict[str, Any], running: Mapping[str, TaskStatus]) -> None:
        """Take the environment back after a restart of the core: the role tree with its task ids,
        its state and run, and each task with the process its executor still runs (`running`, by
        task id). A task whose process ended while the core was away is reported dead, which puts
        the environment in ERROR if it is critical."""
        await self.build(snapshot["task_ids"])
        await persistence.restore(self.env, snapshot, running)

    # -- reactions to what tasks do on their own -------------------------------------------------

    async def on_receive(self, message: Any) -> Any:
        if self.env.is_excluded(getattr(message, "task_id", "")):
            log.info("environment %s: excluded task %s: %s", self.record.id, message.task_id, message)
        elif isinstance(message, TaskDied):
            log.warning(
                "environment %s: task %s died: %s", self.record.id, message.task_id, message.description
            )
            active = (states.DEPLOYED, states.CONFIGURED, states.RUNNING)
            if message.critical and self.env.fsm.state in active:
                self.record.error = f"critical task {message.task_id} died: {message.description}"
                await self.engine.enter_error()
        elif isinstance(message, TaskDeviceEvent):
            await self._on_device_event(message)
        return None

    async def _on_device_event(self, message: TaskDeviceEvent) -> None:
        if self.env.fsm.state != states.RUNNING:
            return
        if message.type == "BASIC_TASK_TERMINATED":
            log.info(
                "environment %s: basic task %s ended: %s", self.record.id, message.task_id, message.detail
            )
            if message.exit_code != 0 and message.critical:
                self.record.error = f"critical basic task {message.task_id} failed: {message.detail}"
                await self.engine.enter_error()
                return
        if message.type in ("END_OF_STREAM", "BASIC_TASK_TERMINATED"):
            # The task is safe to stop; once all are, the run is over (the original's auto-stop).
            self.env.end_of_stream.add(message.task_id)
            controllable = {
                e.record.id
                for e in self.env.entries.values()
                if e.record.status == "ACTIVE" and not e.record.excluded
            }
            if controllable and controllable <= self.env.end_of_stream:
                log.info("environment %s: every task reached end of stream, stopping the run", self.record.id)
                try:
                    await self.engine.run(states.STOP_ACTIVITY)
                except TransitionError as exc:
                    log.error("%s", exc)
        elif message.type == "TASK_INTERNAL_ERROR" and message.critical:
            self.record.error = f"critical task {message.task_id} reported an internal error"
            await self.engine.enter_error()
