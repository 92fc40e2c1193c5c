"""What one core's actors share, made once by the core and handed down as one frozen object.

The core, the environment manager and every environment need the same few things: where run
numbers come from, where task logs go, the event bus, the integration plugins, the journal, and
this core's garbage-collector policy. They used to be passed as separate constructor arguments
through four levels (API -> CoreActor -> manager -> environment -> hooks); a new one meant editing
every level. Now the API builds a `CoreContext` once; the core adds the scheduler it starts (an
`EnvironmentContext`) and hands that to the manager, which hands it to each environment.

Frozen: nothing below the core may swap a shared service for its own subtree. The objects inside
are shared on purpose (one bus, one run-number store, one journal per core).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from actors.gc_policy import GcPolicy
from aliecs.environment.journal import Journal
from aliecs.environment.runnumber import RunNumberStore
from aliecs.events import EventBus
from aliecs.integration import Plugin

if TYPE_CHECKING:
    from actors.local_cluster import LocalClusterActor
    from actors.runtime import AsyncActorRef


@dataclass(frozen=True, kw_only=True)
class CoreContext:
    """The services of one core, shared by all its environments."""

    run_numbers: RunNumberStore
    # Where task logs go (one directory per environment below it).
    log_dir: Path
    bus: EventBus
    # The integrations `call` roles can use, by name.
    plugins: Mapping[str, Plugin]
    # Environments are journaled when they can outlive the core (None: they are not).
    journal: Journal | None = None
    # This core's share of the process-wide `gc.freeze` (see `actors.gc_policy`).
    gc: GcPolicy = field(default_factory=GcPolicy)

    def with_scheduler(self, scheduler: AsyncActorRef[LocalClusterActor]) -> EnvironmentContext:
        """This context plus the scheduler the core started: what its environments get."""
        shared = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        return EnvironmentContext(scheduler=scheduler, **shared)


@dataclass(frozen=True, kw_only=True)
class EnvironmentContext(CoreContext):
    """A core's context as its environments see it: with the scheduler that places their tasks
    (the local cluster or the Mesos adapter; both take the local cluster's messages)."""

    scheduler: AsyncActorRef[LocalClusterActor]
