"""The README's pytest example, run the way a newcomer runs it: in an empty project outside this
repository (no conftest, no pytest configuration of ours), with only aliecs installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doc_examples import ROOT, blocks, write_files

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(120)]


def readme_project(tmp_path: Path) -> Path:
    written = write_files(
        [b for b in blocks(ROOT / "README.md") if b.file.startswith("myproject/")], tmp_path
    )
    assert any(path.name.startswith("test_") for path in written), "the README lost its pytest example"
    project = tmp_path / "myproject"
    assert not (project / "conftest.py").exists()
    return project


def run_pytest(project: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *options],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )


@pytest.mark.parametrize(
    ("setup", "options"),
    [
        # only aliecs: pytest-asyncio (a dev extra here) is switched off, as in a fresh install
        ("aliecs-only", ("-p", "no:asyncio")),
        # a project that also has pytest-asyncio in its default (strict) mode
        ("with-pytest-asyncio", ()),
    ],
)
def test_readme_example_passes_in_a_fresh_project(
    tmp_path: Path, setup: str, options: tuple[str, ...]
) -> None:
    project = readme_project(tmp_path)
    assert ROOT not in project.parents
    # an async test without aliecs fixtures, opted in by the marker, runs on a loop of the plugin
    (project / "test_marked.py").write_text(
        "import asyncio\n\nimport pytest\n\n\n@pytest.mark.aliecs\nasync def test_marked():\n"
        "    assert asyncio.get_running_loop().is_running()\n"
    )
    if setup == "with-pytest-asyncio":
        # pytest-asyncio's own warning about this unset option is not ours to silence
        (project / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = run_pytest(project, *options)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "2 passed" in output, output
    assert "warning" not in output.lower(), output
    assert f"rootdir: {project}" in output, output  # not this repository's configuration
