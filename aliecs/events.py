"""In-process event bus: every state change of environments, roles, tasks and runs is published here.

Publishing never blocks and never waits for a subscriber: each subscriber has its own bounded
queue, and one that falls too far behind is cut off (it sees `SubscriberOverflow` and can
resubscribe) rather than slowing down a transition. The control server turns these events into
protobuf `events.Event` messages for gRPC subscribers and the audit log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aliecs.broadcast import Broadcast, Subscriber
from aliecs.broadcast import SubscriberOverflow as SubscriberOverflow  # re-exported: part of the bus API

# OpStatus values of the original's events.proto.
#: The audit log of every event, in the state directory (written by `aliecs.server.audit`; read
#: back at start to never reuse a run number).
AUDIT_FILE = "events.jsonl"

STARTED = "STARTED"
ONGOING = "ONGOING"
DONE_OK = "DONE_OK"
DONE_ERROR = "DONE_ERROR"
DONE_TIMEOUT = "DONE_TIMEOUT"
#: The messages of the two events the original sends for every step of a transition (trigger points
#: `before_X`, `leave_S`, `enter_S`, `after_X`, and `tasks_X` for the tasks' own transition).
STEP_STARTING = "transition step starting"
STEP_FINISHED = "transition step finished"


def now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True)
class RequestUser:
    """Who asked for an operation (`common.User` on the wire: coconut sends `user@host` as name)."""

    name: str = ""
    id: int = 0
    external_id: int = 0


@dataclass(frozen=True)
class WorkflowTemplateRef:
    """The workflow an environment was made from, as environment events describe it."""

    name: str = ""
    description: str = ""
    path: str = ""
    public: bool = True


@dataclass(frozen=True)
class EnvironmentEvent:
    environment_id: str
    state: str
    transition: str = ""
    transition_step: str = ""
    transition_status: str = ""
    run_number: int = 0
    error: str = ""
    message: str = ""
    timestamp_ns: int = field(default_factory=now_ns)
    # Filled by the core when the event is published (see `EventBus(stamp=...)`).
    last_request_user: RequestUser | None = None
    workflow_template: WorkflowTemplateRef | None = None
    vars: dict[str, str] = field(default_factory=dict)  # the root variables, on CREATE only


@dataclass(frozen=True)
class TaskEvent:
    environment_id: str
    task_id: str
    name: str
    state: str
    status: str
    hostname: str
    class_name: str
    path: str
    critical: bool = True
    timestamp_ns: int = field(default_factory=now_ns)
    error: str = ""  # why the task went to ERROR (its own words, or how its process ended)
    device_event: str = ""  # END_OF_STREAM, TASK_INTERNAL_ERROR: what the task said, not a state change


@dataclass(frozen=True)
class RoleEvent:
    environment_id: str
    name: str
    role_path: str
    state: str
    status: str
    timestamp_ns: int = field(default_factory=now_ns)


@dataclass(frozen=True)
class RunEvent:
    environment_id: str
    run_number: int
    state: str
    transition: str
    transition_status: str
    error: str = ""
    timestamp_ns: int = field(default_factory=now_ns)
    last_request_user: RequestUser | None = None


@dataclass(frozen=True)
class CallEvent:
    """An integration call (a `call` role) fired by a hook: STARTED, then DONE_OK or DONE_ERROR."""

    environment_id: str
    path: str
    func: str
    status: str
    error: str = ""
    output: str = ""
    trigger: str = ""
    await_: str = ""
    timeout: str = ""
    critical: bool = True
    timestamp_ns: int = field(default_factory=now_ns)


@dataclass(frozen=True)
class IntegratedServiceEvent:
    """Progress of a request to an integrated service (DCS, trigger, ODC...), as its plugin reports it.

    `name` is the call's role path (or `<plugin>.<what>` for news not tied to a call, such as DCS's
    detector matrix); `operation_name` the function (`dcs.StartOfRun()`), `operation_step` the part
    under way (`perform DCS call: StartOfRun`); `payload` is free JSON for consumers."""

    name: str
    operation_name: str = ""
    operation_status: str = ""
    operation_step: str = ""
    operation_step_status: str = ""
    environment_id: str = ""
    payload: str = ""
    error: str = ""
    timestamp_ns: int = field(default_factory=now_ns)


@dataclass(frozen=True)
class CoreStartEvent:
    framework_id: str
    timestamp_ns: int = field(default_factory=now_ns)


Event = (
    EnvironmentEvent | TaskEvent | RoleEvent | RunEvent | CallEvent | IntegratedServiceEvent | CoreStartEvent
)


#: A subscriber to the event bus (see `aliecs.broadcast`).
Subscription = Subscriber[Event]


class EventBus(Broadcast[Event]):
    """The core's events, to every subscriber (`aliecs.broadcast.Broadcast`).

    `stamp`, if given, may complete each event as it is published (the core adds who asked for the
    running operation): publishing is synchronous, so the stamp sees the state of that moment.
    """

    def __init__(
        self, subscriber_limit: int = 100_000, stamp: Callable[[Event], Event] | None = None
    ) -> None:
        super().__init__(subscriber_limit)
        self.published = 0
        self.stamp = stamp

    @property
    def subscriber_limit(self) -> int:
        return self.limit

    def publish(self, event: Event) -> None:
        self.published += 1
        if self.stamp is not None:
            event = self.stamp(event)
        super().publish(event)

    @property
    def subscribers(self) -> int:
        return len(self)
