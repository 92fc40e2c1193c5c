"""Shared fixtures: throw-away configuration repositories and a check that no process is leaked."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from aliecs.workflow.repository import DirectoryRepository

FAKE_TASK = """\
name: fake
control:
  mode: direct
wants:
  cpu: 0.01
  memory: 1
defaults:
  fake_args: ""
command:
  shell: true
  value: "exec aliecs-fake-task {{ fake_args }}"
"""


def child_pids() -> set[int]:
    """Live (non-zombie) processes whose parent is this test process."""
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.fixture
def no_leaked_processes() -> Iterator[None]:
    """Fails the test if it leaves child processes behind."""
    before = child_pids()
    yield
    leaked = child_pids() - before
    assert not leaked, f"processes left behind: {sorted(leaked)}"


class RepoBuilder:
    """Writes a configuration repository (workflows/, tasks/) into a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "workflows").mkdir(parents=True)
        (root / "tasks").mkdir()
        self.task("fake", FAKE_TASK)

    def workflow(self, name: str, text: str) -> RepoBuilder:
        (self.root / "workflows" / f"{name}.yaml").write_text(textwrap.dedent(text))
        return self

    def task(self, name: str, text: str) -> RepoBuilder:
        (self.root / "tasks" / f"{name}.yaml").write_text(textwrap.dedent(text))
        return self

    @property
    def repository(self) -> DirectoryRepository:
        return DirectoryRepository(self.root, name="test-repo")


@pytest.fixture
def repo(tmp_path: Path) -> RepoBuilder:
    return RepoBuilder(tmp_path / "repo")
