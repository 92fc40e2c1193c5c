"""Executors as processes: tasks outlive the core and their executor, and come back.

Real `aliecs-core` and `aliecs-executor` processes, real task processes, SIGKILL and SIGSTOP.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from aliecs.api import Core
from aliecs.pytest_plugin import isolated_nodes
from aliecs.testing import poll_until as wait_until
from tests.conftest import executor_pids, pid_alive
from tests.core_process import CoreProcess, coconut, field, start_core, stop_or_kill
from tests.occ_helpers import free_port

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(180)]


async def tasks_of(core: CoreProcess) -> dict[str, dict[str, str]]:
    return {t["name"]: t for t in json.loads(await coconut(core, "task", "list", "-o", "json"))}


async def stop_core(core: CoreProcess) -> None:
    if core.process.returncode is None:
        core.process.send_signal(signal.SIGTERM)
        await core.read_until("stopped, no task left")
        assert await asyncio.wait_for(core.process.wait(), 30) == 0


async def test_sigkill_of_the_core_during_a_run_keeps_the_run(tmp_path: Path) -> None:
    port = free_port()
    core = await start_core(tmp_path, port)
    try:
        env_id = field(await coconut(core, "env", "create", "-w", "copypush"), "environment id")  # CONFIGURED
        await coconut(core, "env", "control", env_id, "-e", "START_ACTIVITY")
        shown = await coconut(core, "env", "show", env_id)
        run_number = field(shown, "run number")
        before = await tasks_of(core)
        assert len(before) == 4 and all(t["state"] == "RUNNING" for t in before.values())
        # Each task names the executor that runs it (deploymentInfo.executorId) and its pid.
        assert {t["deploymentInfo"]["executorId"] for t in before.values()} == {"aliecs-executor@localhost"}

        core.process.kill()  # SIGKILL: no teardown, no goodbye
        await core.process.wait()
        assert all(pid_alive(int(t["pid"])) for t in before.values()), "tasks died with the core"

        core = await start_core(tmp_path, port)
        assert f"environment {env_id} restored in RUNNING (run {run_number})" in "\n".join(core.lines)
        shown = await coconut(core, "env", "show", env_id)
        assert field(shown, "state") == "RUNNING" and field(shown, "run number") == run_number
        after = await tasks_of(core)
        assert {n: (t["pid"], t["state"]) for n, t in after.items()} == {
            n: (t["pid"], "RUNNING") for n, t in before.items()
        }
        # The run goes on as if nothing happened: STOP, then a new run with a new number.
        await coconut(core, "env", "control", env_id, "-e", "STOP_ACTIVITY")
        await coconut(core, "env", "control", env_id, "-e", "START_ACTIVITY")
        assert int(field(await coconut(core, "env", "show", env_id), "run number")) > int(run_number)
        await stop_core(core)
        assert not any(pid_alive(int(t["pid"])) for t in before.values())
    finally:
        await stop_or_kill(core)


async def test_executors_kill_their_tasks_when_the_core_stays_away(tmp_path: Path) -> None:
    core = await start_core(tmp_path, free_port(), "--failover-timeout", "2")
    env_id = field(await coconut(core, "env", "create", "-w", "copypush"), "environment id")
    assert env_id
    pids = [int(t["pid"]) for t in (await tasks_of(core)).values()]
    executors = executor_pids()
    assert executors and all(pid_alive(pid) for pid in pids)
    core.process.kill()
    await core.process.wait()
    await wait_until(
        lambda: not any(pid_alive(pid) for pid in [*pids, *executors]),
        "the executors to kill their tasks and exit after the failover timeout",
    )


async def test_stop_with_sigusr1_leaves_the_run_for_the_next_core(tmp_path: Path) -> None:
    port = free_port()
    core = await start_core(tmp_path, port)
    env_id = field(await coconut(core, "env", "create", "-w", "copypush"), "environment id")  # CONFIGURED
    pids = {t["pid"] for t in (await tasks_of(core)).values()}
    core.process.send_signal(signal.SIGUSR1)
    await core.read_until("detached")
    assert await asyncio.wait_for(core.process.wait(), 30) == 0
    core = await start_core(tmp_path, port)
    assert field(await coconut(core, "env", "show", env_id), "state") == "CONFIGURED"
    assert {t["pid"] for t in (await tasks_of(core)).values()} == pids
    await stop_core(core)


async def test_killed_executor_is_replaced_and_its_tasks_readopted(tmp_path: Path) -> None:
    async with Core.embedded(state_dir=tmp_path, nodes=isolated_nodes(1), outlive_core=True) as core:
        env = await core.new_environment("copypush")
        await env.transition("CONFIGURE")
        await env.transition("START_ACTIVITY")
        pids = {task.name: task.pid for task in env.tasks}
        assert core.executors is not None
        link = core.executors.links["localhost"]
        (executor,) = executor_pids()
        assert link.executor_pid == executor
        os.kill(executor, signal.SIGKILL)
        await wait_until(lambda: link.executor_pid not in (0, executor), "a new executor on the node")
        assert all(t.status == "ACTIVE" and t.state == "RUNNING" for t in env.tasks), env.tasks
        assert env.state == "RUNNING"
        assert {task.name: task.pid for task in env.tasks} == pids
        await env.transition("STOP_ACTIVITY")  # driven through the new executor
        assert all(task.state == "CONFIGURED" for task in env.tasks)
        await env.destroy()
        assert not any(pid_alive(pid) for pid in pids.values())


async def test_stalled_executor_is_reported_then_reconciled(tmp_path: Path) -> None:
    async with Core.embedded(state_dir=tmp_path, nodes=isolated_nodes(1)) as core:
        env = await core.new_environment("copypush")
        (executor,) = executor_pids()
        os.kill(executor, signal.SIGSTOP)
        try:
            await wait_until(lambda: env.state == "ERROR", "the environment to enter ERROR")
            assert all(t.status == "INACTIVE" for t in env.tasks)
            assert "unreachable" in env.tasks[0].error and "localhost" in env.tasks[0].error
        finally:
            os.kill(executor, signal.SIGCONT)
        await wait_until(lambda: all(t.status == "ACTIVE" for t in env.tasks), "the tasks to be reconciled")
        await env.transition("RECOVER")
        await env.transition("CONFIGURE")
        await env.destroy()


async def test_tasks_get_no_secret_from_the_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIECS_TOKEN", "s3cret-token")  # the core requires it, coconut sends it
    core = await start_core(tmp_path, free_port())
    try:
        await coconut(core, "env", "create", "-w", "copypush")
        for task in (await tasks_of(core)).values():
            environ = Path(f"/proc/{task['pid']}/environ").read_bytes()
            assert b"s3cret-token" not in environ and b"OCC_CONTROL_PORT" in environ
        for pid in executor_pids():
            assert b"s3cret-token" not in Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        await stop_core(core)
