"""Every console script of the project runs and explains itself with --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("coconut", "coconut"),
        ("peanut", "get-state"),
        ("aliecs-core", "--state-dir"),
        ("aliecs-executor", "Mesos"),
        ("aliecs-fake-task", "--crash-on"),
        ("aliecs-copypush", "sampler"),
    ],
)
def test_help(script: str, expected: str) -> None:
    result = subprocess.run([str(BIN / script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_demo_module_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aliecs.demo", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--nodes" in result.stdout


def test_demo_runs_the_full_cycle(tmp_path: Path) -> None:
    """What `make demo` runs: exits 0, shows every transition, data counts, and leaves no process."""
    result = subprocess.run(
        [sys.executable, "-m", "aliecs.demo", "--seconds", "0.5", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for event in ("DEPLOY", "CONFIGURE", "START_ACTIVITY", "STOP_ACTIVITY", "RESET", "EXIT"):
        assert f"=== {event}:" in result.stdout
    assert "run number 1" in result.stdout
    assert "task processes are gone" in result.stdout
