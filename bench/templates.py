"""Template expansion of the largest corpus workflow, `readout-dataflow`, against parsing its YAML.

Every new environment expands its workflow, so this is the floor of environment creation time.
The figure is `readout-dataflow` for 2 hosts with the integrations the conformance test enables
(same setup: `bench.corpus_setup`), measured

* cold: the first expansion in this (fresh) interpreter, so it includes parsing the YAML of the
  workflow and of every task descriptor, and compiling every template expression;
* warm: later expansions, as for the next environment of the same workflow, whose parses are cached
  (by file content, process-wide); the median of several.

The baseline is what a file that size costs to parse at all: loading `readout-dataflow.yaml` with
ruamel's round-trip loader (the library our own loader is built on), in the same run, alternating
with the warm expansions so that machine noise hits both alike. `warm_ratio` = warm / baseline: the
price of expansion, in units of "parse the file once".

The corpus lives next to the repository and may be absent: the scenario then says so and returns
no numbers (the headline keys stay null) instead of failing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from bench.common import median
from bench.corpus_setup import CORPUS, INTEGRATIONS, corpus_available, counts, expand, write_jit_exports

WORKFLOW = "readout-dataflow"
EXPECTED_COUNTS = (20, 12, 26)  # data-flow tasks, hooks, calls (tests/test_corpus_expand.py)
MIN_ROUNDS = 5


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def run(seconds: float, quick: bool = False) -> dict[str, Any]:
    """Cold, then alternating warm expansions and baseline parses for about `seconds`."""
    source = CORPUS / "workflows" / f"{WORKFLOW}.yaml"
    if not corpus_available() or not source.is_file():
        return {"skipped": f"corpus not found at {CORPUS}"}
    with tempfile.TemporaryDirectory(prefix="aliecs-bench-jit-") as tmp:
        fallback = write_jit_exports(Path(tmp) / "jit-exports")

        started = time.perf_counter()
        workflow = expand(WORKFLOW, INTEGRATIONS, fallback)
        cold_ms = _ms(started)
        shape = counts(workflow)
        if shape != EXPECTED_COUNTS:
            # Timing a different expansion than the conformance test checks would mislead.
            raise RuntimeError(f"{WORKFLOW} expanded to {shape}, expected {EXPECTED_COUNTS}")

        text = source.read_text()
        yaml = YAML(typ="rt")
        warm: list[float] = []
        baseline: list[float] = []
        deadline = time.perf_counter() + seconds
        while len(warm) < MIN_ROUNDS or time.perf_counter() < deadline:
            started = time.perf_counter()
            expand(WORKFLOW, INTEGRATIONS, fallback)
            warm.append(_ms(started))
            started = time.perf_counter()
            yaml.load(text)
            baseline.append(_ms(started))

    warm_ms = median(warm)
    baseline_ms = median(baseline)
    return {
        "workflow": WORKFLOW,
        "hosts": 2,
        "tasks": shape[0],
        "hooks": shape[1],
        "calls": shape[2],
        "yaml_bytes": len(text.encode()),
        "rounds": len(warm),
        "cold_ms": round(cold_ms, 2),
        "warm_ms": round(warm_ms, 2),
        "warm_best_ms": round(min(warm), 2),
        "baseline_parse_ms": round(baseline_ms, 2),
        "warm_ratio": round(warm_ms / baseline_ms, 3),
        "cold_ratio": round(cold_ms / baseline_ms, 3),
    }


def report(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for the human table."""
    if "skipped" in result:
        return [("skipped", result["skipped"])]
    return [
        ("workflow", f"{result['workflow']} ({result['hosts']} hosts, integrations on)"),
        ("tasks / hooks / calls", f"{result['tasks']} / {result['hooks']} / {result['calls']}"),
        ("cold expansion", f"{result['cold_ms']:.1f} ms"),
        ("warm expansion (median)", f"{result['warm_ms']:.1f} ms ({result['rounds']} rounds)"),
        ("baseline: ruamel parse", f"{result['baseline_parse_ms']:.1f} ms ({result['yaml_bytes']} bytes)"),
        ("warm / baseline", f"{result['warm_ratio']:.2f}"),
        ("cold / baseline", f"{result['cold_ratio']:.2f}"),
    ]
