"""The executor's outgoing events, numbered and kept until the core acknowledges them.

Task exits and device events happen whether or not a core is listening. Each gets the next sequence
number and stays here until the core says it has everything up to that number, so a core that
reconnects (after a network blip or its own restart) replays what it missed and nothing is lost. The
buffer is bounded: past `limit` unacknowledged events the oldest are dropped, counted and logged,
because an executor must not grow without end while its core is away.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100_000


class EventOutbox:
    """Anything with `tell(message)` can report to it (process actors use it as their listener)."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.last_seq = 0
        self.dropped = 0
        self._events: deque[tuple[int, Any]] = deque()
        self._changed = asyncio.Event()

    def tell(self, message: Any) -> None:
        self.last_seq += 1
        self._events.append((self.last_seq, message))
        if len(self._events) > self.limit:
            self._events.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("%d unacknowledged event(s) dropped: the core is not reading them", self.dropped)
        self._changed.set()

    def acknowledge(self, seq: int) -> None:
        while self._events and self._events[0][0] <= seq:
            self._events.popleft()

    def __len__(self) -> int:
        return len(self._events)

    async def follow(self, after_seq: int) -> AsyncIterator[tuple[int, Any]]:
        """Every kept event after `after_seq`, then new ones as they come (until cancelled)."""
        sent = after_seq
        while True:
            self._changed.clear()
            pending = [(seq, message) for seq, message in self._events if seq > sent]
            for seq, message in pending:
                sent = seq
                yield seq, message
            if pending:
                continue  # more may have come while the last ones were being sent
            # Numbers after `sent` that are no longer kept were acknowledged (by an earlier
            # connection) or dropped: skip them.
            sent = max(sent, self.last_seq)
            await self._changed.wait()
