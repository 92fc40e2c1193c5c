"""Scale: one environment of 10,000 tasks (in-process fake executor) through DEPLOY..EXIT.

With the tasks reduced to state machines in memory, what remains is the control system itself:
template expansion, placement and port allocation, the actor tree (environment, roles, task actors,
process actors) and the fan-out of every transition. Memory per task is the growth of the resident
set from before the environment exists to its peak, divided by N (the scenario runs in a fresh
process, see `bench.__main__`).

Same-run baseline: the same transitions applied to N in-memory task states by a bare asyncio fan-out
(one coroutine per task, `asyncio.gather`), i.e. the least a one-loop controller spends per task; the
ratio core / bare is the price of the control system's structure.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from actors.fake_executor import FakeExecutorActor
from aliecs.api import Core
from aliecs.occ.states import next_state
from bench.common import CYCLE, LoopMonitor, nodes_for, quiet_logs, rss_bytes, timed, write_repository

# Environment transition -> the OCC event each task goes through (DEPLOY starts tasks: no event).
_TASK_EVENT = {
    "CONFIGURE": "CONFIGURE",
    "START_ACTIVITY": "START",
    "STOP_ACTIVITY": "STOP",
    "RESET": "RESET",
    "EXIT": "EXIT",
}


class RssPeak:
    """Samples the resident set periodically; the peak tells the environment's memory at its largest."""

    def __init__(self, period: float = 0.02) -> None:
        self.period = period
        self.peak = rss_bytes()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes())
            await asyncio.sleep(self.period)  # sampling period

    def __enter__(self) -> RssPeak:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = max(self.peak, rss_bytes())
        if self._task is not None:
            self._task.cancel()


async def bare_cycle(tasks: int) -> dict[str, float]:
    """Seconds per transition for the bare fan-out over `tasks` in-memory states."""
    states = ["STANDBY"] * tasks

    async def step(index: int, event: str) -> None:
        states[index] = next_state(states[index], event)

    times: dict[str, float] = {}
    for transition, event in _TASK_EVENT.items():
        with timed(times, transition):
            await asyncio.gather(*(step(index, event) for index in range(tasks)))
    return times


async def core_cycle(tasks: int, workdir: Path, repository: Any, times: dict[str, float]) -> None:
    """DEPLOY..EXIT of one environment; seconds per transition (and RSS once deployed) into `times`."""
    async with Core.embedded(
        state_dir=workdir / "state",
        nodes=nodes_for(tasks),
        repository=repository,
        executor_class=FakeExecutorActor,
    ) as core:
        with timed(times, "DEPLOY"):
            env = await core.new_environment("load")
        times["rss_deployed"] = rss_bytes()
        for transition in CYCLE[1:]:
            with timed(times, transition):
                await env.transition(transition)
        with timed(times, "destroy"):
            await env.destroy()


async def measure(tasks: int, workdir: Path) -> dict[str, Any]:
    repository = write_repository(workdir / "repo", tasks)
    times: dict[str, float] = {}
    with LoopMonitor() as monitor:
        with monitor.section("bare"):
            bare = await bare_cycle(tasks)
        gc.collect()
        rss_before = rss_bytes()
        with RssPeak() as rss, monitor.section("core"):
            await core_cycle(tasks, workdir, repository, times)
    rss_deployed = times.pop("rss_deployed")
    cycle = sum(times[transition] for transition in CYCLE)
    bare_total = sum(bare.values())
    return {
        "tasks": tasks,
        "transition_s": {key: round(value, 4) for key, value in times.items()},
        "bare_s": {key: round(value, 4) for key, value in bare.items()},
        "cycle_s": round(cycle, 3),
        "bare_cycle_s": round(bare_total, 4),
        # DEPLOY has no bare counterpart (nothing to start), so the ratio covers the OCC transitions.
        "ratio_without_deploy": round((cycle - times["DEPLOY"]) / bare_total, 1),
        "bytes_per_task": int((rss.peak - rss_before) / tasks),
        "bytes_per_task_deployed": int((rss_deployed - rss_before) / tasks),
        "rss_before_mb": round(rss_before / 2**20, 1),
        "rss_peak_mb": round(rss.peak / 2**20, 1),
        "max_loop_stall_ms": monitor.sections_ms().get("core", 0.0),
        "loop_stall_ms": monitor.sections_ms(),
    }


async def _measure(tasks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aliecs-scale-") as tmp:
        async with quiet_logs():
            return await measure(tasks, Path(tmp))


def run(seconds: float = 2.0, quick: bool = False, large: bool = False) -> dict[str, Any]:
    """10,000 tasks (300 with `quick`; `large` changes nothing: the headline is defined at 10,000)."""
    tasks = 300 if quick else 10000
    started = time.perf_counter()
    result = uvloop.run(_measure(tasks))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def report(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        (f"N={result['tasks']} {name}", f"{seconds:.3f} s")
        for name, seconds in result["transition_s"].items()
    ]
    rows += [
        ("cycle DEPLOY..EXIT", f"{result['cycle_s']:.2f} s"),
        ("bare fan-out cycle (baseline)", f"{result['bare_cycle_s']:.3f} s"),
        ("ratio (transitions without DEPLOY)", f"{result['ratio_without_deploy']}x"),
        ("memory per task (peak RSS growth / N)", f"{result['bytes_per_task']:,} B"),
        ("max loop stall", f"{result['max_loop_stall_ms']} ms"),
    ]
    return rows
