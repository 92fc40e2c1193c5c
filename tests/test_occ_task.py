"""The OCC task's state machine driven directly, without a server: what a Transition request does."""

from __future__ import annotations

import asyncio

import pytest

from aliecs.generated import occ_pb
from aliecs.occ.task import TaskStateMachine, TransitionOutcome, TransitionRefusedError
from tests.occ_helpers import Recorder

pytestmark = pytest.mark.timeout(30)

END_OF_STREAM = occ_pb.DeviceEventType.END_OF_STREAM
TASK_INTERNAL_ERROR = occ_pb.DeviceEventType.TASK_INTERNAL_ERROR


async def test_a_cycle_runs_the_callbacks_and_broadcasts_each_state() -> None:
    handler = Recorder()
    machine = TaskStateMachine(handler)
    states = machine.states.subscribe()
    steps = [("STANDBY", "CONFIGURE"), ("CONFIGURED", "START"), ("RUNNING", "STOP"), ("CONFIGURED", "exit")]
    outcomes = [await machine.transition(src, event, {"k": src}) for src, event in steps]
    assert outcomes == [
        TransitionOutcome(state, True, event)
        for state, (_, event) in zip(["CONFIGURED", "RUNNING", "CONFIGURED", "DONE"], steps, strict=True)
    ]
    assert [name for name, _ in handler.calls] == ["configure", "start", "stop", "exit"]
    assert handler.calls[1] == ("start", {"k": "CONFIGURED"})
    assert [state async for state in states] == ["CONFIGURED", "RUNNING", "CONFIGURED", "DONE"]
    assert machine.transitions_in_flight == 0
    await machine.halt()


@pytest.mark.parametrize(
    ("src", "event", "mismatch", "says"),
    [
        (
            "RUNNING",
            "CONFIGURE",
            True,
            "state mismatch: source state 'RUNNING' requested, current state is STANDBY",
        ),
        ("STANDBY", "START", False, "START is not allowed from state STANDBY"),
        ("STANDBY", "JUMP", False, "unknown OCC event 'JUMP'"),
    ],
)
async def test_a_refused_transition_changes_nothing(src: str, event: str, mismatch: bool, says: str) -> None:
    handler = Recorder()
    machine = TaskStateMachine(handler)
    with pytest.raises(TransitionRefusedError) as refused:
        await machine.transition(src, event, {})
    assert refused.value.state_mismatch is mismatch
    assert says in str(refused.value)
    assert machine.state == "STANDBY" and handler.calls == []
    await machine.halt()


async def test_done_accepts_nothing_and_finishes() -> None:
    machine = TaskStateMachine()
    await machine.transition("STANDBY", "EXIT", {})
    with pytest.raises(TransitionRefusedError, match="the task is DONE"):
        await machine.transition("DONE", "CONFIGURE", {})
    # the EXIT reply normally ends the task; without one, the fallback does
    await asyncio.wait_for(machine.wait_finished(), 10)
    await machine.halt()


async def test_a_failing_callback_ends_in_error_with_the_reason_and_an_event() -> None:
    handler = Recorder()
    handler.fail_in.add("configure")
    machine = TaskStateMachine(handler)
    events = machine.events.subscribe()
    outcome = await machine.transition("STANDBY", "CONFIGURE", {})
    assert outcome == TransitionOutcome(
        "ERROR", False, "CONFIGURE", "on_configure raised RuntimeError: configure exploded"
    )
    assert machine.last_error == outcome.error
    assert await events.next(timeout=5) == TASK_INTERNAL_ERROR
    await machine.halt()


async def test_fail_from_the_program_is_ignored_once_in_error() -> None:
    machine = TaskStateMachine()
    events = machine.events.subscribe()
    machine.fail("disk full")
    machine.fail("and again")
    assert machine.state == "ERROR" and machine.last_error == "disk full"
    machine.emit_event("end_of_stream")
    assert [await events.next(timeout=5) for _ in range(2)] == [TASK_INTERNAL_ERROR, END_OF_STREAM]
    with pytest.raises(ValueError, match="unknown device event type 'NOPE'"):
        machine.emit_event("NOPE")
    await machine.halt()


async def test_a_transition_outlives_its_cancelled_caller() -> None:
    handler = Recorder()
    handler.block_in.add("configure")
    machine = TaskStateMachine(handler)
    caller = asyncio.ensure_future(machine.transition("STANDBY", "CONFIGURE", {}))
    await asyncio.wait_for(handler.entered.wait(), 5)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert machine.transitions_in_flight == 1
    handler.release.set()
    states = machine.states.subscribe()
    assert await states.next(timeout=5) == "CONFIGURED"
    await machine.halt()


async def test_iterate_running_reports_end_of_stream_once() -> None:
    class Source(Recorder):
        iterations = 0

        async def iterate_running(self) -> bool:
            self.iterations += 1
            return self.iterations == 3

    handler = Source()
    machine = TaskStateMachine(handler, iterate_interval=0)
    events = machine.events.subscribe()
    await machine.transition("STANDBY", "CONFIGURE", {})
    await machine.transition("CONFIGURED", "START", {})
    assert await events.next(timeout=5) == END_OF_STREAM
    await machine.transition("RUNNING", "STOP", {})
    assert handler.iterations == 3  # iteration stopped at the end of stream
    await machine.halt()
