"""The append-only audit log: every event the core publishes, one JSON object per line.

Format: `<state dir>/events.jsonl`, UTF-8, one `events.Event` per line in the protobuf JSON mapping
(camelCase field names as in events.proto, e.g. `{"timestamp": "...", "timestampNano": "...",
"environmentEvent": {...}}`; 64-bit integers are strings, as the JSON mapping specifies). Lines are
only ever appended; a crash can at worst cut the last line short.

Why JSON lines rather than length-delimited protobuf: operators read and grep it during an
incident, and any tool can parse it. Writing never blocks the event loop: a pump task turns events
into lines in memory, and a writer task hands whatever has accumulated to a thread in one write.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import TextIO

from aliecs.events import Event, EventBus, SubscriberOverflow, Subscription
from aliecs.server.events import to_proto

log = logging.getLogger(__name__)

AUDIT_FILE = "events.jsonl"


class AuditLog:
    def __init__(self, bus: EventBus, path: Path) -> None:
        self.bus = bus
        self.path = path
        self.written = 0
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._file: TextIO | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = await asyncio.to_thread(open, self.path, "a", encoding="utf-8")
        self._subscription = self.bus.subscribe()
        self._tasks = [
            asyncio.create_task(self._pump(), name="aliecs-audit-pump"),
            asyncio.create_task(self._writer(), name="aliecs-audit-writer"),
        ]

    def record(self, event: Event) -> None:
        """Append an event published before the log started (the core's start)."""
        self._pending.append(json.dumps(to_proto(event).to_dict(), separators=(",", ":")) + "\n")
        self._wake.set()

    async def _pump(self) -> None:
        while True:
            assert self._subscription is not None
            try:
                async for event in self._subscription:
                    self.record(event)
                break
            except SubscriberOverflow as exc:
                log.error("audit log fell behind, some events are missing from it: %s", exc)
                self._subscription = self.bus.subscribe()
        self._closing = True
        self._wake.set()

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                await asyncio.to_thread(self._write, "".join(batch))
                self.written += len(batch)
            if self._closing and not self._pending:
                return

    def _write(self, text: str) -> None:
        assert self._file is not None
        self._file.write(text)
        self._file.flush()

    async def stop(self) -> None:
        """Write every event published so far, then close the file."""
        if self._subscription is not None:
            self._subscription.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._file is not None:
            await asyncio.to_thread(self._file.close)
            self._file = None
