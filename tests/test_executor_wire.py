"""The executor protocol's compact batches: what the core sends and receives per node survives the
trip through protobuf bytes unchanged, whatever mix of grouped and individual entries it takes."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aliecs.executor import wire
from aliecs.executor.orders import TaskResult, TransitionOrder
from aliecs.generated import aliecs_executor as pb

task_ids = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=12)
states = st.sampled_from(["CONFIGURED", "RUNNING", "ERROR", "DONE", "STANDBY"])
results = st.builds(
    TaskResult,
    task_id=task_ids,
    ok=st.booleans(),
    state=states,
    pid=st.integers(0, 2**31 - 1),
    error=st.sampled_from(["", "", "START: task went to ERROR"]),
    since_seq=st.integers(0, 5),
)
orders = st.builds(
    TransitionOrder,
    task_id=task_ids,
    src_state=st.sampled_from(["CONFIGURED", "STANDBY"]),
    event=st.sampled_from(["START", "CONFIGURE"]),
    arguments=st.dictionaries(st.sampled_from(["chans", "x"]), st.text(max_size=5), max_size=2),
)


def _by_task(items: list[TaskResult]) -> list[TaskResult]:
    """In an order of every field: the wire groups answers, so two answers for one task id that
    differ only in a field left out of the key could otherwise come back swapped."""
    return sorted(items, key=dataclasses.astuple)


@given(st.lists(results, max_size=30))
def test_results_survive_the_wire(answers: list[TaskResult]) -> None:
    reply = pb.BatchReply().parse(bytes(wire.results_to_wire(answers)))
    assert _by_task(wire.results_from_wire(reply)) == _by_task(answers)


@given(st.lists(orders, max_size=30), st.dictionaries(st.just("run_number"), st.just("7")))
def test_transition_orders_survive_the_wire(sent: list[TransitionOrder], common: dict[str, str]) -> None:
    batch = pb.TransitionBatch().parse(bytes(wire.transitions_to_wire(sent, common, 5.0)))
    key = lambda order: (order.task_id, order.src_state, order.event, sorted(order.arguments.items()))  # noqa: E731
    assert sorted(wire.transitions_from_wire(batch), key=key) == sorted(sent, key=key)
    assert dict(batch.common_arguments) == common and batch.timeout == 5.0


def test_a_healthy_node_answers_with_one_group_and_sends_bare_task_ids() -> None:
    answers = [TaskResult(f"t{i}", True, "RUNNING", 100 + i, "", 3) for i in range(500)]
    reply = wire.results_to_wire(answers)
    assert len(reply.groups) == 1 and not reply.results
    assert reply.groups[0].pids[:2] == [100, 101]
    sent = [TransitionOrder(f"t{i}", "CONFIGURED", "START", {}) for i in range(500)]
    batch = wire.transitions_to_wire(sent, {"run_number": "1"}, 5.0)
    assert len(batch.uniform_task_ids) == 500 and not batch.tasks


def test_a_group_with_a_pid_missing_is_refused() -> None:
    reply = pb.BatchReply(groups=[pb.TaskResultGroup(True, "RUNNING", 0, ["a", "b"], [1])])
    with pytest.raises(ValueError, match="2 tasks and 1 pids"):
        wire.results_from_wire(reply)
