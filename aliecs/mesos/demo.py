"""`make demo-mesos`: the demo's copypush cycle (aliecs.demo) on an emulated Mesos cluster.

It starts the Mesos emulator of the test suite (`python -m tests.mesos_emulator`, so it runs from a
source checkout) with three agents, runs the cycle with the core as a Mesos framework, stops the
emulator and checks that no executor or task process is left (none runs in the emulator's work
directory any more).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

from aliecs.demo import run_demo

READY = "mesos-emulator: ready "
SOURCE_ROOT = Path(__file__).resolve().parents[2]
_START_TIMEOUT = 30.0


def processes_under(directory: Path) -> list[int]:
    """Processes whose working directory is inside `directory` (the emulator's executor sandboxes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == directory or directory in cwd.parents:
            found.append(int(entry.name))
    return found


async def run_on_emulator(agents: int, seconds: float) -> int:
    with tempfile.TemporaryDirectory(prefix="aliecs-demo-mesos-") as scratch:
        work = Path(scratch) / "mesos"
        emulator = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.mesos_emulator",
            "--port",
            "0",
            "--agents",
            str(agents),
            "--heartbeat-interval",
            "2",
            "--work-dir",
            str(work),
            cwd=SOURCE_ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert emulator.stdout is not None
        try:
            line = (await asyncio.wait_for(emulator.stdout.readline(), _START_TIMEOUT)).decode()
            if not line.startswith(READY):
                print(f"ERROR: the Mesos emulator did not start: {line.strip()}", file=sys.stderr)
                return 1
            master = json.loads(line.removeprefix(READY))["master"]
            print(f"Mesos emulator: master {master}, {agents} agents")
            code = await run_demo(0, seconds, Path(scratch) / "state", mesos=master)
        finally:
            if emulator.returncode is None:
                emulator.send_signal(signal.SIGTERM)
            await emulator.wait()
        left = processes_under(work)
        if left:
            print(f"ERROR: processes still running in the emulator's sandboxes: {left}", file=sys.stderr)
            return 1
        print("the Mesos emulator stopped; no executor or task process is left")
        return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aliecs.mesos.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=3, help="emulated Mesos agents (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long data flows while RUNNING")
    args = parser.parse_args(argv)
    from aliecs.runtime import run

    return run(run_on_emulator(args.agents, args.seconds))


if __name__ == "__main__":
    sys.exit(main())
