"""The OCC task's state machine: what the OCC library's user sees, with no gRPC in it.

A program becomes controllable by handing a *handler* object to :class:`~aliecs.occ.OccTask` (or to
:func:`~aliecs.occ.run`). The handler may define any of these async callbacks, each receiving the
flat transition arguments as a ``dict[str, str]``::

    on_configure(args)  STANDBY -> CONFIGURED      on_reset(args)    CONFIGURED -> STANDBY
    on_start(args)      CONFIGURED -> RUNNING      on_stop(args)     RUNNING -> CONFIGURED
    on_recover(args)    ERROR -> STANDBY           on_exit(args)     STANDBY|CONFIGURED|ERROR -> DONE

plus ``iterate_running()``, called over and over while RUNNING (return True once the data is
exhausted: an END_OF_STREAM event is emitted once and iteration stops until the next START), and
``bind(task)``, called with the task before it serves so the program can keep a reference to emit
events or fail on its own. A missing callback means "nothing to do"; a callback that raises puts the
process in ERROR, which the transition's outcome says, and a TASK_INTERNAL_ERROR device event tells
every subscriber.

:class:`TaskStateMachine` holds all of that: the state, the callbacks, the running loop and the two
broadcasts (device events, states) that the gRPC side (`aliecs.occ.service`) streams to subscribers.
It can be driven directly, without a server, which is how its unit tests drive it.

Why the design is what it is:

- Transitions run one at a time under a lock (the protocol promises a settled state per reply) and
  are shielded from the caller: if the executor's deadline expires or it disconnects, the callback
  still finishes and the state machine stays consistent instead of being left half-way.
- Reading the state does not take the lock, so a hung callback never hides the process from the
  executor, which keeps polling it while deciding to kill.
- Each subscriber has its own bounded queue (`aliecs.broadcast`): emitting never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aliecs.broadcast import Broadcast, SubscriberOverflow
from aliecs.generated import occ_pb
from aliecs.occ.errors import OccError
from aliecs.occ.states import (
    DONE,
    ERROR,
    INITIAL_STATE,
    RUNNING,
    Event,
    State,
    TransitionNotAllowedError,
    next_state,
    parse_event,
)
from aliecs.wire import MAX_ECHO, excerpt

if TYPE_CHECKING:
    from aliecs.occ.server import OccTask

log = logging.getLogger("aliecs.occ")

#: Handler method called for each event; GO_ERROR has no callback (the executor forces the state).
CALLBACK_NAMES: dict[Event, str] = {
    Event.CONFIGURE: "on_configure",
    Event.RESET: "on_reset",
    Event.START: "on_start",
    Event.STOP: "on_stop",
    Event.RECOVER: "on_recover",
    Event.EXIT: "on_exit",
}

# After DONE the EXIT reply normally triggers shutdown; this is the fallback if that reply never
# completes (caller gone), so the process still leaves.
_DONE_SHUTDOWN_FALLBACK = 1.0

# betterproto 2.0.0b7 enum members look like plain ints to mypy; converting them once gives values
# that type-check where the generated messages expect the enum type.
_END_OF_STREAM = occ_pb.DeviceEventType(occ_pb.DeviceEventType.END_OF_STREAM)
_TASK_INTERNAL_ERROR = occ_pb.DeviceEventType(occ_pb.DeviceEventType.TASK_INTERNAL_ERROR)

#: The OCC library's name for a stream subscriber cut off for falling behind.
SubscriberOverflowError = SubscriberOverflow


class OccHandler:
    """Optional base class for handlers, documenting the callbacks (all no-ops here).

    ``iterate_running`` is deliberately not defined: define it only if the program has periodic work
    while RUNNING, otherwise the library would wake up every millisecond for nothing.
    """

    def bind(self, task: OccTask) -> None:
        """Called once with the serving task, before any transition."""

    async def on_configure(self, args: dict[str, str]) -> None:
        """STANDBY -> CONFIGURED: apply the configuration in ``args`` (channels, properties)."""

    async def on_reset(self, args: dict[str, str]) -> None:
        """CONFIGURED -> STANDBY: forget the configuration."""

    async def on_start(self, args: dict[str, str]) -> None:
        """CONFIGURED -> RUNNING: ``args`` carries ``runNumber`` and the run variables."""

    async def on_stop(self, args: dict[str, str]) -> None:
        """RUNNING -> CONFIGURED: end of run."""

    async def on_recover(self, args: dict[str, str]) -> None:
        """ERROR -> STANDBY: clean up after a failure."""

    async def on_exit(self, args: dict[str, str]) -> None:
        """-> DONE: release resources; the process terminates right after the reply."""


class TransitionRefusedError(OccError):
    """A transition request refused before any callback ran; nothing changed.

    ``state_mismatch`` is True when the requested source state is not the current one (the caller's
    view is stale); otherwise the task is DONE, or the event is unknown or not allowed from here.
    """

    def __init__(self, message: str, *, state_mismatch: bool = False) -> None:
        super().__init__(message)
        self.state_mismatch = state_mismatch


@dataclass(frozen=True)
class TransitionOutcome:
    """Where a transition left the task: ``ok`` if it reached the event's destination state, else the
    task is in ERROR and ``error`` says why (the callback's exception or the reason given to ``fail``)."""

    state: State
    ok: bool
    #: The event as requested (echoed to the caller unchanged).
    event: str
    error: str | None = None


def device_event_type(value: occ_pb.DeviceEventType | str | int) -> occ_pb.DeviceEventType:
    """The device event type named or numbered by ``value``; ValueError listing the known names."""
    if isinstance(value, occ_pb.DeviceEventType):
        return value
    if isinstance(value, str):
        try:
            return occ_pb.DeviceEventType.from_string(value.strip().upper())
        except ValueError:
            known = ", ".join(str(m.name) for m in occ_pb.DeviceEventType)
            raise ValueError(f"unknown device event type {value!r} (known: {known})") from None
    return occ_pb.DeviceEventType(value)


class TaskStateMachine:
    """One controllable process's OCC state machine, driving the handler's callbacks.

    :meth:`transition` is what a Transition request does; ``events`` and ``states`` broadcast device
    events and state changes to whoever subscribes. :meth:`wait_finished` returns once the task is
    DONE (and :meth:`request_stop` was called after the reply, or a short fallback passed) or a stop
    was requested. Everything must be used from the event loop's thread.
    """

    def __init__(
        self, handler: object | None = None, *, iterate_interval: float = 0.001, max_queued: int = 1024
    ) -> None:
        self.handler = handler
        self._iterate_interval = iterate_interval
        self._state: State = INITIAL_STATE
        self._lock = asyncio.Lock()
        #: Device events, in the order emitted (each subscriber's queue is bounded by ``max_queued``).
        self.events: Broadcast[occ_pb.DeviceEventType] = Broadcast(max_queued)
        #: States entered, in order.
        self.states: Broadcast[State] = Broadcast(max_queued)
        self._iterator: asyncio.Task[None] | None = None
        self._transitions: set[asyncio.Task[TransitionOutcome]] = set()
        self._finished = asyncio.Event()
        self._fail_count = 0
        #: Why the task last went to ERROR (callback exception or :meth:`fail` reason), for logs and tests.
        self.last_error: str | None = None

    # -- what anyone may read --------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def event_subscribers(self) -> int:
        """How many device event subscribers are connected (lets tests wait for a subscription)."""
        return len(self.events)

    @property
    def state_subscribers(self) -> int:
        return len(self.states)

    @property
    def transitions_in_flight(self) -> int:
        """Transition requests running or queued on the lock (shows serialization at work)."""
        return len(self._transitions)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    async def wait_finished(self) -> None:
        """Return once the task is DONE (reply sent) or a stop was requested."""
        await self._finished.wait()

    def request_stop(self) -> None:
        """Ask :meth:`wait_finished` to return, e.g. from a signal handler or once the EXIT reply is out."""
        self._finished.set()

    async def halt(self) -> None:
        """Cancel the running loop and running callbacks, end the broadcasts; the state stays as it is.

        What closing the task does before its server goes away.
        """
        self._finished.set()
        await self._stop_iterating()
        for task in list(self._transitions):
            task.cancel()
        for task in list(self._transitions):
            with contextlib.suppress(BaseException):
                await task
        self.events.close()
        self.states.close()

    # -- what the program itself can do ----------------------------------------------------------

    def emit_event(self, event_type: occ_pb.DeviceEventType | str | int) -> None:
        """Send a device event (END_OF_STREAM, TASK_INTERNAL_ERROR, ...) to every event subscriber."""
        value = device_event_type(event_type)
        log.info("device event %s", value.name)
        self.events.publish(value)

    def fail(self, reason: str) -> None:
        """Go to ERROR on the program's own initiative and tell subscribers (TASK_INTERNAL_ERROR).

        Called during a transition callback, it makes that transition end in ERROR. Ignored once DONE
        (the process is leaving) or when already in ERROR (the executor has been told already).
        """
        if self._state is DONE or self._state is ERROR:
            log.info("fail(%r) ignored in state %s", reason, self._state)
            return
        self._enter_error(reason)

    def _enter_error(self, reason: str) -> None:
        """Go to ERROR (even from ERROR, e.g. a failed RECOVER) and emit TASK_INTERNAL_ERROR."""
        self._fail_count += 1
        self.last_error = reason
        log.error("going to ERROR: %s", reason)
        current = asyncio.current_task()
        if self._iterator is not None and self._iterator is not current:
            self._iterator.cancel()
        self._iterator = None
        self._set_state(ERROR)
        self.emit_event(_TASK_INTERNAL_ERROR)

    # -- transitions -----------------------------------------------------------------------------

    async def transition(self, src_state: str, event_name: str, args: dict[str, str]) -> TransitionOutcome:
        """Run ``event_name`` from ``src_state`` with ``args``; TransitionRefusedError if refused.

        Shielded: cancelling the caller does not cancel the transition, which completes (or is
        cancelled by :meth:`halt`).
        """
        task = asyncio.ensure_future(self._run_transition(src_state, event_name, args))
        self._transitions.add(task)
        task.add_done_callback(self._transition_done)
        return await asyncio.shield(task)

    def _transition_done(self, task: asyncio.Task[TransitionOutcome]) -> None:
        self._transitions.discard(task)
        # Retrieve the outcome so an abandoned (caller-cancelled) transition does not warn at exit.
        if not task.cancelled():
            task.exception()

    def _set_state(self, state: State) -> None:
        if state is self._state:
            return
        log.info("state %s -> %s", self._state, state)
        self._state = state
        self.states.publish(state)
        if state is DONE:
            # Nothing can happen after DONE: let the streams deliver what they have and end.
            self.events.close()
            self.states.close()
            asyncio.get_running_loop().call_later(_DONE_SHUTDOWN_FALLBACK, self._finished.set)

    def _check(self, src_state: str, event_name: str) -> tuple[Event, State]:
        """The event and its destination, or TransitionRefusedError saying why not."""
        current = self._state
        if current is DONE:
            raise TransitionRefusedError(
                f"transition {excerpt(event_name)} not possible: "
                "the task is DONE (exiting) and accepts no events"
            )
        if src_state.strip().upper() != current:
            raise TransitionRefusedError(
                f"transition {excerpt(event_name)} not possible: state mismatch: "
                f"source state {excerpt(src_state)} requested, current state is {current}",
                state_mismatch=True,
            )
        try:
            event = parse_event(event_name)
            return event, next_state(current, event)
        except (ValueError, TransitionNotAllowedError) as exc:
            raise TransitionRefusedError(f"transition not possible: {str(exc)[: MAX_ECHO * 2]}") from None

    async def _run_transition(
        self, src_state: str, event_name: str, args: dict[str, str]
    ) -> TransitionOutcome:
        async with self._lock:
            event, destination = self._check(src_state, event_name)
            current = self._state
            log.info("transition %s: %s -> %s (%d arguments)", event, current, destination, len(args))
            if current is RUNNING:
                await self._stop_iterating()
            fails_before = self._fail_count
            name = CALLBACK_NAMES.get(event)
            callback = getattr(self.handler, name, None) if name else None
            if callback is not None:
                try:
                    result = callback(args)
                    if inspect.isawaitable(result):
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("%s callback failed", name)
                    self._enter_error(f"{name} raised {type(exc).__name__}: {exc}")
            if self._fail_count != fails_before:
                return TransitionOutcome(self._state, False, event_name, self.last_error)
            self._set_state(destination)
            if destination is RUNNING:
                self._start_iterating()
            return TransitionOutcome(destination, True, event_name)

    # -- running loop ----------------------------------------------------------------------------

    def _start_iterating(self) -> None:
        iterate = getattr(self.handler, "iterate_running", None)
        if iterate is not None:
            self._iterator = asyncio.ensure_future(self._iterate(iterate))

    async def _stop_iterating(self) -> None:
        task, self._iterator = self._iterator, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _iterate(self, iterate: Callable[[], Awaitable[object]]) -> None:
        while self._state is RUNNING:
            try:
                end_of_stream = await iterate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("iterate_running failed")
                self.fail(f"iterate_running raised {type(exc).__name__}: {exc}")
                return
            if end_of_stream:
                log.info("iterate_running reported end of stream")
                self.emit_event(_END_OF_STREAM)
                return
            await asyncio.sleep(self._iterate_interval)


__all__ = [
    "CALLBACK_NAMES",
    "OccHandler",
    "SubscriberOverflowError",
    "TaskStateMachine",
    "TransitionOutcome",
    "TransitionRefusedError",
    "device_event_type",
]
