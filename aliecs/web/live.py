"""Live events as server-sent events (`GET /api/events`, optionally `?environment=ID`).

The stream carries the same events as gRPC Subscribe, in the same form as the audit log (the
protobuf JSON mapping of `events.Event`: one of `environmentEvent`, `taskEvent`, `roleEvent`,
`runEvent`, `callEvent`, `coreStartEvent`), plus `lockEvent` when an operator takes or releases an
environment. Filtered by environment it ends after that environment is destroyed, as Subscribe
does. Server-sent events were chosen over a WebSocket because browsers reconnect them by themselves
and they pass through the same authentication as every other GET.

A browser that stops reading is cut off when it falls `QUEUE_LIMIT` events behind (the bus never
waits for it); a comment line every `KEEPALIVE` seconds notices clients that are gone. Closing the
server ends every stream at once (`Context.close_streams`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from aliecs.events import Event, SubscriberOverflow
from aliecs.locks import Lock
from aliecs.server.events import environment_id, to_proto
from aliecs.server.streams import is_destroyed
from aliecs.web import render
from aliecs.web.context import END, context
from aliecs.web.inputs import text_query

routes = web.RouteTableDef()

KEEPALIVE = 15.0
QUEUE_LIMIT = 10_000
MAX_STREAMS = 64  # open event streams per server (each is a bus subscriber)


def event_json(event: Event) -> dict[str, Any]:
    """An event as the audit log writes it (protobuf JSON mapping, camelCase)."""
    return to_proto(event).to_dict()  # type: ignore[no-any-return]


def lock_json(env_id: str, lock: Lock | None) -> dict[str, Any]:
    return {
        "timestamp": str(render.now_ms()),
        "lockEvent": {
            "environmentId": env_id,
            "operator": lock.operator if lock is not None else "",
            "sinceMs": str(lock.since_ms) if lock is not None else "0",
            "locked": lock is not None,
        },
    }


@routes.get("/api/events")
async def events(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    env_id = text_query(request, "environment", 64)
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(item: Any) -> None:
        if queue.qsize() >= QUEUE_LIMIT:
            queue.put_nowait(SubscriberOverflow(f"client fell {QUEUE_LIMIT} events behind"))
        else:
            queue.put_nowait(item)

    def on_lock(lock_env: str, lock: Lock | None) -> None:
        if not env_id or lock_env == env_id:
            put(lock_json(lock_env, lock))

    if ctx.closing.is_set():
        raise web.HTTPServiceUnavailable(text="the core is shutting down")
    if len(ctx.streams) >= MAX_STREAMS:
        raise web.HTTPServiceUnavailable(text=f"too many event streams open (at most {MAX_STREAMS})")
    # Subscribed before the client gets the headers: it sees every event published after it connected.
    subscription = ctx.core.events.subscribe()
    unsubscribe = ctx.core.locks.subscribe(on_lock)
    ctx.streams.add(put)

    async def pump() -> None:
        """Bus events (this environment's only, when filtered; after its destruction, the end)."""
        try:
            async for event in subscription:
                if env_id and environment_id(event) != env_id:
                    continue
                put(event_json(event))
                if env_id and is_destroyed(event, env_id):
                    break
        except SubscriberOverflow as exc:
            put(exc)
        put(END)

    pumping = asyncio.create_task(pump(), name="web-events")
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(b": aliecs events\n\n")
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if item is END:
                break
            if isinstance(item, SubscriberOverflow):
                await response.write(f"event: overflow\ndata: {json.dumps(str(item))}\n\n".encode())
                break
            await response.write(f"data: {json.dumps(item, separators=(',', ':'))}\n\n".encode())
        await response.write_eof()
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        ctx.streams.discard(put)
        unsubscribe()
        subscription.close()
        pumping.cancel()
        await asyncio.gather(pumping, return_exceptions=True)
    return response
