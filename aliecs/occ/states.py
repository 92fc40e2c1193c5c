"""The OCC task state machine as plain data: states, events and the transition table.

Shared by the OCC library (which enforces it inside each process) and by the core (which predicts
where a task should land and validates requests before sending them). It is kept free of any import
beyond the standard library so that a task process importing ``aliecs.occ`` stays light and the core
can use it without pulling in gRPC.

States and events are ``StrEnum`` members, so they compare equal to the plain strings carried on the
wire (``State.RUNNING == "RUNNING"``) and can be used wherever a ``str`` is expected.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """The stable states of an OCC-controlled process."""

    STANDBY = "STANDBY"
    CONFIGURED = "CONFIGURED"
    RUNNING = "RUNNING"
    ERROR = "ERROR"
    DONE = "DONE"


class Event(StrEnum):
    """The events (transition names) an executor may request."""

    CONFIGURE = "CONFIGURE"
    RESET = "RESET"
    START = "START"
    STOP = "STOP"
    RECOVER = "RECOVER"
    EXIT = "EXIT"
    GO_ERROR = "GO_ERROR"


STANDBY = State.STANDBY
CONFIGURED = State.CONFIGURED
RUNNING = State.RUNNING
ERROR = State.ERROR
DONE = State.DONE

CONFIGURE = Event.CONFIGURE
RESET = Event.RESET
START = Event.START
STOP = Event.STOP
RECOVER = Event.RECOVER
EXIT = Event.EXIT
GO_ERROR = Event.GO_ERROR

#: The state a freshly started process is in.
INITIAL_STATE = STANDBY

#: States from which nothing is possible any more: the process has finished and is exiting.
FINAL_STATES = frozenset({DONE})

#: (source state, event) -> destination state. GO_ERROR is accepted from every state except DONE
#: (including ERROR itself, so "make sure it is in ERROR" is idempotent); DONE accepts nothing.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (STANDBY, CONFIGURE): CONFIGURED,
    (CONFIGURED, RESET): STANDBY,
    (CONFIGURED, START): RUNNING,
    (RUNNING, STOP): CONFIGURED,
    (ERROR, RECOVER): STANDBY,
    (STANDBY, EXIT): DONE,
    (CONFIGURED, EXIT): DONE,
    (ERROR, EXIT): DONE,
    **{(state, GO_ERROR): ERROR for state in State if state not in FINAL_STATES},
}


class TransitionNotAllowedError(ValueError):
    """The event does not exist, or is not allowed from the given state.

    Carries the pieces separately so callers (gRPC status, CLI output, core errors) can phrase their own
    message; ``str()`` already names the state, the event and what would have been allowed.
    """

    def __init__(self, state: str, event: str, allowed: list[str], reason: str = "") -> None:
        self.state = state
        self.event = event
        self.allowed = allowed
        choices = ", ".join(allowed) if allowed else "none"
        why = reason or f"{event} is not allowed from state {state}"
        super().__init__(f"{why} (allowed from {state}: {choices})")


def parse_state(name: str) -> State:
    """The state named ``name`` (case-insensitive); ValueError listing the known states otherwise."""
    try:
        return State(name.strip().upper())
    except ValueError:
        known = ", ".join(State)
        raise ValueError(f"unknown OCC state {name!r} (known states: {known})") from None


def parse_event(name: str) -> Event:
    """The event named ``name`` (case-insensitive); ValueError listing the known events otherwise."""
    try:
        return Event(name.strip().upper())
    except ValueError:
        known = ", ".join(Event)
        raise ValueError(f"unknown OCC event {name!r} (known events: {known})") from None


def allowed_events(state: str) -> list[Event]:
    """Events accepted from ``state``, in declaration order (empty for DONE or an unknown state)."""
    upper = state.strip().upper()
    return [event for (src, event) in TRANSITIONS if src == upper]


def next_state(current: str, event: str) -> State:
    """Where ``event`` takes a process that is in ``current`` (names are case-insensitive).

    Raises TransitionNotAllowedError when the state or the event is unknown or the event is not allowed
    from that state; the message lists what is allowed so an operator can pick the right command.
    """
    state_key = current.strip().upper()
    event_key = event.strip().upper()
    allowed = [str(e) for e in allowed_events(state_key)]
    if state_key not in State.__members__:
        raise TransitionNotAllowedError(current, event, [], f"unknown OCC state {current!r}")
    if event_key not in Event.__members__:
        raise TransitionNotAllowedError(current, event, allowed, f"unknown OCC event {event!r}")
    destination = TRANSITIONS.get((State(state_key), Event(event_key)))
    if destination is None:
        raise TransitionNotAllowedError(state_key, event_key, allowed)
    return destination


__all__ = [
    "CONFIGURE",
    "CONFIGURED",
    "DONE",
    "ERROR",
    "EXIT",
    "FINAL_STATES",
    "GO_ERROR",
    "INITIAL_STATE",
    "RECOVER",
    "RESET",
    "RUNNING",
    "STANDBY",
    "START",
    "STOP",
    "TRANSITIONS",
    "Event",
    "State",
    "TransitionNotAllowedError",
    "allowed_events",
    "next_state",
    "parse_event",
    "parse_state",
]
