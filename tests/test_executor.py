"""The executor actors against real fake-task processes: start, drive, watch, kill."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from actors.executor import ExecutorActor, TaskStartError
from actors.messages import DeviceEvent, ProcessExited
from actors.runtime import AsyncioActor
from aliecs.cluster.inventory import NodeSpec
from aliecs.cluster.ports import PortAllocator, PortRange
from aliecs.executor.process import LaunchSpec
from tests.conftest import pid_alive

pytestmark = pytest.mark.usefixtures("no_leaked_processes")


class Received:
    """What the listener got; awaited by the test directly (not through the listener's mailbox)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.arrived: dict[type, asyncio.Event] = {}

    def add(self, message: Any) -> None:
        self.messages.append(message)
        self.arrived.setdefault(type(message), asyncio.Event()).set()

    async def wait_for(self, kind: type, timeout: float = 15.0) -> Any:
        event = self.arrived.setdefault(kind, asyncio.Event())
        await asyncio.wait_for(event.wait(), timeout)
        return next(m for m in self.messages if isinstance(m, kind))


class Listener(AsyncioActor):
    """Stands in for a task actor: records what the process actor tells it."""

    def __init__(self, received: Received) -> None:
        super().__init__()
        self.received = received

    def on_receive(self, message: Any) -> None:
        self.received.add(message)


_PORTS = PortAllocator(PortRange(39000, 39499), "executor tests")


async def launch(tmp_path: Path, *args: str) -> tuple[Any, Any, Any, int, Received]:
    executor = ExecutorActor.start(NodeSpec("testnode"))
    received = Received()
    listener = Listener.start(received)
    port = _PORTS.allocate()
    spec = LaunchSpec(
        task_id=f"t{port}",
        name="fake",
        command="aliecs-fake-task",
        arguments=args,
        env={"OCC_CONTROL_PORT": str(port)},
        log_path=tmp_path / f"{port}.log",
    )
    process = await executor.proxy().launch(spec, port, listener, True)
    return executor, listener, process, port, received


async def shutdown(*refs: Any) -> None:
    for ref in refs:
        await ref.stop()


async def test_start_drive_and_kill_cleanly(tmp_path: Path) -> None:
    executor, listener, process, port, received = await launch(tmp_path)
    try:
        pid = await process.proxy().start_process(15.0)
        assert pid_alive(pid)
        assert await process.proxy().transition("STANDBY", "CONFIGURE", {"a.b": "1"}, 5.0) == "CONFIGURED"
        assert await process.proxy().transition("CONFIGURED", "START", {}, 5.0) == "RUNNING"
        info = await process.proxy().kill()
        assert info.returncode == 0  # walked RUNNING -> STOP -> RESET -> EXIT, then exited by itself
        exited = await received.wait_for(ProcessExited)
        assert exited.expected and exited.exit.clean
        assert not pid_alive(pid)
    finally:
        _PORTS.release(port)
        await shutdown(executor, listener)


async def test_unexpected_death_is_reported_with_signal(tmp_path: Path) -> None:
    executor, listener, process, port, received = await launch(tmp_path)
    try:
        pid = await process.proxy().start_process(15.0)
        os.kill(pid, signal.SIGKILL)
        exited = await received.wait_for(ProcessExited)
        assert not exited.expected and exited.exit.describe() == "killed by SIGKILL"
        with pytest.raises(Exception, match="process is not running"):
            await process.proxy().transition("STANDBY", "CONFIGURE", {}, 5.0)
    finally:
        _PORTS.release(port)
        await shutdown(executor, listener)


async def test_stubborn_task_is_killed_by_escalating_signals(tmp_path: Path) -> None:
    executor, listener, process, port, received = await launch(
        tmp_path, "--hang-on", "CONFIGURE", "--ignore-sigterm"
    )
    try:
        pid = await process.proxy().start_process(15.0)
        configure = asyncio.ensure_future(process.proxy().transition("STANDBY", "CONFIGURE", {}, 0.5))
        with pytest.raises(Exception, match="CONFIGURE"):
            await configure
        # The walk to DONE cannot finish (CONFIGURE hangs), SIGTERM is ignored: SIGINT ends it.
        info = await process.proxy().kill(step_timeout=0.3, exit_grace=0.1, term_grace=0.3, int_grace=5.0)
        assert info is not None and not pid_alive(pid)
        exited = await received.wait_for(ProcessExited)
        assert exited.expected
    finally:
        _PORTS.release(port)
        await shutdown(executor, listener)


async def test_device_events_are_forwarded(tmp_path: Path) -> None:
    executor, listener, process, port, received = await launch(tmp_path, "--end-of-stream-after", "0.05")
    try:
        await process.proxy().start_process(15.0)
        await process.proxy().transition("STANDBY", "CONFIGURE", {}, 5.0)
        await process.proxy().transition("CONFIGURED", "START", {}, 5.0)
        event = await received.wait_for(DeviceEvent)
        assert event.type == "END_OF_STREAM" and event.task_id == f"t{port}"
        await process.proxy().kill()
    finally:
        _PORTS.release(port)
        await shutdown(executor, listener)


async def test_crash_on_start_says_so_with_output(tmp_path: Path) -> None:
    executor, listener, process, port, _ = await launch(tmp_path, "--crash-on-start")
    try:
        with pytest.raises(TaskStartError, match=r"crashed on start: process exited with code 2"):
            await process.proxy().start_process(15.0)
    finally:
        _PORTS.release(port)
        await shutdown(executor, listener)


async def test_stopping_the_executor_kills_its_processes(tmp_path: Path) -> None:
    executor, listener, process, port, _ = await launch(tmp_path, "--ignore-sigterm")
    try:
        pid = await process.proxy().start_process(15.0)
    finally:
        _PORTS.release(port)
        await shutdown(executor, listener)
    assert not pid_alive(pid)
