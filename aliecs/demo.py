"""`make demo`: one full run cycle of the copypush workflow on an embedded control system.

It drives DEPLOY -> CONFIGURE -> START_ACTIVITY -> (data flows) -> STOP_ACTIVITY -> RESET -> EXIT,
printing the role tree (state, host, PID of every task), the run number and how long each
transition took, then the number of messages each sink received, and checks no process is left.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from pathlib import Path

from aliecs.api import Core, Environment
from aliecs.model import TransitionResult

_RECEIVED = re.compile(r"received (\d+) messages")


def _print_step(env: Environment, result: TransitionResult) -> None:
    run = f", run number {result.run_number}" if result.run_number else ""
    took = f"{result.duration_s * 1000:.0f} ms"
    print(f"\n=== {result.event}: {result.from_state} -> {result.to_state} in {took}{run}")
    if env.tasks and env.state != "DONE":
        print(env.tree())
    for warning in result.warnings:
        print(f"    warning: {warning}")


def _sink_counts(env: Environment) -> dict[str, int]:
    counts = {}
    for task in env.tasks:
        if "sink" not in task.name or not task.log_path or not Path(task.log_path).exists():
            continue
        matches = _RECEIVED.findall(Path(task.log_path).read_text(errors="replace"))
        if matches:
            counts[task.name] = int(matches[-1])
    return counts


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is gone for our purposes once it is not our child anymore.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False


async def run_demo(nodes: int, seconds: float, state_dir: Path | None, mesos: str | None = None) -> int:
    """The cycle on `nodes` simulated nodes, or on the Mesos master at `mesos` (see aliecs.mesos.demo)."""
    async with Core.embedded(state_dir=state_dir, nodes=None if mesos else nodes, mesos=mesos) as core:
        where = f"the Mesos master at {mesos}" if mesos else f"{nodes} simulated node(s)"
        print(f"embedded aliecs core: {where}, state in {core.state_dir}")
        env = await core.new_environment("copypush")
        print(f"environment {env.id} created from workflow '{env.workflow}'")
        _print_step(env, env.history[-1])
        pids = [task.pid for task in env.tasks]
        for event in ("CONFIGURE", "START_ACTIVITY"):
            _print_step(env, await env.transition(event))
        print(f"\n... run {env.run_number}: data flowing for {seconds:g} s")
        await asyncio.sleep(seconds)  # the data-taking period itself, not a synchronisation
        stop = await env.transition("STOP_ACTIVITY")
        _print_step(env, stop)
        counts = _sink_counts(env)
        print(f"\nmessages received by the sinks during run {stop.run_number or env.last_run_number}:")
        for name, count in sorted(counts.items()):
            print(f"    {name:<24} {count}")
        print(f"    {'total':<24} {sum(counts.values())}")
        for event in ("RESET", "EXIT"):
            _print_step(env, await env.transition(event))
        await env.destroy()
        durations = {result.event: result.duration_s for result in env.history}
        print("\ntransition times: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in durations.items()))
    left = [pid for pid in pids if pid and _alive(pid)]
    if left:
        print(f"ERROR: processes still alive: {left}", file=sys.stderr)
        return 1
    if not counts or sum(counts.values()) == 0:
        print("ERROR: the sinks received no data", file=sys.stderr)
        return 1
    print(f"all {len(pids)} task processes are gone; demo finished")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aliecs.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nodes", type=int, default=2, help="simulated nodes in the local cluster (default 2)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="how long data flows while RUNNING")
    parser.add_argument("--state-dir", type=Path, default=None, help="state directory (run numbers, logs)")
    args = parser.parse_args(argv)
    from aliecs.runtime import run

    return run(run_demo(args.nodes, args.seconds, args.state_dir))


if __name__ == "__main__":
    sys.exit(main())
