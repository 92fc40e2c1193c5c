"""Soak: N full copypush cycles through the embedded API; does anything grow with the cycles?

A core runs through a whole data-taking period, creating and destroying environments hundreds of
times a day: whatever one cycle leaves behind adds up to gigabytes over a year. Each cycle here is
what an operator does (create, CONFIGURE, START_ACTIVITY, STOP_ACTIVITY, destroy) with the packaged
`copypush` workflow on two simulated nodes: four real task processes moving data over ZeroMQ.

After every cycle (its environment destroyed, so nothing of it should remain) the scenario samples
this process, which is the core:
- resident set (RSS) and the Python heap: blocks held by the Python allocator
  (`sys.getallocatedblocks`, sees everything pymalloc holds, unlike `tracemalloc` started late) and
  objects tracked by the cyclic collector (including the frozen ones, see `actors.gc_policy`);
- open file descriptors, OS threads, child processes (all task processes are gone after destroy);
- the longest event-loop stall during the cycle (`LoopMonitor`).

Growth per cycle is the least-squares slope over the cycles after the warm-up (the first cycles
fill caches, pools and allocator arenas once). The plot (`soak.png`) shows the curves.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvloop

from aliecs.api import Core
from bench.common import LoopMonitor, median, nodes_for, quiet_logs, rss_bytes

#: Cycles of the normal bench run (about a minute and a half here) and of `--quick`.
DEFAULT_CYCLES = 60
QUICK_CYCLES = 3
#: The issue's goal: RSS growth per cycle after warm-up, in bytes.
GOAL_BYTES_PER_CYCLE = 1024
WORKFLOW = "copypush"
#: Control ports away from the other scenarios' and the test suites' ranges (see `nodes_for`).
FIRST_PORT = 24000


def warmup_cycles(cycles: int) -> int:
    """Cycles left out of the slope: a fifth of the run, at least 1 (and none for a tiny run)."""
    return 0 if cycles < 3 else max(1, cycles // 5)


def slope(values: list[float]) -> float:
    """Least-squares growth per step of `values` (0 for fewer than two values)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    den = sum((x - mean_x) ** 2 for x in range(n))
    return num / den


def child_processes() -> int:
    """Processes whose parent is this process (task processes, executors)."""
    me = str(os.getpid())
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                # pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren.
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            count += 1
    return count


def sample() -> dict[str, int]:
    """One reading of everything that must not grow from one cycle to the next."""
    return {
        "rss": rss_bytes(),
        "heap_blocks": sys.getallocatedblocks(),
        "gc_objects": len(gc.get_objects()) + gc.get_freeze_count(),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": len(os.listdir("/proc/self/task")),
        "python_threads": threading.active_count(),
        "children": child_processes(),
    }


async def cycle(core: Core) -> None:
    env = await core.new_environment(WORKFLOW)
    try:
        for event in ("CONFIGURE", "START_ACTIVITY", "STOP_ACTIVITY"):
            await env.transition(event)
    finally:
        await env.destroy()


async def measure(cycles: int, workdir: Path) -> dict[str, Any]:
    samples: list[dict[str, int]] = []
    stalls: list[float] = []
    durations: list[float] = []
    with LoopMonitor() as monitor:
        async with Core.embedded(state_dir=workdir / "state", nodes=nodes_for(4, 2, FIRST_PORT)) as core:
            samples.append(sample())  # before the first cycle: the core alone
            for _ in range(cycles):
                monitor.max_stall = 0.0
                started = time.perf_counter()
                await cycle(core)
                durations.append(time.perf_counter() - started)
                stalls.append(round(monitor.max_stall * 1000, 1))
                samples.append(sample())
    warmup = warmup_cycles(cycles)
    steady = samples[warmup:]  # samples[k]: after k cycles; the slopes start once the warm-up is done
    series = {key: [entry[key] for entry in samples] for key in samples[0]}
    growth = {key: round(slope([entry[key] for entry in steady]), 2) for key in samples[0]}
    return {
        "cycles": cycles,
        "workflow": WORKFLOW,
        "warmup_cycles": warmup,
        "cycle_s": round(median(durations), 3),
        "rss_growth_per_cycle_bytes": round(growth["rss"]),
        "heap_blocks_growth_per_cycle": growth["heap_blocks"],
        "gc_objects_growth_per_cycle": growth["gc_objects"],
        "growth_per_cycle": growth,
        "rss_first_mb": round(samples[0]["rss"] / 2**20, 2),
        "rss_last_mb": round(samples[-1]["rss"] / 2**20, 2),
        "goal_bytes_per_cycle": GOAL_BYTES_PER_CYCLE,
        "goal_met": growth["rss"] < GOAL_BYTES_PER_CYCLE,
        # Descriptors, threads, processes: none more at the end than right after the warm-up.
        "flat": {key: steady[-1][key] <= steady[0][key] for key in ("fds", "threads", "children")},
        "max_loop_stall_ms": max(stalls) if stalls else 0.0,
        # Per sample (index 0: before the first cycle), for the plot.
        "series": series,
        "loop_stall_ms_per_cycle": stalls,
    }


async def _measure(cycles: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aliecs-soak-") as tmp:
        async with quiet_logs():
            return await measure(cycles, Path(tmp))


def run(seconds: float = 2.0, quick: bool = False, cycles: int | None = None) -> dict[str, Any]:
    """`cycles` full cycles (default 60; 3 with `quick`). `seconds` is not used: N sizes the run."""
    count = cycles if cycles is not None else QUICK_CYCLES if quick else DEFAULT_CYCLES
    if count < 1:
        raise ValueError(f"soak: the number of cycles must be at least 1, got {count}")
    started = time.perf_counter()
    result = uvloop.run(_measure(count))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def report(result: dict[str, Any]) -> list[tuple[str, str]]:
    growth = result["growth_per_cycle"]
    first, last = result["series"]["rss"][0], result["series"]["rss"][-1]
    return [
        ("cycles (warm-up left out of the slopes)", f"{result['cycles']} ({result['warmup_cycles']})"),
        ("median cycle", f"{result['cycle_s']:.2f} s"),
        ("RSS first -> last", f"{first / 2**20:.1f} MB -> {last / 2**20:.1f} MB"),
        (
            f"RSS growth per cycle (goal < {result['goal_bytes_per_cycle']} B)",
            f"{growth['rss']:,.0f} B ({'met' if result['goal_met'] else 'NOT met'})",
        ),
        ("Python heap blocks per cycle", f"{growth['heap_blocks']:+.1f}"),
        ("gc-tracked objects per cycle", f"{growth['gc_objects']:+.1f}"),
        (
            "fds / threads / children flat",
            " / ".join("yes" if result["flat"][key] else "NO" for key in ("fds", "threads", "children")),
        ),
        ("max loop stall", f"{result['max_loop_stall_ms']} ms"),
    ]
