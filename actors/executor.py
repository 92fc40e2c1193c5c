"""The executor actors: one `ExecutorActor` per node, one `ProcessActor` per task process.

A `ProcessActor` owns one OS process and its OCC connection. It handles its own messages one at a
time (OCC servers serialise transitions anyway), while processes on the same node are driven
concurrently because each has its own actor: the executor never becomes a per-node bottleneck as the
original's single message loop could.

Startup is watched closely because operators must know the difference between a process that is
merely slow ("too slow to start": alive but no STANDBY before the deadline) and one that crashed
("crashed on start": exit code or signal, with the last lines it printed).

How the task comes to life is one overridable step (`_spawn`, returning anything with `TaskProcess`'s
interface, see `TaskLife`), so other executors (the fake farm's endpoints) reuse all of the OCC
driving below unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Protocol

from actors.messages import DeviceEvent, ForgetProcess, ProcessExited
from actors.runtime import AsyncActorRef, AsyncioActor
from aliecs.cluster.inventory import NodeSpec
from aliecs.cluster.ports import port_bindable
from aliecs.executor.process import ExitInfo, LaunchError, LaunchSpec, TaskProcess
from aliecs.occ.client import OccClient, OccError

if TYPE_CHECKING:
    from actors.proxies import ExecutorProxy, ProcessProxy  # noqa: F401 (named in the actor's base class)

log = logging.getLogger(__name__)

# Which OCC event brings a task one step closer to DONE, from each state (the original's kill walk).
_TOWARDS_DONE = {"RUNNING": "STOP", "CONFIGURED": "RESET", "STANDBY": "EXIT", "ERROR": "EXIT"}


class TaskLife(Protocol):
    """What a process actor needs of the thing it drives: `TaskProcess`, or a fake farm endpoint."""

    @property
    def pid(self) -> int: ...
    @property
    def alive(self) -> bool: ...
    @property
    def exit_info(self) -> ExitInfo | None: ...
    def exited(self) -> asyncio.Future[ExitInfo]: ...
    async def wait(self, timeout: float | None = None) -> ExitInfo | None: ...
    async def terminate(self, term_grace: float = 2.0, int_grace: float = 3.0) -> ExitInfo: ...
    def log_tail(self, lines: int = 5) -> list[str]: ...


class TaskStartError(RuntimeError):
    pass


class PortInUseError(TaskStartError):
    """The task's control port was taken on the node, by a program the core knows nothing of, between
    its placement and the task binding it: the core launches the task again on another port."""


# How a task that could not bind its control port says so in its last output: the OCC library's
# OccPortInUseError, or the operating system's EADDRINUSE text (FairMQ devices, other programs).
_BIND_FAILED = ("is already in use", "address already in use")


class TaskTransitionError(RuntimeError):
    pass


class WatchedExit:
    """A process watched by a process actor ended (`process` tells which, when it runs several)."""

    __slots__ = ("info", "process")

    def __init__(self, info: ExitInfo, process: TaskLife) -> None:
        self.info = info
        self.process = process


class ProcessActor(AsyncioActor["ProcessProxy"]):
    """Starts, drives over OCC, watches and kills one task process."""

    def __init__(self, spec: LaunchSpec, control_port: int | None, listener: Any, controllable: bool) -> None:
        super().__init__()
        self.spec = spec
        self.control_port = control_port
        self.listener = listener
        self.controllable = controllable and control_port is not None
        self.process: TaskLife | None = None
        self.client: OccClient | None = None
        self._killing = False
        self._background: list[asyncio.Task[Any]] = []

    # -- lifecycle -------------------------------------------------------------------------------

    async def start_process(self, startup_timeout: float) -> int:
        """Launch and, for OCC tasks, wait until the process answers GetState with STANDBY."""
        if self.controllable and not port_bindable(self.control_port or 0):
            # Taken since placement: started anyway, the task would fail to bind, or worse, this
            # executor would take the program listening there for its task.
            raise PortInUseError(f"control port {self.control_port} is already in use on this node")
        try:
            self.process = await self._spawn()
        except LaunchError as exc:
            raise TaskStartError(f"cannot launch: {exc}") from exc
        self._background.append(asyncio.ensure_future(self._watch_exit(self.process)))
        if self.controllable:
            assert self.control_port is not None
            self.client = OccClient("127.0.0.1", self.control_port)
            await self._wait_for_standby(startup_timeout)
            self._background.append(asyncio.ensure_future(self._follow_events(self.client)))
        return self.process.pid

    async def adopt(self, process: TaskLife | None, known_state: str, timeout: float) -> str:
        """Take over a process an earlier executor of this node started (it outlived that executor):
        watch it, reconnect over OCC and follow its events again. Returns the state it reports."""
        self.process = process
        if process is not None:
            self._background.append(asyncio.ensure_future(self._watch_exit(process)))
        if not self.controllable:
            return known_state
        assert self.control_port is not None
        self.client = OccClient("127.0.0.1", self.control_port)
        state, _pid = await self.client.get_state(timeout=timeout)
        self._background.append(asyncio.ensure_future(self._follow_events(self.client)))
        return state

    async def _spawn(self) -> TaskLife:
        """Bring the task to life (here: an OS process); LaunchError if it cannot be started at all."""
        return await TaskProcess.spawn(self.spec)

    async def _wait_for_standby(self, timeout: float) -> None:
        assert self.process is not None and self.client is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.02
        last_error = "no answer yet"
        while True:
            if not self.process.alive:
                message = self._crash_message("crashed on start")
                if any(text in line.lower() for line in self.process.log_tail() for text in _BIND_FAILED):
                    raise PortInUseError(message)
                raise TaskStartError(message)
            remaining = deadline - loop.time()
            if remaining <= 0:
                await self.process.terminate(term_grace=1.0, int_grace=1.0)
                raise TaskStartError(
                    f"too slow to start: process (pid {self.process.pid}) was alive but did not answer "
                    f"GetState with STANDBY on OCC port {self.control_port} within {timeout:g}s "
                    f"({last_error})"
                )
            try:
                state, _pid = await self.client.get_state(timeout=min(1.0, remaining))
            except OccError as exc:
                last_error = str(exc)
            else:
                if state == "STANDBY":
                    return
                if state in ("ERROR", "DONE"):
                    await self.process.terminate(term_grace=1.0, int_grace=1.0)
                    raise TaskStartError(f"reported state {state} instead of STANDBY after start")
                last_error = f"state {state}"
            # Wait for the next poll, but wake up at once if the process dies meanwhile.
            await asyncio.wait({self.process.exited()}, timeout=min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 1.5, 0.5)

    def _crash_message(self, what: str) -> str:
        assert self.process is not None
        info = self.process.exit_info
        if info is None:
            return f"{what}: process ended"
        return f"{what}: {info.report(self.process.log_tail())}"

    async def _watch_exit(self, process: TaskLife) -> None:
        info = await process.exited()
        self.actor_ref.tell(WatchedExit(info, process))

    async def _follow_events(self, client: OccClient) -> None:
        try:
            async for event_type in client.event_stream():
                if self.listener is not None:
                    self.listener.tell(DeviceEvent(self.spec.task_id, event_type))
        except (OccError, asyncio.CancelledError):
            return
        except Exception:  # a broken stream must never take the actor down
            log.debug("event stream of %s ended", self.spec.task_id, exc_info=True)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, WatchedExit) and self.listener is not None:
            tail = tuple(self.process.log_tail()) if self.process else ()
            self.listener.tell(ProcessExited(self.spec.task_id, message.info, self._killing, tail))
        return None

    # -- control ---------------------------------------------------------------------------------

    def current_pid(self) -> int:
        """The pid of the live process, 0 if none runs (basic tasks run only while RUNNING)."""
        return self.process.pid if self.process is not None and self.process.alive else 0

    async def get_state(self, timeout: float) -> str:
        if self.client is None:
            raise TaskTransitionError("task is not controllable over OCC")
        state, _pid = await self.client.get_state(timeout=timeout)
        return state

    async def transition(self, src_state: str, event: str, arguments: dict[str, str], timeout: float) -> str:
        """Run one OCC transition; returns the state the task reports (which may be ERROR)."""
        if self.process is None or not self.process.alive:
            raise TaskTransitionError(
                self._crash_message("process is not running") if self.process else "not started"
            )
        if self.client is None:
            raise TaskTransitionError("task is not controllable over OCC")
        try:
            result = await self.client.transition(src_state, event, arguments, timeout=timeout)
        except OccError as exc:
            if not self.process.alive or await self.process.wait(0.2) is not None:
                raise TaskTransitionError(self._crash_message(f"died during {event}")) from exc
            raise TaskTransitionError(str(exc)) from exc
        if result.state == "ERROR" and result.error:  # the process said why (OCC library trailers)
            raise TaskTransitionError(f"task went to ERROR: {result.error}")
        return result.state

    async def kill(
        self,
        step_timeout: float = 5.0,
        exit_grace: float = 2.0,
        term_grace: float = 2.0,
        int_grace: float = 3.0,
    ) -> ExitInfo | None:
        """Walk the task to DONE (STOP, RESET, EXIT; each step bounded), wait `exit_grace` for it to
        leave on its own, then SIGTERM, SIGINT and SIGKILL its process group (the original's sequence)."""
        if self.process is None:
            return None
        self._killing = True
        if self.process.alive and self.client is not None:
            await self._walk_to_done(step_timeout)
        if self.process.alive and self.client is not None:
            await self.process.wait(exit_grace)
        info = await self.process.terminate(term_grace=term_grace, int_grace=int_grace)
        await self._close()
        return info

    async def _walk_to_done(self, step_timeout: float) -> None:
        assert self.process is not None and self.client is not None
        try:
            state, _pid = await self.client.get_state(timeout=step_timeout)
            for _ in range(4):
                event = _TOWARDS_DONE.get(state)
                if event is None or not self.process.alive:
                    return
                result = await self.client.transition(state, event, {}, timeout=step_timeout)
                state = result.state
        except OccError as exc:
            log.info("task %s: walk to DONE interrupted: %s", self.spec.task_id, exc)

    async def _close(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def release(self) -> None:
        """Let go of the process without killing it (the executor stops, the task must outlive it)."""
        self.process = None
        await self._close()

    async def on_stop(self) -> None:
        """Never leave a process behind when the actor goes away (core shutdown, failures)."""
        if self.process is not None and self.process.alive:
            self._killing = True
            await self.process.terminate(term_grace=1.0, int_grace=1.0)
        await self._close()


class ExecutorActor(AsyncioActor["ExecutorProxy"]):
    """The executor of one node: starts a `ProcessActor` per task and forgets it when the task is gone."""

    def __init__(self, node: NodeSpec) -> None:
        super().__init__()
        self.node = node
        self.processes: dict[str, AsyncActorRef[ProcessActor]] = {}

    def launch(
        self, spec: LaunchSpec, control_port: int | None, listener: Any, controllable: bool
    ) -> AsyncActorRef[ProcessActor]:
        """Create the process actor (quick); the caller then asks it to `start_process`."""
        if spec.task_id in self.processes:
            raise ValueError(f"{self.node.hostname}: task {spec.task_id} is already running here")
        ref = self._start_process_actor(spec, control_port, listener, controllable)
        self.processes[spec.task_id] = ref
        return ref

    def _start_process_actor(
        self, spec: LaunchSpec, control_port: int | None, listener: Any, controllable: bool
    ) -> AsyncActorRef[ProcessActor]:
        """The child actor driving one task (a `basic` one when not controllable over OCC); executors
        of other task kinds start their own kind."""
        # Imported here: the basic actor extends ProcessActor, defined in this module.
        from actors.basic_task import BasicProcessActor

        kind = ProcessActor if controllable else BasicProcessActor
        return self.start_child(kind, spec, control_port, listener, controllable)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ForgetProcess):
            ref = self.processes.pop(message.task_id, None)
            if ref is not None:
                # Not awaited: stopping must not hold up launches of other tasks on this node.
                ref.stop()
        return None

    def on_child_failure(self, child: Any, exception: BaseException) -> None:
        for task_id, ref in list(self.processes.items()):
            if ref == child:
                del self.processes[task_id]
                log.error("%s: process actor of task %s failed: %s", self.node.hostname, task_id, exception)
