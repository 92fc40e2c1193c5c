"""The task actor: the core's side of one task, the leaf of an environment's role tree.

It owns the task's published record (state, status, host, pid) and talks to the task's process
through the process actor the scheduler's executor gave it. Every change of state or status is told
to the parent role (for aggregation); deaths and device events are told to the environment, which
decides what they mean for the run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from actors.executor import TaskStartError, TaskTransitionError
from actors.messages import (
    BasicTaskTerminated,
    ChildChanged,
    DeviceEvent,
    ForgetProcess,
    ProcessExited,
    TaskDeviceEvent,
    TaskDied,
)
from actors.runtime import AsyncioActor
from aliecs.cluster.scheduling import Placement
from aliecs.events import EventBus, TaskEvent
from aliecs.executor.process import LaunchSpec
from aliecs.model import RoleRecord, TaskRecord

ACTIVE = "ACTIVE"
INACTIVE = "INACTIVE"
UNDEPLOYABLE = "UNDEPLOYABLE"
# Extra time granted on top of an OCC deadline before the task actor gives up on its process actor.
_MARGIN = 2.0


@dataclass(frozen=True)
class TaskOutcome:
    """What happened to one task in one step of a transition."""

    task_id: str
    ok: bool
    state: str
    error: str = ""


class TaskActor(AsyncioActor):
    def __init__(
        self,
        record: TaskRecord,
        role_record: RoleRecord,
        environment: Any,
        parent: Any,
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
        self.process: Any = None
        self.executor: Any = None
        self.controllable = True

    # -- publishing ------------------------------------------------------------------------------

    def _set(self, state: str | None = None, status: str | None = None) -> None:
        changed = False
        if state is not None and state != self.record.state:
            self.record.state = state
            changed = True
        if status is not None and status != self.record.status:
            self.record.status = status
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
                device_event=device_event,
            )
        )

    # -- commands from the environment -----------------------------------------------------------

    def mark_undeployable(self, reason: str) -> None:
        self.record.error = reason
        self._set(status=UNDEPLOYABLE)

    async def deploy(self, placement: Placement, spec: LaunchSpec, startup_timeout: float) -> TaskOutcome:
        self.record.host = placement.hostname
        self.record.control_port = placement.control_port or 0
        self.record.log_path = str(spec.log_path or "")
        self.controllable = placement.control_port is not None
        self.executor = placement.executor
        try:
            self.process = await self.executor.proxy().launch(
                spec, placement.control_port, self.actor_ref, self.controllable
            )
            pid = await asyncio.wait_for(
                self.process.proxy().start_process(startup_timeout), startup_timeout + _MARGIN
            )
        except TaskStartError as exc:
            return self._failed(str(exc), status=INACTIVE)
        except TimeoutError:
            return self._failed(f"did not start within {startup_timeout:g}s", status=INACTIVE)
        self.record.pid = pid
        self.record.error = ""
        self._set(state="STANDBY", status=ACTIVE)
        return TaskOutcome(self.record.id, True, self.record.state)

    async def transition(
        self, src_state: str, event: str, arguments: dict[str, str], timeout: float
    ) -> TaskOutcome:
        if self.process is None or self.record.status != ACTIVE:
            return TaskOutcome(
                self.record.id, False, self.record.state, self.record.error or "task is not running"
            )
        if self.record.state != src_state:
            return TaskOutcome(
                self.record.id,
                False,
                self.record.state,
                f"cannot {event}: task is {self.record.state}, not {src_state}",
            )
        try:
            state = await asyncio.wait_for(
                self.process.proxy().transition(src_state, event, arguments, timeout), timeout + _MARGIN
            )
        except TaskTransitionError as exc:
            return self._failed(f"{event}: {exc}")
        except TimeoutError:
            return self._failed(f"{event}: no answer within {timeout:g}s")
        if not self.controllable:  # a basic task's process comes and goes with START and STOP
            self.record.pid = await self.process.proxy().current_pid()
        self._set(state=state)
        if state == "ERROR":
            return self._failed(f"{event}: task went to ERROR")
        return TaskOutcome(self.record.id, True, state)

    async def kill(self) -> TaskOutcome:
        """Walk the task to DONE and make sure its process is gone; idempotent."""
        if self.process is not None:
            try:
                info = await self.process.proxy().kill()
            except Exception as exc:  # the process actor may already be gone; the executor cleans up
                self.record.error = f"kill: {exc}"
                info = None
            self.executor.tell(ForgetProcess(self.record.id))
            self.process = None
            if info is not None and not info.clean and self.record.state != "DONE":
                self.record.error = self.record.error or f"process {info.describe()}"
        self._set(state="DONE", status=INACTIVE)
        return TaskOutcome(self.record.id, True, "DONE")

    def _failed(self, message: str, status: str | None = None) -> TaskOutcome:
        self.record.error = message
        state = "ERROR"
        self._set(state=state, status=status)
        return TaskOutcome(self.record.id, False, state, message)

    # -- notifications from the process ----------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ProcessExited):
            if message.expected or self.process is None:
                return None
            description = message.exit.report(message.log_tail)
            self.record.error = description
            self.record.pid = 0
            self._set(state="ERROR", status=INACTIVE)
            self.environment.tell(TaskDied(self.record.id, description, self.record.critical))
        elif isinstance(message, DeviceEvent):
            self._publish(device_event=message.type)  # every END_OF_STREAM is visible to subscribers
            if message.type == "TASK_INTERNAL_ERROR":
                self.record.error = "the task reported an internal error"
                self._set(state="ERROR")
            self.environment.tell(TaskDeviceEvent(self.record.id, message.type, self.record.critical))
        elif isinstance(message, BasicTaskTerminated):
            self._basic_terminated(message)
        return None

    def _basic_terminated(self, message: BasicTaskTerminated) -> None:
        """A basic task ended its work: it stays RUNNING until STOP if it succeeded, else ERROR."""
        detail = message.exit.report(message.log_tail)
        self.record.pid = 0
        if not message.exit.clean:
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
