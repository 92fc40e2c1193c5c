"""Profile one environment cycle: `python -m bench.profile [--tasks N] [--executor fake|farm] [--top K]`.

Runs DEPLOY..EXIT of N tasks under cProfile and prints where the time goes (own time and cumulative
time, the project's code first), plus the longest event loop stall of each transition: a profile
says what is expensive, the stall says what blocks everybody else while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from actors.fake_executor import FakeExecutorActor
from actors.farm_executor import FarmExecutorActor
from aliecs.api import Core
from bench.common import CYCLE, LoopMonitor, nodes_for, quiet_logs, write_repository

OURS = ("/aliecs/", "/actors/")


async def cycle(tasks: int, executor: type, workdir: Path, profiler: cProfile.Profile) -> list[str]:
    repository = write_repository(workdir / "repo", tasks)
    lines = []
    async with (
        quiet_logs(),
        Core.embedded(
            state_dir=workdir / "state",
            nodes=nodes_for(tasks),
            repository=repository,
            executor_class=executor,
        ) as core,
    ):
        profiler.enable()
        env = None
        for transition in CYCLE:
            with LoopMonitor() as monitor:
                started = time.perf_counter()
                if env is None:
                    env = await core.new_environment("load")
                else:
                    await env.transition(transition)
                elapsed = time.perf_counter() - started
            lines.append(
                f"{transition:<15} {elapsed:7.3f} s   longest loop stall {monitor.max_stall_ms:7.1f} ms"
            )
        assert env is not None
        await env.destroy()
        profiler.disable()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--executor", choices=("fake", "farm"), default="fake")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--dump", type=Path, help="also write the raw pstats here")
    args = parser.parse_args(argv)
    executor = FakeExecutorActor if args.executor == "fake" else FarmExecutorActor
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="aliecs-profile-") as tmp:
        lines = uvloop.run(cycle(args.tasks, executor, Path(tmp), profiler))
    print(f"{args.tasks} tasks, {args.executor} executor\n" + "\n".join(lines))
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(order).print_stats(args.top)
        print(f"\n== top {args.top} by {order} ==")
        print(
            "\n".join(line for line in out.getvalue().splitlines() if line.strip())[-(args.top + 2) * 200 :]
        )
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(order).print_stats("|".join(p.strip("/") + "/" for p in OURS), args.top)
        print(f"\n== our code, top {args.top} by {order} ==")
        print(out.getvalue().split("function calls")[-1])
    if args.dump:
        profiler.dump_stats(args.dump)
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
