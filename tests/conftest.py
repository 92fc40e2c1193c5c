"""Shared fixtures: throw-away configuration repositories and a check that no process is leaked."""

from __future__ import annotations

import os

# Tests fork task processes from this process while grpcio clients (tests/original_client.py) may
# have threads running: grpcio's fork handlers must stay out of those children (they abort there).
# grpcio reads this once, so it is set before any test module can import grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from dulwich import porcelain
from dulwich.repo import Repo

from aliecs.workflow.repository import DirectoryRepository

# The helper modules shared by several test modules assert too: pytest explains their failures as
# it does a test's (it rewrites test modules only, unless told).
pytest.register_assert_rewrite(
    "tests.control_harness", "tests.core_process", "tests.fakefarm_helpers", "tests.occ_helpers"
)

# Cores started by tests (aliecs-core subprocesses) serve their web page on a free port, never on the
# fixed default 8080 that other cores on this machine may hold.
os.environ.setdefault("ALIECS_HTTP_PORT", "0")

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


# A workflow of two fake tasks (one in a group) whose arguments tests set through variables; the
# control API tests drive it over gRPC.
FAKES = """\
name: fakes
description: two fake tasks
defaults:
  slow_args: ""
  eos_args: ""
roles:
  - name: readout
    vars:
      fake_args: "{{ eos_args }}"
    task: {load: fake}
  - name: group
    roles:
      - name: slow
        vars:
          fake_args: "{{ slow_args }}"
        task: {load: fake}
"""


def _live_processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live (non-zombie) process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            found[int(entry.name)] = (int(fields[1]), cmdline)
    return found


def descendant_pids() -> set[int]:
    """Live processes below this test process: executors, their task processes, and orphans that
    this process (a child subreaper, see below) took over."""
    processes = _live_processes()
    found: set[int] = set()
    frontier = [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _cmd) in processes.items() if ppid == parent and pid not in found]
        found.update(children)
        frontier.extend(children)
    return found


def executor_pids() -> set[int]:
    processes = _live_processes()
    return {pid for pid in descendant_pids() if "aliecs.cli.executor" in processes.get(pid, (0, ""))[1]}


def child_pids() -> set[int]:
    """Live task processes started below this test process (executors themselves left out)."""
    return descendant_pids() - executor_pids()


def _become_subreaper() -> None:
    """Orphaned processes (a task whose executor died) are reparented to this test process rather than
    to init, so the leak check still sees them."""
    import ctypes

    pr_set_child_subreaper = 36
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_child_subreaper, 1)


_become_subreaper()


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.fixture
def no_leaked_processes() -> Iterator[None]:
    """Fails the test if it leaves child processes behind."""
    before = descendant_pids()
    yield
    processes = _live_processes()

    def under_a_long_lived_helper(pid: int) -> bool:
        """Below a process that was there before the test and is no executor: a module-scoped
        fixture's own children (a browser's renderers), not the test's to clean up."""
        parent = processes.get(pid, (0, ""))[0]
        while parent and parent != os.getpid():
            if parent in before and "aliecs.cli.executor" not in processes.get(parent, (0, ""))[1]:
                return True
            parent = processes.get(parent, (0, ""))[0]
        return False

    leaked = {pid for pid in descendant_pids() - before if not under_a_long_lived_helper(pid)}
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


class GitRepoBuilder:
    """A throw-away git repository with a helper to commit files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.repo = Repo.init(str(path), mkdir=True)
        self.first = ""

    def commit(self, files: dict[str, str], message: str) -> str:
        for relpath, text in files.items():
            target = self.path / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text))
        porcelain.add(self.repo, [str(self.path / p) for p in files])
        sha = porcelain.commit(self.repo, message=message.encode(), author=b"T <t@t>", committer=b"T <t@t>")
        return sha.decode()

    def tag(self, name: str) -> None:
        porcelain.tag_create(self.repo, name.encode())

    def branch(self, name: str) -> None:
        porcelain.branch_create(self.repo, name.encode())

    def close(self) -> None:
        self.repo.close()


SOLO_WORKFLOW = """\
name: !public solo
description: !public one fake task
defaults:
  note: !public
    value: hello
    type: string
    label: Note
    widget: dropDownBox
    values: [hello, bye]
roles:
  - name: only
    task: {load: fake}
"""


@pytest.fixture
def versioned_repo(tmp_path: Path) -> Iterator[GitRepoBuilder]:
    """A git configuration repository with two commits whose `fake` task descriptor differs:
    tag `v1` runs `aliecs-fake-task --log-level INFO`, `master` runs `--log-level WARNING`."""
    builder = GitRepoBuilder(tmp_path / "versioned")
    v1_task = FAKE_TASK.replace('fake_args: ""', 'fake_args: "--log-level INFO"')
    builder.first = builder.commit({"workflows/solo.yaml": SOLO_WORKFLOW, "tasks/fake.yaml": v1_task}, "v1")
    builder.tag("v1")
    builder.commit({"tasks/fake.yaml": v1_task.replace("INFO", "WARNING")}, "v2")
    yield builder
    builder.close()


def process_args(pid: int) -> list[str]:
    """The command line of a running process (to tell which revision's task descriptor started it)."""
    return [arg.decode() for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if arg]
