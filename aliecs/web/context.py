"""What every request handler needs: the core, the tracker, the open event streams."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from aliecs.api import Core
from aliecs.web.tracker import Tracker

END = object()  # queued into an event stream to end it


@dataclass
class Context:
    core: Core
    tracker: Tracker
    token: str | None = None
    instance_name: str = "aliecs"
    # Set when the server closes: no new event stream starts, the open ones are ended.
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    # The `put` of every open event stream (aliecs.web.live), to end them at shutdown.
    streams: set[Callable[[Any], None]] = field(default_factory=set)

    def close_streams(self) -> None:
        """End every event stream now, so shutdown never waits on a browser."""
        self.closing.set()
        for put in list(self.streams):
            put(END)


CONTEXT = web.AppKey("aliecs_context", Context)


def context(request: web.Request) -> Context:
    return request.app[CONTEXT]
