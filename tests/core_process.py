"""A real `aliecs-core` process and the `coconut` CLI run as a user types it: the helpers of the
tests that drive the daemon from outside (coconut, executors, plugins, Mesos, modify interfaces)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from aliecs.testing import isolated_nodes

BIN = Path(sys.executable).parent


@dataclass
class CoreProcess:
    process: asyncio.subprocess.Process
    port: int
    state_dir: Path
    lines: list[str]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def read_until(self, fragment: str, timeout: float = 30.0) -> str:
        """Read the core's output until a line contains `fragment`."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"aliecs-core ended before printing {fragment!r}: {self.lines}")
                line = raw.decode().rstrip()
                self.lines.append(line)
                if fragment in line:
                    return line


async def start_core(tmp_path: Path, port: int, *extra: str) -> CoreProcess:
    """Start `aliecs-core` on `port` with its state in `tmp_path/state` (kept across restarts) and one
    node whose ports are away from other cores running on this machine; returns once it listens."""
    inventory = tmp_path / "inventory.yaml"
    if not inventory.exists():
        (node,) = isolated_nodes(1)
        inventory.write_text(
            "nodes:\n  - hostname: localhost\n"
            f"    control_ports: {node.control_ports.first}-{node.control_ports.last}\n"
            f"    data_ports: {node.data_ports.first}-{node.data_ports.last}\n"
        )
    process = await asyncio.create_subprocess_exec(
        str(BIN / "aliecs-core"),
        "--state-dir",
        str(tmp_path / "state"),
        "--port",
        str(port),
        "--inventory",
        str(inventory),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    running = CoreProcess(process, port, tmp_path / "state", [])
    try:
        await running.read_until("control API listening")
    except BaseException:
        process.kill()
        await process.wait()
        raise
    return running


async def stop_or_kill(core: CoreProcess) -> None:
    """End a core left running by a test: SIGTERM (it tears down its environments, and its executors
    with their tasks, which would otherwise outlive a SIGKILLed core), SIGKILL if it hangs."""
    if core.process.returncode is not None:
        return
    core.process.terminate()
    try:
        await asyncio.wait_for(core.process.wait(), 60)
    except TimeoutError:
        core.process.kill()
        await core.process.wait()


async def coconut(core: CoreProcess, *args: str, ok: bool = True) -> str:
    """Run `coconut --endpoint HOST:PORT ARGS...`; returns stdout (stderr too when it fails)."""
    process = await asyncio.create_subprocess_exec(
        str(BIN / "coconut"),
        "--endpoint",
        core.endpoint,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    text, errors = out.decode(), err.decode()
    if ok:
        assert process.returncode == 0, f"coconut {' '.join(args)} failed:\n{text}{errors}"
        return text
    assert process.returncode == 1, f"coconut {' '.join(args)} should have failed:\n{text}{errors}"
    return text + errors


def field(output: str, key: str) -> str:
    match = re.search(rf"^{re.escape(key)}:\s+(\S.*?)\s*$", output, re.M)
    assert match, f"no {key!r} in:\n{output}"
    return match.group(1)
