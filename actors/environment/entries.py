"""One task of an environment as the environment keeps it: its role, record, actor and placement."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from actors.runtime import AsyncActorRef
from aliecs.cluster.scheduler_interface import Placement
from aliecs.errors import TaskError
from aliecs.model import TaskRecord
from aliecs.workflow.template import Channel, Role

if TYPE_CHECKING:
    from actors.task import TaskActor


@dataclass
class TaskEntry:
    role: Role
    record: TaskRecord
    ref: AsyncActorRef[TaskActor]
    # The channels the task binds (computed at DEPLOY from its role and stack).
    binds: list[Channel] = field(default_factory=list)
    # Where it runs; None before DEPLOY and after its process is released.
    placement: Placement | None = None

    def error(self, message: str) -> TaskError:
        return TaskError(
            self.record.id, self.record.name, self.record.host or "-", message, self.record.critical
        )


def new_task_id() -> str:
    return uuid.uuid4().hex[:20]
