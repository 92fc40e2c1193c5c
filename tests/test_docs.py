"""Every example in docs/ runs: each page's `file=` blocks form an example repository in a temporary
directory; every workflow there is expanded by the real expander, every task descriptor and
inventory is parsed, every `console` block's commands are run and their output compared, and every
Python block is executed (in that directory, with the project's Python)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aliecs.cluster.inventory import load_inventory
from aliecs.workflow.providers import Providers, YamlInventory
from aliecs.workflow.repository import DirectoryRepository
from aliecs.workflow.taskclass import parse_task_class
from aliecs.workflow.template import load_workflow
from tests.doc_examples import DOCS, Block, blocks, write_files

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(180)]

PAGES = sorted(DOCS.glob("*.md"))
ILLUSTRATIONS = ("", "text")  # directory layouts and the like: nothing to run


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ALIECS_"))}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["COLUMNS"] = "200"
    return env


def _run_console(block: Block, workdir: Path) -> None:
    """`$ command` lines run in `workdir`; the lines up to the next command are its expected output."""
    commands: list[tuple[str, list[str]]] = []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        else:
            assert commands, f"{block.where}: console block must start with a '$ ' command"
            commands[-1][1].append(line)
    for command, expected in commands:
        result = subprocess.run(
            command, shell=True, cwd=workdir, env=_environment(), capture_output=True, text=True, timeout=60
        )
        output = (result.stdout + result.stderr).replace(str(workdir), ".").rstrip("\n").splitlines()
        assert output == expected, f"{block.where}: `{command}` printed:\n" + "\n".join(output)


def _run_python(block: Block, workdir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", block.body],
        cwd=workdir,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{block.where}: the example failed:\n{result.stdout}{result.stderr}"


def test_there_are_docs_pages() -> None:
    names = {page.name for page in PAGES}
    assert {"workflows.md", "tasks.md", "inventory.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_example_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    found = blocks(page)
    written = write_files(found, tmp_path)
    repository = DirectoryRepository(tmp_path)
    hosts = [path for path in written if path.name.startswith("hosts")]
    providers = Providers(inventory=YamlInventory.from_file(hosts[0]) if hosts else YamlInventory())
    for path in written:
        relative = path.relative_to(tmp_path)
        if relative.parts[0] == "workflows":
            # as the core does, environment_id is always a user variable
            workflow = load_workflow(repository, path.stem, {"environment_id": "docs"}, providers=providers)
            assert workflow.root.name == path.stem
        elif relative.parts[0] == "tasks":
            assert parse_task_class(repository.read_task(path.stem), path.stem).name == path.stem
        elif path.name.startswith("nodes"):
            assert load_inventory(path)
        elif path.name.startswith("hosts"):
            assert YamlInventory.from_file(path).hosts
    for block in found:
        if block.file:
            continue
        if block.language == "console":
            _run_console(block, tmp_path)
        elif block.language == "python":
            _run_python(block, tmp_path)
        else:
            assert block.language in ILLUSTRATIONS, (
                f"{block.where}: an example nothing tests ({block.language})"
            )
