"""Shared helpers for the OCC tests: free ports, deadline-bounded waits, fake task subprocesses.

Waits never use a fixed sleep as synchronisation: they poll a condition until a deadline and fail
with a message saying what was awaited (and, for processes, the process's own log), so a failure is
diagnosable from the test report alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from aliecs.occ import OccClient, OccError, OccTask
from aliecs.occ.task import CALLBACK_NAMES
from aliecs.testing import poll_until

BIN_DIR = Path(sys.executable).parent
FAKE_TASK = str(BIN_DIR / "aliecs-fake-task")
PEANUT = str(BIN_DIR / "peanut")

#: Generous deadline for a subprocess to start serving on a loaded CI machine; normally ~0.3 s.
START_TIMEOUT = 15.0


class Recorder:
    """An OCC handler that records its callbacks (``on_configure(args)`` as ``("configure", args)``,
    and so on) and can be told to fail (`fail_in`) or block until `release` (`block_in`) in one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.fail_in: set[str] = set()
        self.block_in: set[str] = set()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.task: OccTask | None = None
        for name in CALLBACK_NAMES.values():
            setattr(self, name, functools.partial(self._call, name.removeprefix("on_")))

    def bind(self, task: OccTask) -> None:
        self.task = task

    async def _call(self, name: str, args: dict[str, str]) -> None:
        self.calls.append((name, args))
        if name in self.block_in:
            self.entered.set()
            await self.release.wait()
        if name in self.fail_in:
            raise RuntimeError(f"{name} exploded")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_sync(predicate: Callable[[], bool], within: float, what: str, interval: float = 0.005) -> None:
    """Blocking twin of `aliecs.testing.poll_until` for synchronous tests (no event loop to wait on)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        time.sleep(interval)  # poll


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def wait_for_state(client: OccClient, state: str, within: float = 5.0) -> None:
    """Wait until GetState reports ``state`` (for states a process reaches on its own)."""

    async def reached() -> bool:
        try:
            current, _pid = await client.get_state(timeout=1.0)
        except OccError:
            return False
        return current == state

    await poll_until(reached, f"{client.address} to report state {state}", within)


class FakeTask:
    """One ``aliecs-fake-task`` subprocess, with its log in a file (never a pipe that could fill up)."""

    def __init__(self, options: Sequence[str], log_path: Path, port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        self.options = list(options)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [FAKE_TASK, "--control-port", str(self.port), *self.options],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, timeout: float = 5.0) -> OccClient:
        return OccClient("127.0.0.1", self.port, timeout=timeout)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"fake task {self.options} exited with {self.proc.returncode} before serving:\n{self.log()}"
            )
        return port_answers(self.port)

    async def wait_serving(self, within: float = START_TIMEOUT) -> None:
        """Wait until the OCC port accepts connections (it is bound right before serving)."""
        await poll_until(self._serving, f"fake task on port {self.port} to serve", within, interval=0.005)

    def wait_serving_sync(self, within: float = START_TIMEOUT) -> None:
        wait_until_sync(self._serving, within, f"fake task on port {self.port} to serve")

    async def wait_exit(self, within: float = 10.0) -> int:
        """The exit code, waiting up to ``within`` s (in a worker thread, so the loop keeps running)."""
        try:
            return await asyncio.to_thread(self.proc.wait, within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"fake task still running after {within:g}s:\n{self.log()}") from None

    def wait_exit_sync(self, within: float = 10.0) -> int:
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"fake task still running after {within:g}s:\n{self.log()}") from None

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """Make sure the process is gone (teardown); never raises."""
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL does not fail in practice
                self.proc.wait(5)
        self._log.close()


class FakeTaskLauncher:
    """Starts fake tasks for one test and kills every one of them at teardown."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.tasks: list[FakeTask] = []

    def start(self, *options: str, port: int | None = None) -> FakeTask:
        log_path = self.directory / f"fake-task-{len(self.tasks)}.log"
        task = FakeTask(options, log_path, port=port)
        self.tasks.append(task)
        return task

    def kill_all(self) -> None:
        for task in self.tasks:
            task.kill()


def run_peanut(
    *args: str, timeout: float = 20.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the peanut CLI to completion and capture its output."""
    return subprocess.run(
        [PEANUT, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
