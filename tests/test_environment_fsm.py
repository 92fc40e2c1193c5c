"""The environment state machine: every event of the design, including RECOVER and EXIT."""

import pytest

from aliecs.environment.fsm import EnvironmentStateMachine, normalize_event


def walk(*events: str) -> EnvironmentStateMachine:
    machine = EnvironmentStateMachine()
    for event in events:
        machine.fire(event)
    return machine


def test_full_cycle() -> None:
    machine = walk("DEPLOY", "CONFIGURE", "START_ACTIVITY", "STOP_ACTIVITY", "RESET", "EXIT")
    assert machine.state == "DONE"
    assert machine.allowed_events() == []


@pytest.mark.parametrize(
    ("events", "state"),
    [
        (("DEPLOY",), "DEPLOYED"),
        (("DEPLOY", "CONFIGURE"), "CONFIGURED"),
        (("DEPLOY", "CONFIGURE", "START_ACTIVITY"), "RUNNING"),
        (("DEPLOY", "CONFIGURE", "START_ACTIVITY", "GO_ERROR"), "ERROR"),
        (("DEPLOY", "GO_ERROR", "RECOVER"), "DEPLOYED"),
        (("EXIT",), "DONE"),
        (("DEPLOY", "CONFIGURE", "EXIT"), "DONE"),
    ],
)
def test_reachable_states(events: tuple[str, ...], state: str) -> None:
    assert walk(*events).state == state


def test_invalid_event_names_state_and_leaves_it() -> None:
    machine = walk("DEPLOY")
    with pytest.raises(ValueError, match="START_ACTIVITY is not allowed from DEPLOYED"):
        machine.fire("START_ACTIVITY")
    assert machine.state == "DEPLOYED"
    with pytest.raises(ValueError, match="unknown event 'JUMP'"):
        machine.fire("JUMP")


def test_exit_not_allowed_while_running() -> None:
    machine = walk("DEPLOY", "CONFIGURE", "START_ACTIVITY")
    assert not machine.can("EXIT")
    assert set(machine.allowed_events()) == {"STOP_ACTIVITY", "GO_ERROR"}


def test_aliases() -> None:
    assert normalize_event("start") == "START_ACTIVITY"
    assert normalize_event(" stop ") == "STOP_ACTIVITY"
    assert normalize_event("configure") == "CONFIGURE"
