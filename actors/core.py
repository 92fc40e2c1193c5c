"""The root of the supervision tree: the scheduler (local cluster or Mesos) and the environment manager."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from actors.local_cluster import LocalClusterActor
from actors.manager import EnvironmentManagerActor
from actors.runtime import AsyncActorRef, AsyncioActor
from aliecs.cluster.inventory import NodeSpec
from aliecs.environment.journal import Journal
from aliecs.environment.runnumber import RunNumberStore
from aliecs.events import EventBus
from aliecs.executor.link import ExecutorLink
from aliecs.integration import Plugin
from aliecs.model import EnvironmentRecord

if TYPE_CHECKING:
    from actors.environment import EnvironmentActor
    from actors.proxies import CoreProxy  # noqa: F401 (named in the actor's base class)

log = logging.getLogger(__name__)


class CoreActor(AsyncioActor["CoreProxy"]):
    def __init__(
        self,
        nodes: list[NodeSpec],
        run_numbers: RunNumberStore,
        log_dir: Path,
        registry: dict[str, tuple[EnvironmentRecord, AsyncActorRef[EnvironmentActor]]],
        bus: EventBus,
        executors: dict[str, ExecutorLink],
        plugins: Mapping[str, Plugin] | None = None,
        journal: Journal | None = None,
        scheduler: tuple[type[AsyncioActor], tuple[Any, ...]] | None = None,
    ) -> None:
        super().__init__()
        # The scheduler's class and arguments; by default the local cluster of `nodes`.
        self.scheduler_spec = scheduler or (LocalClusterActor, (nodes, executors))
        self.journal = journal
        self.nodes = nodes
        self.run_numbers = run_numbers
        self.log_dir = log_dir
        self.registry = registry
        self.bus = bus
        self.executors = executors
        self.plugins = plugins
        self.scheduler: AsyncActorRef[LocalClusterActor] | None = None
        self.manager: AsyncActorRef[EnvironmentManagerActor] | None = None

    def on_start(self) -> None:
        scheduler_class, arguments = self.scheduler_spec
        # The local cluster or the Mesos adapter: both implement
        # `aliecs.cluster.scheduler_interface.Scheduler`; the reference is typed with the local
        # cluster's proxy, which has the same messages.
        self.scheduler = cast(
            "AsyncActorRef[LocalClusterActor]", self.start_child(scheduler_class, *arguments)
        )
        self.manager = self.start_child(
            EnvironmentManagerActor,
            self.registry,
            self.scheduler,
            self.run_numbers,
            self.log_dir,
            self.bus,
            self.plugins,
            self.journal,
        )

    def refs(self) -> tuple[AsyncActorRef[LocalClusterActor], AsyncActorRef[EnvironmentManagerActor]]:
        """The scheduler and the environment manager (started in `on_start`)."""
        assert self.scheduler is not None and self.manager is not None, "refs() before on_start"
        return self.scheduler, self.manager

    def on_child_failure(self, child: Any, exception: BaseException) -> None:
        # The scheduler or the manager failing is a bug we cannot recover from in place; keep the
        # core alive so that shutdown can still kill every process, and say so loudly.
        log.critical("core: %s failed: %r", child, exception)
