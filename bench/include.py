"""Include at runtime: bring a 100-task subtree into a RUNNING 1,000-task environment.

The environment (900 tasks in one iterator, 100 in the subtree `sub`) is deployed with `sub`
excluded, configured and started; then `Environment.include("sub")` brings the subtree's tasks
to the environment's state: CONFIGURE, then START with the current run number. That is what an
operator waits for when a detector joins a run without a redeployment.

Baseline, in the same run and on the same core: the same 100 tasks as an environment of their own,
its CONFIGURE plus START_ACTIVITY (the work the include does, through the ordinary transitions).
The include also resolves channels against the whole 1,000-task environment and walks its role
tree, which the baseline does not: the ratio shows what that costs. Rounds alternate (ABBA) so a
drift of the shared machine favours neither; figures are medians. Tasks are fake farm endpoints
(real OCC gRPC servers in one farm process per node) with no latency of their own.
"""

from __future__ import annotations

import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import uvloop

from aliecs.api import Core, Environment
from bench.common import LoopMonitor, median, nodes_for, quiet_logs, write_repository

NODES = 4

_WORKFLOW = """\
name: {name}
roles:
  - name: "t{{{{ i }}}}"
    for: {{begin: "0", end: "{main_last}", var: i}}
    task: {{load: farmtask}}
  - name: sub
    roles:
      - name: "s{{{{ i }}}}"
        for: {{begin: "0", end: "{sub_last}", var: i}}
        task: {{load: farmtask}}
"""


async def _ready_without_sub(core: Core) -> Environment:
    env = await core.new_environment("big")
    await env.exclude("sub")
    await env.transition("CONFIGURE")
    await env.transition("START_ACTIVITY")
    return env


async def measure(total: int, subtree: int, rounds: int, workdir: Path) -> dict[str, Any]:
    repository = write_repository(workdir / "repo", subtree, workflow="alone")  # the baseline: 100 tasks
    (workdir / "repo" / "workflows" / "big.yaml").write_text(
        textwrap.dedent(_WORKFLOW.format(name="big", main_last=total - subtree - 1, sub_last=subtree - 1))
    )
    include_s: list[float] = []
    baseline_s: list[float] = []
    with LoopMonitor() as monitor:
        async with Core.embedded(
            state_dir=workdir / "state",
            nodes=nodes_for(total + subtree, NODES),
            repository=repository,
            executor_kind="farm",
        ) as core:
            big = await _ready_without_sub(core)
            alone = await core.new_environment("alone")

            async def include() -> None:
                with monitor.section("include"):
                    started = time.perf_counter()
                    await big.include("sub", allow_running=True)
                    include_s.append(time.perf_counter() - started)
                assert {task.state for task in big.tasks} == {"RUNNING"}, "the subtree did not catch up"
                # Back to the starting point (not timed): the subtree excluded and in STANDBY.
                await big.transition("STOP_ACTIVITY")
                await big.transition("RESET")
                await big.exclude("sub")
                await big.transition("CONFIGURE")
                await big.transition("START_ACTIVITY")

            async def baseline() -> None:
                with monitor.section("baseline"):
                    started = time.perf_counter()
                    await alone.transition("CONFIGURE")
                    await alone.transition("START_ACTIVITY")
                    baseline_s.append(time.perf_counter() - started)
                await alone.transition("STOP_ACTIVITY")
                await alone.transition("RESET")

            for index in range(rounds):
                for step in (include, baseline) if index % 2 == 0 else (baseline, include):
                    await step()
            await big.destroy()
            await alone.destroy()
    paired = [a / b for a, b in zip(include_s, baseline_s, strict=True)]
    return {
        "tasks": total,
        "subtree_tasks": subtree,
        "rounds": rounds,
        "include_s": round(median(include_s), 4),
        "baseline_configure_start_s": round(median(baseline_s), 4),
        "ratio": round(median(paired), 3),
        "include_per_round_s": [round(value, 4) for value in include_s],
        "baseline_per_round_s": [round(value, 4) for value in baseline_s],
        "max_loop_stall_ms": monitor.sections_ms().get("include", 0.0),
        "loop_stall_ms": monitor.sections_ms(),
        "task_kind": "fake farm endpoints (real OCC gRPC servers in one farm process per node)",
    }


async def _measure(total: int, subtree: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aliecs-bench-") as tmp:
        async with quiet_logs():
            return await measure(total, subtree, rounds, Path(tmp))


def run(seconds: float = 2.0, quick: bool = False) -> dict[str, Any]:
    """1,000 tasks, a 100-task subtree, four rounds; `quick`: 100 tasks, a 10-task subtree, two
    rounds. `seconds` is not used (the run is sized by the task counts and rounds)."""
    if quick:
        return uvloop.run(_measure(100, 10, 2))
    return uvloop.run(_measure(1000, 100, 4))


def report(result: dict[str, Any]) -> list[tuple[str, str]]:
    n, k = result["tasks"], result["subtree_tasks"]
    return [
        (f"include {k} tasks into a RUNNING {n}-task environment", f"{result['include_s']:.3f} s"),
        (f"baseline: CONFIGURE+START of {k} tasks alone", f"{result['baseline_configure_start_s']:.3f} s"),
        ("include / baseline", f"{result['ratio']:.2f}x"),
        ("max loop stall (include)", f"{result['max_loop_stall_ms']} ms"),
    ]
