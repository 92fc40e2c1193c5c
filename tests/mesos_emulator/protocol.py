"""The wire pieces the emulated master and agents share: call errors, field access, events, streams.

Field names, enum values and messages follow apache/mesos (include/mesos/v1/*.proto, the JSON mapping
its HTTP APIs use, and the error texts of src/master/http.cpp and src/common/validation.cpp), so that a
client written against real Mesos sees the same answers here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from aliecs.mesos.recordio import encode

log = logging.getLogger("mesos_emulator")

JSON = dict[str, Any]

APPLICATION_JSON = "application/json"

TASK_STATES = frozenset(
    {
        "TASK_STAGING",
        "TASK_STARTING",
        "TASK_RUNNING",
        "TASK_KILLING",
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_UNREACHABLE",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
        "TASK_UNKNOWN",
    }
)
# protobuf::isTerminalState in Mesos (TASK_LOST is terminal; TASK_UNREACHABLE is not).
TERMINAL_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_LOST",
        "TASK_ERROR",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)

# Events a stream may hold before its reader is considered stuck and the stream is closed.
MAX_QUEUED_EVENTS = 100_000
# Request bodies are Calls: a LAUNCH of a thousand tasks is well under this.
MAX_BODY_BYTES = 32 * 1024 * 1024


class CallError(Exception):
    """A call refused with an HTTP status and a message, as Mesos answers it (text/plain body)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.message)


def invalid(message: str, what: str = "scheduler::Call") -> CallError:
    """A call that parsed but breaks a rule of the API: 400, worded as Mesos's validation does."""
    return CallError(400, f"Failed to validate {what}: {message}")


def bad_json(message: str, what: str = "Call") -> CallError:
    return CallError(400, f"Failed to convert JSON into {what} protobuf: {message}")


async def read_call(request: web.Request, what: str = "Call") -> JSON:
    """The JSON body of a call, checked as Mesos checks it (content type, JSON, an object)."""
    content_type = request.headers.get("Content-Type")
    if content_type is None:
        raise CallError(400, "Expecting 'Content-Type' to be present")
    if content_type.split(";")[0].strip().lower() != APPLICATION_JSON:
        # Real Mesos also takes application/x-protobuf; the emulator speaks JSON only.
        raise CallError(
            415, f"Expecting 'Content-Type' of {APPLICATION_JSON} (the emulator speaks JSON only)"
        )
    try:
        body = await request.read()  # bounded by the application's client_max_size (see `listen`)
    except web.HTTPRequestEntityTooLarge:
        raise CallError(413, f"Request body exceeds {MAX_BODY_BYTES} bytes") from None
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CallError(400, f"Failed to parse body into JSON: {exc}") from None
    if not isinstance(value, dict):
        raise bad_json(f"Expecting a JSON object, got {type(value).__name__}", what)
    return value


def accepts_json(request: web.Request) -> bool:
    """Whether the request's Accept header allows application/json (absent means anything)."""
    accept = request.headers.get("Accept")
    if accept is None:
        return True
    for item in accept.split(","):
        media = item.split(";")[0].strip().lower()
        if media in ("*/*", "application/*", APPLICATION_JSON):
            return True
    return False


# -- field access with Mesos-like messages -------------------------------------------------------


def get_field(obj: Mapping[str, Any], name: str, kind: type, where: str, required: bool = True) -> Any:
    """`obj[name]` checked to be of `kind`; `where` is the field path for messages ("subscribe.")."""
    if name not in obj or obj[name] is None:
        if required:
            raise invalid(f"Not initialized: {where}{name}")
        return None
    value = obj[name]
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        expected = {dict: "object", list: "array", str: "string", float: "number", int: "integer"}
        raise bad_json(
            f"Not expecting a JSON {_json_kind(value)} for field '{where}{name}' "
            f"(expecting a JSON {expected.get(kind, kind.__name__)})"
        )
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}.get(
        type(value), "null"
    )


def id_value(obj: Mapping[str, Any], name: str, where: str, required: bool = True) -> str | None:
    """The `value` of an ID message (`{"value": "..."}`) at `obj[name]`."""
    message = get_field(obj, name, dict, where, required)
    if message is None:
        return None
    value = get_field(message, "value", str, f"{where}{name}.")
    if not value:
        raise invalid(f"'{where}{name}.value' must not be empty")
    if len(value) > 1024:
        raise invalid(f"'{where}{name}.value' is longer than 1024 characters")
    return str(value)


def enum(obj: Mapping[str, Any], name: str, allowed: frozenset[str] | set[str], where: str) -> str:
    value = get_field(obj, name, str, where)
    if value not in allowed:
        raise bad_json(f"Failed to find enum for '{value}' (field '{where}{name}')")
    return str(value)


def b64decode(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise bad_json(
            f"Not expecting a JSON {_json_kind(text)} for field '{where}' (expecting base64 bytes)"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_json(f"Failed to decode base64 bytes of field '{where}'") from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_uuid() -> bytes:
    """A status update uuid: 16 raw bytes, as id::UUID::toBytes gives."""
    return uuid.uuid4().bytes


def check_uuid(raw: bytes, where: str, what: str = "scheduler::Call") -> None:
    if len(raw) != 16:
        raise invalid(f"Invalid UUID in '{where}': expected 16 bytes, got {len(raw)}", what)


def ident(value: str) -> JSON:
    return {"value": value}


def task_status(
    task_id: str,
    state: str,
    source: str,
    *,
    agent_id: str | None = None,
    executor_id: str | None = None,
    reason: str | None = None,
    message: str | None = None,
    reliable: bool = False,
) -> JSON:
    """A TaskStatus generated by the master or an agent (only agents' are reliable: they carry a uuid)."""
    status: JSON = {"task_id": ident(task_id), "state": state, "source": source, "timestamp": time.time()}
    if agent_id:
        status["agent_id"] = ident(agent_id)
    if executor_id:
        status["executor_id"] = ident(executor_id)
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if reliable:
        status["uuid"] = b64encode(new_uuid())
    return status


# -- event streams ------------------------------------------------------------------------------


class EventStream:
    """One subscriber's RecordIO event stream (a scheduler's or an executor's).

    Events are queued by synchronous code and written in order by the request handler that owns the
    streaming response (`serve`), so nothing sending an event ever waits on a slow reader. A reader
    that falls `MAX_QUEUED_EVENTS` behind is disconnected.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.stream_id = str(uuid.uuid4())
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = asyncio.Event()

    def send(self, event: JSON) -> None:
        if self.closed.is_set():
            return
        if self._queue.qsize() >= MAX_QUEUED_EVENTS:
            log.warning("%s: reader is %d events behind: closing its stream", self.name, MAX_QUEUED_EVENTS)
            self.close()
            return
        self._queue.put_nowait(encode(json.dumps(event).encode()))

    def close(self) -> None:
        """End the stream (the HTTP response finishes after the events already queued)."""
        if not self.closed.is_set():
            self.closed.set()
            self._queue.put_nowait(None)

    async def serve(self, request: web.Request, headers: Mapping[str, str]) -> web.StreamResponse:
        """Stream the events to the client until `close()` or the client goes away."""
        response = web.StreamResponse(status=200, headers={"Content-Type": APPLICATION_JSON, **headers})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            while True:
                record = await self._queue.get()
                if record is None:
                    break
                await response.write(record)
            await response.write_eof()
        except ConnectionError:
            pass  # the subscriber went away; the owner learns it from `closed`
        finally:
            self.closed.set()
        return response


def event(kind: str, **payload: Any) -> JSON:
    """An Event of `kind` ("OFFERS", ...) with its union member named after the kind in lower case."""
    body: JSON = {"type": kind}
    body.update(payload)
    return body


async def listen(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0: a free port); returns the runner and the bound port.

    Subscribers that hang up are noticed at once (handler cancellation), as a real master notices a
    broken subscription connection.
    """
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        sock = socket.create_server((host, port))
    except OSError:
        await runner.cleanup()
        raise
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, sock.getsockname()[1]
