"""Free the cyclic garbage that ended connections leave behind, at a bounded pace.

A gRPC connection that ends (a GUI closed, a `coconut` call done, a Subscribe client gone) leaves
reference cycles behind: grpclib's protocol, handler and stream objects refer to each other, and a
cancelled call's exception refers to its frames. Reference counting cannot free them; only the
cyclic collector can, and by the time it looks at them they have survived into the oldest
generation, which CPython collects only once enough objects were promoted there since the last
full collection (a quarter of what survived it). A core whose long-lived objects are frozen
(`actors.gc_policy`), or that simply has many of them, reaches that threshold rarely: measured
with `python -m bench --soak`, a client that connects, Subscribes and disconnects again and again
grew the core by ~2.9 KB per connection over 300 connections, all of it freed by one
`gc.collect()`.

`GarbagePacer.garbage_made()` is called when a connection ends. It runs one full collection soon
after, and at most one per `period` seconds however many connections end meanwhile: garbage held
between collections is bounded by what one period's connections leave, and the collector's cost
(a walk over the objects that are not frozen, a few ms for the core alone) is paid at most once a
period, only while connections come and go.
"""

from __future__ import annotations

import asyncio
import gc

__all__ = ["DEFAULT_PERIOD", "GarbagePacer"]

#: Seconds between two collections at the most.
DEFAULT_PERIOD = 1.0


class GarbagePacer:
    """One per server: a full collection after connections end, at most one per `period` seconds.

    Only called on its event loop's thread (from protocol callbacks), so it needs no lock.
    """

    def __init__(self, period: float = DEFAULT_PERIOD) -> None:
        if period < 0:
            raise ValueError(f"the collection period must not be negative, got {period}")
        self.period = period
        self.collections = 0
        self._last = float("-inf")
        self._pending: asyncio.TimerHandle | None = None

    def garbage_made(self) -> None:
        """Something that leaves cycles behind has ended: collect now, or when the period allows."""
        if self._pending is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last + self.period - loop.time())
        self._pending = loop.call_later(delay, self._collect, loop)

    @property
    def waiting(self) -> bool:
        """A collection is scheduled and has not run yet."""
        return self._pending is not None

    def cancel(self) -> None:
        """Drop a collection that is still waiting (the server is closing)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _collect(self, loop: asyncio.AbstractEventLoop) -> None:
        self._pending = None
        gc.collect()
        self.collections += 1
        self._last = loop.time()
