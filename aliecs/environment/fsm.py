"""The environment state machine.

Unlike the original, every declared event is implemented, including RECOVER and EXIT.
python-statemachine 2.x is used (not 3.x): it creates machines and fires events several times
faster, which matters when many environments are created by test harnesses and benchmarks.
"""

from __future__ import annotations

from enum import StrEnum

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

from aliecs.occ.states import State as TaskState


class EnvironmentState(StrEnum):
    """The states of an environment (equal to their names as plain strings, as on the wire)."""

    STANDBY = "STANDBY"
    DEPLOYED = "DEPLOYED"
    CONFIGURED = "CONFIGURED"
    RUNNING = "RUNNING"
    ERROR = "ERROR"
    DONE = "DONE"


class EnvironmentEvent(StrEnum):
    """The events (transitions) of an environment."""

    DEPLOY = "DEPLOY"
    CONFIGURE = "CONFIGURE"
    RESET = "RESET"
    START_ACTIVITY = "START_ACTIVITY"
    STOP_ACTIVITY = "STOP_ACTIVITY"
    EXIT = "EXIT"
    GO_ERROR = "GO_ERROR"
    RECOVER = "RECOVER"


STANDBY = EnvironmentState.STANDBY
DEPLOYED = EnvironmentState.DEPLOYED
CONFIGURED = EnvironmentState.CONFIGURED
RUNNING = EnvironmentState.RUNNING
ERROR = EnvironmentState.ERROR
DONE = EnvironmentState.DONE

DEPLOY = EnvironmentEvent.DEPLOY
CONFIGURE = EnvironmentEvent.CONFIGURE
RESET = EnvironmentEvent.RESET
START_ACTIVITY = EnvironmentEvent.START_ACTIVITY
STOP_ACTIVITY = EnvironmentEvent.STOP_ACTIVITY
EXIT = EnvironmentEvent.EXIT
GO_ERROR = EnvironmentEvent.GO_ERROR
RECOVER = EnvironmentEvent.RECOVER

EVENTS = tuple(EnvironmentEvent)

# Short names operators type (as coconut accepts them) mapped to the FSM event.
EVENT_ALIASES = {"START": START_ACTIVITY, "STOP": STOP_ACTIVITY}

#: Every name an operator may give an environment event (the events and their aliases): the one
#: map of event names, used by coconut, the control API and the state machine alike.
EVENT_NAMES: dict[str, EnvironmentEvent] = {**{str(event): event for event in EVENTS}, **EVENT_ALIASES}


class _EnvironmentMachine(StateMachine):
    standby = State(STANDBY, initial=True, value=STANDBY)
    deployed = State(DEPLOYED, value=DEPLOYED)
    configured = State(CONFIGURED, value=CONFIGURED)
    running = State(RUNNING, value=RUNNING)
    error = State(ERROR, value=ERROR)
    done = State(DONE, value=DONE, final=True)

    DEPLOY = standby.to(deployed)
    CONFIGURE = deployed.to(configured)
    RESET = configured.to(deployed)
    START_ACTIVITY = configured.to(running)
    STOP_ACTIVITY = running.to(configured)
    EXIT = standby.to(done) | deployed.to(done) | configured.to(done)
    GO_ERROR = standby.to(error) | deployed.to(error) | configured.to(error) | running.to(error)
    RECOVER = error.to(deployed)


_EVENTS_FROM: dict[str, tuple[str, ...]] = {
    str(state.value): tuple(dict.fromkeys(t.event for t in state.transitions))
    for state in _EnvironmentMachine.states
}


def events_from(state: str) -> tuple[str, ...]:
    """The events allowed from `state` (what a GUI offers as buttons); none for unknown states."""
    return _EVENTS_FROM.get(state, ())


# The state every task reaches when the environment's transition (or its teardown) succeeds: what
# progress displays count tasks against.
TASK_STATE_AFTER: dict[str, TaskState] = {
    DEPLOY: TaskState.STANDBY,
    CONFIGURE: TaskState.CONFIGURED,
    START_ACTIVITY: TaskState.RUNNING,
    STOP_ACTIVITY: TaskState.CONFIGURED,
    RESET: TaskState.STANDBY,
    RECOVER: TaskState.STANDBY,
    EXIT: TaskState.DONE,
    "DESTROY": TaskState.DONE,
}


def normalize_event(name: str) -> str:
    """Return the canonical event name for what a user typed (case-insensitive, START/STOP aliases)."""
    upper = name.strip().upper()
    return EVENT_ALIASES.get(upper, upper)


class EnvironmentStateMachine:
    """A thin wrapper so the rest of the code speaks in state and event names, not library objects."""

    def __init__(self) -> None:
        self._machine = _EnvironmentMachine()
        self._forced: str | None = None

    @property
    def state(self) -> str:
        if self._forced is not None:
            return self._forced
        return str(self._machine.current_state.value)

    def allowed_events(self) -> list[str]:
        if self._forced is not None:
            return []
        return [event.id for event in self._machine.allowed_events]

    def can(self, event: str) -> bool:
        return event in self.allowed_events()

    def fire(self, event: str) -> str:
        """Move along `event`; raises ValueError naming the state if it is not allowed."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r} (known: {', '.join(EVENTS)})")
        try:
            self._machine.send(event)
        except TransitionNotAllowed as exc:
            raise ValueError(f"{event} is not allowed from {self.state}") from exc
        return self.state

    def restore(self, state: str) -> None:
        """Resume in `state`, with its usual events (an environment taken back after a core restart)."""
        self._machine = _EnvironmentMachine(start_value=state)
        self._forced = None

    def force(self, state: str) -> None:
        """Put the machine in `state` outside the event table (teardown of an environment in ERROR)."""
        self._forced = state
