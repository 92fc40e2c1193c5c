"""The gRPC server aliecs runs its services on: grpclib's, plus a request bound and a real close.

grpclib 0.4's `Server` lacks two things a control system needs, and offers no public hook for them:

- **A request bound before the body.** grpclib reads a request by trusting its 5-byte length
  prefix: a client announcing 4 GiB makes the server buffer whatever arrives until then, and an
  abandoned half-sent message is never freed. Here every accepted HTTP/2 stream's `recv_data` (what
  grpclib's message reader calls, once for the prefix and once for the body: the gRPC framing
  itself) is wrapped so that a prefix announcing more than `max_request_bytes` is refused with
  RESOURCE_EXHAUSTED before a byte of the body is read, a compressed message with UNIMPLEMENTED,
  and a stream that ends early with INVALID_ARGUMENT (grpclib would say UNKNOWN).
- **Closing the connections.** `Server.close()` stops listening and cancels running handlers but
  leaves accepted connections open, and they keep accepting new calls. A task served inside a
  longer-lived program (tests, an embedded core) must really be gone after `close()`.

Both need the server's connection factory, which grpclib keeps private. `GrpcServer` therefore
builds the asyncio server itself from grpclib's public protocol pieces (`grpclib.protocol.H2Protocol`,
`grpclib.server.Handler`, `grpclib.config.Configuration`), as `grpclib.server.Server.start` does, and
remembers its connections. It still *is* a `grpclib.server.Server` (same constructor, `start`,
`close`, `wait_closed`, `async with`, and `grpclib.events.listen` works on it), so it drops in where
a plain Server was. The strict decoding of the request's bytes stays in `aliecs.wire`.

A connection that ends leaves reference cycles only the cyclic collector frees; the server asks
for a collection when one ends, at a bounded pace (`aliecs.gc_pacing`), so that clients coming and
going (GUIs, `coconut` calls, Subscribe streams) do not grow a core that runs for months.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import weakref
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import h2.config
from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.encoding.base import CodecBase
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError
from grpclib.protocol import H2Protocol
from grpclib.server import Handler, Server

import aliecs.http2  # noqa: F401 (bounds what each connection keeps of its closed streams)
from aliecs.gc_pacing import GarbagePacer
from aliecs.wire import MAX_MESSAGE_BYTES

__all__ = ["GrpcServer"]

_PREFIX = 5  # gRPC message framing: 1 byte "compressed" flag, 4 bytes big-endian length


def _method_of(headers: Collection[tuple[str, str]]) -> str:
    for name, value in headers:
        if name == ":path":
            return value.rsplit("/", 1)[-1] or value
    return "request"


def bounded_reader(
    recv_data: Callable[[int], Awaitable[bytes]], method: str, max_bytes: int
) -> Callable[[int], Awaitable[bytes]]:
    """`recv_data` of one request stream, refusing an announced message above `max_bytes`.

    Reads alternate between a 5-byte prefix and the body it announces (the gRPC framing); the
    prefix is checked as it is read, so an oversized body is never waited for.
    """
    expect_prefix = True

    async def recv(size: int) -> bytes:
        nonlocal expect_prefix
        try:
            data = await recv_data(size)
        except AssertionError:  # grpclib's way of saying the stream ended before `size` bytes
            what = (
                "the message prefix is cut short" if expect_prefix else f"{size} bytes announced, fewer sent"
            )
            raise GRPCError(Status.INVALID_ARGUMENT, f"malformed {method} request: {what}") from None
        if not expect_prefix:
            expect_prefix = True
            return data
        if len(data) == _PREFIX and size == _PREFIX:
            compressed, length = struct.unpack(">?I", data)
            if compressed:
                msg = "compressed requests are not supported: send them uncompressed"
                raise GRPCError(Status.UNIMPLEMENTED, msg)
            if length > max_bytes:
                raise GRPCError(
                    Status.RESOURCE_EXHAUSTED,
                    f"{method} request of {length} bytes exceeds this server's limit of {max_bytes} bytes",
                )
            expect_prefix = length == 0
        return data

    return recv


class _BoundedHandler(Handler):
    """grpclib's per-connection request handler, bounding each request stream it accepts."""

    def __init__(self, max_bytes: int, *args: Any) -> None:
        super().__init__(*args)
        self.max_bytes = max_bytes

    def accept(self, stream: Any, headers: Any, release_stream: Callable[[], Any]) -> None:
        stream.recv_data = bounded_reader(stream.recv_data, _method_of(headers), self.max_bytes)
        super().accept(stream, headers, release_stream)


class _Connection(H2Protocol):
    """grpclib's HTTP/2 protocol, telling the server's pacer when the connection has ended."""

    def __init__(self, pacer: GarbagePacer, *args: Any) -> None:
        super().__init__(*args)
        self.pacer = pacer

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self.pacer.garbage_made()


class GrpcServer(Server):
    """A grpclib `Server` with bounded requests and a `close()` that closes connections (see above).

    `port` is the port actually bound (useful with port 0).
    """

    def __init__(
        self,
        handlers: Collection[Any],
        *,
        codec: CodecBase | None = None,
        config: Configuration | None = None,
        max_request_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(handlers, codec=codec, config=config)
        self.max_request_bytes = max_request_bytes
        self._routes: dict[str, Any] = {}
        for handler in handlers:
            self._routes.update(handler.__mapping__())
        self._message_codec = codec or ProtoCodec()
        self._server_config = (config or Configuration()).__for_server__()
        self._h2_settings = h2.config.H2Configuration(
            client_side=False,
            header_encoding="ascii",
            validate_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_inbound_headers=False,
            normalize_outbound_headers=False,
        )
        self._listener: asyncio.Server | None = None
        self._request_handlers: weakref.WeakSet[Handler] = weakref.WeakSet()
        self._connections: weakref.WeakSet[H2Protocol] = weakref.WeakSet()
        self.garbage = GarbagePacer()

    def _connection(self) -> H2Protocol:
        handler = _BoundedHandler(
            self.max_request_bytes, self._routes, self._message_codec, None, self.__dispatch__
        )
        self._request_handlers.add(handler)
        protocol = _Connection(self.garbage, handler, self._server_config, self._h2_settings)
        self._connections.add(protocol)
        return protocol

    async def start(  # type: ignore[override]
        self,
        host: str | None = None,
        port: int = 0,
        *,
        sock: socket.socket | None = None,
        backlog: int = 100,
        reuse_address: bool | None = None,
    ) -> None:
        """Listen on `host`:`port` (port 0: any free port, see `port`), or on the bound socket `sock`."""
        if self._listener is not None:
            raise RuntimeError("the server is already started")
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._listener = await loop.create_server(self._connection, sock=sock, backlog=backlog)
        else:
            self._listener = await loop.create_server(
                self._connection, host, port, backlog=backlog, reuse_address=reuse_address
            )

    @property
    def port(self) -> int | None:
        """The port bound, or None before `start` (or after `close`)."""
        listener = self._listener
        if listener is None or not listener.sockets:
            return None
        return int(listener.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop listening, cancel running calls and close every accepted connection."""
        if self._listener is None:
            raise RuntimeError("the server is not started")
        self._listener.close()
        self.garbage.cancel()
        for handler in list(self._request_handlers):
            handler.close()
        for protocol in list(self._connections):
            processor = getattr(protocol, "processor", None)  # set once the connection is made
            if processor is not None:
                processor.close("server closed")

    async def wait_closed(self) -> None:
        """Wait until the listener is closed and the cancelled calls have ended."""
        if self._listener is None:
            raise RuntimeError("the server is not started")
        await self._listener.wait_closed()
        waits = [handler.wait_closed() for handler in list(self._request_handlers)]
        if waits:
            with contextlib.suppress(Exception):
                await asyncio.gather(*waits)
