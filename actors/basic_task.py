"""The process actor of a `basic` task: a plain command with no OCC, alive only while RUNNING.

The original's `BasicTask` reports itself ready at launch without starting anything; CONFIGURE and
RESET only move its state; START runs the command; STOP kills its process group; a process that ends
by itself while RUNNING is reported as BASIC_TASK_TERMINATED (with its exit code) rather than as a
death, because for such tasks (cleanup scripts, monitors) ending is how they finish their work.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors.executor import ProcessActor, TaskLife, TaskTransitionError, WatchedExit
from actors.messages import BasicTaskTerminated, ProcessExited
from aliecs.executor.process import ExitInfo, LaunchError, LaunchSpec
from aliecs.occ.states import (
    DONE,
    ERROR,
    INITIAL_STATE,
    RUNNING,
    START,
    TransitionNotAllowedError,
    next_state,
)


class BasicProcessActor(ProcessActor):
    """Drives one basic task: its state lives here, its process exists only between START and STOP."""

    def __init__(self, spec: LaunchSpec, control_port: int | None, listener: Any, controllable: bool) -> None:
        super().__init__(spec, None, listener, controllable=False)
        self.state = str(INITIAL_STATE)
        # Processes ended on purpose (STOP, EXIT): their exit is no news for the task.
        self._ended: set[TaskLife] = set()

    async def start_process(self, startup_timeout: float) -> int:
        """Nothing runs before START: the task is ready at once (pid 0)."""
        return 0

    async def get_state(self, timeout: float) -> str:
        return self.state

    async def adopt(self, process: TaskLife | None, known_state: str, timeout: float) -> str:
        """A basic task's state lives in its actor: the earlier executor's record of it is the truth."""
        self.state = known_state
        return await super().adopt(process, known_state, timeout)

    async def transition(self, src_state: str, event: str, arguments: dict[str, str], timeout: float) -> str:
        """Move the task's state; START launches the command, leaving RUNNING or DONE kills it."""
        if src_state != self.state:
            raise TaskTransitionError(f"state mismatch: {src_state} requested, task is {self.state}")
        try:
            destination = str(next_state(self.state, event))
        except (ValueError, TransitionNotAllowedError) as exc:
            raise TaskTransitionError(str(exc)) from exc
        if event == START:
            await self._launch()
        elif self.state == RUNNING or destination == DONE:
            await self._end_process()
        self.state = destination
        return self.state

    async def run_once(self, timeout: float) -> tuple[ExitInfo | None, tuple[str, ...]]:
        """Run the command to its end, as a hook task (control mode `hook`): its exit and last
        output, or None for the exit if it outlived `timeout` (> 0) and was killed."""
        await self._launch()
        assert self.process is not None
        info = await self.process.wait(timeout if timeout > 0 else None)
        if info is None:
            await self._end_process()
        return info, tuple(self.process.log_tail())

    async def _launch(self) -> None:
        try:
            process = await self._spawn()
        except LaunchError as exc:
            raise TaskTransitionError(f"cannot launch: {exc}") from exc
        self.process = process
        self._background = [task for task in self._background if not task.done()]
        self._background.append(asyncio.ensure_future(self._watch_exit(process)))

    async def _end_process(self) -> None:
        """Kill the process group at once (the original SIGKILLs it), if the process still runs."""
        process = self.process
        if process is None or not process.alive:
            return
        self._ended.add(process)
        await process.terminate(term_grace=0.0, int_grace=0.0)

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, WatchedExit) or self.listener is None:
            return None
        tail = tuple(message.process.log_tail())
        if self._killing or message.process in self._ended:
            self._ended.discard(message.process)
            self.listener.tell(ProcessExited(self.spec.task_id, message.info, True, tail))
        else:
            if not message.info.clean:  # failed work: RECOVER, not STOP, brings the task back
                self.state = str(ERROR)
            self.listener.tell(BasicTaskTerminated(self.spec.task_id, message.info, tail))
        return None
