"""`python -m bench --quick` runs every scenario with tiny N and writes the headline keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import HEADLINES, SCENARIOS, main, selected
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
    assert {"actor_ask", "occ_overhead", "scale", "soak", "start_of_run", "templates"} <= set(results)
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
    # Soak: --quick runs 3 full copypush cycles; one sample before them and one after each.
    soak = results["soak"]
    assert soak["cycles"] == 3 and soak["warmup_cycles"] == 1
    assert all(len(values) == 4 for values in soak["series"].values())
    assert len(soak["loop_stall_ms_per_cycle"]) == 3
    assert results["soak_rss_growth_per_cycle_bytes"] == soak["rss_growth_per_cycle_bytes"]
    # Every task process of every cycle is gone once its environment is destroyed: what is left
    # below the core after each cycle is what was there before the first (its executors).
    children = soak["series"]["children"]
    assert children[0] > 0 and children[1:] == [children[0]] * 3
    assert set(soak["flat"]) == {"fds", "threads", "children"}
    # The OCC library in a task process (10 cycles) and Subscribe clients (10 connections).
    assert soak["occ"]["cycles"] == soak["subscribe"]["cycles"] == 10
    assert soak["subscribe"]["subscribers_left"] == 0
    assert soak["occ"]["last"]["fds"] <= soak["occ"]["after_warmup"]["fds"]
    # Each node's executor process is sampled along with the core (two nodes).
    assert len(soak["executors"]) == 2
    assert all(
        len(executor["rss_kb"]) == 4 and not executor["restarted"] for executor in soak["executors"].values()
    )
    # The audit log's fsync policies, each measured.
    assert set(results["audit_fsync"]["events_per_s"]) == {"never", "default", "every_write"}


def test_soak_option_selects_the_soak_alone_and_rejects_zero_cycles() -> None:
    assert selected([], 1000) == ["soak"]
    assert selected([], None) == list(SCENARIOS)
    assert selected(["scale"], 5) == ["scale"]
    with pytest.raises(SystemExit) as exited:
        main(["--soak", "0", "--no-plots"])
    assert exited.value.code == 2


def test_generated_workflow_holds_more_tasks_than_one_iterator_may(tmp_path: Path) -> None:
    # The scale scenarios run 10,000 tasks; one `for` may generate at most the core's limit.
    from aliecs.workflow.limits import TemplateLimits
    from aliecs.workflow.template import load_workflow
    from bench.common import write_repository

    tasks = TemplateLimits().for_items + 5
    workflow = load_workflow(write_repository(tmp_path, tasks), "load")
    names = [role.name for role in workflow.root.children]
    assert names == [f"t{index}" for index in range(tasks)]


async def test_audit_fsync_scenario_measures_each_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The policies compared by `python -m bench audit_fsync`: never, at most once a second (the
    # default), after every write; each round writes all its events.
    import os

    from aliecs.server import audit
    from bench.audit_fsync import POLICIES, filesystem_of, one_round

    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(audit.os, "fdatasync", counting)
    counts = {}
    for name, interval in POLICIES.items():
        synced.clear()
        (tmp_path / name).mkdir()
        assert await one_round(tmp_path / name, 30, interval) > 0
        lines = (tmp_path / name / "events.jsonl").read_text().splitlines()
        assert len(lines) == 30 and '"transitionStep":"tasks_START_ACTIVITY_29"' in lines[-1]
        counts[name] = len(synced)
    assert counts["never"] == 0 and counts["default"] >= 1 and counts["every_write"] >= counts["default"]
    assert filesystem_of(tmp_path) != "unknown"
