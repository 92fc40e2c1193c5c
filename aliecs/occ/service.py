"""The gRPC side of an OCC task: ``occ_pb.Occ`` served over a :class:`~aliecs.occ.task.TaskStateMachine`.

What the protocol adds to the state machine, and why:

- Requests are bounded (`aliecs.wire.MAX_MESSAGE_BYTES`, 4 MiB, by `aliecs.grpcserver.GrpcServer`) and
  strictly decoded, large ones in a thread (`aliecs.wire.recv_request`), so a huge transition never
  makes the task deaf to GetState or to SIGTERM; client text echoed in errors is cut short.
- A refused transition is a gRPC status: INVALID_ARGUMENT for a state mismatch, FAILED_PRECONDITION
  otherwise. A transition that ended in ERROR is a normal reply (``ok=False``, trigger DEVICE_ERROR)
  whose trailing metadata says why (`ERROR_DETAIL_METADATA`): TransitionReply has no room for it and
  must stay wire-compatible with the original.
- After EXIT the task is told to stop only once the EXIT reply (trailers included) has been handed to
  the transport, so the executor sees ``ok`` and then a clean exit with code 0.
- Each stream subscriber has its own bounded queue: a slow one is cut off with RESOURCE_EXHAUSTED
  instead of stalling the others, and a vanished one is forgotten when grpclib cancels its handler.
  Headers go out as soon as the subscriber is registered, so a client that waits for them cannot miss
  an event emitted right after.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, TypeVar

from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from aliecs.broadcast import Broadcast, SubscriberOverflow
from aliecs.generated import occ_pb
from aliecs.grpcservice import CallHandler, routes
from aliecs.occ.states import DONE
from aliecs.occ.task import TaskStateMachine, TransitionOutcome, TransitionRefusedError
from aliecs.wire import recv_request

#: Trailing metadata of a Transition reply that ended in ERROR: why (UTF-8, at most ERROR_DETAIL_LIMIT
#: bytes). The TransitionReply message has no room for it and must stay wire-compatible with the
#: original; a client that does not know this key ignores it.
ERROR_DETAIL_METADATA = "aliecs-error-detail-bin"
ERROR_DETAIL_LIMIT = 2048

T = TypeVar("T")

# betterproto 2.0.0b7 enum members look like plain ints to mypy; converting them once gives values
# that type-check where the generated messages expect the enum type.
_TRIGGER_EXECUTOR = occ_pb.StateChangeTrigger(occ_pb.StateChangeTrigger.EXECUTOR)
_TRIGGER_DEVICE_ERROR = occ_pb.StateChangeTrigger(occ_pb.StateChangeTrigger.DEVICE_ERROR)
_STATE_STABLE = occ_pb.StateType(occ_pb.StateType.STATE_STABLE)


def error_detail(reason: str) -> bytes:
    """`reason` as bounded UTF-8 for the trailing metadata of a failed transition."""
    data = reason.encode("utf-8", "replace")
    if len(data) <= ERROR_DETAIL_LIMIT:
        return data
    return data[: ERROR_DETAIL_LIMIT - 3].decode("utf-8", "ignore").encode() + b"..."


def transition_reply(outcome: TransitionOutcome) -> occ_pb.TransitionReply:
    return occ_pb.TransitionReply(
        trigger=_TRIGGER_EXECUTOR if outcome.ok else _TRIGGER_DEVICE_ERROR,
        state=str(outcome.state),
        transition_event=outcome.event,
        ok=outcome.ok,
    )


class OccService(occ_pb.OccBase):
    """``occ_pb.Occ`` over one task's state machine, on the generated ``OccBase``.

    GetState is the generated method. Transition and the two streams are handlers of the call
    (`aliecs.grpcservice.routes`): Transition sends its trailers itself (the error detail, and
    before the task may stop after EXIT), the streams send headers at once and end with
    RESOURCE_EXHAUSTED after part of a stream, none of which a generated method can do. Paths,
    cardinalities and message types all come from the generated mapping.
    """

    def __init__(self, task: TaskStateMachine) -> None:
        self.task = task
        self._active_streams = 0
        self._streams_idle = asyncio.Event()
        self._streams_idle.set()

    async def wait_streams_idle(self) -> None:
        """Return once no stream is open (they end by themselves once the task's broadcasts close)."""
        await self._streams_idle.wait()

    def __mapping__(self) -> dict[str, Handler]:
        calls: dict[str, CallHandler] = {
            "Transition": self._rpc_transition,
            "EventStream": self._stream_call(
                self.task.events, lambda kind: occ_pb.EventStreamReply(event=occ_pb.DeviceEvent(type=kind))
            ),
            "StateStream": self._stream_call(
                self.task.states, lambda state: occ_pb.StateStreamReply(type=_STATE_STABLE, state=str(state))
            ),
        }
        return routes(super().__mapping__(), calls=calls)

    async def get_state(self, get_state_request: occ_pb.GetStateRequest) -> occ_pb.GetStateReply:
        return occ_pb.GetStateReply(state=str(self.task.state), pid=os.getpid())

    async def _rpc_transition(self, stream: Stream[occ_pb.TransitionRequest, occ_pb.TransitionReply]) -> None:
        request = await recv_request(stream)
        if request is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "empty Transition request")
        args = {entry.key: entry.value for entry in request.arguments}
        try:
            try:
                outcome = await self.task.transition(request.src_state, request.transition_event, args)
            except TransitionRefusedError as exc:
                status = Status.INVALID_ARGUMENT if exc.state_mismatch else Status.FAILED_PRECONDITION
                raise GRPCError(status, str(exc)) from None
            await stream.send_message(transition_reply(outcome))
            # Trailers are sent here rather than by grpclib after we return, so that shutting down
            # after EXIT cannot cut the reply short. A failed transition says why in them.
            detail = error_detail(outcome.error) if outcome.error else None
            await stream.send_trailing_metadata(metadata={ERROR_DETAIL_METADATA: detail} if detail else None)
        finally:
            if self.task.state is DONE:
                self.task.request_stop()

    def _stream_call(self, fanout: Broadcast[T], reply: Callable[[T], Any]) -> CallHandler:
        """The handler of an EventStream or StateStream call: `fanout`'s items as `reply` messages."""

        async def handle(stream: Stream[Any, Any]) -> None:
            await recv_request(stream)
            await self._serve_stream(stream, fanout, reply)

        return handle

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


__all__ = ["ERROR_DETAIL_LIMIT", "ERROR_DETAIL_METADATA", "OccService", "error_detail"]
