"""The OCC library for controlled processes: serve ``occ_pb.Occ`` and drive user callbacks.

A program becomes controllable by handing a *handler* object to :class:`OccTask` (or to :func:`run`).
The handler may define any of these async callbacks, each receiving the flat transition arguments as a
``dict[str, str]``::

    on_configure(args)  STANDBY -> CONFIGURED      on_reset(args)    CONFIGURED -> STANDBY
    on_start(args)      CONFIGURED -> RUNNING      on_stop(args)     RUNNING -> CONFIGURED
    on_recover(args)    ERROR -> STANDBY           on_exit(args)     STANDBY|CONFIGURED|ERROR -> DONE

plus ``iterate_running()``, called over and over while RUNNING (return True once the data is
exhausted: an END_OF_STREAM event is emitted once and iteration stops until the next START), and
``bind(task)``, called with the :class:`OccTask` before it serves so the program can keep a reference
to emit events or fail on its own. A missing callback means "nothing to do"; a callback that raises
puts the process in ERROR and is reported to the executor both in the Transition reply and as a
TASK_INTERNAL_ERROR device event.

Why the design is what it is:

- Transitions run one at a time under a lock (the protocol promises a settled state per reply) and
  are shielded from the caller: if the executor's deadline expires or it disconnects, the callback
  still finishes and the state machine stays consistent instead of being left half-way.
- GetState does not take the lock, so a hung callback never hides the process from the executor,
  which keeps polling it while deciding to kill.
- Each stream subscriber has its own bounded queue: emitting never blocks, a slow subscriber is cut
  off with RESOURCE_EXHAUSTED instead of stalling the others, and a vanished one is forgotten when
  grpclib cancels its handler.
- Requests are bounded (`aliecs.wire.MAX_MESSAGE_BYTES`, 4 MiB) and large ones decoded in a thread,
  so a huge transition never makes the task deaf to GetState or to SIGTERM; client text echoed in
  errors is cut short.
- After EXIT the server stops only once the EXIT reply (trailers included) has been handed to the
  transport, so the executor sees ``ok`` and then a clean exit with code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from aliecs.broadcast import Broadcast, SubscriberOverflow
from aliecs.generated import occ_pb
from aliecs.grpcserver import GrpcServer
from aliecs.occ.errors import OccError, OccPortInUseError
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
from aliecs.wire import MAX_ECHO, RequestCodec, excerpt, recv_request

log = logging.getLogger("aliecs.occ")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_CONTROL_PORT = 47100
CONTROL_PORT_ENV = "OCC_CONTROL_PORT"
#: Trailing metadata of a Transition reply that ended in ERROR: why (UTF-8, at most ERROR_DETAIL_LIMIT
#: bytes). The TransitionReply message has no room for it and must stay wire-compatible with the
#: original; a client that does not know this key ignores it.
ERROR_DETAIL_METADATA = "aliecs-error-detail-bin"
ERROR_DETAIL_LIMIT = 2048

#: Exit code of :func:`run` when the control port cannot be bound.
EXIT_PORT_UNAVAILABLE = 1
#: Exit code of :func:`run` for a bad ``--control-port`` / ``OCC_CONTROL_PORT`` value.
EXIT_USAGE = 2

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

T = TypeVar("T")

# betterproto 2.0.0b7 enum members look like plain ints to mypy; converting them once gives values
# that type-check where the generated messages expect the enum type.
_TRIGGER_EXECUTOR = occ_pb.StateChangeTrigger(occ_pb.StateChangeTrigger.EXECUTOR)
_TRIGGER_DEVICE_ERROR = occ_pb.StateChangeTrigger(occ_pb.StateChangeTrigger.DEVICE_ERROR)
_STATE_STABLE = occ_pb.StateType(occ_pb.StateType.STATE_STABLE)
_END_OF_STREAM = occ_pb.DeviceEventType(occ_pb.DeviceEventType.END_OF_STREAM)
_TASK_INTERNAL_ERROR = occ_pb.DeviceEventType(occ_pb.DeviceEventType.TASK_INTERNAL_ERROR)


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


#: The OCC library's name for a stream subscriber cut off for falling behind.
SubscriberOverflowError = SubscriberOverflow


def _event_type(value: occ_pb.DeviceEventType | str | int) -> occ_pb.DeviceEventType:
    if isinstance(value, occ_pb.DeviceEventType):
        return value
    if isinstance(value, str):
        try:
            return occ_pb.DeviceEventType.from_string(value.strip().upper())
        except ValueError:
            known = ", ".join(str(m.name) for m in occ_pb.DeviceEventType)
            raise ValueError(f"unknown device event type {value!r} (known: {known})") from None
    return occ_pb.DeviceEventType(value)


class OccTask:
    """One controllable process: its OCC state machine and the gRPC server exposing it.

    Lifecycle: ``await start()`` binds and serves; ``await wait_finished()`` returns once the task
    reached DONE (and the EXIT reply went out) or :meth:`request_stop` was called; ``await close()``
    ends the streams cleanly and stops the server. ``async with OccTask(...)`` does start/close, and
    :meth:`serve` does all three. Everything must be used from the event loop's thread.
    """

    def __init__(
        self,
        handler: object | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_CONTROL_PORT,
        iterate_interval: float = 0.001,
        max_queued: int = 1024,
    ) -> None:
        self.handler = handler
        self._host = host
        self._requested_port = port
        self._bound_port: int | None = None
        self._iterate_interval = iterate_interval
        self._state: State = INITIAL_STATE
        self._lock = asyncio.Lock()
        self._events: Broadcast[occ_pb.DeviceEventType] = Broadcast(max_queued)
        self._states: Broadcast[State] = Broadcast(max_queued)
        self._server: GrpcServer | None = None
        self._iterator: asyncio.Task[None] | None = None
        self._transitions: set[asyncio.Task[occ_pb.TransitionReply]] = set()
        self._finished = asyncio.Event()
        self._closed = False
        self._fail_count = 0
        self._active_streams = 0
        self._streams_idle = asyncio.Event()
        self._streams_idle.set()
        #: Why the task last went to ERROR (callback exception or :meth:`fail` reason), for logs and tests.
        self.last_error: str | None = None

    # -- properties ------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``); the requested one before :meth:`start`."""
        return self._bound_port if self._bound_port is not None else self._requested_port

    @property
    def address(self) -> str:
        return f"{self._host}:{self.port}"

    @property
    def event_subscribers(self) -> int:
        """How many EventStream subscribers are connected (lets tests wait for a subscription)."""
        return len(self._events)

    @property
    def state_subscribers(self) -> int:
        return len(self._states)

    @property
    def transitions_in_flight(self) -> int:
        """Transition requests running or queued on the lock (shows serialization at work)."""
        return len(self._transitions)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the control port and start serving; OccPortInUseError if the port is taken."""
        if self._server is not None:
            raise RuntimeError("OccTask already started")
        sock = self._bind()
        bind = getattr(self.handler, "bind", None)
        if callable(bind):
            bind(self)
        server = GrpcServer([self], codec=RequestCodec())
        try:
            await server.start(sock=sock)
        except BaseException:
            sock.close()
            raise
        self._server = server
        self._bound_port = sock.getsockname()[1]
        log.info("serving occ_pb.Occ on %s (pid %d), state %s", self.address, os.getpid(), self._state)

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Lets a restarted task reuse a port still in TIME_WAIT; a live listener still conflicts.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._requested_port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            where = f"{self._host}:{self._requested_port}"
            if exc.errno == errno.EADDRINUSE:
                raise OccPortInUseError(
                    f"OCC control port {where} is already in use (another task, or a leftover process "
                    f"from an earlier run?); choose another with --control-port or {CONTROL_PORT_ENV}"
                ) from exc
            raise OccError(f"cannot listen on OCC control address {where}: {exc.strerror or exc}") from exc
        return sock

    async def wait_finished(self) -> None:
        """Return once the task is DONE (reply sent) or a stop was requested."""
        await self._finished.wait()

    def request_stop(self) -> None:
        """Ask :meth:`serve` / :meth:`wait_finished` to return, e.g. from a signal handler."""
        self._finished.set()

    async def close(self, grace: float = 1.0) -> None:
        """Stop everything: running callbacks are cancelled, streams end cleanly, the port is released.

        ``grace`` bounds how long open streams get to flush what is queued before being cut.
        """
        if self._closed:
            return
        self._closed = True
        self._finished.set()
        await self._stop_iterating()
        for task in list(self._transitions):
            task.cancel()
        for task in list(self._transitions):
            with contextlib.suppress(BaseException):
                await task
        self._events.close()
        self._states.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._streams_idle.wait(), grace)
            self._server.close()  # connections too: a closed task is gone for its clients
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), grace)
        log.info("OCC server on %s closed, final state %s", self.address, self._state)

    async def serve(self) -> None:
        """Start (if needed), wait until finished, close: the whole life of a controlled process."""
        if self._server is None:
            await self.start()
        try:
            await self.wait_finished()
        finally:
            await self.close()

    async def __aenter__(self) -> OccTask:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what the program itself can do ----------------------------------------------------------

    def emit_event(self, event_type: occ_pb.DeviceEventType | str | int) -> None:
        """Send a device event (END_OF_STREAM, TASK_INTERNAL_ERROR, ...) to every EventStream subscriber."""
        value = _event_type(event_type)
        log.info("device event %s", value.name)
        self._events.publish(value)

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

    # -- state machine ---------------------------------------------------------------------------

    def _set_state(self, state: State) -> None:
        if state is self._state:
            return
        log.info("state %s -> %s", self._state, state)
        self._state = state
        self._states.publish(state)
        if state is DONE:
            # Nothing can happen after DONE: let the streams deliver what they have and end.
            self._events.close()
            self._states.close()
            asyncio.get_running_loop().call_later(_DONE_SHUTDOWN_FALLBACK, self._finished.set)

    async def _run_transition(
        self, src_state: str, event_name: str, args: dict[str, str]
    ) -> occ_pb.TransitionReply:
        """Validate and run one transition under the lock; GRPCError for a rejected request."""
        async with self._lock:
            current = self._state
            if current is DONE:
                raise GRPCError(
                    Status.FAILED_PRECONDITION,
                    f"transition {excerpt(event_name)} not possible: "
                    "the task is DONE (exiting) and accepts no events",
                )
            if src_state.strip().upper() != current:
                raise GRPCError(
                    Status.INVALID_ARGUMENT,
                    f"transition {excerpt(event_name)} not possible: state mismatch: "
                    f"source state {excerpt(src_state)} requested, current state is {current}",
                )
            try:
                event = parse_event(event_name)
                destination = next_state(current, event)
            except (ValueError, TransitionNotAllowedError) as exc:
                raise GRPCError(
                    Status.FAILED_PRECONDITION, f"transition not possible: {str(exc)[: MAX_ECHO * 2]}"
                ) from None

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
                return occ_pb.TransitionReply(
                    trigger=_TRIGGER_DEVICE_ERROR,
                    state=str(self._state),
                    transition_event=event_name,
                    ok=False,
                )
            self._set_state(destination)
            if destination is RUNNING:
                self._start_iterating()
            return occ_pb.TransitionReply(
                trigger=_TRIGGER_EXECUTOR,
                state=str(destination),
                transition_event=event_name,
                ok=True,
            )

    async def _transition_shielded(
        self, src_state: str, event_name: str, args: dict[str, str]
    ) -> occ_pb.TransitionReply:
        task = asyncio.ensure_future(self._run_transition(src_state, event_name, args))
        self._transitions.add(task)
        task.add_done_callback(self._transition_done)
        return await asyncio.shield(task)

    def _transition_done(self, task: asyncio.Task[occ_pb.TransitionReply]) -> None:
        self._transitions.discard(task)
        # Retrieve the outcome so an abandoned (caller-cancelled) transition does not warn at exit.
        if not task.cancelled():
            task.exception()

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

    # -- gRPC service ----------------------------------------------------------------------------

    def __mapping__(self) -> dict[str, Handler]:
        """The grpclib service mapping: the four RPCs of ``occ_pb.Occ``."""
        return {
            "/occ_pb.Occ/EventStream": Handler(
                self._rpc_event_stream,
                Cardinality.UNARY_STREAM,
                occ_pb.EventStreamRequest,
                occ_pb.EventStreamReply,
            ),
            "/occ_pb.Occ/StateStream": Handler(
                self._rpc_state_stream,
                Cardinality.UNARY_STREAM,
                occ_pb.StateStreamRequest,
                occ_pb.StateStreamReply,
            ),
            "/occ_pb.Occ/GetState": Handler(
                self._rpc_get_state,
                Cardinality.UNARY_UNARY,
                occ_pb.GetStateRequest,
                occ_pb.GetStateReply,
            ),
            "/occ_pb.Occ/Transition": Handler(
                self._rpc_transition,
                Cardinality.UNARY_UNARY,
                occ_pb.TransitionRequest,
                occ_pb.TransitionReply,
            ),
        }

    async def _rpc_get_state(self, stream: Stream[occ_pb.GetStateRequest, occ_pb.GetStateReply]) -> None:
        await recv_request(stream)
        await stream.send_message(occ_pb.GetStateReply(state=str(self._state), pid=os.getpid()))

    async def _rpc_transition(self, stream: Stream[occ_pb.TransitionRequest, occ_pb.TransitionReply]) -> None:
        request = await recv_request(stream)
        if request is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "empty Transition request")
        args = {entry.key: entry.value for entry in request.arguments}
        try:
            reply = await self._transition_shielded(request.src_state, request.transition_event, args)
            await stream.send_message(reply)
            # Trailers are sent here rather than by grpclib after we return, so that shutting down
            # after EXIT cannot cut the reply short. A failed transition says why in them.
            detail = None if reply.ok or not self.last_error else error_detail(self.last_error)
            await stream.send_trailing_metadata(metadata={ERROR_DETAIL_METADATA: detail} if detail else None)
        finally:
            if self._state is DONE:
                self._finished.set()

    async def _rpc_event_stream(
        self, stream: Stream[occ_pb.EventStreamRequest, occ_pb.EventStreamReply]
    ) -> None:
        await recv_request(stream)
        await self._serve_stream(
            stream,
            self._events,
            lambda kind: occ_pb.EventStreamReply(event=occ_pb.DeviceEvent(type=kind)),
        )

    async def _rpc_state_stream(
        self, stream: Stream[occ_pb.StateStreamRequest, occ_pb.StateStreamReply]
    ) -> None:
        await recv_request(stream)
        await self._serve_stream(
            stream,
            self._states,
            lambda state: occ_pb.StateStreamReply(type=_STATE_STABLE, state=str(state)),
        )

    async def _serve_stream(
        self, stream: Stream[Any, Any], fanout: Broadcast[T], reply: Callable[[T], Any]
    ) -> None:
        sub = fanout.subscribe()
        self._active_streams += 1
        self._streams_idle.clear()
        try:
            # Headers go out at once: a client that waits for them knows it is subscribed, so it
            # cannot miss an event emitted right after (see OccClient.subscribe_events).
            await stream.send_initial_metadata()
            try:
                async for item in sub:
                    await stream.send_message(reply(item))
            except SubscriberOverflow:
                await stream.send_trailing_metadata(
                    status=Status.RESOURCE_EXHAUSTED,
                    status_message="subscriber too slow: its queue overflowed and it was dropped; "
                    "subscribe again",
                )
                return
            await stream.send_trailing_metadata()
        finally:
            fanout.unsubscribe(sub)
            self._active_streams -= 1
            if self._active_streams == 0:
                self._streams_idle.set()


def error_detail(reason: str) -> bytes:
    """`reason` as bounded UTF-8 for the trailing metadata of a failed transition."""
    data = reason.encode("utf-8", "replace")
    if len(data) <= ERROR_DETAIL_LIMIT:
        return data
    return data[: ERROR_DETAIL_LIMIT - 3].decode("utf-8", "ignore").encode() + b"..."


__all__ = [
    "CALLBACK_NAMES",
    "CONTROL_PORT_ENV",
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_HOST",
    "OccHandler",
    "OccTask",
]
