"""`basic` control mode end to end: plain commands without OCC, next to an OCC fake task.

A basic task is ready at DEPLOY without a process, runs its command only while RUNNING, and ending
on its own is the end of its work (BASIC_TASK_TERMINATED), an error only if it failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aliecs import Core
from aliecs.model import TaskInfo
from aliecs.testing import poll_until as wait_for
from tests.conftest import RepoBuilder, child_pids, pid_alive

pytestmark = pytest.mark.usefixtures("no_leaked_processes")

BASIC_TASK = """\
name: plain
control: {mode: basic}
wants: {cpu: 0.01, memory: 1}
defaults:
  plain_command: "exec sleep 30"
command:
  shell: true
  value: "{{ plain_command }}"
"""

MIXED = """\
name: mixed
roles:
  - name: occ
    task: {load: fake}
  - name: plain
    task: {load: plain}
"""

ALONE = """\
name: alone
roles:
  - name: plain
    task: {load: plain}
"""


def basic_repo(repo: RepoBuilder) -> RepoBuilder:
    return repo.task("plain", BASIC_TASK).workflow("mixed", MIXED).workflow("alone", ALONE)


def plain(tasks: list[TaskInfo]) -> TaskInfo:
    return next(task for task in tasks if task.name.endswith(".plain"))


async def test_basic_task_process_lives_only_while_running(tmp_path: Path, repo: RepoBuilder) -> None:
    basic_repo(repo)
    before = child_pids()
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("mixed")
        task = plain(env.tasks)
        assert (task.state, task.status, task.pid) == ("STANDBY", "ACTIVE", 0)
        occ = next(t for t in env.tasks if t.name.endswith(".occ"))
        assert child_pids() - before == {occ.pid}  # only the OCC task runs

        await env.transition("CONFIGURE")
        assert plain(env.tasks).state == "CONFIGURED" and plain(env.tasks).pid == 0

        pids = []
        for _run in range(2):
            await env.transition("START_ACTIVITY")
            task = plain(env.tasks)
            assert task.state == "RUNNING" and pid_alive(task.pid)
            pids.append(task.pid)
            await env.transition("STOP_ACTIVITY")
            task = plain(env.tasks)
            assert (task.state, task.pid) == ("CONFIGURED", 0)
            assert not pid_alive(pids[-1])
        assert pids[0] != pids[1]

        await env.transition("RESET")
        assert plain(env.tasks).state == "STANDBY"
        await env.transition("CONFIGURE")
        await env.transition("START_ACTIVITY")
        running = plain(env.tasks).pid
        await env.destroy()  # STOP, RESET, EXIT: nothing keeps running
        assert env.state == "DONE" and not pid_alive(running)


async def test_basic_task_exit_is_killed_by_exit(tmp_path: Path, repo: RepoBuilder) -> None:
    basic_repo(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("mixed")
        await env.transition("CONFIGURE")
        await env.transition("START_ACTIVITY")
        running = plain(env.tasks).pid
        await env.destroy(allow_running=True)
        assert not pid_alive(running)


async def test_critical_basic_task_failing_while_running_sends_env_to_error(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    basic_repo(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("mixed", vars={"plain_command": "echo giving up; exit 3"})
        await env.transition("CONFIGURE")
        await env.transition("START_ACTIVITY")
        await wait_for(lambda: env.state == "ERROR", "the environment to enter ERROR")
        task = plain(env.tasks)
        assert task.state == "ERROR" and "exited with code 3" in task.error and "giving up" in task.error
        assert "exited with code 3" in env.error
        await env.transition("RECOVER")
        assert env.state == "DEPLOYED" and plain(env.tasks).state == "STANDBY"
        await env.destroy()


async def test_basic_task_finishing_its_work_ends_the_run(tmp_path: Path, repo: RepoBuilder) -> None:
    basic_repo(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("alone", vars={"plain_command": "exit 0"})
        await env.transition("CONFIGURE")
        started = await env.transition("START_ACTIVITY")
        # Every task is safe to stop once the only one ended cleanly: the run stops by itself.
        await wait_for(lambda: env.state == "CONFIGURED", "the run to stop by itself")
        assert env.run_number == 0 and env.last_run_number == started.run_number
        assert plain(env.tasks).state == "CONFIGURED"
        await env.destroy()


async def test_basic_task_ending_next_to_a_running_occ_task_does_not_stop_the_run(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    basic_repo(repo)
    async with Core.embedded(state_dir=tmp_path, repository=repo.repository) as core:
        env = await core.new_environment("mixed", vars={"plain_command": "exit 0"})
        await env.transition("CONFIGURE")
        await env.transition("START_ACTIVITY")
        await wait_for(lambda: plain(env.tasks).pid == 0, "the basic task to end")  # poll
        assert env.state == "RUNNING" and plain(env.tasks).state == "RUNNING"
        await env.transition("STOP_ACTIVITY")
        await env.destroy()
