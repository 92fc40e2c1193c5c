"""Start of run: what START_ACTIVITY of N = 2,000 tasks adds beyond the slowest task's START.

The design goal reads "START_ACTIVITY of 2,000 tasks adds <= 1 s beyond the slowest task". To
measure that, the slowest task's START must be known exactly: every farm task (a real OCC gRPC
endpoint, `aliecs.fakefarm`) takes a *fixed* latency L for each transition (``--latency L``,
distribution ``fixed``), so no task's START handler finishes in less than L and, the latency being
the same for all, the slowest task's START is L. The overhead is then

    overhead = START_ACTIVITY wall time (through the public API of the core) - L

which is everything the controller adds: run number, hooks, events, the actor tree, building and
sending 2,000 requests, reading 2,000 replies. It also includes the farm's own cost of receiving
and answering 2,000 calls (and any lateness of its timers under that load): that cost is the same
for any controller, so the same-run baseline carries it too.

Baseline: the bare grpclib fan-out of the same START Transition calls (same arguments, one channel
per endpoint connected beforehand, all calls at once with `asyncio.gather`) to the same endpoints,
its overhead computed the same way. Both sides then walk the tasks back with STOP (not timed) and
rounds alternate in ABBA order so a drift of the shared machine favours neither. Figures are
medians over rounds; the ratio is the median of per-round ratios (pairs measured back to back).

Why the goal may be out of reach for any Python client: with ~1,100-1,200 unary grpclib calls/s
on two cores (DESIGN.md, client and server in one process; here the farm has a core of its own,
which helps but does not remove the per-call cost on the client), merely *sending* 2,000 calls
and reading their replies takes more than a second. The scenario reports whether the bare fan-out
itself meets the goal, so a miss by the core can be told apart from a miss by the floor.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from aliecs.api import Core
from bench.common import LoopMonitor, median, nodes_for, quiet_logs, write_repository
from bench.occ_overhead import BareFanOut, same_arguments

#: The design goal: seconds START_ACTIVITY may add beyond the slowest task's START.
GOAL_S = 1.0
#: Nodes, each with its executor process (and its farm): the core sends one request per node.
NODES = 4
#: DESIGN.md's measured floor of grpclib unary calls on loopback (client and server in one process).
FLOOR_CALLS_PER_S = 1100
#: Fixed START latency of every task (seconds): long enough to be a real "slow task", short enough
#: that the full run (N = 2,000, four rounds, every transition taking L) stays well under a minute.
LATENCY_S = 0.5
QUICK_LATENCY_S = 0.2


async def measure(tasks: int, rounds: int, latency: float, workdir: Path) -> dict[str, Any]:
    """Deploy and configure N farm tasks of fixed latency, then time START both ways, `rounds` times."""
    repository = write_repository(workdir / "repo", tasks)
    nodes = nodes_for(tasks, NODES)
    core_s: list[float] = []
    bare_s: list[float] = []
    core_cpu: list[float] = []
    bare_cpu: list[float] = []
    with LoopMonitor() as monitor:
        async with Core.embedded(
            state_dir=workdir / "state",
            nodes=nodes,
            repository=repository,
            executor_kind="farm",
        ) as core:
            # `task_args` reaches every task's command line; the farm reads its behaviour from it.
            env = await core.new_environment(
                "load", vars={"task_args": f"--latency {latency!r} --latency-dist fixed"}
            )
            try:
                await env.transition("CONFIGURE")
                # The endpoints' ports are not part of the public task info; the baseline needs them.
                ports = [record.control_port for record in env._record.tasks.values()]
                bare = BareFanOut(ports)
                await bare.get_state()  # connect every channel, as the core's are after DEPLOY

                async def core_start() -> None:
                    with monitor.section("core"):
                        started, cpu = time.perf_counter(), time.process_time()
                        await env.transition("START_ACTIVITY")
                        core_s.append(time.perf_counter() - started)
                        core_cpu.append(time.process_time() - cpu)
                        await env.transition("STOP_ACTIVITY")

                async def bare_start() -> None:
                    with monitor.section("bare"):
                        args = same_arguments("START", env.id)
                        started, cpu = time.perf_counter(), time.process_time()
                        await bare.transition("CONFIGURED", "START", args)
                        bare_s.append(time.perf_counter() - started)
                        bare_cpu.append(time.process_time() - cpu)
                        await bare.transition("RUNNING", "STOP", same_arguments("STOP", env.id))

                try:
                    for index in range(rounds):
                        # ABBA order: a drift in the machine's speed does not favour either side.
                        order = (core_start, bare_start) if index % 2 == 0 else (bare_start, core_start)
                        for step in order:
                            await step()
                finally:
                    bare.close()
                await env.transition("RESET")
                await env.transition("EXIT")
            finally:
                await env.destroy()
    if min(core_s + bare_s) < latency:
        # asyncio.sleep never returns early: a faster START means the latency option was not applied.
        raise RuntimeError(f"a START took less than the tasks' latency {latency} s: tasks were not slowed")
    core_overheads = [seconds - latency for seconds in core_s]
    bare_overheads = [seconds - latency for seconds in bare_s]
    paired = [core / bare for core, bare in zip(core_overheads, bare_overheads, strict=True)]
    return {
        "tasks": tasks,
        "rounds": rounds,
        "slowest_task_start_s": latency,
        "core_start_s": round(median(core_s), 4),
        "bare_start_s": round(median(bare_s), 4),
        "overhead_s": round(median(core_overheads), 4),
        "bare_overhead_s": round(median(bare_overheads), 4),
        "overhead_ratio": round(median(paired), 3),
        "overhead_per_round_s": [round(value, 4) for value in core_overheads],
        "bare_overhead_per_round_s": [round(value, 4) for value in bare_overheads],
        "controller_cpu_s": {"core": round(median(core_cpu), 3), "bare": round(median(bare_cpu), 3)},
        "max_loop_stall_ms": monitor.sections_ms().get("core", 0.0),
        "loop_stall_ms": monitor.sections_ms(),
    }


async def _measure(tasks: int, rounds: int, latency: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aliecs-bench-") as tmp:
        async with quiet_logs():
            result = await measure(tasks, rounds, latency, Path(tmp))
    bare_ok = result["bare_overhead_s"] <= GOAL_S
    result.update(
        goal_s=GOAL_S,
        goal_met=result["overhead_s"] <= GOAL_S,
        # Whether the goal is reachable at all here: the bare fan-out is the least any Python client
        # spends, so if it misses, no control system written in Python can meet it on this machine.
        bare_goal_met=bare_ok,
        floor_calls_per_s=FLOOR_CALLS_PER_S,
        floor_s=round(tasks / FLOOR_CALLS_PER_S, 3),
        # The rate the bare fan-out pushed calls through beyond the tasks' own latency: the measured
        # floor of this run (the farm has a core of its own, so it may beat the one-process figure).
        bare_calls_per_s=round(tasks / result["bare_overhead_s"], 1),
        latency_dist="fixed",
        task_kind="fake farm endpoints (real OCC gRPC servers in one farm process, its own core)",
    )
    return result


def run(seconds: float = 2.0, quick: bool = False) -> dict[str, Any]:
    """N = 2,000, four rounds (ABBA ABBA), START latency 0.5 s; `quick`: N = 100, one round, 0.2 s.

    `seconds` is not used: the run is sized by N and rounds (each START takes at least the latency).
    """
    if quick:
        return uvloop.run(_measure(100, 1, QUICK_LATENCY_S))
    return uvloop.run(_measure(2000, 4, LATENCY_S))


def report(result: dict[str, Any]) -> list[tuple[str, str]]:
    n = result["tasks"]
    latency = result["slowest_task_start_s"]
    cpu = result["controller_cpu_s"]
    rows = [
        (f"N={n} slowest task START (fixed latency)", f"{latency:.3f} s"),
        (
            f"N={n} START_ACTIVITY: core / bare fan-out",
            f"{result['core_start_s']:.3f} s / {result['bare_start_s']:.3f} s",
        ),
        (f"N={n} overhead beyond slowest: core", f"{result['overhead_s']:.3f} s"),
        (f"N={n} overhead beyond slowest: bare", f"{result['bare_overhead_s']:.3f} s"),
        (f"N={n} overhead ratio core / bare", f"{result['overhead_ratio']:.2f}x"),
        (f"N={n} controller CPU per START: core / bare", f"{cpu['core']:.2f} s / {cpu['bare']:.2f} s"),
        (
            f"goal: adds <= {result['goal_s']:g} s",
            "met" if result["goal_met"] else f"NOT met ({result['overhead_s']:.2f} s)",
        ),
        (f"N={n} max loop stall (core)", f"{result['max_loop_stall_ms']} ms"),
    ]
    if not result["bare_goal_met"]:
        rows.append(
            (
                "note",
                "goal out of reach here: the bare grpclib fan-out alone adds "
                f"{result['bare_overhead_s']:.2f} s "
                f"({result['bare_calls_per_s']:.0f} calls/s; DESIGN.md's one-process floor is "
                f"~{result['floor_calls_per_s']} calls/s, {n} calls ~ {result['floor_s']:.2f} s), so no "
                "controller on one grpclib event loop can add <= 1 s on this 2-core machine; "
                "compare the core with the bare fan-out (ratio above) instead",
            )
        )
    return rows
