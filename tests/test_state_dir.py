"""Issue 11: the state directory is private and names from templates or users never become paths
outside it; the token is never a command-line argument."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aliecs.api import Core
from aliecs.pytest_plugin import isolated_nodes
from aliecs.server.auth import TokenFileError, read_token_file, resolve_token
from aliecs.statedir import safe_name, task_log_path
from tests.conftest import RepoBuilder

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(60)]

HOSTS = """\
name: hosts
defaults:
  names: '["a"]'
roles:
  - name: "h{{ it }}"
    for:
      range: "{{ names }}"
      var: it
    task: {load: fake}
"""


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_names_become_one_safe_component() -> None:
    assert safe_name("../../../../x") == "_.._.._.._x"
    assert (
        safe_name("..") == "_" and safe_name("a/b\x00c") == "a_b_c" and safe_name("ok.name-1") == "ok.name-1"
    )
    logs = Path("/state/logs")
    path = task_log_path(logs, "../env", "wf.h../../../../x", "id/..")
    assert path.parent == logs / "_env" and "/" not in path.name


async def test_state_dir_is_private_and_task_logs_stay_inside(tmp_path: Path, repo: RepoBuilder) -> None:
    repo.workflow("hosts", HOSTS)
    state = tmp_path / "deep" / "state"
    async with Core.embedded(state_dir=state, nodes=isolated_nodes(), repository=repo.repository) as core:
        env = await core.new_environment("hosts", {"names": '["../../../../x"]'})
        try:
            (task,) = env.tasks
            log = Path(task.log_path)
            assert log.resolve().is_relative_to((state / "logs").resolve()), log
            assert log.exists() and mode(log) == 0o600
            assert mode(state) == 0o700 and mode(state / "logs") == 0o700 and mode(log.parent) == 0o700
            assert mode(state / "runs.sqlite") == 0o600
        finally:
            await env.destroy()
    escaped = [p for p in tmp_path.rglob("*x.*.log") if not p.resolve().is_relative_to(state.resolve())]
    assert escaped == []


def test_token_file_must_be_private_and_non_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o644)
    with pytest.raises(TokenFileError, match="chmod 600"):
        read_token_file(token)
    token.chmod(0o600)
    assert read_token_file(token) == "s3cret"
    token.write_text("  \n")
    with pytest.raises(TokenFileError, match="empty"):
        read_token_file(token)
    monkeypatch.setenv("ALIECS_TOKEN", "from-env")
    assert resolve_token(None) == "from-env"


@pytest.mark.parametrize("program", ["aliecs-core", "coconut"])
def test_token_is_never_a_command_line_argument(program: str) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / program), "--token", "s3cret", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "No such option '--token'" in done.stderr, done.stderr
    helped = subprocess.run(
        [str(Path(sys.executable).parent / program), "--help"], capture_output=True, text=True, timeout=30
    )
    assert "--token-file" in helped.stdout
