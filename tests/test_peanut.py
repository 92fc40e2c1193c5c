"""The ``peanut`` CLI against a real ``aliecs-fake-task`` subprocess."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.occ_helpers import PEANUT, FakeTask, FakeTaskLauncher, free_port, run_peanut

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake_tasks(tmp_path: Path) -> Iterator[FakeTaskLauncher]:
    launcher = FakeTaskLauncher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.kill_all()


@pytest.fixture
def fake_task(fake_tasks: FakeTaskLauncher, tmp_path: Path) -> FakeTask:
    task = fake_tasks.start("--record", str(tmp_path / "record.jsonl"), "--end-of-stream-after", "0")
    task.wait_serving_sync()
    return task


def test_help() -> None:
    result = run_peanut("--help")
    assert result.returncode == 0
    for word in ("--addr", "--timeout", "get-state", "transition", "event-stream", "state-stream"):
        assert word in result.stdout


def test_get_state(fake_task: FakeTask) -> None:
    result = run_peanut("--addr", fake_task.address, "get-state")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"STANDBY pid={fake_task.pid}"


def test_address_from_environment(fake_task: FakeTask) -> None:
    env = dict(os.environ, OCC_CONTROL_PORT=str(fake_task.port))
    result = run_peanut("get-state", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("STANDBY")


def test_transition_with_arguments(fake_task: FakeTask, tmp_path: Path) -> None:
    result = run_peanut(
        "--addr",
        fake_task.address,
        "transition",
        "STANDBY",
        "CONFIGURE",
        "chans.data.0.address=tcp://x:1",
        "a=b=c",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CONFIGURE: STANDBY -> CONFIGURED (trigger EXECUTOR) ok"
    (record,) = (json.loads(line) for line in (tmp_path / "record.jsonl").read_text().splitlines())
    assert record == {"event": "CONFIGURE", "args": {"chans.data.0.address": "tcp://x:1", "a": "b=c"}}


def test_original_syntax_single_dash_flags_and_config(fake_task: FakeTask, tmp_path: Path) -> None:
    config = tmp_path / "configure.yaml"
    config.write_text("chans:\n  data:\n    0: {address: 'tcp://from-file:1', type: push}\nkey: file\n")
    result = run_peanut(
        "-addr", fake_task.address, "-timeout", "10s", "-config", str(config),
        "transition", "STANDBY", "CONFIGURED", "key=inline",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CONFIGURE: STANDBY -> CONFIGURED (trigger EXECUTOR) ok"
    result = run_peanut("-addr", fake_task.address, "-mode", "direct", "transition", "CONFIGURED", "RUNNING")
    assert result.stdout.strip() == "START: CONFIGURED -> RUNNING (trigger EXECUTOR) ok", result.stderr
    records = [json.loads(line) for line in (tmp_path / "record.jsonl").read_text().splitlines()]
    assert records[0]["args"] == {
        "chans.data.0.address": "tcp://from-file:1",
        "chans.data.0.type": "push",
        "key": "inline",  # KEY=VALUE arguments win over the file
    }
    assert [r["event"] for r in records] == ["CONFIGURE", "START"]
    refused = run_peanut("-addr", fake_task.address, "transition", "STANDBY", "RUNNING")
    assert refused.returncode == 2 and "no transition leads from STANDBY to RUNNING" in refused.stderr
    fmq = run_peanut("-addr", fake_task.address, "-mode", "fmq", "get-state")
    assert fmq.returncode == 2 and "use -mode direct" in fmq.stderr


def test_rejected_transition(fake_task: FakeTask) -> None:
    result = run_peanut("--addr", fake_task.address, "transition", "RUNNING", "STOP")
    assert result.returncode == 1
    assert "rejected (INVALID_ARGUMENT)" in result.stderr
    assert "current state is STANDBY" in result.stderr


def test_failed_transition(fake_tasks: FakeTaskLauncher) -> None:
    task = fake_tasks.start("--fail-on", "CONFIGURE")
    task.wait_serving_sync()
    result = run_peanut("--addr", task.address, "transition", "STANDBY", "CONFIGURE")
    assert result.returncode == 1
    assert "CONFIGURE: STANDBY -> ERROR (trigger DEVICE_ERROR) FAILED" in result.stderr


def test_bad_argument_and_address() -> None:
    result = run_peanut("--addr", "127.0.0.1:1", "transition", "STANDBY", "CONFIGURE", "novalue")
    assert result.returncode == 2
    assert "'novalue' is not key=value" in result.stderr
    result = run_peanut("--addr", "localhost:notaport", "get-state")
    assert result.returncode == 2
    assert "not a number" in result.stderr


def test_unreachable() -> None:
    port = free_port()
    result = run_peanut("--addr", f"127.0.0.1:{port}", "--timeout", "2", "get-state")
    assert result.returncode == 1
    assert f"nothing listens on 127.0.0.1:{port}" in result.stderr


@asynccontextmanager
async def peanut_following(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start a streaming peanut command and return once it reports being subscribed."""
    proc = await asyncio.create_subprocess_exec(
        PEANUT,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 20.0)
        assert line.startswith(b"following"), line
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_event_stream(fake_task: FakeTask) -> None:
    async with (
        peanut_following("--addr", fake_task.address, "event-stream") as proc,
        fake_task.client() as client,
    ):
        assert proc.stdout is not None
        await client.transition("STANDBY", "CONFIGURE")
        await client.transition("CONFIGURED", "START")  # --end-of-stream-after 0
        assert await asyncio.wait_for(proc.stdout.readline(), 10.0) == b"END_OF_STREAM\n"
        await client.transition("RUNNING", "STOP")
        await client.transition("CONFIGURED", "EXIT")
        assert await asyncio.wait_for(proc.wait(), 10.0) == 0  # the stream ends with the process


async def test_state_stream(fake_task: FakeTask) -> None:
    async with (
        peanut_following("--addr", fake_task.address, "state-stream") as proc,
        fake_task.client() as client,
    ):
        assert proc.stdout is not None
        await client.transition("STANDBY", "CONFIGURE")
        await client.transition("CONFIGURED", "EXIT")
        out = await asyncio.wait_for(proc.stdout.read(), 10.0)
        assert out.decode().split() == ["CONFIGURED", "DONE"]
        assert await asyncio.wait_for(proc.wait(), 10.0) == 0


async def test_a_stream_client_leaving_is_not_logged_by_the_device(fake_task: FakeTask) -> None:
    async with peanut_following("--addr", fake_task.address, "event-stream") as proc:
        proc.kill()  # the client goes away mid-stream (Ctrl-C, a closed terminal)
        await proc.wait()
    async with fake_task.client() as client:  # the device still answers, then leaves cleanly
        await client.transition("STANDBY", "EXIT")
    assert fake_task.proc.wait(10) == 0
    assert "Request was cancelled" not in fake_task.log(), fake_task.log()
