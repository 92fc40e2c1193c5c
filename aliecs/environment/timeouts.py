"""Transition deadlines: how long the tasks of an environment get for one transition.

The core enforces them; clients (coconut's progress line) show them, so both read them here. A
workflow or the user sets `<event>_timeout` (e.g. `configure_timeout: 30s`) to change one.
"""

from __future__ import annotations

from collections.abc import Mapping

from aliecs.durations import parse_duration
from aliecs.environment import fsm as states

DEFAULT_TIMEOUTS: dict[str, float] = {states.DEPLOY: 90.0, states.CONFIGURE: 120.0}
DEFAULT_TIMEOUT = 90.0
DEFAULT_STARTUP_TIMEOUT = 30.0


def timeout_variable(event: str) -> str:
    return f"{event.lower()}_timeout"


def transition_timeout(event: str, variables: Mapping[str, str]) -> float:
    """The deadline of `event` given the environment's variables; raises ValueError for a bad value."""
    key = timeout_variable(event)
    if key in variables:
        return parse_duration(variables[key])
    return DEFAULT_TIMEOUTS.get(event, DEFAULT_TIMEOUT)
