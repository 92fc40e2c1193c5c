"""Publish to every current subscriber, each with its own bounded queue: the one pub/sub of aliecs.

Used by the core's event bus (`aliecs.events.EventBus`) and by the OCC library's event and state
streams. Publishing never blocks and never waits for a subscriber; one that falls `limit` items
behind is cut off (it gets what was queued, then `SubscriberOverflow`, and can subscribe again)
rather than slowing the publisher down. Standard library only: a task process importing the OCC
library stays light.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

__all__ = ["Broadcast", "Subscriber", "SubscriberOverflow"]

T = TypeVar("T")


class SubscriberOverflow(Exception):
    """The subscriber did not keep up and was disconnected."""


class Subscriber(Generic[T]):
    """One subscriber's bounded queue: `await next()` or `async for`; `close()` when done."""

    def __init__(self, broadcast: Broadcast[T], limit: int) -> None:
        self._broadcast = broadcast
        self._items: deque[T] = deque()
        self._limit = limit
        self._wakeup = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def push(self, item: T) -> None:
        """Queue `item` (the broadcast calls this); past the limit the subscriber is cut off."""
        if self.closed or self.overflowed:
            return
        if len(self._items) >= self._limit:
            self.overflowed = True
            self._broadcast.unsubscribe(self)
        else:
            self._items.append(item)
        self._wakeup.set()

    def close(self) -> None:
        """Stop receiving; what is queued can still be read, then the iteration ends."""
        self.closed = True
        self._broadcast.unsubscribe(self)
        self._wakeup.set()

    async def next(self, timeout: float | None = None) -> T:
        """The next item. StopAsyncIteration once closed and drained; SubscriberOverflow if cut off;
        TimeoutError if nothing comes within `timeout` seconds."""
        if self._items:  # the common case under load: no waiting, no timer
            return self._items.popleft()
        if timeout is None:
            return await self._wait()
        async with asyncio.timeout(timeout):
            return await self._wait()

    async def _wait(self) -> T:
        while True:
            if self._items:
                return self._items.popleft()
            if self.overflowed:
                raise SubscriberOverflow(f"subscriber fell {self._limit} items behind")
            if self.closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            try:
                item = await self.next()
            except StopAsyncIteration:
                return
            yield item


class Broadcast(Generic[T]):
    """Broadcast to every current subscriber; each sees what was published after it subscribed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._subscribers: dict[Subscriber[T], None] = {}  # insertion-ordered set
        self.closed = False

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscriber[T]:
        """Items published from now on (a closed broadcast gives a closed subscriber)."""
        sub: Subscriber[T] = Subscriber(self, self.limit)
        if self.closed:
            sub.closed = True
        else:
            self._subscribers[sub] = None
        return sub

    def unsubscribe(self, sub: Subscriber[T]) -> None:
        self._subscribers.pop(sub, None)

    def publish(self, item: T) -> None:
        for sub in list(self._subscribers):
            sub.push(item)

    def close(self) -> None:
        """End every subscriber's iteration (after what is queued) and refuse new ones."""
        self.closed = True
        for sub in list(self._subscribers):
            sub.close()
