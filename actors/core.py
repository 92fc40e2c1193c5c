"""The root of the supervision tree: the scheduler (local cluster or Mesos) and the environment manager."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from actors.context import CoreContext
from actors.local_cluster import LocalClusterActor
from actors.manager import EnvironmentManagerActor
from actors.runtime import AsyncActorRef, AsyncioActor
from aliecs.model import EnvironmentRecord

if TYPE_CHECKING:
    from actors.environment import EnvironmentActor
    from actors.proxies import CoreProxy  # noqa: F401 (named in the actor's base class)

log = logging.getLogger(__name__)

# Which scheduler actor to start, with its constructor arguments: `LocalClusterActor` (nodes,
# executor links) or `MesosAdapter` (master, ...).
SchedulerSpec = tuple[type[AsyncioActor], tuple[Any, ...]]


class CoreActor(AsyncioActor["CoreProxy"]):
    def __init__(
        self,
        context: CoreContext,
        registry: dict[str, tuple[EnvironmentRecord, AsyncActorRef[EnvironmentActor]]],
        scheduler: SchedulerSpec,
    ) -> None:
        super().__init__()
        self.context = context
        self.scheduler_spec = scheduler
        self.registry = registry
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
            EnvironmentManagerActor, self.context.with_scheduler(self.scheduler), self.registry
        )

    def refs(self) -> tuple[AsyncActorRef[LocalClusterActor], AsyncActorRef[EnvironmentManagerActor]]:
        """The scheduler and the environment manager (started in `on_start`)."""
        assert self.scheduler is not None and self.manager is not None, "refs() before on_start"
        return self.scheduler, self.manager

    def on_child_failure(self, child: Any, exception: BaseException) -> None:
        # The scheduler or the manager failing is a bug we cannot recover from in place; keep the
        # core alive so that shutdown can still kill every process, and say so loudly.
        log.critical("core: %s failed: %r", child, exception)
