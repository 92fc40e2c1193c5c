"""Keep the cyclic garbage collector off the environments' long-lived objects, and free them after.

An environment of 10,000 tasks is about a million long-lived Python objects (actors, mailboxes,
records, proxies). CPython's full (generation 2) collection walks all of them: ~350 ms at that size,
during which the event loop is stalled; and every transition allocates enough short-lived objects
(asks, futures, events) to trigger one. Measured at 10,000 tasks, the full collections were half of
each transition's time and the whole of its longest loop stall.

Those objects live exactly as long as their environment, so once an environment is built or
deployed they are moved out of the collector's sight (`gc.freeze`). Freezing is process-wide and
cheap (a list splice); objects freed by reference counting are freed as usual.

An environment's object graph is full of reference cycles (parent and child actors, state machines
and their models, records and roles), so when it is destroyed only the cyclic collector can free
it, and only a *full* collection: `gc.unfreeze` hands every frozen object to the oldest generation.
CPython starts a full collection by itself only once enough objects have been *promoted* into that
generation (a quarter of what survived the last one), and objects handed over by `gc.unfreeze` are
not counted as promoted; each `gc.freeze` also resets the younger generations' counters, so in a
core that deploys environments regularly no collection beyond the youngest generation ever ran. Every
destroyed environment stayed in memory: ~33 KB per copypush create/destroy cycle, linear over
hundreds of cycles (`python -m bench soak`), freed at once by an explicit `gc.collect()`.

Hence the three calls of `GcPolicy`: `settle` (freeze), `release` (an environment is being torn
down: note that a collection is due) and `collect_released`, called once the environment's actors
have stopped and nothing refers to its graph any more: unfreeze, one full collection frees it, then
whatever survived (the other environments, the core itself) is frozen again at once, so later
collections keep ignoring it. Its cost is that of one full collection over the live objects, once
per destroyed environment (a few ms for the core alone; more while other large environments are
alive). Garbage frozen along with an environment is freed at the next collection after a release:
memory held beyond the live objects is bounded by one environment's lifetime.

`gc.freeze` and `gc.unfreeze` are process-wide by nature: there is one permanent generation, not
one per environment, so the unfreeze before that collection hands *every* frozen object back to
the collector, every other environment's too. That is why the unfreeze, the collection and the
refreeze are one synchronous call: no other code runs between them, so the surviving
environments are frozen again before the loop runs anything else (they never sit unfrozen while
a destroyed environment's actors wind down). What is per core is the bookkeeping: each core has
its own `GcPolicy` (carried by its `actors.context.CoreContext`), so two cores in one process (the
embedded API used twice) never collect on each other's behalf: a core's collection is due only
after one of its own environments was released.

What that collection frees it also has to walk and deallocate while the loop waits: at 10,000 tasks
the per-task objects (refs, mailboxes, entries: ~8 per task) doubled its time (193 -> 98 ms of CPU
on a loaded 2-core machine). They hold no cycles of their own, so the environment lets go of them a
slice at a time before it stops (`EnvironmentActor.drop_tasks`), freed by reference counting between
loop iterations; the collection then frees only the environment's own few dozen cyclic objects, and
costs what a walk over the live objects costs.
"""

from __future__ import annotations

import gc


class GcPolicy:
    """One core's use of the process-wide freeze (see the module docstring): settle, release, collect."""

    def __init__(self) -> None:
        # Whether one of this core's environments was released since its last collection.
        self.due = False

    def settle(self) -> None:
        """Called when an environment's long-lived structure is complete (built, deployed)."""
        gc.freeze()

    def release(self) -> None:
        """Called when an environment is torn down: a collection is due once its actors stopped.
        Its objects stay frozen until then (unfreezing now would hand every environment's objects
        to the collector while this one winds down)."""
        self.due = True

    def collect_released(self) -> int:
        """Called once a released environment is unreachable (its actors stopped): hand the frozen
        objects back, free the released environment's cycles with one full collection, then freeze
        the survivors again, with nothing else running in between. Returns the number of objects
        collected (0, without collecting, when none of this core's environments was released since
        the last call)."""
        if not self.due:
            return 0
        self.due = False
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        return collected
