"""ModifyEnvironment over the control API, with the grpcio-generated client the original's clients
are built with, and `coconut environment modify`: real core, real processes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import grpc
import pytest
import pytest_asyncio

from aliecs.api import Core
from aliecs.cli.coconut import parse_scale
from aliecs.pytest_plugin import isolated_nodes
from aliecs.server import ControlServer
from tests.conftest import FAKES, RepoBuilder, pid_alive
from tests.core_process import coconut, field, start_core, stop_or_kill
from tests.occ_helpers import free_port
from tests.original_client import OriginalClient, expect_code, generated

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    return generated(tmp_path_factory.mktemp("grpcio_generated"))


class Client:
    def __init__(self, core: Core, client: OriginalClient) -> None:
        self.core, self.client, self.pb = core, client, client.pb

    async def new(self) -> str:
        request = self.pb.NewEnvironmentRequest(workflowTemplate="fakes", public=True)
        return str((await self.client.call("NewEnvironment", request)).environment.id)

    def op(self, kind: str, role: str, count: int = 0) -> Any:
        return self.pb.EnvironmentOperation(
            type=self.pb.EnvironmentOperation.Optype.Value(kind), roleName=role, count=count
        )

    async def modify(self, env_id: str, *operations: Any, **fields: Any) -> Any:
        request = self.pb.ModifyEnvironmentRequest(id=env_id, operations=list(operations), **fields)
        return await self.client.call("ModifyEnvironment", request)

    async def control(self, env_id: str, op: str) -> None:
        kind = self.pb.ControlEnvironmentRequest.Optype.Value(op)
        await self.client.call("ControlEnvironment", self.pb.ControlEnvironmentRequest(id=env_id, type=kind))


@pytest_asyncio.fixture
async def client(tmp_path: Path, repo: RepoBuilder, modules: dict[str, ModuleType]) -> AsyncIterator[Client]:
    repo.workflow("fakes", FAKES)
    async with (
        Core.embedded(
            state_dir=tmp_path / "state", nodes=isolated_nodes(), repository=repo.repository
        ) as core,
        ControlServer(core, port=0) as server,
    ):
        original = OriginalClient(modules, f"127.0.0.1:{server.port}")
        try:
            yield Client(core, original)
        finally:
            original.close()


async def test_remove_and_add_role_exclude_and_include_over_grpc(client: Client) -> None:
    env_id = await client.new()  # CONFIGURED
    env = client.core.environment(env_id)
    pids = {task.name: task.pid for task in env.tasks}
    reply = await client.modify(env_id, client.op("REMOVE_ROLE", "fakes.group"))
    assert list(reply.failedOperations) == [] and reply.state == "CONFIGURED" and reply.id == env_id
    assert env.excluded == {"fakes.group": ""}

    await client.control(env_id, "START_ACTIVITY")
    states = {task.name: task.state for task in env.tasks}
    assert states == {"fakes.readout": "RUNNING", "fakes.group.slow": "CONFIGURED"}

    # A critical subtree mid-run: refused (reported as the failed operation) unless allowed.
    add = client.op("ADD_ROLE", "group")
    reply = await client.modify(env_id, add, client.op("NOOP", ""))
    assert [op.type for op in reply.failedOperations] == [add.type, 0]
    assert "critical" in reply.error and env.excluded == {"fakes.group": ""}
    reply = await client.modify(env_id, add, allowRunning=True)
    assert list(reply.failedOperations) == [] and reply.error == "" and reply.state == "RUNNING"
    assert {task.state for task in env.tasks} == {"RUNNING"}
    assert {task.name: task.pid for task in env.tasks} == pids
    assert all(pid_alive(pid) for pid in pids.values())


async def test_variables_restarts_and_reconfigure_all_over_grpc(client: Client) -> None:
    env_id = await client.new()
    env = client.core.environment(env_id)
    slow = next(task for task in env.tasks if task.name == "fakes.group.slow")
    reply = await client.modify(env_id, vars={"slow_args": "--latency-all 0.01"})
    assert list(reply.restartNeeded) == ["fakes.group.slow"] and "restart" in reply.error
    reply = await client.modify(env_id, vars={"slow_args": "--latency-all 0.01"}, restartChanged=True)
    assert reply.error == "" and reply.state == "CONFIGURED"
    restarted = next(task for task in env.tasks if task.name == "fakes.group.slow")
    assert restarted.pid != slow.pid and restarted.state == "CONFIGURED"

    readout = next(task for task in env.tasks if task.name == "fakes.readout")
    reply = await client.modify(env_id, reconfigureAll=True)
    assert reply.error == "" and {t.state for t in env.tasks} == {"CONFIGURED"}
    assert next(t for t in env.tasks if t.name == "fakes.readout").pid == readout.pid

    reply = await client.modify(env_id, client.op("SCALE_ROLE", "readout", 2))
    assert len(reply.failedOperations) == 1 and "no iterator 'readout'" in reply.error


async def test_bad_modify_requests_are_refused(client: Client) -> None:
    code = grpc.StatusCode
    pb = client.pb
    await expect_code(
        client.client, "ModifyEnvironment", pb.ModifyEnvironmentRequest(), code.INVALID_ARGUMENT
    )
    env_id = await client.new()
    empty = pb.ModifyEnvironmentRequest(id=env_id, operations=[client.op("ADD_ROLE", " ")])
    message = await expect_code(client.client, "ModifyEnvironment", empty, code.INVALID_ARGUMENT)
    assert "roleName is empty" in message
    unknown = pb.ModifyEnvironmentRequest(id="nope")
    await expect_code(client.client, "ModifyEnvironment", unknown, code.NOT_FOUND)


async def test_coconut_environment_modify(tmp_path: Path) -> None:
    core = await start_core(tmp_path, free_port())
    try:
        env_id = field(await coconut(core, "env", "create", "-w", "copypush"), "environment id")  # CONFIGURED

        async def tasks() -> dict[str, dict[str, Any]]:
            listed = json.loads(await coconut(core, "task", "list", "-o", "json"))
            return {task["name"]: task for task in listed}

        before = await tasks()
        assert "modified" in await coconut(core, "env", "modify", env_id, "--exclude", "sink1")
        await coconut(core, "env", "control", env_id, "-e", "START")
        sink1 = (await tasks())["copypush.sink1"]
        assert sink1.get("excluded") is True and sink1["state"] == "CONFIGURED"

        refused = await coconut(core, "env", "modify", env_id, "--include", "sink1", ok=False)
        assert "not applied: ADD_ROLE sink1" in refused and "critical" in refused
        await coconut(core, "env", "modify", env_id, "--include", "sink1", "--allow-running")
        await coconut(core, "env", "modify", env_id, "--scale", "sink=4")
        after = await tasks()
        assert sorted(after) == sorted([*before, "copypush.sink3"])
        assert {task["state"] for task in after.values()} == {"RUNNING"}
        assert all(after[name]["pid"] == task["pid"] for name, task in before.items())

        needs = await coconut(core, "env", "modify", env_id, "-e", "msg_rate=100", ok=False)
        assert "need a restart (--restart): copypush.sampler" in needs
    finally:
        await stop_or_kill(core)


def test_coconut_scale_option_needs_a_path_and_a_count() -> None:
    assert parse_scale(" copypush.sink = 5") == ("copypush.sink", 5)
    for bad in ("sink", "=3", "sink=-1", "sink=x"):
        with pytest.raises(click.BadParameter, match="is not PATH=N"):
            parse_scale(bad)
