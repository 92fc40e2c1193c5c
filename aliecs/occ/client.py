"""OCC client: what the executor (and peanut) use to drive one controlled process.

One grpclib ``Channel`` per client, opened lazily on the first call (so a client can be created before
the process listens) and reconnected by grpclib after a failure. Every failure surfaces as an
:class:`~aliecs.occ.errors.OccError` subclass whose message names the RPC and the address, because
the executor's log line is often all an operator has to go on.

Streams are exposed twice: :meth:`OccClient.subscribe_events` / :meth:`OccClient.subscribe_states`
return a :class:`Subscription` whose ``async with`` returns only once the process has registered
the subscriber (no event emitted afterwards can be missed), and :meth:`OccClient.event_stream` /
:meth:`OccClient.state_stream` are plain async iterators on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from grpclib.client import Channel, Stream
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from aliecs.addresses import parse_address as split_address
from aliecs.generated import occ_pb
from aliecs.grpcservice import rpc_routes
from aliecs.occ.errors import (
    OccDeadlineError,
    OccError,
    OccRejectedError,
    OccStreamOverflowError,
    OccUnreachableError,
)
from aliecs.occ.server import DEFAULT_CONTROL_PORT
from aliecs.occ.service import ERROR_DETAIL_LIMIT, ERROR_DETAIL_METADATA

DEFAULT_TIMEOUT = 30.0

#: The RPCs of ``occ_pb.Occ`` as the generated ``OccBase`` declares them. The client opens each call on
#: its route rather than through the generated ``OccStub``, whose methods hide the call: Transition
#: needs the reply's trailing metadata (the error detail), a subscription the moment headers arrive,
#: and the stub asserts where a reply is missing instead of saying so.
_OCC = rpc_routes(occ_pb.OccBase)

T = TypeVar("T")


@dataclass(frozen=True)
class TransitionResult:
    """The process's answer to a Transition: where it ended up and whether that was the plan.

    ``trigger`` is EXECUTOR (reached the expected state), DEVICE_INTENTIONAL (chose another state) or
    DEVICE_ERROR (ended in ERROR); ``event`` echoes the requested event.
    """

    state: str
    ok: bool
    trigger: str
    event: str
    #: Why the process ended in ERROR, in its own words (e.g. the callback's exception), when it says.
    error: str = ""


def _decode_detail(value: Any) -> str:
    """The error detail of a failed transition: bounded text on one line per reason."""
    data = value if isinstance(value, bytes) else str(value).encode()
    return data[:ERROR_DETAIL_LIMIT].decode("utf-8", "replace").strip()


def enum_name(value: Any) -> str:
    """Name of a betterproto enum value; values unknown to our .proto become ``UNKNOWN(<n>)``.

    betterproto keeps unknown wire values as pseudo-members whose ``name`` is None, so a newer peer
    never breaks decoding but must not print as "None" either.
    """
    name = getattr(value, "name", None)
    return str(name) if name else f"UNKNOWN({int(value)})"


def parse_address(address: str, default_port: int = DEFAULT_CONTROL_PORT) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port``, ``host``, or ``:port``) into host and port; ValueError if bad."""
    return split_address(address, default_port, what="OCC address")


class OccClient:
    """Client of one process's ``occ_pb.Occ`` service at ``host:port``.

    ``timeout`` is the default deadline (seconds) of unary calls and of stream subscription; each call
    can override it. Use ``async with OccClient(...)`` or call :meth:`close`.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = DEFAULT_CONTROL_PORT, *, timeout: float = DEFAULT_TIMEOUT
    ):
        self.host = host
        self.port = port
        self.timeout = timeout
        self._channel: Channel | None = None

    @classmethod
    def from_address(cls, address: str, *, timeout: float = DEFAULT_TIMEOUT) -> OccClient:
        """Client for ``host:port`` as typed by a person (see :func:`parse_address`)."""
        host, port = parse_address(address)
        return cls(host, port, timeout=timeout)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"OccClient({self.address!r})"

    def _get_channel(self) -> Channel:
        if self._channel is None:
            self._channel = Channel(self.host, self.port)
        return self._channel

    def _open(self, rpc: str, timeout: float | None = None) -> Stream[Any, Any]:
        """A call of `rpc` (its name in occ.proto), not yet started."""
        route = _OCC[rpc]
        return self._get_channel().request(
            route.path, route.cardinality, route.request_type, route.reply_type, timeout=timeout
        )

    async def close(self) -> None:
        """Close the connection; the client can still be used again afterwards (it reconnects)."""
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    async def __aenter__(self) -> OccClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- unary RPCs ------------------------------------------------------------------------------

    # The ``timeout`` parameters below become gRPC deadlines sent to the process (grpc-timeout header), which
    # asyncio.timeout() around the call could not do; hence the ASYNC109 exemptions.

    async def get_state(self, timeout: float | None = None) -> tuple[str, int]:
        """The process's current state and pid."""
        reply: occ_pb.GetStateReply = await self._unary("GetState", occ_pb.GetStateRequest(), timeout)
        return reply.state, reply.pid

    async def transition(
        self,
        src_state: str,
        event: str,
        args: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> TransitionResult:
        """Request ``event`` from ``src_state`` with flat ``args``; returns once the process settled.

        A refused request (state mismatch, event not allowed, process DONE) raises OccRejectedError
        with the process's explanation; a callback failure is *not* an exception: it comes back as
        ``ok=False`` with state ERROR, which is the process's legitimate answer.
        """
        request = occ_pb.TransitionRequest(
            src_state=src_state,
            transition_event=event,
            arguments=[occ_pb.ConfigEntry(key=str(k), value=str(v)) for k, v in (args or {}).items()],
        )
        trailers: dict[str, Any] = {}
        reply: occ_pb.TransitionReply = await self._unary(
            "Transition", request, timeout, what=f"{event} from {src_state}", trailers=trailers
        )
        detail = trailers.get(ERROR_DETAIL_METADATA, b"")
        return TransitionResult(
            state=reply.state,
            ok=reply.ok,
            trigger=enum_name(reply.trigger),
            event=reply.transition_event,
            error=_decode_detail(detail) if not reply.ok else "",
        )

    async def _unary(
        self,
        rpc: str,
        request: Any,
        deadline: float | None,
        what: str = "",
        trailers: dict[str, Any] | None = None,
    ) -> Any:
        """One unary call; `trailers`, when given, receives the reply's trailing metadata."""
        limit = self.timeout if deadline is None else deadline
        with self._translate(rpc, limit, what):
            async with self._open(rpc, timeout=limit) as stream:
                await stream.send_message(request, end=True)
                reply = await stream.recv_message()
                if trailers is not None and reply is not None:
                    await stream.recv_trailing_metadata()
                    trailers.update(stream.trailing_metadata or {})
        if reply is None:
            raise OccError(f"{rpc} on {self.address}: the process closed the call without a reply")
        return reply

    # -- streams ---------------------------------------------------------------------------------

    def subscribe_events(self, timeout: float | None = None) -> Subscription[str]:
        """Subscribe to device events; iterating yields DeviceEventType names (``"END_OF_STREAM"``)."""
        return Subscription(
            self,
            "EventStream",
            occ_pb.EventStreamRequest(),
            lambda reply: enum_name(reply.event.type),
            self.timeout if timeout is None else timeout,
        )

    def subscribe_states(self, timeout: float | None = None) -> Subscription[str]:
        """Subscribe to state changes; iterating yields state names. The stream ends after DONE."""
        return Subscription(
            self,
            "StateStream",
            occ_pb.StateStreamRequest(),
            lambda reply: reply.state,
            self.timeout if timeout is None else timeout,
        )

    async def event_stream(self) -> AsyncIterator[str]:
        """Device event type names as the process emits them, until it ends the stream (DONE)."""
        async with self.subscribe_events() as events:
            async for event in events:
                yield event

    async def state_stream(self) -> AsyncIterator[str]:
        """State names as the process changes state, until it ends the stream (DONE)."""
        async with self.subscribe_states() as states:
            async for state in states:
                yield state

    # -- errors ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self, rpc: str, timeout: float | None, what: str = "") -> Iterator[None]:
        """Turn grpclib/socket failures into OccError subclasses naming the RPC and the address."""
        call = f"{rpc} ({what})" if what else rpc
        where = self.address
        try:
            yield
        except GRPCError as exc:
            detail = exc.message or ""
            status = exc.status.name
            if exc.status is Status.DEADLINE_EXCEEDED:
                raise OccDeadlineError(
                    f"{call} on {where}: deadline exceeded after {timeout:g}s; the process is hung or its "
                    "callback is slower than the deadline"
                ) from exc
            if exc.status is Status.UNAVAILABLE:
                raise OccUnreachableError(f"{call} on {where}: process unavailable: {detail}") from exc
            cls = OccStreamOverflowError if exc.status is Status.RESOURCE_EXHAUSTED else OccRejectedError
            raise cls(f"{call} on {where} rejected ({status}): {detail}", status, detail) from exc
        except TimeoutError as exc:  # before OSError: TimeoutError is one of its subclasses
            raise OccDeadlineError(
                f"{call} on {where}: no answer within {timeout:g}s (deadline exceeded); the process is hung, "
                "overloaded, or its callback is slower than the deadline"
            ) from exc
        except StreamTerminatedError as exc:
            raise OccUnreachableError(
                f"{call} on {where}: connection lost ({exc}); the process probably exited or crashed"
            ) from exc
        except ConnectionRefusedError as exc:
            raise OccUnreachableError(
                f"{call}: nothing listens on {where} (connection refused); is the process running, and is "
                f"{self.port} its control port?"
            ) from exc
        except OSError as exc:
            raise OccUnreachableError(f"{call}: cannot reach {where}: {exc.strerror or exc}") from exc
        except ProtocolError as exc:
            raise OccError(f"{call} on {where}: gRPC protocol error: {exc}") from exc


class Subscription(Generic[T]):
    """An open EventStream or StateStream.

    ``async with`` returns once the process has acknowledged the subscription (it sends headers right
    after registering the subscriber), then ``async for`` yields converted items until the process ends
    the stream. Leaving the block cancels the stream on the server side.
    """

    def __init__(
        self,
        client: OccClient,
        rpc: str,
        request: Any,
        convert: Callable[[Any], T],
        timeout: float,
    ) -> None:
        self._client = client
        self._rpc = rpc
        self._request = request
        self._convert = convert
        self._timeout = timeout
        self._stream: Stream[Any, Any] | None = None
        self._finished = False

    async def __aenter__(self) -> Subscription[T]:
        client = self._client
        # No gRPC deadline: it would cut the stream itself; only the handshake is bounded.
        stream = client._open(self._rpc)
        with client._translate(self._rpc, self._timeout):
            await stream.__aenter__()
            self._stream = stream
            try:
                async with asyncio.timeout(self._timeout):
                    await stream.send_message(self._request, end=True)
                    await stream.recv_initial_metadata()
            except BaseException:
                await self.close()
                raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        stream = self._stream
        if stream is None or self._finished:
            raise StopAsyncIteration
        with self._client._translate(self._rpc, self._timeout):
            reply = await stream.recv_message()
            if reply is None:
                self._finished = True
                await stream.recv_trailing_metadata()  # raises GRPCError for a non-OK ending
                raise StopAsyncIteration
        return self._convert(reply)

    async def close(self) -> None:
        """Stop receiving; tells the process to drop this subscriber if the stream is still open."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if not self._finished:
            with contextlib.suppress(Exception):
                await stream.cancel()
        with contextlib.suppress(Exception):
            await stream.__aexit__(None, None, None)
