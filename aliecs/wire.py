"""Bounded, strict reading of gRPC requests for the servers aliecs runs (control API, OCC library).

The size of a request is bounded before its body is read by the server itself
(`aliecs.grpcserver.GrpcServer`, at `MAX_MESSAGE_BYTES`). What arrives is then decoded here, strictly:
betterproto's decoder accepts length-delimited fields that run past the end of the message and
raises arbitrary exceptions on garbage, which grpclib turns into UNKNOWN "Internal Server Error".
So the servers use `RequestCodec`, which hands the request's bytes over undecoded, and
`recv_request` checks the protobuf wire format strictly (every tag, varint and length inside the
message, nesting bounded) and decodes it, answering INVALID_ARGUMENT with a short message for
anything malformed. Large requests are decoded in a thread so the event loop keeps serving other
calls and signals meanwhile.

`excerpt` cuts client text before it is echoed into an error: a status message travels in an HTTP/2
header whose (pure Python) encoding of a megabyte blocks the event loop for a minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing
from functools import cache
from typing import Any, NamedTuple, TypeVar, cast

import betterproto
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

#: Largest request a server accepts, in bytes. 4 MiB is gRPC's own default receive limit (Go, C++),
#: so clients of the original never send more.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Deepest nesting of messages inside a request: our protocols nest at most 3 levels.
MAX_NESTING = 16
#: Requests larger than this are decoded in a thread: betterproto needs seconds for a message of
#: many small entries (20,000 transition arguments: 7 s), and the event loop must keep answering.
THREAD_DECODE_BYTES = 64 * 1024
#: Longest piece of client text echoed into an error message.
MAX_ECHO = 80

M = TypeVar("M", bound=betterproto.Message)


class WireFormatError(ValueError):
    """A request that is not a well-formed protobuf message of the expected type."""


def excerpt(text: str, limit: int = MAX_ECHO) -> str:
    """`text` quoted for an error message, cut to `limit` characters with its full length noted."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class Undecoded(NamedTuple):
    """A request's bytes and the message type they should hold, as `RequestCodec` hands them over."""

    data: bytes
    message_type: type[betterproto.Message]


class RequestCodec(ProtoCodec):
    """grpclib's protobuf codec, except that requests reach the handler undecoded (`recv_request`).

    A codec is grpclib's public way to decide how bytes become messages; decoding here would be on
    the event loop and as lax as betterproto is.
    """

    def decode(self, data: bytes, message_type: Any) -> Any:
        return Undecoded(bytes(data), message_type)


async def recv_request(stream: Stream[Any, Any]) -> Any:
    """The one request message of a call, strictly decoded (None if the client sent none).

    Takes what `RequestCodec` handed over (a server with grpclib's own codec gives decoded messages,
    returned as they are).
    """
    received = await stream.recv_message()
    if not isinstance(received, Undecoded):
        return received
    if len(received.data) > THREAD_DECODE_BYTES:
        return await asyncio.to_thread(decode, received.data, received.message_type)
    return decode(received.data, received.message_type)


def decode(data: bytes, message_type: type[M]) -> M:
    """Parse `data` as `message_type`, or raise INVALID_ARGUMENT naming what is wrong."""
    name = message_type.__name__
    try:
        check_wire(data, message_type)
        return message_type().parse(data)
    except WireFormatError as exc:
        raise GRPCError(Status.INVALID_ARGUMENT, f"malformed {name}: {exc}") from None
    except Exception as exc:  # betterproto raises whatever its decoding hits
        raise GRPCError(
            Status.INVALID_ARGUMENT, f"malformed {name}: {type(exc).__name__} while decoding"
        ) from None


def check_wire(data: bytes, message_type: type[betterproto.Message] | None, depth: int = 0) -> None:
    """Walk the wire format: every field complete, nested messages of known type checked too."""
    if depth > MAX_NESTING:
        raise WireFormatError(f"messages nested deeper than {MAX_NESTING} levels")
    nested = _nested_types(message_type) if message_type is not None else {}
    end = len(data)
    pos = 0
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireFormatError(f"field number 0 at byte {pos}")
        if wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise WireFormatError(f"field {number} announces {length} bytes, {end - pos} remain")
            if number in nested:
                check_wire(data[pos : pos + length], nested[number], depth + 1)
            pos += length
        else:
            raise WireFormatError(f"field {number} has unsupported wire type {wire_type}")
        if pos > end:
            raise WireFormatError(f"field {number} is cut short")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise WireFormatError("a varint is cut short")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise WireFormatError("a varint is longer than 10 bytes")


@cache
def _nested_types(message_type: type[betterproto.Message]) -> dict[int, type[betterproto.Message] | None]:
    """Field number -> message class of each nested message field (None: a map entry, checked generically)."""
    hints = typing.get_type_hints(message_type)
    found: dict[int, type[betterproto.Message] | None] = {}
    for field in dataclasses.fields(cast(Any, message_type)):  # betterproto messages are dataclasses
        meta = field.metadata.get("betterproto")
        if not isinstance(meta, betterproto.FieldMetadata):
            continue
        if meta.proto_type == betterproto.TYPE_MAP:
            found[meta.number] = None
        elif meta.proto_type == betterproto.TYPE_MESSAGE:
            hint = hints[field.name]
            args = typing.get_args(hint)
            cls = args[0] if args else hint
            if isinstance(cls, type) and issubclass(cls, betterproto.Message):
                found[meta.number] = cls
    return found
