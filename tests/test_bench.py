"""`python -m bench --quick` runs every scenario with tiny N and writes the headline keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import HEADLINES

pytestmark = pytest.mark.usefixtures("no_leaked_processes")

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_writes_every_headline_key(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-plots", "--output", str(output)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    results = json.loads(output.read_text())
    for key in (*HEADLINES, "max_loop_stall_ms"):
        assert isinstance(results[key], (int, float)), key
    assert {"actor_ask", "occ_overhead", "scale"} <= set(results)
