"""Run the registered benchmarks: `python -m bench [SCENARIO ...] [--quick] [--large] [--soak N]`.

Each scenario is a module with `run(seconds, quick=..., large=...) -> dict` (the numbers,
JSON-serialisable; `quick`, `large` and `cycles` (`--soak N`: the soak scenario's cycles; given
alone, it runs the soak scenario only) are passed only if `run` accepts them) and, optionally,
`report(result) -> list[(label, value)]` for the human table. To add one, write the module and
register it in `SCENARIOS`. Each scenario runs in a fresh interpreter, so one scenario's memory,
actors and event loop cannot colour the next one's figures (memory per task in particular).

Results are merged, per scenario, into `bench/results/latest.json` (running one scenario keeps the
others' last numbers), the headline figures are lifted to top-level keys (`HEADLINES`), and plots
are drawn next to it (`bench.plots`).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# Scenario name -> module. Modules are imported only when their scenario runs.
SCENARIOS: dict[str, str] = {
    "actor_ask": "bench.actor_ask",
    "occ_overhead": "bench.occ_overhead",
    "scale": "bench.scale",
    "soak": "bench.soak",
    "start_of_run": "bench.start_of_run",
    "readopt": "bench.readopt",
    "core_cost": "bench.core_cost",
    "audit_fsync": "bench.audit_fsync",
    "templates": "bench.templates",
    "include": "bench.include",
    "mesos_deploy": "bench.mesos_deploy",
}

# Top-level key -> (scenario, key in its result). `max_loop_stall_ms` is the max over scenarios.
HEADLINES: dict[str, tuple[str, str]] = {
    "actor_ask_ratio": ("actor_ask", "actor_ask_ratio"),
    "occ_overhead_ratio_1000": ("occ_overhead", "occ_overhead_ratio_1000"),
    "scale_10000_cycle_s": ("scale", "cycle_s"),
    "scale_10000_bytes_per_task": ("scale", "bytes_per_task"),
    "deploy_tasks_per_s": ("occ_overhead", "deploy_tasks_per_s"),
    "template_expand_readout_dataflow_ms": ("templates", "warm_ms"),
    "template_expand_cold_ms": ("templates", "cold_ms"),
    "template_expand_baseline_ratio": ("templates", "warm_ratio"),
    "start_of_run_2000_overhead_s": ("start_of_run", "overhead_s"),
    "readopt_2000_s": ("readopt", "restore_s"),
    "soak_rss_growth_per_cycle_bytes": ("soak", "rss_growth_per_cycle_bytes"),
    "include_100_into_1000_s": ("include", "include_s"),
    "audit_fsync_ratio": ("audit_fsync", "fsync_ratio"),
    "mesos_deploy_tasks_per_s": ("mesos_deploy", "mesos_tasks_per_s"),
    "mesos_deploy_vs_local_ratio": ("mesos_deploy", "mesos_vs_local_ratio"),
}

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.json"


def run_scenario(
    name: str, seconds: float, quick: bool = False, large: bool = False, soak: int | None = None
) -> dict[str, Any]:
    """Run one registered scenario here and stamp its result with when and where it was measured."""
    module = importlib.import_module(SCENARIOS[name])
    accepted = inspect.signature(module.run).parameters
    given = (("quick", quick), ("large", large), ("cycles", soak))
    options = {key: value for key, value in given if key in accepted and value is not None}
    result: dict[str, Any] = module.run(seconds=seconds, **options)
    result["measured_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result["python"] = platform.python_version()
    result["machine"] = platform.machine()
    return result


def run_isolated(name: str, seconds: float, quick: bool, large: bool, soak: int | None) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter (`--in-process`) and read back its result."""
    with tempfile.TemporaryDirectory(prefix="aliecs-bench-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "bench", name, "--in-process", "--seconds", str(seconds)]
        command += ["--output", str(out)] + (["--quick"] if quick else []) + (["--large"] if large else [])
        command += ["--soak", str(soak)] if soak is not None else []
        subprocess.run(command, check=True)
        result: dict[str, Any] = json.loads(out.read_text())[name]
        return result


def headlines(results: dict[str, Any]) -> dict[str, Any]:
    """The top-level figures, from the per-scenario results (None where a scenario has not run)."""
    top: dict[str, Any] = {}
    for key, (scenario, field) in HEADLINES.items():
        top[key] = results.get(scenario, {}).get(field) if isinstance(results.get(scenario), dict) else None
    stalls = [
        entry["max_loop_stall_ms"]
        for entry in results.values()
        if isinstance(entry, dict) and "max_loop_stall_ms" in entry
    ]
    top["max_loop_stall_ms"] = max(stalls) if stalls else None
    overhead = results.get("occ_overhead")
    if isinstance(overhead, dict) and top["occ_overhead_ratio_1000"] is None and overhead.get("per_n"):
        # --quick has no N=1000: report the largest N measured, and say which it was.
        largest = max(overhead["per_n"], key=int)
        top["occ_overhead_ratio_1000"] = overhead["per_n"][largest]["cycle_ratio"]
        top["occ_overhead_n"] = int(largest)
    scale = results.get("scale")
    if isinstance(scale, dict):
        top["scale_n"] = scale.get("tasks")
    start = results.get("start_of_run")
    if isinstance(start, dict):
        # --quick runs N=100: the key keeps its name, and this says which N it was measured at.
        top["start_of_run_n"] = start.get("tasks")
    return top


def print_table(name: str, result: dict[str, Any]) -> None:
    """Print a scenario's rows (its `report()` if any, else every key)."""
    module = importlib.import_module(SCENARIOS[name])
    report = getattr(module, "report", None)
    rows: list[tuple[str, str]] = report(result) if report else [(k, str(v)) for k, v in result.items()]
    width = max(len(label) for label, _ in rows)
    print(f"\n{name}")
    print("-" * (width + 20))
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def merge_into(path: Path, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Merge `results` (scenario -> numbers) into the JSON file at `path`, creating it if needed;
    the top-level headline keys are recomputed from the merged scenarios. Returns the whole file."""
    existing: dict[str, Any] = {}
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            print(f"warning: {path} is not valid JSON ({exc}); rewriting it", file=sys.stderr)
    existing.update(results)
    existing.pop("occ_overhead_n", None)
    existing.update(headlines(existing))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
    return existing


def selected(scenarios: list[str], soak: int | None) -> list[str]:
    """The scenarios to run: those named, else only the soak if `--soak N` is given, else all."""
    if scenarios:
        return scenarios
    return ["soak"] if soak is not None else list(SCENARIOS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per scenario")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--quick", action="store_true", help="tiny N, a few seconds in all (smoke test)")
    parser.add_argument("--large", action="store_true", help="also N=3,000 OCC tasks (farm)")
    parser.add_argument(
        "--soak",
        type=int,
        metavar="N",
        help="cycles of the soak scenario (default 60, 3 with --quick); alone, runs only the soak",
    )
    parser.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.soak is not None and args.soak < 1:
        parser.error(f"--soak: the number of cycles must be at least 1, got {args.soak}")
    names = selected(args.scenarios, args.soak)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    seconds = min(args.seconds, 0.3) if args.quick else args.seconds
    if args.in_process:
        results = {name: run_scenario(name, seconds, args.quick, args.large, args.soak) for name in names}
        args.output.write_text(json.dumps(results))
        return 0
    results = {name: run_isolated(name, seconds, args.quick, args.large, args.soak) for name in names}
    for name, result in results.items():
        print_table(name, result)
    merged = merge_into(args.output, results)
    print("\nheadlines")
    for key in (*HEADLINES, "max_loop_stall_ms"):
        print(f"  {key:<28} {merged.get(key)}")
    if not args.no_plots:
        from bench.plots import draw

        for path in draw(merged, args.output.parent):
            print(f"plot: {path}")
    print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
