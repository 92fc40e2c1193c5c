"""The OCC library in one process: a real grpclib server on loopback, driven by the real client."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import pytest

from aliecs.occ import (
    Event,
    OccClient,
    OccDeadlineError,
    OccPortInUseError,
    OccRejectedError,
    OccTask,
    OccUnreachableError,
    State,
    TransitionNotAllowedError,
    allowed_events,
    control_port_from,
    flatten_args,
    nest_args,
    next_state,
    parse_address,
)
from aliecs.occ.server import ERROR_DETAIL_LIMIT, Broadcast, SubscriberOverflowError, error_detail
from aliecs.testing import poll_until
from tests.occ_helpers import Recorder, free_port

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def handler() -> Recorder:
    return Recorder()


@pytest.fixture
async def task(handler: Recorder) -> AsyncIterator[OccTask]:
    occ = OccTask(handler, port=0)
    await occ.start()
    try:
        yield occ
    finally:
        await occ.close()


@pytest.fixture
async def client(task: OccTask) -> AsyncIterator[OccClient]:
    occ_client = OccClient("127.0.0.1", task.port, timeout=5.0)
    try:
        yield occ_client
    finally:
        await occ_client.close()


# -- the state machine as data --------------------------------------------------------------------


def test_transition_table() -> None:
    assert next_state("STANDBY", "CONFIGURE") == State.CONFIGURED
    assert next_state("CONFIGURED", "RESET") == State.STANDBY
    assert next_state("CONFIGURED", "START") == State.RUNNING
    assert next_state("RUNNING", "STOP") == State.CONFIGURED
    assert next_state("ERROR", "RECOVER") == State.STANDBY
    for src in ("STANDBY", "CONFIGURED", "ERROR"):
        assert next_state(src, "EXIT") == "DONE"
    for src in ("STANDBY", "CONFIGURED", "RUNNING", "ERROR"):
        assert next_state(src, "GO_ERROR") == "ERROR"
    assert next_state("standby", "configure") == "CONFIGURED"  # case-insensitive
    assert allowed_events("DONE") == []
    assert allowed_events("RUNNING") == [Event.STOP, Event.GO_ERROR]


@pytest.mark.parametrize(
    ("state", "event", "fragment"),
    [
        ("RUNNING", "EXIT", "EXIT is not allowed from state RUNNING (allowed from RUNNING: STOP, GO_ERROR)"),
        ("DONE", "GO_ERROR", "allowed from DONE: none"),
        ("STANDBY", "LAUNCH", "unknown OCC event 'LAUNCH'"),
        ("IDLE", "CONFIGURE", "unknown OCC state 'IDLE'"),
    ],
)
def test_transition_table_rejects_with_clear_message(state: str, event: str, fragment: str) -> None:
    with pytest.raises(TransitionNotAllowedError) as info:
        next_state(state, event)
    assert fragment in str(info.value)


def test_nest_and_flatten_args() -> None:
    flat = {
        "chans.data.0.address": "tcp://127.0.0.1:5555",
        "chans.data.0.type": "push",
        "chans.data.numSockets": "1",
        "runNumber": "42",
        "a": "parent-value",
        "a.b": "child",
    }
    tree = nest_args(flat)
    assert tree["chans"]["data"]["0"]["address"] == "tcp://127.0.0.1:5555"
    assert tree["chans"]["data"]["numSockets"] == "1"
    assert tree["runNumber"] == "42"
    assert tree["a"] == {"": "parent-value", "b": "child"}
    assert flatten_args(tree) == flat
    assert flatten_args({"x": [True, None, 3]}) == {"x.0": "true", "x.1": "", "x.2": "3"}


def test_control_port_sources() -> None:
    assert control_port_from([], {}) == 47100
    assert control_port_from([], {"OCC_CONTROL_PORT": "5000"}) == 5000
    assert control_port_from(["--other", "--control-port", "6000"], {"OCC_CONTROL_PORT": "5000"}) == 6000
    assert control_port_from(["--control-port=6001"], {}) == 6001
    with pytest.raises(ValueError, match="OCC_CONTROL_PORT='abc' is not a port number"):
        control_port_from([], {"OCC_CONTROL_PORT": "abc"})
    with pytest.raises(ValueError, match="out of range"):
        control_port_from(["--control-port", "70000"], {})


def test_parse_address() -> None:
    assert parse_address("localhost:47100") == ("localhost", 47100)
    assert parse_address("10.0.0.1") == ("10.0.0.1", 47100)
    assert parse_address(":1234") == ("127.0.0.1", 1234)
    assert parse_address("[::1]:99") == ("::1", 99)
    with pytest.raises(ValueError, match="not a number"):
        parse_address("host:port")


def test_broadcast_drops_a_subscriber_that_falls_behind() -> None:
    async def scenario() -> None:
        hub: Broadcast[int] = Broadcast(limit=3)
        slow, fast = hub.subscribe(), hub.subscribe()
        received: list[int] = []
        for value in range(10):
            hub.publish(value)
            received.append(await fast.next())
        assert received == list(range(10))
        assert [await slow.next() for _ in range(3)] == [0, 1, 2]  # what was queued is kept
        with pytest.raises(SubscriberOverflowError):
            await slow.next()
        assert len(hub) == 1  # the slow one was dropped
        hub.close()
        with pytest.raises(StopAsyncIteration):
            await fast.next()

    asyncio.run(scenario())


# -- served over gRPC -----------------------------------------------------------------------------


async def test_full_cycle_and_get_state(task: OccTask, client: OccClient, handler: Recorder) -> None:
    assert await client.get_state() == ("STANDBY", os.getpid())
    steps = [
        ("STANDBY", "CONFIGURE", "CONFIGURED"),
        ("CONFIGURED", "START", "RUNNING"),
        ("RUNNING", "STOP", "CONFIGURED"),
        ("CONFIGURED", "RESET", "STANDBY"),
        ("STANDBY", "GO_ERROR", "ERROR"),
        ("ERROR", "RECOVER", "STANDBY"),
    ]
    for src, event, dst in steps:
        result = await client.transition(src, event, {})
        assert (result.state, result.ok, result.trigger, result.event) == (dst, True, "EXECUTOR", event)
        assert (await client.get_state())[0] == dst
    assert [name for name, _ in handler.calls] == ["configure", "start", "stop", "reset", "recover"]


async def test_arguments_arrive_flat_with_dotted_keys(client: OccClient, handler: Recorder) -> None:
    args = {"chans.data.0.address": "tcp://127.0.0.1:5555", "environment_id": "2oDvieFrVTi", "empty": ""}
    await client.transition("STANDBY", "CONFIGURE", args)
    assert handler.calls == [("configure", args)]


async def test_source_state_mismatch_is_rejected(task: OccTask, client: OccClient, handler: Recorder) -> None:
    with pytest.raises(OccRejectedError) as info:
        await client.transition("CONFIGURED", "START")
    err = info.value
    assert err.status == "INVALID_ARGUMENT"
    assert "CONFIGURED" in err.detail and "STANDBY" in err.detail
    assert f"127.0.0.1:{task.port}" in str(err)
    assert task.state == "STANDBY" and handler.calls == []


async def test_event_not_allowed_is_rejected(client: OccClient) -> None:
    with pytest.raises(OccRejectedError) as info:
        await client.transition("STANDBY", "START")
    assert info.value.status == "FAILED_PRECONDITION"
    assert "START is not allowed from state STANDBY" in info.value.detail
    with pytest.raises(OccRejectedError, match="unknown OCC event 'JUMP'"):
        await client.transition("STANDBY", "JUMP")


async def test_failing_callback_goes_to_error_and_emits_internal_error(
    task: OccTask, client: OccClient, handler: Recorder
) -> None:
    handler.fail_in.add("start")
    await client.transition("STANDBY", "CONFIGURE")
    async with client.subscribe_events() as events:
        result = await client.transition("CONFIGURED", "START")
        assert (result.state, result.ok, result.trigger) == ("ERROR", False, "DEVICE_ERROR")
        assert await anext(events) == "TASK_INTERNAL_ERROR"
    assert task.last_error is not None and "on_start raised RuntimeError: start exploded" in task.last_error
    # the reason travels with the reply (trailing metadata), so the controller can show it
    assert result.error == "on_start raised RuntimeError: start exploded"
    assert (await client.get_state())[0] == "ERROR"
    recovered = await client.transition("ERROR", "RECOVER")
    assert (recovered.state, recovered.ok, recovered.error) == ("STANDBY", True, "")


def test_error_detail_is_bounded_utf8() -> None:
    long = "é" * 5000
    detail = error_detail(long)
    assert len(detail) <= ERROR_DETAIL_LIMIT and detail.endswith(b"...")
    assert detail[:-3].decode("utf-8")  # cut on a character boundary
    assert error_detail("HV channel 3 tripped") == b"HV channel 3 tripped"


async def test_failing_exit_callback_does_not_reach_done(
    task: OccTask, client: OccClient, handler: Recorder
) -> None:
    handler.fail_in.add("exit")
    result = await client.transition("STANDBY", "EXIT")
    assert (result.state, result.ok) == ("ERROR", False)
    assert not task.finished


async def test_fail_from_program_code(task: OccTask, client: OccClient) -> None:
    async with client.subscribe_events() as events, client.subscribe_states() as states:
        task.fail("detector lost its clock")
        assert await anext(events) == "TASK_INTERNAL_ERROR"
        assert await anext(states) == "ERROR"
    assert task.state == "ERROR" and task.last_error == "detector lost its clock"
    assert (await client.get_state())[0] == "ERROR"


async def test_program_emits_events_to_every_subscriber(task: OccTask) -> None:
    first = OccClient("127.0.0.1", task.port, timeout=5.0)
    second = OccClient("127.0.0.1", task.port, timeout=5.0)
    task.emit_event("END_OF_STREAM")  # nobody subscribed yet: must not be replayed later
    try:
        async with first.subscribe_events() as events_a, second.subscribe_events() as events_b:
            assert task.event_subscribers == 2
            task.emit_event("TASK_INTERNAL_ERROR")
            task.emit_event("END_OF_STREAM")
            assert [await anext(events_a), await anext(events_a)] == ["TASK_INTERNAL_ERROR", "END_OF_STREAM"]
            assert [await anext(events_b), await anext(events_b)] == ["TASK_INTERNAL_ERROR", "END_OF_STREAM"]
        await poll_until(lambda: task.event_subscribers == 0, "closed subscriptions to be forgotten", 5.0)
    finally:
        await first.close()
        await second.close()
    with pytest.raises(ValueError, match="unknown device event type"):
        task.emit_event("SOMETHING")


async def test_stalled_subscriber_does_not_hold_back_others(task: OccTask) -> None:
    stalled = OccClient("127.0.0.1", task.port, timeout=5.0)
    reader = OccClient("127.0.0.1", task.port, timeout=5.0)
    try:
        async with stalled.subscribe_events(), reader.subscribe_events() as events:
            for _ in range(200):
                task.emit_event("END_OF_STREAM")
                assert await anext(events) == "END_OF_STREAM"
        # A client that vanishes without unsubscribing is forgotten as well.
        async with stalled.subscribe_events():
            assert task.event_subscribers == 1
            await stalled.close()
            await poll_until(
                lambda: task.event_subscribers == 0, "the vanished subscriber to be dropped", 5.0
            )
    finally:
        await stalled.close()
        await reader.close()


async def test_end_of_stream_from_iterate_running() -> None:
    class Producer:
        def __init__(self) -> None:
            self.iterations = 0
            self.more = asyncio.Event()

        async def iterate_running(self) -> bool:
            self.iterations += 1
            return self.iterations >= 3

    producer = Producer()
    async with OccTask(producer, port=0) as occ, OccClient("127.0.0.1", occ.port, timeout=5.0) as client:
        await client.transition("STANDBY", "CONFIGURE")
        async with client.subscribe_events() as events:
            await client.transition("CONFIGURED", "START")
            assert await anext(events) == "END_OF_STREAM"
            assert producer.iterations == 3  # iteration stops once the end of stream is reported
            await client.transition("RUNNING", "STOP")
            producer.iterations = 0
            await client.transition("CONFIGURED", "START")  # a new run iterates again
            assert await anext(events) == "END_OF_STREAM"


async def test_iterate_running_failure_goes_to_error() -> None:
    class Broken:
        async def iterate_running(self) -> bool:
            raise OSError("readout card vanished")

    async with OccTask(Broken(), port=0) as occ, OccClient("127.0.0.1", occ.port, timeout=5.0) as client:
        await client.transition("STANDBY", "CONFIGURE")
        async with client.subscribe_events() as events:
            await client.transition("CONFIGURED", "START")
            assert await anext(events) == "TASK_INTERNAL_ERROR"
        assert occ.state == "ERROR" and "readout card vanished" in (occ.last_error or "")


async def test_exit_reaches_done_and_ends_everything(handler: Recorder) -> None:
    occ = OccTask(handler, port=0)
    serving = asyncio.ensure_future(occ.serve())
    await poll_until(lambda: occ.port != 0, "the task to bind", 5.0)
    client = OccClient("127.0.0.1", occ.port, timeout=5.0)
    try:
        async with client.subscribe_states() as states, client.subscribe_events() as events:
            result = await client.transition("STANDBY", "EXIT", {"reason": "end of fill"})
            assert (result.state, result.ok, result.trigger) == ("DONE", True, "EXECUTOR")
            assert [state async for state in states] == ["DONE"]  # the stream ends after DONE
            assert [event async for event in events] == []
        await asyncio.wait_for(serving, 5.0)  # serve() returns by itself: the process can exit 0
        assert handler.calls == [("exit", {"reason": "end of fill"})]
        with pytest.raises(OccUnreachableError, match="nothing listens"):
            await client.get_state(timeout=2.0)
    finally:
        serving.cancel()
        await client.close()
        await occ.close()


async def test_transition_after_done_is_refused(handler: Recorder) -> None:
    # Keep serving after DONE (no serve()) to see what a late request gets.
    async with OccTask(handler, port=0) as occ, OccClient("127.0.0.1", occ.port, timeout=5.0) as client:
        await client.transition("STANDBY", "EXIT")
        with pytest.raises(OccRejectedError) as info:
            await client.transition("DONE", "RECOVER")
        assert info.value.status == "FAILED_PRECONDITION" and "DONE" in info.value.detail


async def test_transitions_are_serialized(task: OccTask, client: OccClient, handler: Recorder) -> None:
    handler.block_in.add("configure")
    first = asyncio.ensure_future(client.transition("STANDBY", "CONFIGURE"))
    await asyncio.wait_for(handler.entered.wait(), 5.0)
    second = asyncio.ensure_future(client.transition("STANDBY", "CONFIGURE"))
    await poll_until(lambda: task.transitions_in_flight == 2, "the second request to queue up", 5.0)
    assert (await client.get_state())[0] == "STANDBY"  # GetState is not stuck behind the lock
    handler.release.set()
    assert (await first).state == "CONFIGURED"
    with pytest.raises(OccRejectedError, match="current state is CONFIGURED"):
        await second
    assert [name for name, _ in handler.calls] == ["configure"]


async def test_deadline_names_rpc_and_address_and_transition_completes(
    task: OccTask, client: OccClient, handler: Recorder
) -> None:
    handler.block_in.add("configure")
    with pytest.raises(OccDeadlineError) as info:
        await client.transition("STANDBY", "CONFIGURE", timeout=0.2)
    assert "Transition (CONFIGURE from STANDBY)" in str(info.value)
    assert f"127.0.0.1:{task.port}" in str(info.value)
    # The callback was not torn down with the caller: it completes and the state stays consistent.
    handler.release.set()
    await poll_until(lambda: task.state == "CONFIGURED", "the abandoned CONFIGURE to complete", 5.0)


async def test_sync_callbacks_are_accepted() -> None:
    class Plain:
        def __init__(self) -> None:
            self.configured: dict[str, str] | None = None

        def on_configure(self, args: dict[str, str]) -> None:
            self.configured = args

    plain = Plain()
    async with OccTask(plain, port=0) as occ, OccClient("127.0.0.1", occ.port, timeout=5.0) as client:
        assert (await client.transition("STANDBY", "CONFIGURE", {"k": "v"})).ok
    assert plain.configured == {"k": "v"}


async def test_port_in_use_is_a_clear_error(task: OccTask) -> None:
    with pytest.raises(OccPortInUseError, match=f"127.0.0.1:{task.port} is already in use"):
        await OccTask(None, port=task.port).start()


async def test_unreachable_process() -> None:
    async with OccClient("127.0.0.1", free_port(), timeout=2.0) as client:
        with pytest.raises(OccUnreachableError, match="connection refused"):
            await client.get_state()
        with pytest.raises(OccUnreachableError):
            async with client.subscribe_events():
                pass


# -- run(): the entry point of a controlled program ----------------------------------------------

PROGRAM = """
import sys
from aliecs.occ import run

class Handler:
    async def on_configure(self, args):
        print("configured with", sorted(args.items()), flush=True)

sys.exit(run(Handler()))
"""


async def _start_program(*argv: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROGRAM,
        *argv,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 10.0)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_run_takes_port_from_environment_and_exits_0_after_exit() -> None:
    port = free_port()
    proc = await _start_program(env={"OCC_CONTROL_PORT": str(port)})
    try:
        async with OccClient("127.0.0.1", port, timeout=2.0) as client:

            async def answers() -> bool:
                try:
                    await client.get_state()
                except OccUnreachableError:
                    return False
                return True

            await poll_until(answers, f"the program to serve on port {port}", 15.0)
            assert (await client.get_state())[1] == proc.pid
            await client.transition("STANDBY", "CONFIGURE", {"x.y": "1"})
            assert (await client.transition("CONFIGURED", "EXIT")).state == "DONE"
    finally:
        code, out, err = await _finish(proc)
    assert code == 0, err
    assert "configured with [('x.y', '1')]" in out


async def test_run_reports_busy_port_and_bad_port() -> None:
    async with OccTask(None, port=0) as occ:
        code, _out, err = await _finish(await _start_program("--control-port", str(occ.port), env={}))
    assert code == 1
    assert f"error: OCC control port 127.0.0.1:{occ.port} is already in use" in err
    code, _out, err = await _finish(await _start_program(env={"OCC_CONTROL_PORT": "http"}))
    assert code == 2
    assert "OCC_CONTROL_PORT='http' is not a port number" in err
