"""`python -m bench --quick` runs every scenario with tiny N and writes the headline keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import HEADLINES
from bench.corpus_setup import corpus_available

pytestmark = pytest.mark.usefixtures("no_leaked_processes")

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_quick_bench_writes_every_headline_key(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-plots", "--output", str(output)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=540,
    )
    results = json.loads(output.read_text())
    # Without the corpus (it lives next to the repository) the template scenario reports that it
    # was skipped and its headlines stay null.
    corpus = corpus_available()
    for key in (*HEADLINES, "max_loop_stall_ms"):
        if HEADLINES.get(key, ("",))[0] == "templates" and not corpus:
            assert results[key] is None, key
        else:
            assert isinstance(results[key], (int, float)), key
    assert {"actor_ask", "occ_overhead", "scale", "start_of_run", "templates"} <= set(results)
    # Start of run: --quick measures N=100 under the N=2,000 key and says so; both overheads are
    # reported (a START can never beat the tasks' fixed latency, so neither is negative).
    assert results["start_of_run_n"] == 100
    start = results["start_of_run"]
    assert results["start_of_run_2000_overhead_s"] == start["overhead_s"] >= 0
    assert start["bare_overhead_s"] >= 0
    assert isinstance(start["goal_met"], bool) and isinstance(start["bare_goal_met"], bool)
    assert ("skipped" in results["templates"]) is not corpus
    # Re-adoption after a SIGKILL of the core: the run is back, no task restarted.
    readopt = results["readopt"]
    assert readopt["state"] == "RUNNING" and readopt["run_number_kept"] and readopt["tasks_restarted"] == 0
