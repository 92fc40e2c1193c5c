"""Control overhead over real OCC tasks (fake farm endpoints) against the bare grpclib fan-out.

For each N, one environment of N farm tasks is deployed (timed: the deploy rate), then driven through
CONFIGURE, START_ACTIVITY, STOP_ACTIVITY, RESET several times. Between the control system's cycles,
the same four Transition calls are sent to the same endpoints by a bare grpclib fan-out (one channel
per endpoint, connected beforehand, all calls at once with `asyncio.gather`): the least any
controller in Python could spend. Rounds alternate in ABBA order, so noise on the shared machine
hits both alike; times are medians over rounds, and the headline `cycle_ratio` is the median of the
per-round ratios (core cycle / bare cycle, measured back to back).

The deploy rate has its own same-run baseline: opening the same number of endpoints in a farm
directly and answering one GetState each over a fresh channel (what DEPLOY must at least do).

The farm runs in its own process (one per node), so the endpoints' gRPC servers do not share the
control system's event loop: on a 2-core machine, core and tasks get one core each.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvloop
from grpclib.client import Channel
from grpclib.const import Cardinality

from actors.farm_executor import FarmExecutorActor
from aliecs.api import Core
from aliecs.fakefarm import FarmClient
from aliecs.generated import occ_pb
from bench.common import LoopMonitor, median, nodes_for, quiet_logs, rounded, timed, write_repository

GOAL = 1.25
# (environment transition, OCC event, source state of the tasks)
STEPS = (
    ("CONFIGURE", "CONFIGURE", "STANDBY"),
    ("START_ACTIVITY", "START", "CONFIGURED"),
    ("STOP_ACTIVITY", "STOP", "RUNNING"),
    ("RESET", "RESET", "CONFIGURED"),
)


def same_arguments(event: str, environment_id: str) -> dict[str, str]:
    """The arguments the environment sends with `event` to each task of the benchmark workflow
    (no channels, no properties), so both sides serialise the same requests: the protobuf encoding
    of the arguments is a large part of a Transition call's cost on the client side."""
    now = str(int(time.time() * 1000))
    run = {
        "runNumber": "1",
        "run_number": "1",
        "environment_id": environment_id,
        "run_type": "",
        "runType": "",
    }
    if event == "CONFIGURE":
        return {"environment_id": environment_id}
    if event == "START":
        return {**run, "cleanup": "0", "run_start_time_ms": now, "runStartTimeMs": now}
    if event == "STOP":
        return {**run, "run_end_time_ms": now, "runEndTimeMs": now}
    return {}


class BareFanOut:
    """The baseline controller: one grpclib channel per endpoint and nothing else."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.channels = [Channel("127.0.0.1", port) for port in ports]

    async def _call(self, channel: Channel, rpc: str, request: Any, reply_type: type[Any]) -> Any:
        async with channel.request(
            f"/occ_pb.Occ/{rpc}", Cardinality.UNARY_UNARY, type(request), reply_type, timeout=60.0
        ) as stream:
            await stream.send_message(request, end=True)
            return await stream.recv_message()

    async def get_state(self) -> None:
        request = occ_pb.GetStateRequest()
        await asyncio.gather(
            *(self._call(c, "GetState", request, occ_pb.GetStateReply) for c in self.channels)
        )

    async def transition(self, src: str, event: str, args: dict[str, str]) -> None:
        def request() -> occ_pb.TransitionRequest:
            # One request per task, as any controller must build: each task gets its own arguments
            # (channels, properties) in general, even if they happen to be equal here.
            return occ_pb.TransitionRequest(
                src_state=src,
                transition_event=event,
                arguments=[occ_pb.ConfigEntry(key=k, value=v) for k, v in args.items()],
            )

        replies = await asyncio.gather(
            *(self._call(c, "Transition", request(), occ_pb.TransitionReply) for c in self.channels)
        )
        bad = [reply for reply in replies if reply is None or not reply.ok]
        if bad:
            raise RuntimeError(f"bare {event}: {len(bad)} endpoints did not go through")

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


async def bare_deploy(ports: Sequence[int]) -> float:
    """Seconds to open `ports` in a fresh farm and get one GetState answer from each."""
    farm = FarmClient(lambda _port, _code: None)
    await farm.start()
    try:
        started = time.perf_counter()
        await asyncio.gather(*(farm.open(port, []) for port in ports))
        bare = BareFanOut(ports)
        await bare.get_state()
        elapsed = time.perf_counter() - started
        bare.close()
        return elapsed
    finally:
        await farm.stop()


async def measure(tasks: int, rounds: int, workdir: Path) -> dict[str, Any]:
    repository = write_repository(workdir / f"repo{tasks}", tasks)
    nodes = nodes_for(tasks)
    ports = list(range(nodes[0].control_ports.first, nodes[0].control_ports.first + tasks))
    result: dict[str, Any] = {"tasks": tasks, "rounds": rounds}
    with LoopMonitor() as monitor:
        with monitor.section("bare"):
            bare_deploy_s = await bare_deploy(ports)
        core_times: dict[str, list[float]] = {step: [] for step, _, _ in STEPS}
        bare_times: dict[str, list[float]] = {step: [] for step, _, _ in STEPS}
        # CPU time of this (the controlling) process: less sensitive to a loaded machine than wall time,
        # it says what the control system costs beyond the bare fan-out on the controller's side.
        core_cpu: dict[str, list[float]] = {step: [] for step, _, _ in STEPS}
        bare_cpu: dict[str, list[float]] = {step: [] for step, _, _ in STEPS}
        async with Core.embedded(
            state_dir=workdir / f"state{tasks}",
            nodes=nodes,
            repository=repository,
            executor_class=FarmExecutorActor,
        ) as core:
            started = time.perf_counter()
            with monitor.section("core"):
                env = await core.new_environment("load")
            deploy_s = time.perf_counter() - started
            # The benchmark needs the endpoints' ports; they are not part of the public task info.
            endpoint_ports = [record.control_port for record in env._record.tasks.values()]
            bare = BareFanOut(endpoint_ports)
            await bare.get_state()  # connect every channel, as the core's are after DEPLOY

            async def core_cycle() -> None:
                with monitor.section("core"):
                    for step, _event, _src in STEPS:
                        started, cpu = time.perf_counter(), time.process_time()
                        await env.transition(step)
                        core_times[step].append(time.perf_counter() - started)
                        core_cpu[step].append(time.process_time() - cpu)

            async def bare_cycle() -> None:
                with monitor.section("bare"):
                    for step, event, src in STEPS:
                        args = same_arguments(event, env.id)
                        started, cpu = time.perf_counter(), time.process_time()
                        await bare.transition(src, event, args)
                        bare_times[step].append(time.perf_counter() - started)
                        bare_cpu[step].append(time.process_time() - cpu)

            for index in range(rounds):
                # ABBA order: a drift in the machine's speed does not favour either side.
                first, second = (core_cycle, bare_cycle) if index % 2 == 0 else (bare_cycle, core_cycle)
                await first()
                await second()
            bare.close()
            exit_timing: dict[str, float] = {}
            with monitor.section("core"), timed(exit_timing, "EXIT"):
                await env.transition("EXIT")
            await env.destroy()
    core_median = {step: median(values) for step, values in core_times.items()}
    bare_median = {step: median(values) for step, values in bare_times.items()}
    result["core_s"] = rounded(core_median)
    result["bare_s"] = rounded(bare_median)
    result["ratio"] = {step: round(core_median[step] / bare_median[step], 3) for step in core_median}
    # The headline: the median over rounds of (core cycle / bare cycle), each pair measured back to
    # back, which cancels most of the noise of a shared machine better than a ratio of medians.
    paired = [
        sum(core_times[step][i] for step in core_times) / sum(bare_times[step][i] for step in bare_times)
        for i in range(rounds)
    ]
    result["cycle_ratio"] = round(median(paired), 3)
    result["cycle_ratios_per_round"] = [round(ratio, 3) for ratio in paired]
    core_cpu_s = sum(median(values) for values in core_cpu.values())
    bare_cpu_s = sum(median(values) for values in bare_cpu.values())
    result["controller_cpu_s"] = {"core": round(core_cpu_s, 3), "bare": round(bare_cpu_s, 3)}
    result["controller_cpu_ratio"] = round(core_cpu_s / bare_cpu_s, 3)
    result["deploy_s"] = round(deploy_s, 3)
    result["deploy_bare_s"] = round(bare_deploy_s, 3)
    result["deploy_tasks_per_s"] = round(tasks / deploy_s, 1)
    result["deploy_ratio"] = round(deploy_s / bare_deploy_s, 3)
    result["exit_s"] = round(exit_timing["EXIT"], 3)
    # The control system's own stall (the baseline's, from one naive gather, is reported beside it).
    result["max_loop_stall_ms"] = monitor.sections_ms().get("core", 0.0)
    result["loop_stall_ms"] = monitor.sections_ms()
    return result


async def _measure_all(sizes: Sequence[int], rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aliecs-bench-") as tmp:
        async with quiet_logs():
            per_n = {str(n): await measure(n, rounds if n <= 1000 else 3, Path(tmp)) for n in sizes}
    largest = per_n[str(max(sizes))]
    result: dict[str, Any] = {
        "per_n": per_n,
        "goal": GOAL,
        "deploy_tasks_per_s": largest["deploy_tasks_per_s"],
        "deploy_ratio": largest["deploy_ratio"],
        "deploy_kind": f"fake farm endpoints (real OCC gRPC servers in one farm process), N={max(sizes)}",
        "max_loop_stall_ms": max(entry["max_loop_stall_ms"] for entry in per_n.values()),
    }
    if "1000" in per_n:
        result["occ_overhead_ratio_1000"] = per_n["1000"]["cycle_ratio"]
        result["occ_overhead_ok"] = per_n["1000"]["cycle_ratio"] <= GOAL
    return result


def run(seconds: float = 2.0, quick: bool = False, large: bool = False) -> dict[str, Any]:
    """N = 30, 100, 300 and 1,000, five rounds (and 3,000, three rounds, with `large`); `quick`:
    N = 10, 20, 35 and 50, one round. Four sizes at least, so each curve of the plot is one."""
    if quick:
        return uvloop.run(_measure_all((10, 20, 35, 50), 1))
    sizes = (30, 100, 300, 1000, 3000) if large else (30, 100, 300, 1000)
    return uvloop.run(_measure_all(sizes, 5))


def report(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for n, entry in result["per_n"].items():
        for step, ratio in entry["ratio"].items():
            rows.append(
                (
                    f"N={n} {step}: core / bare fan-out",
                    f"{entry['core_s'][step] * 1000:.0f} ms / "
                    f"{entry['bare_s'][step] * 1000:.0f} ms = {ratio:.2f}x",
                )
            )
        rows.append((f"N={n} cycle ratio (goal <= {GOAL:g})", f"{entry['cycle_ratio']:.2f}x"))
        cpu = entry["controller_cpu_s"]
        rows.append(
            (
                f"N={n} controller CPU per cycle: core / bare",
                f"{cpu['core']:.2f} s / {cpu['bare']:.2f} s = {entry['controller_cpu_ratio']:.2f}x",
            )
        )
        rows.append(
            (
                f"N={n} DEPLOY",
                f"{entry['deploy_s']:.2f} s ({entry['deploy_tasks_per_s']:.0f} tasks/s), "
                f"bare {entry['deploy_bare_s']:.2f} s = {entry['deploy_ratio']:.2f}x",
            )
        )
        rows.append((f"N={n} max loop stall", f"{entry['max_loop_stall_ms']} ms"))
    return rows
