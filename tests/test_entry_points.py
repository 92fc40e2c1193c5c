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
