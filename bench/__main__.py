"""Run the registered benchmarks: `python -m bench [SCENARIO ...] [--seconds S] [--output FILE]`.

Each scenario is a module with `run(seconds) -> dict` (the numbers, JSON-serialisable) and,
optionally, `report(result) -> list[(label, value)]` for the human table. To add one, write the
module and register it in `SCENARIOS`. Results are merged, per scenario, into
`bench/results/latest.json`, so running one scenario keeps the others' last numbers.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

# Scenario name -> module. Modules are imported only when their scenario runs.
SCENARIOS: dict[str, str] = {
    "actor_ask": "bench.actor_ask",
}

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.json"


def run_scenario(name: str, seconds: float) -> dict[str, Any]:
    """Run one registered scenario and stamp its result with when and where it was measured."""
    module = importlib.import_module(SCENARIOS[name])
    result: dict[str, Any] = module.run(seconds=seconds)
    result["measured_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result["python"] = platform.python_version()
    result["machine"] = platform.machine()
    return result


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


def merge_into(path: Path, results: dict[str, dict[str, Any]]) -> None:
    """Merge `results` (scenario -> numbers) into the JSON file at `path`, creating it if needed."""
    existing: dict[str, Any] = {}
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            print(f"warning: {path} is not valid JSON ({exc}); rewriting it", file=sys.stderr)
    existing.update(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per scenario")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    names = args.scenarios or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    results = {name: run_scenario(name, args.seconds) for name in names}
    for name, result in results.items():
        print_table(name, result)
    merge_into(args.output, results)
    print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
