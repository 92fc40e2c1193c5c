"""How a role's state and status follow from its children's.

The rules are the original's (reference section 3.4): equal states give that state, any ERROR gives
ERROR, INVARIANT is neutral, anything else is MIXED; non-critical children are left out. Status:
UNDEFINED absorbs everything, UNDEPLOYABLE absorbs the rest, ACTIVE with ACTIVE stays ACTIVE,
INACTIVE with INACTIVE stays INACTIVE, other ACTIVE/INACTIVE/PARTIAL mixes give PARTIAL.

`StateTally` keeps counts so that one child's change costs O(1) instead of a scan over thousands of
siblings; `combine_states` is the same rule as a pure function, used for whole-tree recomputation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum

ERROR = "ERROR"
MIXED = "MIXED"
INVARIANT = "INVARIANT"
UNKNOWN = "UNKNOWN"


class Status(StrEnum):
    """Whether a task (or every task of a role) is deployed and running a process."""

    UNDEFINED = "UNDEFINED"
    INACTIVE = "INACTIVE"
    PARTIAL = "PARTIAL"
    ACTIVE = "ACTIVE"
    UNDEPLOYABLE = "UNDEPLOYABLE"


UNDEFINED = Status.UNDEFINED
INACTIVE = Status.INACTIVE
PARTIAL = Status.PARTIAL
ACTIVE = Status.ACTIVE
UNDEPLOYABLE = Status.UNDEPLOYABLE


def state_product(a: str, b: str) -> str:
    """The original's binary state product, kept as the reference definition."""
    if a == INVARIANT:
        return b
    if b == INVARIANT:
        return a
    if ERROR in (a, b):
        return ERROR
    if a == b:
        return a
    return MIXED


def status_product(a: str, b: str) -> str:
    if a == INVARIANT:
        return b
    if b == INVARIANT:
        return a
    if UNDEFINED in (a, b):
        return UNDEFINED
    if UNDEPLOYABLE in (a, b):
        return UNDEPLOYABLE
    if a == b:
        return a
    return PARTIAL


def combine_states(states: Iterable[str]) -> str:
    result = INVARIANT
    for state in states:
        result = state_product(result, state)
    return result


def combine_statuses(statuses: Iterable[str]) -> str:
    result = INVARIANT
    seen = False
    for status in statuses:
        seen = True
        result = status_product(result, status)
    return result if seen else UNDEFINED


class StateTally:
    """Incremental aggregate of children's states and statuses, keyed by child id."""

    __slots__ = ("_state_of", "_states", "_status_of", "_statuses")

    def __init__(self) -> None:
        self._state_of: dict[str, str] = {}
        self._status_of: dict[str, str] = {}
        self._states: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()

    def set(self, child: str, state: str, status: str) -> None:
        old_state = self._state_of.get(child)
        if old_state != state:
            if old_state is not None:
                self._states[old_state] -= 1
                if not self._states[old_state]:
                    del self._states[old_state]
            self._states[state] += 1
            self._state_of[child] = state
        old_status = self._status_of.get(child)
        if old_status != status:
            if old_status is not None:
                self._statuses[old_status] -= 1
                if not self._statuses[old_status]:
                    del self._statuses[old_status]
            self._statuses[status] += 1
            self._status_of[child] = status

    def __contains__(self, child: object) -> bool:
        return child in self._state_of

    def remove(self, child: str) -> None:
        state = self._state_of.pop(child, None)
        if state is not None:
            self._states[state] -= 1
            if not self._states[state]:
                del self._states[state]
        status = self._status_of.pop(child, None)
        if status is not None:
            self._statuses[status] -= 1
            if not self._statuses[status]:
                del self._statuses[status]

    @property
    def state(self) -> str:
        return combine_states(self._states)

    @property
    def status(self) -> str:
        return combine_statuses(self._statuses)
