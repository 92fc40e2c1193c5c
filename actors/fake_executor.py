"""An in-process fake executor: tasks are state machines in memory, no OS process, no gRPC.

For scale runs (10,000+ tasks on a 2-core machine) the cost of the tasks themselves must vanish so
what is measured is the control system: environment fan-out, role aggregation, task and process
actors, placement. `Core.embedded(executor_class=FakeExecutorActor)` plugs it in; the process actors
keep `ProcessActor`'s interface (start_process, get_state, transition, kill) and its messages to the
listener (ProcessExited, DeviceEvent), and follow the OCC state machine of `aliecs.occ.states`.

A task's command line may carry `aliecs.fakefarm.Behaviour` options (latency, failure rate), with the
same meaning as for farm endpoints.
"""

from __future__ import annotations

import os
import random
from typing import Any

from actors.executor import ExecutorActor, TaskStartError, TaskTransitionError
from actors.farm_executor import behaviour_argv
from actors.messages import DeviceEvent, ProcessExited
from actors.runtime import AsyncioActor
from aliecs.cluster.inventory import NodeSpec
from aliecs.executor.process import ExitInfo, LaunchSpec
from aliecs.fakefarm import Behaviour
from aliecs.occ.states import DONE, ERROR, INITIAL_STATE, Event, TransitionNotAllowedError, next_state

# Which event brings a task one step closer to DONE (the walk `ProcessActor.kill` does over OCC).
_TOWARDS_DONE = {"RUNNING": Event.STOP, "CONFIGURED": Event.RESET, "STANDBY": Event.EXIT, "ERROR": Event.EXIT}


class FakeProcessActor(AsyncioActor):
    """One fake task: its OCC state, with the transitions a real process would accept."""

    def __init__(
        self, spec: LaunchSpec, listener: Any, controllable: bool, behaviour: Behaviour, rng: random.Random
    ) -> None:
        super().__init__()
        self.task_id = spec.task_id
        self.listener = listener
        self.controllable = controllable
        self.behaviour = behaviour
        self.rng = rng
        self.state = str(INITIAL_STATE)
        self.started = False

    async def start_process(self, startup_timeout: float) -> int:
        if self.started:
            raise TaskStartError("already started")
        self.started = True
        return os.getpid()

    async def get_state(self, timeout: float) -> str:
        if not self.controllable:
            raise TaskTransitionError("task is not controllable over OCC")
        return self.state

    async def transition(self, src_state: str, event: str, arguments: dict[str, str], timeout: float) -> str:
        """Like an OCC Transition: refused on a state mismatch, ERROR when the behaviour fails it."""
        if not self.started or self.state == DONE:
            raise TaskTransitionError("process is not running")
        if not self.controllable:
            raise TaskTransitionError("task is not controllable over OCC")
        if src_state != self.state:
            raise TaskTransitionError(f"state mismatch: {src_state} requested, task is {self.state}")
        try:
            destination = next_state(self.state, event)
        except (ValueError, TransitionNotAllowedError) as exc:
            raise TaskTransitionError(str(exc)) from exc
        try:
            await self.behaviour.perform(Event(event), self.rng)
        except RuntimeError:
            self.state = str(ERROR)
            self._tell(DeviceEvent(self.task_id, "TASK_INTERNAL_ERROR"))
            return self.state
        self.state = str(destination)
        if destination == DONE:
            self._exit(expected=True)
        return self.state

    async def kill(self, *args: Any, **kwargs: Any) -> ExitInfo | None:
        """Walk to DONE (no failures injected on the way out) and 'exit' with code 0."""
        if not self.started:
            return None
        if self.state != DONE:
            while (event := _TOWARDS_DONE.get(self.state)) is not None:
                self.state = str(next_state(self.state, event))
            self._exit(expected=True)
        return ExitInfo(0)

    def _exit(self, expected: bool) -> None:
        self.state = str(DONE)
        self._tell(ProcessExited(self.task_id, ExitInfo(0), expected))

    def _tell(self, message: Any) -> None:
        if self.listener is not None:
            self.listener.tell(message)


class FakeExecutorActor(ExecutorActor):
    """A node's executor whose process actors are `FakeProcessActor`s (one shared random source)."""

    def __init__(self, node: NodeSpec) -> None:
        super().__init__(node)
        self.rng = random.Random(node.hostname)

    def _start_process_actor(
        self, spec: LaunchSpec, control_port: int | None, listener: Any, controllable: bool
    ) -> Any:
        behaviour = Behaviour.parse(behaviour_argv(spec))
        return self.start_child(FakeProcessActor, spec, listener, controllable, behaviour, self.rng)
