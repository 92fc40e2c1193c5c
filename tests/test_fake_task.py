"""``aliecs-fake-task`` as a real subprocess, driven over real gRPC by OccClient."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aliecs.occ import OccDeadlineError, OccUnreachableError
from tests.occ_helpers import FAKE_TASK, FakeTaskLauncher, wait_for_state

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake_tasks(tmp_path: Path) -> Iterator[FakeTaskLauncher]:
    launcher = FakeTaskLauncher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.kill_all()


def test_help_lists_the_options() -> None:
    result = subprocess.run([FAKE_TASK, "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0
    for option in (
        "--control-port",
        "--latency",
        "--latency-all",
        "--fail-on",
        "--crash-on",
        "--crash-on-start",
        "--slow-start",
        "--end-of-stream-after",
        "--ignore-sigterm",
        "--hang-on",
    ):
        assert option in result.stdout


def test_bad_option_value_is_explained() -> None:
    result = subprocess.run(
        [FAKE_TASK, "--latency", "CONFIGURE"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "expected EVENT=SECONDS" in result.stderr


async def test_lifecycle_then_clean_exit(fake_tasks: FakeTaskLauncher, tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    task = fake_tasks.start("--record", str(record))
    await task.wait_serving()
    async with task.client() as client:
        assert await client.get_state() == ("STANDBY", task.pid)
        await client.transition("STANDBY", "CONFIGURE", {"chans.data.0.address": "tcp://127.0.0.1:1"})
        await client.transition("CONFIGURED", "START", {"runNumber": "7"})
        await client.transition("RUNNING", "STOP")
        await client.transition("CONFIGURED", "RESET")
        result = await client.transition("STANDBY", "EXIT")
        assert (result.state, result.ok) == ("DONE", True)
    assert await task.wait_exit() == 0
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["CONFIGURE", "START", "STOP", "RESET", "EXIT"]
    assert lines[0]["args"] == {"chans.data.0.address": "tcp://127.0.0.1:1"}
    assert lines[1]["args"] == {"runNumber": "7"}


async def test_crash_on_event_exits_with_code_3(fake_tasks: FakeTaskLauncher) -> None:
    task = fake_tasks.start("--crash-on", "configure")
    await task.wait_serving()
    async with task.client() as client:
        with pytest.raises(OccUnreachableError, match="Transition"):
            await client.transition("STANDBY", "CONFIGURE")
    assert await task.wait_exit() == 3
    assert "crashing on CONFIGURE" in task.log()


async def test_fail_on_event_goes_to_error(fake_tasks: FakeTaskLauncher) -> None:
    task = fake_tasks.start("--fail-on", "START")
    await task.wait_serving()
    async with task.client() as client:
        await client.transition("STANDBY", "CONFIGURE")
        async with client.subscribe_events() as events:
            result = await client.transition("CONFIGURED", "START")
            assert (result.state, result.ok, result.trigger) == ("ERROR", False, "DEVICE_ERROR")
            assert await anext(events) == "TASK_INTERNAL_ERROR"
        assert (await client.transition("ERROR", "RECOVER")).state == "STANDBY"
        await client.transition("STANDBY", "EXIT")
    assert await task.wait_exit() == 0


async def test_latency_does_not_block_the_process(fake_tasks: FakeTaskLauncher) -> None:
    task = fake_tasks.start("--latency", "CONFIGURE=0.3", "--latency-all", "0")
    await task.wait_serving()
    loop = asyncio.get_running_loop()
    async with task.client() as client, task.client() as observer:
        began = loop.time()
        configuring = asyncio.ensure_future(client.transition("STANDBY", "CONFIGURE"))
        # While the callback works, the process still answers: the state is still the source state.
        assert (await observer.get_state())[0] == "STANDBY"
        assert (await configuring).state == "CONFIGURED"
        assert loop.time() - began >= 0.3
        began = loop.time()
        await client.transition("CONFIGURED", "RESET")  # no latency for RESET
        assert loop.time() - began < 0.3


async def test_crash_on_start(fake_tasks: FakeTaskLauncher) -> None:
    task = fake_tasks.start("--crash-on-start")
    assert await task.wait_exit() == 2
    assert "crashing on start" in task.log()


async def test_slow_start_delays_serving(fake_tasks: FakeTaskLauncher) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    task = fake_tasks.start("--slow-start", "0.5")
    await task.wait_serving()
    assert loop.time() - began >= 0.5


async def test_end_of_stream_after(fake_tasks: FakeTaskLauncher) -> None:
    task = fake_tasks.start("--end-of-stream-after", "0.2")
    await task.wait_serving()
    async with task.client() as client:
        await client.transition("STANDBY", "CONFIGURE")
        async with client.subscribe_events() as events:
            await client.transition("CONFIGURED", "START")
            assert await asyncio.wait_for(anext(events), 10.0) == "END_OF_STREAM"
        assert (await client.transition("RUNNING", "STOP")).state == "CONFIGURED"


async def test_fail_running_after(fake_tasks: FakeTaskLauncher) -> None:
    task = fake_tasks.start("--fail-running-after", "0.1")
    await task.wait_serving()
    async with task.client() as client:
        await client.transition("STANDBY", "CONFIGURE")
        async with client.subscribe_events() as events:
            await client.transition("CONFIGURED", "START")
            assert await asyncio.wait_for(anext(events), 10.0) == "TASK_INTERNAL_ERROR"
        assert (await client.get_state())[0] == "ERROR"


async def test_hang_on_event_times_out_but_stays_observable(fake_tasks: FakeTaskLauncher) -> None:
    task = fake_tasks.start("--hang-on", "CONFIGURE")
    await task.wait_serving()
    async with task.client() as client:
        with pytest.raises(
            OccDeadlineError, match=rf"Transition \(CONFIGURE from STANDBY\) on {task.address}"
        ):
            await client.transition("STANDBY", "CONFIGURE", timeout=0.3)
        assert (await client.get_state())[0] == "STANDBY"
    task.signal(signal.SIGTERM)  # a graceful stop still works with a hung callback
    assert await task.wait_exit() == 0


async def test_sigterm_is_a_graceful_exit(fake_tasks: FakeTaskLauncher) -> None:
    task = fake_tasks.start()
    await task.wait_serving()
    async with task.client() as client:
        await client.transition("STANDBY", "CONFIGURE")
    task.signal(signal.SIGTERM)
    assert await task.wait_exit() == 0


async def test_ignore_sigterm(fake_tasks: FakeTaskLauncher) -> None:
    task = fake_tasks.start("--ignore-sigterm")
    await task.wait_serving()
    task.signal(signal.SIGTERM)
    async with task.client() as client:
        # Several round trips after the signal: a process honouring SIGTERM would be gone by now.
        assert (await client.get_state())[0] == "STANDBY"
        assert (await client.transition("STANDBY", "CONFIGURE")).state == "CONFIGURED"
        await wait_for_state(client, "CONFIGURED")
    assert task.proc.poll() is None
    task.signal(signal.SIGINT)
    assert await task.wait_exit() == 0


async def test_port_in_use(fake_tasks: FakeTaskLauncher) -> None:
    first = fake_tasks.start()
    await first.wait_serving()
    second = fake_tasks.start(port=first.port)
    assert await second.wait_exit() == 1
    assert f"127.0.0.1:{first.port} is already in use" in second.log()
