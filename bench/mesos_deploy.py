"""DEPLOY on (emulated) Mesos: N farm tasks on 10 agents, tasks per second, against the local cluster.

The Mesos emulator of the test suite runs as its own process (`python -m tests.mesos_emulator`, as a
master would run elsewhere), with 10 agents; the core is a framework on it (`Core.embedded(mesos=)`)
with fake-farm executors (real OCC gRPC endpoints, one farm per executor). Two DEPLOYs are timed:
the first, which includes starting the executor on each agent (Mesos launches it with the first
task placed there), and a second one with the executors running. The baseline, in the same run: the
same DEPLOY on a local cluster of 10 nodes (executor processes started with the core, not timed).
The figure is the ratio of the warm Mesos DEPLOY's rate to the local one's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from actors.mesos_adapter import TERMINAL_STATES
from aliecs.api import Core
from bench.common import nodes_for, quiet_logs, write_repository

AGENTS = 10
# The local nodes' control ports: away from 23000+, which the other load scenarios use (and may hold
# while another bench or test run is going on on this machine).
LOCAL_FIRST_PORT = 25000
SOURCE_ROOT = Path(__file__).resolve().parent.parent
READY = "mesos-emulator: ready "


async def _deploy(core: Core) -> tuple[float, str]:
    started = time.perf_counter()
    env = await core.new_environment("load")
    elapsed = time.perf_counter() - started
    await env.destroy()
    return elapsed, env.state


async def _all_tasks_gone(admin: str, timeout: float = 300.0) -> None:
    """Wait until the master knows no task any more: every terminal update was acknowledged and the
    tasks' resources are free to be offered again (the next DEPLOY must not wait for them)."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            async with session.get(f"{admin}/emulator/state") as response:
                state = await response.json()
            if not [task for task in state["tasks"] if task["state"] not in TERMINAL_STATES]:
                return
            await asyncio.sleep(0.5)  # poll


async def on_mesos(tasks: int, agents: int, workdir: Path) -> dict[str, float]:
    emulator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.mesos_emulator",
        "--port",
        "0",
        "--agents",
        str(agents),
        "--cpus",
        "1000",
        "--mem",
        "1000000",
        "--heartbeat-interval",
        "5",
        "--work-dir",
        str(workdir / "mesos"),
        cwd=SOURCE_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert emulator.stdout is not None
    try:
        line = (await asyncio.wait_for(emulator.stdout.readline(), 60)).decode()
        if not line.startswith(READY):
            raise RuntimeError(f"the Mesos emulator did not start: {line.strip()}")
        ready = json.loads(line.removeprefix(READY))
        master = ready["master"]
        core = Core.embedded(
            state_dir=workdir / "mesos-state",
            repository=write_repository(workdir / "repo", tasks),
            executor_kind="farm",
            mesos=master,
        )
        async with core:
            cold_s, _ = await _deploy(core)
            await _all_tasks_gone(ready["admin"])  # their resources are offered again
            warm_s, _ = await _deploy(core)
    finally:
        if emulator.returncode is None:
            emulator.terminate()
        await emulator.wait()
    return {"cold_s": cold_s, "warm_s": warm_s}


async def on_local(tasks: int, nodes: int, workdir: Path) -> float:
    core = Core.embedded(
        state_dir=workdir / "local-state",
        nodes=nodes_for(tasks, nodes, LOCAL_FIRST_PORT),
        repository=write_repository(workdir / "repo-local", tasks),
        executor_kind="farm",
    )
    async with core:
        await _deploy(core)  # the same warm-up as on Mesos: both measure a second DEPLOY
        elapsed, _ = await _deploy(core)
    return elapsed


async def measure(tasks: int, agents: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aliecs-bench-mesos-") as tmp:
        workdir = Path(tmp)
        async with quiet_logs():
            local_s = await on_local(tasks, agents, workdir)
            mesos = await on_mesos(tasks, agents, workdir)
    return {
        "tasks": tasks,
        "agents": agents,
        "local_deploy_s": round(local_s, 3),
        "local_tasks_per_s": round(tasks / local_s, 1),
        "mesos_cold_deploy_s": round(mesos["cold_s"], 3),
        "mesos_cold_tasks_per_s": round(tasks / mesos["cold_s"], 1),
        "mesos_deploy_s": round(mesos["warm_s"], 3),
        "mesos_tasks_per_s": round(tasks / mesos["warm_s"], 1),
        # >1: Mesos is slower than the local cluster by that factor.
        "mesos_vs_local_ratio": round(mesos["warm_s"] / local_s, 2),
    }


def run(seconds: float = 0.0, quick: bool = False, large: bool = False) -> dict[str, Any]:
    """`quick`: 40 tasks on 4 agents (the suite's smoke run); default 200 on 10; `large`: 1,000 on 10."""
    tasks, agents = (40, 4) if quick else ((1000, AGENTS) if large else (200, AGENTS))
    return uvloop.run(measure(tasks, agents))


def report(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("tasks / agents", f"{result['tasks']} / {result['agents']}"),
        ("local cluster DEPLOY", f"{result['local_deploy_s']} s ({result['local_tasks_per_s']} tasks/s)"),
        (
            "Mesos DEPLOY, executors running",
            f"{result['mesos_deploy_s']} s ({result['mesos_tasks_per_s']} tasks/s)",
        ),
        (
            "Mesos DEPLOY, executors started by it",
            f"{result['mesos_cold_deploy_s']} s ({result['mesos_cold_tasks_per_s']} tasks/s)",
        ),
        ("Mesos / local time", f"{result['mesos_vs_local_ratio']}x"),
    ]


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv, large="--large" in sys.argv), indent=2))
