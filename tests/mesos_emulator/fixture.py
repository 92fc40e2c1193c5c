"""The emulator as a subprocess, for tests and demos that need it outside their own event loop.

    async with EmulatorProcess("--agents", "3", "--attribute", "agent-2:detector=TPC") as emulator:
        emulator.url            # the master, on a free port
        await emulator.lose_agent("agent-2")   # the admin API (tests.mesos_emulator.cluster)

It is started with `--port 0 --admin-port 0` (free ports) from the source checkout, and ready once it
printed its ready line (`tests.mesos_emulator.__main__`), within a deadline; if it dies or stays silent
the error carries the end of its stderr. Stopping it (SIGTERM) destroys every executor it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from tests.mesos_emulator.__main__ import READY

SOURCE_ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE = 30.0
STOP_DEADLINE = 30.0


class EmulatorProcessError(RuntimeError):
    """The emulator subprocess did not start, or an admin call failed."""


class EmulatorProcess:
    def __init__(self, *arguments: str, start_deadline: float = START_DEADLINE) -> None:
        self.arguments = ["--port", "0", "--admin-port", "0", *arguments]
        self.start_deadline = start_deadline
        self.process: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}
        descriptor, name = tempfile.mkstemp(prefix="mesos-emulator-", suffix=".stderr")
        os.close(descriptor)
        self.stderr_path = Path(name)
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return str(self.info["master"])

    @property
    def admin_url(self) -> str:
        return str(self.info["admin"])

    @property
    def agents(self) -> dict[str, str]:
        """hostname -> HOST:PORT of its executor endpoint."""
        return dict(self.info["agents"])

    async def __aenter__(self) -> EmulatorProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        self.stderr_path.unlink(missing_ok=True)

    async def start(self) -> None:
        with open(self.stderr_path, "wb") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.mesos_emulator",
                *self.arguments,
                cwd=SOURCE_ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), self.start_deadline)
        except TimeoutError:
            line = b""
        text = line.decode(errors="replace")
        if not text.startswith(READY):
            await self.stop()
            why = text.strip() or f"no ready line within {self.start_deadline:g}s"
            error = EmulatorProcessError(f"the Mesos emulator did not start ({why}); stderr: {self.stderr()}")
            self.stderr_path.unlink(missing_ok=True)
            raise error
        self.info = json.loads(text.removeprefix(READY))
        self._session = aiohttp.ClientSession()

    def stderr(self, limit: int = 2000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it is still there after the deadline; its exit code."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_DEADLINE)
            except TimeoutError:
                process.kill()
                await process.wait()
        return process.returncode

    # -- the admin API ------------------------------------------------------------------------------

    async def admin(self, path: str, **query: Any) -> dict[str, Any]:
        """POST (or GET for "state") an admin call; raises EmulatorProcessError on a refusal."""
        if self._session is None:
            raise EmulatorProcessError("the Mesos emulator is not running")
        method = "GET" if path == "state" else "POST"
        params = {key: str(value) for key, value in query.items() if value is not None}
        url = f"{self.admin_url}/emulator/{path}"
        async with self._session.request(method, url, params=params) as response:
            body = await response.json()
            if response.status != 200:
                raise EmulatorProcessError(f"{method} {path}: {response.status} {body.get('error', body)}")
            return dict(body)

    async def state(self) -> dict[str, Any]:
        return await self.admin("state")

    async def lose_agent(self, hostname: str) -> None:
        await self.admin(f"agents/{hostname}/lose")

    async def restart_agent(self, hostname: str, downtime: float = 0.0) -> None:
        await self.admin(f"agents/{hostname}/restart", downtime=downtime)

    async def stop_agent(self, hostname: str) -> None:
        await self.admin(f"agents/{hostname}/stop")

    async def start_agent(self, hostname: str) -> None:
        await self.admin(f"agents/{hostname}/start")

    async def kill_executors(self, hostname: str, executor_id: str | None = None) -> list[int]:
        return list((await self.admin(f"agents/{hostname}/kill-executors", executor_id=executor_id))["pids"])

    async def restart_master(self, downtime: float = 0.0) -> None:
        await self.admin("master/restart", downtime=downtime)

    async def rescind_offers(self, hostname: str | None = None) -> int:
        return int((await self.admin("offers/rescind", agent=hostname))["rescinded"])
