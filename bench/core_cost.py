"""What one transition costs the core itself, with its tasks spread over 4 executor processes.

Since the executors fan out to their tasks, the core sends one request per node per transition: its
CPU time and the bytes it writes per transition should grow with the number of nodes, not with the
number of tasks (only the per-task part of each request grows). Measured at N = 1,000 and 4,000
tasks on 4 nodes whose executors run in-memory fake tasks (`aliecs-executor --kind fake`), so the
tasks cost nothing and what is left is the core and its protocol:

- CPU seconds of the core process per transition (`time.process_time`, the executors excluded);
- bytes the core process writes per transition (`wchar` of /proc/self/io: its gRPC requests, plus the
  journal and logs, which are small).

The same-run baseline is the same transitions with the executors embedded in the core (no transport),
so the ratio says what the process split costs the core.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from actors.fake_executor import FakeExecutorActor
from aliecs.api import Core
from bench.common import nodes_for, quiet_logs, write_repository

NODES = 4
CYCLE = ("CONFIGURE", "START_ACTIVITY", "STOP_ACTIVITY", "RESET")


def _written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


async def _per_transition(tasks: int, workdir: Path, remote: bool) -> dict[str, float]:
    options: dict[str, Any] = {"executor_kind": "fake"} if remote else {"executor_class": FakeExecutorActor}
    core = Core.embedded(
        state_dir=workdir / ("remote" if remote else "embedded"),
        nodes=nodes_for(tasks, NODES),
        repository=write_repository(workdir / "repo", tasks),
        **options,
    )
    async with core:
        env = await core.new_environment("load")
        cpu = written = 0.0
        wall = 0.0
        for event in CYCLE:
            started, cpu0, written0 = time.perf_counter(), time.process_time(), _written()
            await env.transition(event)
            wall += time.perf_counter() - started
            cpu += time.process_time() - cpu0
            written += _written() - written0
        await env.destroy()
    count = len(CYCLE)
    return {"cpu_s": round(cpu / count, 4), "bytes": int(written / count), "wall_s": round(wall / count, 4)}


async def _measure(sizes: tuple[int, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {"nodes": NODES, "transitions": list(CYCLE)}
    with tempfile.TemporaryDirectory(prefix="aliecs-bench-") as tmp:
        async with quiet_logs():
            for tasks in sizes:
                remote = await _per_transition(tasks, Path(tmp) / f"r{tasks}", remote=True)
                embedded = await _per_transition(tasks, Path(tmp) / f"e{tasks}", remote=False)
                result[str(tasks)] = {
                    "core_cpu_s_per_transition": remote["cpu_s"],
                    "core_bytes_per_transition": remote["bytes"],
                    "wall_s_per_transition": remote["wall_s"],
                    "embedded_cpu_s_per_transition": embedded["cpu_s"],
                    "cpu_ratio_vs_embedded": round(remote["cpu_s"] / embedded["cpu_s"], 3)
                    if embedded["cpu_s"]
                    else None,
                }
    first, last = (result[str(size)] for size in (sizes[0], sizes[-1]))
    result["cpu_growth"] = round(last["core_cpu_s_per_transition"] / first["core_cpu_s_per_transition"], 2)
    result["task_growth"] = round(sizes[-1] / sizes[0], 2)
    return result


def run(seconds: float = 2.0, quick: bool = False) -> dict[str, Any]:
    """N = 1,000 and 4,000 on 4 nodes; `quick`: 100 and 400. `seconds` is not used."""
    return uvloop.run(_measure((100, 400) if quick else (1000, 4000)))


def report(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in result.items():
        if isinstance(value, dict):
            rows.append(
                (
                    f"N={key} on {result['nodes']} executor processes, per transition",
                    f"core CPU {value['core_cpu_s_per_transition']:.3f} s "
                    f"(embedded executors {value['embedded_cpu_s_per_transition']:.3f} s), "
                    f"core writes {value['core_bytes_per_transition']:,} B",
                )
            )
    rows.append(("core CPU growth for tasks x" + str(result["task_growth"]), f"x{result['cpu_growth']}"))
    return rows
