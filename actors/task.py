"""The task actor: the core's side of one task, the leaf of an environment's role tree.

It owns the task's published record (state, status, host, pid). The environment talks to the task's
process through the node's executor, one batch per node, and hands each task's answer to its actor;
what the process does on its own (exit, device events, its executor lost) comes from the executor
link straight to this actor. Every change of state or status is told
to the parent role (for aggregation); deaths and device events are told to the environment, which
decides what they mean for the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.messages import (
    BasicTaskTerminated,
    ChildChanged,
    DeviceEvent,
    ProcessExited,
    TaskDeviceEvent,
    TaskDied,
    TaskLost,
    TaskReconciled,
)
from actors.runtime import AsyncActorRef, AsyncioActor
from aliecs.cluster.scheduler_interface import Placement
from aliecs.environment.aggregate import ACTIVE, INACTIVE, UNDEPLOYABLE
from aliecs.events import EventBus, TaskEvent
from aliecs.executor.link import ExecutorLink
from aliecs.executor.orders import TaskResult
from aliecs.model import RoleRecord, TaskRecord

if TYPE_CHECKING:
    from actors.environment import EnvironmentActor
    from actors.proxies import TaskProxy  # noqa: F401 (named in the actor's base class)
    from actors.role import RoleActor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskOutcome:
    """What happened to one task in one step of a transition."""

    task_id: str
    ok: bool
    state: str
    error: str = ""


class TaskActor(AsyncioActor["TaskProxy"]):
    def __init__(
        self,
        record: TaskRecord,
        role_record: RoleRecord,
        environment: AsyncActorRef[EnvironmentActor],
        parent: AsyncActorRef[RoleActor],
        bus: EventBus,
        environment_id: str,
    ) -> None:
        super().__init__()
        self.record = record
        self.bus = bus
        self.environment_id = environment_id
        self.role_record = role_record
        self.environment = environment
        self.parent = parent
        # The node's executor link once placed; `running` while its process is meant to run.
        self.link: ExecutorLink | None = None
        self.running = False
        # Basic tasks (not controllable) have a pid only between START and STOP.
        self.controllable = True
        # Events and batch answers travel separately: the number of the last event that changed this
        # task's state lets an answer computed before it not undo it (see TaskResult.since_seq), and
        # a death heard of before the launch answer is kept until that answer comes.
        self.event_seq = 0
        self.event_fails_step = False
        # The number of the event that said a basic task's process ended well: an answer computed
        # before it (START's, carrying the pid it started) must not bring that pid back.
        self.ended_seq = 0
        self.early_death = ""
        self._published_error = ""

    # -- publishing ------------------------------------------------------------------------------

    def _set(self, state: str | None = None, status: str | None = None) -> None:
        changed = False
        if state is not None and state != self.record.state:
            self.record.state = state
            changed = True
        if status is not None and status != self.record.status:
            self.record.status = status
            changed = True
        error = self.record.error if self.record.state == "ERROR" else ""
        if error != self._published_error:  # a more precise reason arrived after the state change
            self._published_error = error
            changed = True
        if changed:
            self.role_record.state = self.record.state
            self.role_record.status = self.record.status
            self.parent.tell(
                ChildChanged(self.record.id, self.record.state, self.record.status, self.record.critical)
            )
            self._publish()

    def _publish(self, device_event: str = "") -> None:
        record = self.record
        self.bus.publish(
            TaskEvent(
                environment_id=self.environment_id,
                task_id=record.id,
                name=record.name,
                state=record.state,
                status=record.status,
                hostname=record.host,
                class_name=record.class_name,
                path=record.role_path,
                critical=record.critical,
                error=self._published_error,
                device_event=device_event,
            )
        )

    # -- results of the environment's per-node batches ---------------------------------------------

    def mark_undeployable(self, reason: str) -> None:
        self.record.error = reason
        self._set(status=UNDEPLOYABLE)

    def placed(self, placement: Placement, log_path: str) -> None:
        """Where the task is about to run; from now on its executor tells this actor what it does."""
        self.record.host = placement.hostname
        self.record.control_port = placement.control_port or 0
        self.record.log_path = log_path
        self.record.executor_id = f"aliecs-executor@{placement.hostname}"
        self.controllable = placement.control_port is not None
        self.link = placement.executor
        self.early_death = ""
        self.link.attach(self.record.id, self.actor_ref)

    def deployed(self, result: TaskResult) -> TaskOutcome:
        if not result.ok:
            return self._failed(result.error, status=INACTIVE)
        self.record.pid = result.pid
        self.record.error = ""
        self._set(state="STANDBY", status=ACTIVE)
        if self.early_death:
            self._died(self.early_death)
            return TaskOutcome(self.record.id, False, self.record.state, self.record.error)
        self.running = True
        return TaskOutcome(self.record.id, True, self.record.state)

    def transitioned(self, result: TaskResult) -> TaskOutcome:
        """The executor's answer to one OCC transition of this task."""
        if self.event_seq > result.since_seq:
            # The task failed on its own during the step: that stands, whatever the answer computed
            # before it says. A death or internal error fails the step; a basic task whose work ended
            # badly does not (the environment weighs its BASIC_TASK_TERMINATED on its own).
            if self.event_fails_step or not result.ok:
                if not result.ok and result.error:
                    self.record.error = result.error  # the answer says why, in the task's own words
                    self._set()  # published again with the better reason
                return TaskOutcome(self.record.id, False, self.record.state, self.record.error)
            return TaskOutcome(self.record.id, True, self.record.state)
        if (result.pid or not self.controllable) and self.ended_seq <= result.since_seq:
            self.record.pid = result.pid
        if not result.ok:
            return self._failed(result.error)
        self._set(state=result.state)
        return TaskOutcome(self.record.id, True, result.state)

    def failed(self, message: str) -> TaskOutcome:
        """No answer for this task (its executor unreachable, or past the deadline)."""
        return self._failed(message)

    def killed(self, result: TaskResult | None) -> TaskOutcome:
        """The task's process is gone (or never ran); idempotent."""
        self.running = False
        if result is not None and result.error and self.record.state != "DONE":
            self.record.error = self.record.error or result.error
        if self.link is not None:
            self.link.detach(self.record.id)
        self._set(state="DONE", status=INACTIVE)
        return TaskOutcome(self.record.id, True, "DONE")

    def adopted(self, pid: int, state: str) -> None:
        """A running task found again after a restart of the core (its record came from the journal)."""
        self.running = True
        self.record.pid = pid
        self.record.error = ""
        self._set(state=state, status=ACTIVE)

    def vanished(self, reason: str) -> None:
        """The task's process ended while nobody watched it (the core was away)."""
        self.running = False
        self._died(reason)

    def _failed(self, message: str, status: str | None = None) -> TaskOutcome:
        self.record.error = message
        state = "ERROR"
        self._set(state=state, status=status)
        return TaskOutcome(self.record.id, False, state, message)

    # -- notifications from the process ----------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ProcessExited):
            if message.expected:
                return None
            if not self.running:
                self.early_death = message.exit.report(message.log_tail)
                return None
            self.event_seq, self.event_fails_step = message.seq, True
            self.running = False
            self._died(message.exit.report(message.log_tail))
        elif isinstance(message, TaskLost):
            if self.running:
                self.running = False
                self._died(message.reason)
        elif isinstance(message, TaskReconciled):
            if not self.running and self.link is not None and self.record.status == INACTIVE:
                log.warning("task %s is running again after: %s", self.record.id, self.record.error)
                self.adopted(message.pid, message.state)
        elif isinstance(message, DeviceEvent):
            self._publish(device_event=message.type)  # every END_OF_STREAM is visible to subscribers
            if message.type == "TASK_INTERNAL_ERROR":
                self.event_seq, self.event_fails_step = message.seq, True
                if self.record.state != "ERROR" or not self.record.error:  # keep the task's own words
                    self.record.error = "the task reported an internal error"
                self._set(state="ERROR")
            self.environment.tell(TaskDeviceEvent(self.record.id, message.type, self.record.critical))
        elif isinstance(message, BasicTaskTerminated):
            self._basic_terminated(message)
        return None

    def _died(self, description: str) -> None:
        self.record.error = description
        self.record.pid = 0
        self._set(state="ERROR", status=INACTIVE)
        self.environment.tell(TaskDied(self.record.id, description, self.record.critical))

    def _basic_terminated(self, message: BasicTaskTerminated) -> None:
        """A basic task ended its work: it stays RUNNING until STOP if it succeeded, else ERROR."""
        detail = message.exit.report(message.log_tail)
        self.record.pid = 0
        self.ended_seq = message.seq
        if not message.exit.clean:
            self.event_seq, self.event_fails_step = message.seq, False
            self.record.error = detail
            self._set(state="ERROR")
        self.environment.tell(
            TaskDeviceEvent(
                self.record.id,
                "BASIC_TASK_TERMINATED",
                self.record.critical,
                exit_code=message.exit.returncode,
                detail=detail,
            )
        )
