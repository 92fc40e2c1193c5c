"""The environment manager: the supervisor and registry of all environment actors.

It only does quick bookkeeping in its own mailbox (start an environment actor, forget one), so that
deploying or destroying one environment never queues behind another: the long work is awaited on
the environment's own actor by the caller.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from pykka import ActorDeadError

from actors.context import EnvironmentContext
from actors.environment import EnvironmentActor
from actors.runtime import AsyncActorRef, AsyncioActor
from aliecs.errors import UnknownEnvironmentError
from aliecs.model import EnvironmentRecord
from aliecs.workflow.template import Workflow

if TYPE_CHECKING:
    from actors.proxies import ManagerProxy  # noqa: F401 (named in the actor's base class)

log = logging.getLogger(__name__)


def new_environment_id() -> str:
    return uuid.uuid4().hex[:12]


class EnvironmentManagerActor(AsyncioActor["ManagerProxy"]):
    def __init__(
        self,
        context: EnvironmentContext,
        registry: dict[str, tuple[EnvironmentRecord, AsyncActorRef[EnvironmentActor]]],
    ) -> None:
        super().__init__()
        # Handed to every environment as it is (see `actors.context`).
        self.context = context
        # Published registry: written only here, read directly by the API (see aliecs.model).
        self.registry = registry

    def add(
        self, env_id: str, workflow: Workflow, user_vars: dict[str, str]
    ) -> tuple[EnvironmentRecord, AsyncActorRef[EnvironmentActor]]:
        record = EnvironmentRecord(
            id=env_id,
            workflow=workflow.name,
            created_ms=int(time.time() * 1000),
            user_vars=dict(user_vars),
            template=workflow,
        )
        ref = self.start_child(EnvironmentActor, record, workflow, self.context)
        self.registry[env_id] = (record, ref)
        return record, ref

    def lookup(self, env_id: str) -> tuple[EnvironmentRecord, AsyncActorRef[EnvironmentActor]]:
        try:
            return self.registry[env_id]
        except KeyError:
            known = ", ".join(self.registry) or "none"
            raise UnknownEnvironmentError(f"no environment with id {env_id!r} (known: {known})") from None

    async def forget(self, env_id: str) -> None:
        """Stop an environment's actors once it has been destroyed, then free its object graph
        (see `actors.gc_policy`: only a full collection can, once nothing refers to it)."""
        entry = self.registry.pop(env_id, None)
        if entry is not None:
            with contextlib.suppress(ActorDeadError):  # an actor that failed holds nothing to drop
                await entry[1].proxy().drop_tasks()
            await entry[1].stop()
            del entry
            self.context.gc.collect_released()

    def on_child_failure(self, child: Any, exception: BaseException) -> None:
        """An environment actor crashed (a bug): keep the others running, mark it ERROR."""
        for env_id, (record, ref) in list(self.registry.items()):
            if ref == child:
                record.state = "ERROR"
                record.error = f"environment actor failed: {exception!r}"
                log.error("environment %s: actor failed: %r", env_id, exception)
