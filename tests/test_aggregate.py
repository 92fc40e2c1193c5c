"""Role aggregation rules (reference section 3.4), incremental and pure forms agree."""

import itertools

from hypothesis import given
from hypothesis import strategies as st

from aliecs.environment.aggregate import StateTally, combine_states, combine_statuses, state_product

STATES = ["STANDBY", "CONFIGURED", "RUNNING", "ERROR", "DONE", "MIXED", "INVARIANT"]
STATUSES = ["ACTIVE", "INACTIVE", "PARTIAL", "UNDEPLOYABLE", "UNDEFINED", "INVARIANT"]


def test_state_rules() -> None:
    assert combine_states(["RUNNING", "RUNNING"]) == "RUNNING"
    assert combine_states(["RUNNING", "CONFIGURED"]) == "MIXED"
    assert combine_states(["RUNNING", "ERROR", "CONFIGURED"]) == "ERROR"
    assert combine_states(["INVARIANT", "STANDBY"]) == "STANDBY"
    assert combine_states([]) == "INVARIANT"


def test_status_rules() -> None:
    assert combine_statuses(["ACTIVE", "ACTIVE"]) == "ACTIVE"
    assert combine_statuses(["ACTIVE", "INACTIVE"]) == "PARTIAL"
    assert combine_statuses(["ACTIVE", "UNDEPLOYABLE", "INACTIVE"]) == "UNDEPLOYABLE"
    assert combine_statuses(["UNDEPLOYABLE", "UNDEFINED"]) == "UNDEFINED"
    assert combine_statuses([]) == "UNDEFINED"


def test_product_is_commutative_and_associative() -> None:
    for a, b, c in itertools.product(STATES, repeat=3):
        assert state_product(a, b) == state_product(b, a)
        assert state_product(state_product(a, b), c) == state_product(a, state_product(b, c))


@given(
    st.lists(
        st.tuples(st.integers(0, 7), st.sampled_from(STATES), st.sampled_from(STATUSES), st.booleans()),
        max_size=60,
    )
)
def test_tally_matches_full_recomputation(updates: list[tuple[int, str, str, bool]]) -> None:
    """Each update sets a child's state and status, or (when `remove` is drawn and the child is
    known) takes the child out: hypothesis draws every choice, so a failure shrinks and replays."""
    tally = StateTally()
    current: dict[str, tuple[str, str]] = {}
    for child, state, status, remove in updates:
        key = f"c{child}"
        if remove and key in current:
            tally.remove(key)
            del current[key]
        else:
            tally.set(key, state, status)
            current[key] = (state, status)
        assert tally.state == combine_states(s for s, _ in current.values())
        assert tally.status == combine_statuses(s for _, s in current.values())
