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
- the longest event-loop stall during the cycle (`LoopMonitor`);
- and each node's `aliecs-executor` process (the core runs one per node; they live as long as the
  core and run every task): its RSS, descriptors, threads and child processes (tasks).

Growth per cycle is the least-squares slope over the cycles after the warm-up (the first cycles
fill caches, pools and allocator arenas once). The plot (`soak.png`) shows the curves.

Two more long-running parts are soaked the same way, bounded and quick:
- `occ`: the OCC library in a task process (`aliecs-fake-task`), driven through many
  CONFIGURE/START/STOP/RESET cycles, each also opening and closing a StateStream subscription (as an
  executor does); the *task process's* RSS and descriptors are sampled.
- `subscribe`: a control API client (its own process, `bench.subscribe_client`) that connects,
  Subscribes, and disconnects, again and again; the core's RSS, descriptors and live event-bus
  subscribers are sampled (the last must come back to the server's own, the audit log's).
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import Any

import uvloop

from aliecs.api import Core
from aliecs.occ.client import OccClient
from aliecs.occ.errors import OccError
from aliecs.server import ControlServer
from bench.common import LoopMonitor, median, nodes_for, quiet_logs, rss_bytes

#: Cycles of the normal bench run (about a minute and a half here) and of `--quick`.
DEFAULT_CYCLES = 60
QUICK_CYCLES = 3
#: OCC cycles (four transitions and one state stream each) and Subscribe connections: normal, quick.
OCC_CYCLES = (300, 10)
SUBSCRIBE_ROUNDS = (300, 10)
#: The issue's goal: RSS growth per cycle after warm-up, in bytes.
GOAL_BYTES_PER_CYCLE = 1024
WORKFLOW = "copypush"
#: Control ports below the other scenarios' (23000 and up, see `nodes_for`) and above the test
#: suites' default data ports (20000-21999), so that a soak can run next to either.
FIRST_PORT = 22000
#: The repository: where `python -m bench.subscribe_client` is found.
ROOT = Path(__file__).resolve().parents[1]


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


def child_processes(root: int | None = None) -> int:
    """Processes below `root` (default: this one): the executors (one per node, for the life of the
    core) and their task processes (which must all be gone once their environment is destroyed)."""
    parents: dict[str, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                # pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren.
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[entry.name] = fields[1]
    below = {str(os.getpid() if root is None else root)}
    grown = True
    while grown:
        found = {pid for pid, parent in parents.items() if parent in below} - below
        grown = bool(found)
        below |= found
    return len(below) - 1


def process_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def executor_pids(core: Core) -> dict[str, int]:
    """Node -> pid of its `aliecs-executor` process (none when the executors are embedded)."""
    executors = getattr(core.executors, "executors", {})
    return {node: executor.pid for node, executor in executors.items()}


class Readings:
    """Samples kept in arrays sized before the first cycle, so that keeping them costs the measured
    process nothing per cycle.

    A list of dicts of ints grows the heap by about 13 blocks (~900 B of RSS) per cycle with the
    executors' readings, the durations and the stalls: over 1,000 cycles that was the whole of the
    core's measured growth (a run with lists: +13.1 heap blocks and +888 B per cycle, no gc-tracked
    object more).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.count = 0
        self.columns: dict[str, array[int]] = {}

    def add(self, reading: dict[str, int]) -> None:
        if self.count == self.capacity:
            raise RuntimeError(f"soak: more than the {self.capacity} readings planned")
        if not self.columns:
            self.columns = {key: array("q", bytes(8 * self.capacity)) for key in reading}
        for key, value in reading.items():
            self.columns[key][self.count] = value
        self.count += 1

    def rows(self) -> list[dict[str, int]]:
        """The readings, oldest first, as dicts (built once the cycles are over)."""
        return [{key: column[index] for key, column in self.columns.items()} for index in range(self.count)]


def executor_sample(pid: int) -> dict[str, int]:
    """One reading of an executor process: what must stay flat over the life of the core."""
    return {
        "rss": process_rss(pid),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "children": child_processes(pid),
        "pid": pid,  # a changed pid would mean the executor was restarted: its curve starts again
    }


def growth_of(
    samples: list[dict[str, int]], warmup: int, collected: dict[str, int] | None = None
) -> dict[str, Any]:
    """Slopes per cycle after the warm-up, and first/last values, of every sampled quantity.

    `collected`, if given, is one more sample of this process taken after an explicit full
    collection at the end: Python heap blocks above the after-warm-up level there are held for
    good; growth that a collection takes back was garbage in the oldest generation, waiting for
    CPython's next full collection (which it starts once that generation has grown by a quarter),
    so it is bounded.
    """
    steady = samples[warmup:]
    result = {
        "cycles": len(samples) - 1,
        "warmup_cycles": warmup,
        "growth_per_cycle": {key: round(slope([entry[key] for entry in steady]), 2) for key in samples[0]},
        "first": samples[0],
        "after_warmup": steady[0],
        "last": samples[-1],
    }
    if collected is not None:
        result["after_full_collection"] = collected
        result["heap_blocks_held"] = collected["heap_blocks"] - steady[0]["heap_blocks"]
    return result


def collected_sample(take: Any) -> dict[str, int]:
    """`take()` after a full collection (a measuring step: what is garbage, what is held)."""
    gc.collect()
    result: dict[str, int] = take()
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise RuntimeError(f"soak: timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.005)  # poll: nothing announces these conditions


async def soak_occ(cycles: int) -> dict[str, Any]:
    """One `aliecs-fake-task` process driven through `cycles` OCC cycles; its RSS and fds sampled."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aliecs.fake_task",
        "--control-port",
        str(port),
        "--log-level",
        "WARNING",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples: list[dict[str, int]] = []
    try:
        async with OccClient("127.0.0.1", port, timeout=10) as client:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while True:
                try:
                    await client.get_state(timeout=1)
                    break
                except OccError:
                    if loop.time() > deadline or process.returncode is not None:
                        raise
                    await asyncio.sleep(0.05)  # poll: the process is starting its server

            def task_sample() -> dict[str, int]:
                return {"rss": process_rss(process.pid), "fds": len(os.listdir(f"/proc/{process.pid}/fd"))}

            samples.append(task_sample())
            for _ in range(cycles):
                async with client.subscribe_states():
                    for source, event in (
                        ("STANDBY", "CONFIGURE"),
                        ("CONFIGURED", "START"),
                        ("RUNNING", "STOP"),
                        ("CONFIGURED", "RESET"),
                    ):
                        reply = await client.transition(source, event)
                        if not reply.ok:
                            raise RuntimeError(f"soak: the task refused {event} from {source}")
                samples.append(task_sample())
            await client.transition("STANDBY", "EXIT")
        await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    result = growth_of(samples, warmup_cycles(cycles))
    result["rss_growth_per_cycle_bytes"] = round(result["growth_per_cycle"]["rss"])
    result["rss_kb"] = [entry["rss"] // 1024 for entry in samples]
    return result


async def soak_subscribe(core: Core, rounds: int) -> dict[str, Any]:
    """A control API client that connects, Subscribes and disconnects `rounds` times; the core sampled."""

    def core_sample() -> dict[str, int]:
        return {
            "rss": rss_bytes(),
            "heap_blocks": sys.getallocatedblocks(),
            "fds": len(os.listdir("/proc/self/fd")),
            "subscribers": core.events.subscribers,
        }

    async with ControlServer(core, port=0) as server:
        base = core.events.subscribers  # the server's own: the audit log
        readings = Readings(rounds + 1)
        readings.add(core_sample())
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.subscribe_client",
            f"127.0.0.1:{server.port}",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        assert client.stdin is not None and client.stdout is not None

        async def command(line: str) -> None:
            assert client.stdin is not None and client.stdout is not None
            client.stdin.write(f"{line}\n".encode())
            await client.stdin.drain()
            answer = (await asyncio.wait_for(client.stdout.readline(), 30)).decode().strip()
            if answer != f"{line}ed" and answer != f"{line}d":
                raise RuntimeError(f"soak: the Subscribe client answered {answer!r} to {line!r}")

        try:
            for _ in range(rounds):
                await command("open")
                await until(lambda: core.events.subscribers > base, "the Subscribe stream to register")
                await command("close")  # the client goes away mid-stream, as a closed GUI or CLI does
                await until(lambda: core.events.subscribers == base, "the server to drop the subscriber")
                readings.add(core_sample())
        finally:
            client.stdin.close()
            try:
                await asyncio.wait_for(client.wait(), 10)
            except TimeoutError:
                client.kill()
                await client.wait()
    samples = readings.rows()
    result = growth_of(samples, warmup_cycles(rounds), collected_sample(core_sample))
    result["rss_growth_per_cycle_bytes"] = round(result["growth_per_cycle"]["rss"])
    result["subscribers_left"] = samples[-1]["subscribers"] - base
    return result


def executor_growth(entries: list[dict[str, int]], warmup: int) -> dict[str, Any]:
    """One executor's slopes per cycle after the warm-up, whether its descriptors, threads and
    children stayed flat, and its RSS curve (for the plot)."""
    restarted = len({entry["pid"] for entry in entries}) > 1
    readings = [{key: value for key, value in entry.items() if key != "pid"} for entry in entries]
    result = growth_of(readings, warmup)
    steady, last = result["after_warmup"], result["last"]
    result["restarted"] = restarted
    result["flat"] = not restarted and all(last[key] <= steady[key] for key in ("fds", "threads", "children"))
    result["rss_kb"] = [entry["rss"] // 1024 for entry in readings]
    return result


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


async def measure(cycles: int, workdir: Path, occ_cycles: int, rounds: int) -> dict[str, Any]:
    readings = Readings(cycles + 1)
    stalls = array("d", bytes(8 * cycles))
    durations = array("d", bytes(8 * cycles))
    with LoopMonitor() as monitor:
        async with Core.embedded(state_dir=workdir / "state", nodes=nodes_for(4, 2, FIRST_PORT)) as core:
            pids = executor_pids(core)
            executor_readings = {node: Readings(cycles + 1) for node in pids}

            def sample_all() -> None:
                readings.add(sample())
                for node, pid in executor_pids(core).items():
                    executor_readings[node].add(executor_sample(pid))

            sample_all()  # before the first cycle: the core and its executors alone
            for index in range(cycles):
                monitor.max_stall = 0.0
                started = time.perf_counter()
                await cycle(core)
                durations[index] = time.perf_counter() - started
                stalls[index] = round(monitor.max_stall * 1000, 1)
                sample_all()
            collected = collected_sample(sample)
            samples = readings.rows()
            executors = {node: entries.rows() for node, entries in executor_readings.items()}
            subscribe = await soak_subscribe(core, rounds)
    occ = await soak_occ(occ_cycles)
    warmup = warmup_cycles(cycles)
    # samples[k]: after k cycles; the slopes start once the warm-up is done.
    summary = growth_of(samples, warmup, collected)
    growth, steady, last = summary["growth_per_cycle"], summary["after_warmup"], summary["last"]
    series = {key: [entry[key] for entry in samples] for key in samples[0]}
    per_executor = {node: executor_growth(entries, warmup) for node, entries in executors.items()}
    executor_rss_growth = max(
        (entry["growth_per_cycle"]["rss"] for entry in per_executor.values()), default=0.0
    )
    return {
        "cycles": cycles,
        "workflow": WORKFLOW,
        "warmup_cycles": warmup,
        "cycle_s": round(median(list(durations)), 3),
        "rss_growth_per_cycle_bytes": round(growth["rss"]),
        "heap_blocks_growth_per_cycle": growth["heap_blocks"],
        "gc_objects_growth_per_cycle": growth["gc_objects"],
        # Python heap blocks still held after a full collection at the end, beyond the warm-up level.
        "heap_blocks_held": summary["heap_blocks_held"],
        "after_full_collection": collected,
        "growth_per_cycle": growth,
        "rss_first_mb": round(samples[0]["rss"] / 2**20, 2),
        "rss_last_mb": round(samples[-1]["rss"] / 2**20, 2),
        "goal_bytes_per_cycle": GOAL_BYTES_PER_CYCLE,
        # The executors' RSS growth: the largest of the per-executor slopes.
        "executor_rss_growth_per_cycle_bytes": round(executor_rss_growth),
        "goal_met": growth["rss"] < GOAL_BYTES_PER_CYCLE and executor_rss_growth < GOAL_BYTES_PER_CYCLE,
        # Descriptors, threads, processes: none more at the end than right after the warm-up.
        "flat": {key: last[key] <= steady[key] for key in ("fds", "threads", "children")},
        "executors_flat": all(entry["flat"] for entry in per_executor.values()),
        "executors": per_executor,
        "max_loop_stall_ms": max(stalls, default=0.0),
        # Per sample (index 0: before the first cycle), for the plot.
        "series": series,
        "loop_stall_ms_per_cycle": list(stalls),
        "occ": occ,
        "subscribe": subscribe,
    }


async def _measure(cycles: int, occ_cycles: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aliecs-soak-") as tmp:
        async with quiet_logs():
            return await measure(cycles, Path(tmp), occ_cycles, rounds)


def run(seconds: float = 2.0, quick: bool = False, cycles: int | None = None) -> dict[str, Any]:
    """`cycles` full cycles (default 60; 3 with `quick`), then the OCC library and Subscribe soaks
    (300 rounds each; 10 with `quick`). `seconds` is not used: the counts size the run."""
    count = cycles if cycles is not None else QUICK_CYCLES if quick else DEFAULT_CYCLES
    if count < 1:
        raise ValueError(f"soak: the number of cycles must be at least 1, got {count}")
    occ_cycles, rounds = OCC_CYCLES[quick], SUBSCRIBE_ROUNDS[quick]
    started = time.perf_counter()
    result = uvloop.run(_measure(count, occ_cycles, rounds))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def report(result: dict[str, Any]) -> list[tuple[str, str]]:
    growth = result["growth_per_cycle"]
    first, last = result["series"]["rss"][0], result["series"]["rss"][-1]
    rows = [
        ("cycles (warm-up left out of the slopes)", f"{result['cycles']} ({result['warmup_cycles']})"),
        ("median cycle", f"{result['cycle_s']:.2f} s"),
        ("RSS first -> last", f"{first / 2**20:.1f} MB -> {last / 2**20:.1f} MB"),
        (f"core RSS growth per cycle (goal < {result['goal_bytes_per_cycle']} B)", f"{growth['rss']:,.0f} B"),
        (
            f"executors' RSS growth per cycle, largest of {len(result['executors'])}",
            f"{result['executor_rss_growth_per_cycle_bytes']:,} B",
        ),
        ("goal (core and executors)", "met" if result["goal_met"] else "NOT met"),
        ("Python heap blocks per cycle", f"{growth['heap_blocks']:+.1f}"),
        ("gc-tracked objects per cycle", f"{growth['gc_objects']:+.1f}"),
        ("heap blocks held after a full collection", f"{result['heap_blocks_held']:+,}"),
        (
            "fds / threads / children flat",
            " / ".join("yes" if result["flat"][key] else "NO" for key in ("fds", "threads", "children")),
        ),
        ("executors' fds / threads / children flat", "yes" if result["executors_flat"] else "NO"),
        ("max loop stall", f"{result['max_loop_stall_ms']} ms"),
    ]
    occ, subscribe = result["occ"], result["subscribe"]
    rows += [
        (
            f"OCC task process: RSS growth per cycle ({occ['cycles']} cycles)",
            f"{occ['growth_per_cycle']['rss']:,.0f} B "
            f"(fds {occ['after_warmup']['fds']} -> {occ['last']['fds']})",
        ),
        (
            f"Subscribe connect/disconnect: core RSS per round ({subscribe['cycles']})",
            f"{subscribe['growth_per_cycle']['rss']:,.0f} B (fds {subscribe['after_warmup']['fds']} -> "
            f"{subscribe['last']['fds']}, subscribers left {subscribe['subscribers_left']}, "
            f"heap blocks held after a full collection {subscribe['heap_blocks_held']:+,})",
        ),
    ]
    return rows
