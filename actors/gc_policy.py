"""Keep the cyclic garbage collector off the environments' long-lived objects.

An environment of 10,000 tasks is about a million long-lived Python objects (actors, mailboxes,
records, proxies). CPython's full (generation 2) collection walks all of them: ~350 ms at that size,
during which the event loop is stalled; and every transition allocates enough short-lived objects
(asks, futures, events) to trigger one. Measured at 10,000 tasks, the full collections were half of
each transition's time and the whole of its longest loop stall.

Those objects live exactly as long as their environment, so once an environment is built or
deployed they are moved out of the collector's sight (`gc.freeze`), and put back when an
environment is torn down (`gc.unfreeze`) so that its cycles can be collected. Freezing is
process-wide and cheap (a list splice); objects freed by reference counting are freed as usual.
"""

from __future__ import annotations

import gc


def settle_long_lived() -> None:
    """Called when an environment's long-lived structure is complete (built, deployed)."""
    gc.freeze()


def release_long_lived() -> None:
    """Called when an environment is gone: its frozen objects become collectable again."""
    gc.unfreeze()
