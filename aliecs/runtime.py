"""Running aliecs programs on uvloop, the event loop every aliecs process uses.

The one place that chooses the event loop: the daemons, the CLIs, the OCC library's task processes
and the pytest plugin all start their loops here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh uvloop event loop (the `loop_factory` of an `asyncio.Runner`)."""
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh uvloop event loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
