"""Serving and calling a generated grpclib service: the routes come from the .proto, the bounds are ours.

betterproto generates, per service, a ``<Name>Base`` class whose ``__mapping__`` names every RPC's
path, cardinality and message types and wraps each of the Base's methods (``async def
get_state(self, request) -> reply``) in a handler of the call, and a ``<Name>Stub`` whose methods
make the calls. Our services subclass the Base, so that no path is spelled by hand and a change to
the .proto reaches the server through ``make protos``, and build their mapping with :func:`routes`,
which keeps all the generated mapping says and changes what the generated wrappers cannot do:

- **Strict requests.** A wrapper reads its request with ``stream.recv_message()``; `routes` hands it
  a :class:`StrictStream` whose ``recv_message`` is `aliecs.wire.recv_request` (strict decoding,
  large requests decoded off the event loop; the size is bounded earlier, before the body is read,
  by `aliecs.grpcserver.GrpcServer`), or the service's own reader (the control API adds its field
  limits).
- **Errors mapped in one place** (``guard``, a context manager around every handler), e.g. the
  control API's domain errors to gRPC statuses with messages an operator can act on.
- **Handlers of the call where a method is not enough.** A generated wrapper only sees messages, so
  an RPC that sends trailing metadata with its reply, headers before its first message, a status
  after part of a stream, or that must end a subscription when the call ends (rather than when the
  garbage collector finalises a suspended generator) is served by a handler of the call instead
  (``calls``, keyed by the RPC's name in the .proto). Its path, cardinality and message types still
  come from the generated mapping, and a name that is no RPC of the service fails at once.

Deadlines need nothing here: grpclib enforces the client's deadline around whichever handler runs.
Clients use the generated Stub; one that needs the call itself (trailers, headers) opens it on the
route the generated Base declares (:func:`rpc_routes`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from grpclib.const import Cardinality, Handler
from grpclib.server import Stream

from aliecs.wire import recv_request

__all__ = ["CallHandler", "Route", "StrictStream", "routes", "rpc_name", "rpc_routes"]

#: A handler of one call, as grpclib runs it: it reads the request and sends the replies itself.
CallHandler = Callable[[Stream[Any, Any]], Awaitable[None]]
#: How a service reads the one request of a call (strictly decoded; may raise GRPCError).
Reader = Callable[[Stream[Any, Any]], Awaitable[Any]]


class StrictStream:
    """A server stream whose ``recv_message`` decodes strictly (`reader`, by default
    `aliecs.wire.recv_request`: INVALID_ARGUMENT for garbage) instead of as laxly as betterproto;
    everything else is the stream's own."""

    def __init__(self, stream: Stream[Any, Any], reader: Reader = recv_request) -> None:
        self._stream = stream
        self._reader = reader

    async def recv_message(self) -> Any:
        return await self._reader(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def rpc_name(path: str) -> str:
    """The RPC's name in the .proto from its path: ``/occ_pb.Occ/GetState`` -> ``GetState``."""
    return path.rsplit("/", 1)[-1]


def routes(
    generated: Mapping[str, Handler],
    *,
    reader: Reader = recv_request,
    guard: Callable[[], AbstractContextManager[Any]] | None = None,
    calls: Mapping[str, CallHandler] | None = None,
) -> dict[str, Handler]:
    """A generated Base's ``__mapping__`` with strict requests, `guard` and handlers of the call.

    Each generated wrapper reads its request through a :class:`StrictStream` over `reader`; each RPC
    named in `calls` is served by that handler instead (it reads its request itself). `guard`, when
    given, is entered around every handler. ValueError if `calls` names an RPC the service lacks.
    """
    calls = dict(calls or {})
    known = {rpc_name(path) for path in generated}
    unknown = sorted(set(calls) - known)
    if unknown:
        raise ValueError(
            f"no RPC named {', '.join(unknown)} in this service (it has: {', '.join(sorted(known))})"
        )
    mapping: dict[str, Handler] = {}
    for path, handler in generated.items():
        call = calls.get(rpc_name(path)) or _strict(handler.func, reader)
        if guard is not None:
            call = _guarded(call, guard)
        mapping[path] = Handler(call, handler.cardinality, handler.request_type, handler.reply_type)
    return mapping


def _strict(wrapper: Callable[[Any], Awaitable[None]], reader: Reader) -> CallHandler:
    async def handle(stream: Stream[Any, Any]) -> None:
        await wrapper(StrictStream(stream, reader))

    return handle


def _guarded(call: CallHandler, guard: Callable[[], AbstractContextManager[Any]]) -> CallHandler:
    async def handle(stream: Stream[Any, Any]) -> None:
        with guard():
            await call(stream)

    return handle


class Route(NamedTuple):
    """Where and how to call one RPC: what ``grpclib.client.Channel.request`` takes."""

    path: str
    cardinality: Cardinality
    request_type: type[Any]
    reply_type: type[Any]


def rpc_routes(base: Callable[[], Any]) -> dict[str, Route]:
    """RPC name -> :class:`Route`, as the generated Base class `base` declares them.

    For a client that needs the call itself (trailing metadata, the moment headers arrive), which
    the generated Stub's methods hide; its path and types still come from the .proto.
    """
    return {
        rpc_name(path): Route(path, handler.cardinality, handler.request_type, handler.reply_type)
        for path, handler in base().__mapping__().items()
    }
