"""Re-adoption: SIGKILL of the core during a run of N farm tasks on 4 nodes, then a new core.

The design goal reads "after a SIGKILL of the core, 2,000 running tasks are re-adopted (not killed)
with their run in <= 2 s". A first core runs in a child process (`python -m bench.readopt CORE`):
4 executor processes (fake-farm endpoints: real OCC gRPC servers, one farm process per node), one
environment of N tasks driven to RUNNING. The child is SIGKILLed; the executors keep every task. Then
a new core starts in this process on the same state directory and is timed until the environment is
back in RUNNING with every task ACTIVE; the tasks restarted are counted (the goal: none).

Baseline, same run: the start of a core on 4 nodes with no environment to restore (its executors
are started from scratch), so the figure can be read as "how much the restore itself costs".
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from aliecs.api import Core
from bench.common import nodes_for, quiet_logs, write_repository

GOAL_S = 2.0
NODES = 4


def _core(workdir: Path, tasks: int) -> Core:
    return Core.embedded(
        state_dir=workdir / "state",
        nodes=nodes_for(tasks, NODES),
        repository=write_repository(workdir / "repo", tasks),
        executor_kind="farm",
        outlive_core=True,
        failover_timeout=60.0,
    )


async def first_core(workdir: Path, tasks: int) -> None:
    """The core to be killed: drives N tasks to RUNNING, prints the environment, waits for SIGKILL."""
    core = _core(workdir, tasks)
    await core.start()
    env = await core.new_environment("load")
    await env.transition("CONFIGURE")
    await env.transition("START_ACTIVITY")
    ports = sorted(record.control_port for record in env._record.tasks.values())
    print(json.dumps({"env": env.id, "run": env.run_number, "ports": ports}), flush=True)
    await asyncio.Event().wait()


async def measure(tasks: int, workdir: Path) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.readopt",
        "CORE",
        str(workdir),
        str(tasks),
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 600)
    if not line:
        raise RuntimeError("the first core ended before its environment was RUNNING")
    before = json.loads(line)
    os.kill(child.pid, signal.SIGKILL)
    await child.wait()

    started = time.perf_counter()
    core = _core(workdir, tasks)
    await core.start()
    env = core.environment(before["env"])
    restore_s = time.perf_counter() - started
    try:
        tasks_now = env.tasks
        restarted = sum(1 for task in tasks_now if task.status != "ACTIVE" or task.state != "RUNNING")
        ports = sorted(record.control_port for record in env._record.tasks.values())
        result = {
            "tasks": tasks,
            "nodes": NODES,
            "restore_s": round(restore_s, 3),
            "state": env.state,
            "run_number_kept": env.run_number == before["run"],
            "tasks_restarted": restarted
            + sum(1 for a, b in zip(ports, before["ports"], strict=True) if a != b),
        }
        await env.transition("STOP_ACTIVITY")
    finally:
        await core.stop()

    # Baseline: a cold start of a core with the same nodes and nothing to restore.
    with tempfile.TemporaryDirectory(prefix="aliecs-bench-cold-") as cold:
        started = time.perf_counter()
        core = _core(Path(cold), tasks)
        await core.start()
        result["cold_start_s"] = round(time.perf_counter() - started, 3)
        await core.stop()
    result["goal_s"] = GOAL_S
    result["goal_met"] = result["restore_s"] <= GOAL_S and result["tasks_restarted"] == 0
    return result


async def _measure(tasks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aliecs-bench-") as tmp:
        async with quiet_logs():
            return await measure(tasks, Path(tmp))


def run(seconds: float = 2.0, quick: bool = False) -> dict[str, Any]:
    """N = 2,000 on 4 nodes; `quick`: N = 100. `seconds` is not used."""
    return uvloop.run(_measure(100 if quick else 2000))


def report(result: dict[str, Any]) -> list[tuple[str, str]]:
    n = result["tasks"]
    return [
        (
            f"N={n} on {result['nodes']} nodes: core back with its run after SIGKILL",
            f"{result['restore_s']:.3f} s",
        ),
        ("same-run baseline: cold core start, nothing to restore", f"{result['cold_start_s']:.3f} s"),
        ("tasks restarted", str(result["tasks_restarted"])),
        ("state / run number kept", f"{result['state']} / {result['run_number_kept']}"),
        (
            f"goal: <= {result['goal_s']:g} s, none restarted",
            "met" if result["goal_met"] else "NOT met",
        ),
    ]


if __name__ == "__main__" and sys.argv[1:2] == ["CORE"]:
    uvloop.run(first_core(Path(sys.argv[2]), int(sys.argv[3])))
