"""`aliecs-executor --mesos` under an emulated Mesos agent, driven by a raw framework.

The emulator starts our real executor as a process with the MESOS_* environment; it launches real
fake tasks (aliecs-fake-task) from the LaunchOrder in TaskInfo.data, reports their status through
the agent, serves the executor protocol for the core's direct control, and survives an agent
restart by re-sending what the agent did not acknowledge.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner
from grpclib.client import Channel

from aliecs.cli.executor import command
from aliecs.executor.wire import results_from_wire
from aliecs.generated import aliecs_executor as pb
from aliecs.mesos.executor_driver import ExecutorDriver, MesosEnvironment, parse_duration
from aliecs.testing import poll_until
from tests.conftest import pid_alive
from tests.mesos_emulator import AgentTimings, Emulator, EmulatorConfig
from tests.mesos_emulator.raw_framework import DEADLINE, RawFramework

# Control ports of the fake tasks come from the agents' offered ports: a block of their own, away
# from the emulator's default (61000+) that the scheduler-side tests and the bench use (61000-64999).
PORTS_BASE = 65000


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _executor() -> dict[str, Any]:
    return {
        "type": "CUSTOM",
        "executor_id": {"value": "aliecs-executor-agent-1"},
        "command": {
            "shell": False,
            "value": sys.executable,
            "arguments": [sys.executable, "-m", "aliecs.cli.executor", "--mesos", "--verbose"],
        },
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}],
    }


def _fake_task(
    task_id: str, offers: list[dict[str, Any]], port_index: int, log_dir: Path, *args: str
) -> dict[str, Any]:
    port = sorted(p for offer in offers for p in offer_ports(offer))[port_index]
    order = pb.LaunchOrder(
        task_id=task_id,
        name="fake",
        command="aliecs-fake-task",
        arguments=list(args),
        env={"OCC_CONTROL_PORT": str(port)},
        log_path=str(log_dir / f"{task_id}.log"),
        controllable=True,
        control_port=port,
    )
    return {
        "name": "fake",
        "task_id": {"value": task_id},
        "agent_id": offers[0]["agent_id"],
        "executor": _executor(),
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}},
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": port, "end": port}]}},
        ],
        "data": base64.b64encode(bytes(order)).decode(),
        "labels": {"labels": [{"key": "aliecs.startup_timeout", "value": "15"}]},
    }


def offer_ports(offer: dict[str, Any]) -> list[int]:
    spans = next(r["ranges"]["range"] for r in offer["resources"] if r["name"] == "ports")
    return [port for span in spans for port in range(span["begin"], span["end"] + 1)]


def _accept(offers: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "offer_ids": [offer["id"] for offer in offers],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
        "filters": {"refuse_seconds": 0},
    }


def _data(status: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(status["data"])))


async def _status(framework: RawFramework, task_id: str, acknowledge: bool = True) -> dict[str, Any]:
    """The next update of `task_id` (acknowledged, so that the agent sends the one after it)."""
    status = await framework.next_update(task_id)
    if acknowledge and "uuid" in status:
        await framework.acknowledge(status)
    return status


async def _running(framework: RawFramework, task_id: str) -> dict[str, Any]:
    starting = await _status(framework, task_id)
    assert starting["state"] == "TASK_STARTING", starting
    running = await _status(framework, task_id)
    assert running["state"] == "TASK_RUNNING", running
    return running


def _config(**overrides: Any) -> EmulatorConfig:
    settings: dict[str, Any] = {"agents": 1, "ports_base": PORTS_BASE, "heartbeat_interval": 1.0}
    settings.update(overrides)
    return EmulatorConfig(**settings)


async def test_the_executor_launches_reports_serves_the_core_and_kills(
    session: aiohttp.ClientSession, tmp_path: Path, no_leaked_processes: None
) -> None:
    async with Emulator(_config()) as emulator:
        framework = RawFramework(session, emulator.url)
        await framework.subscribe(checkpoint=True, failover_timeout=60)
        offers = await framework.outstanding_offers("agent-1")
        await framework.call("ACCEPT", accept=_accept(offers, [_fake_task("t1", offers, 0, tmp_path)]))
        running = await _running(framework, "t1")
        data = _data(running)
        assert data["node"] == "agent-1" and data["state"] == "STANDBY"
        assert pid_alive(data["pid"])
        [executor] = emulator.state()["agents"][0]["executors"]
        assert executor["executor_id"] == "aliecs-executor-agent-1" and pid_alive(executor["pid"])

        # The core drives the task directly over the executor protocol, at the address in the update.
        host, port = data["executor_address"].rsplit(":", 1)
        channel = Channel(host, int(port))
        try:
            stub = pb.ExecutorStub(channel)
            registered = await stub.register(pb.RegisterRequest(core_id="test-core"), timeout=DEADLINE)
            assert registered.hostname == "agent-1"
            assert [(t.task_id, t.pid, t.alive) for t in registered.tasks] == [("t1", data["pid"], True)]
            batch = pb.TransitionBatch(
                tasks=[pb.TransitionOrder(task_id="t1", src_state="STANDBY", event="CONFIGURE")], timeout=10
            )
            [result] = results_from_wire(await stub.transition(batch, timeout=DEADLINE))
            assert (result.ok, result.state) == (True, "CONFIGURED")
        finally:
            channel.close()

        # A Mesos KILL ends the process; the task's resources come back.
        await framework.call("KILL", kill={"task_id": {"value": "t1"}, "agent_id": offers[0]["agent_id"]})
        killed = await _status(framework, "t1")
        assert killed["state"] == "TASK_KILLED"
        assert not pid_alive(data["pid"])

        # A task whose process cannot start fails with the reason; one killed behind the executor's
        # back is reported TASK_FAILED with how it ended.
        offers = await framework.outstanding_offers("agent-1")
        tasks = [
            _fake_task("t2", offers, 1, tmp_path, "--crash-on-start"),
            _fake_task("t3", offers, 2, tmp_path),
        ]
        await framework.call("ACCEPT", accept=_accept(offers, tasks))
        assert (await _status(framework, "t2"))["state"] == "TASK_STARTING"
        failed = await _status(framework, "t2")
        assert failed["state"] == "TASK_FAILED" and failed["message"], failed
        running = await _running(framework, "t3")
        os.kill(_data(running)["pid"], signal.SIGKILL)
        died = await _status(framework, "t3")
        assert died["state"] == "TASK_FAILED" and "SIGKILL" in died["message"], died

        # TEARDOWN: the agent SHUTs DOWN the executor, which kills what is left and exits.
        offers = await framework.outstanding_offers("agent-1")
        await framework.call("ACCEPT", accept=_accept(offers, [_fake_task("t4", offers, 3, tmp_path)]))
        task_pid = _data(await _running(framework, "t4"))["pid"]
        await framework.call("TEARDOWN")
        process = emulator.agents[0].executors[(framework.framework_id, "aliecs-executor-agent-1")]
        await asyncio.wait_for(process.exited.wait(), DEADLINE)
        assert process.process is not None and process.process.returncode == 0  # exited by itself
        assert not pid_alive(task_pid)


async def test_the_executor_survives_an_agent_restart_and_resends_unacknowledged_updates(
    session: aiohttp.ClientSession, tmp_path: Path, no_leaked_processes: None
) -> None:
    timings = AgentTimings(subscription_backoff_max=0.2, executor_reregistration_timeout=30)
    async with Emulator(_config(timings=timings)) as emulator:
        framework = RawFramework(session, emulator.url)
        await framework.subscribe(checkpoint=True, failover_timeout=60)
        offers = await framework.outstanding_offers("agent-1")
        await framework.call("ACCEPT", accept=_accept(offers, [_fake_task("t1", offers, 0, tmp_path)]))
        task_pid = _data(await _running(framework, "t1"))["pid"]
        agent = emulator.agents[0]
        [before] = agent.snapshot()["executors"]

        # While the agent is down, the task dies: the executor cannot deliver TASK_FAILED now.
        await emulator.stop_agent("agent-1")
        os.kill(task_pid, signal.SIGKILL)
        stderr = Path(before["sandbox"]) / "stderr"
        # The executor's log says the update waits for the agent.
        await poll_until(
            lambda: "UPDATE TASK_FAILED of t1 kept" in stderr.read_text(),
            "the executor to keep the update",
            DEADLINE,
        )
        await emulator.start_agent("agent-1")

        failed = await _status(framework, "t1")
        assert failed["state"] == "TASK_FAILED" and "SIGKILL" in failed["message"]
        [after] = agent.snapshot()["executors"]
        assert after["pid"] == before["pid"] and pid_alive(after["pid"])  # the same executor process
        assert after["subscriptions"] == 2 and after["resent_updates"] >= 1

        # It keeps working after the restart.
        offers = await framework.outstanding_offers("agent-1")
        await framework.call("ACCEPT", accept=_accept(offers, [_fake_task("t2", offers, 1, tmp_path)]))
        await _running(framework, "t2")
        await framework.call("KILL", kill={"task_id": {"value": "t2"}, "agent_id": offers[0]["agent_id"]})
        assert (await _status(framework, "t2"))["state"] == "TASK_KILLED"
        await framework.close()


def test_outside_a_mesos_agent_the_mesos_mode_explains_what_is_missing() -> None:
    env = {name: None for name in os.environ if name.startswith("MESOS_")}
    result = CliRunner(env=env).invoke(command, ["--mesos"])
    assert result.exit_code == 2
    assert "MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID, MESOS_AGENT_ENDPOINT not set" in result.output
    # Without --mesos and without --node, a Mesos agent's environment selects the Mesos mode.
    bad = {**env, "MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "e", "MESOS_AGENT_ENDPOINT": "agent:http"}
    result = CliRunner(env=bad).invoke(command, [])
    assert result.exit_code == 2
    assert "MESOS_AGENT_ENDPOINT='agent:http': expected HOST:PORT" in result.output
    wrong = {**bad, "MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_RECOVERY_TIMEOUT": "soon"}
    result = CliRunner(env=wrong).invoke(command, [])
    assert result.exit_code == 2
    assert "MESOS_RECOVERY_TIMEOUT='soon': not a Mesos duration" in result.output
    result = CliRunner(env=env).invoke(command, [])
    assert result.exit_code == 2 and "--node NAME is required" in result.output


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5secs", 5.0),
        ("1.5mins", 90.0),
        ("2hrs", 7200.0),
        ("1days", 86400.0),
        ("100ns", 1e-7),
    ],
)
def test_mesos_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "MESOS_X") == pytest.approx(seconds)


def test_the_mesos_environment_is_read_as_an_agent_writes_it(tmp_path: Path) -> None:
    env = MesosEnvironment.from_environ(
        {
            "MESOS_FRAMEWORK_ID": "fw",
            "MESOS_EXECUTOR_ID": "ex",
            "MESOS_AGENT_ENDPOINT": "10.0.0.7:5051",
            "MESOS_SANDBOX": str(tmp_path),
            "MESOS_CHECKPOINT": "1",
            "MESOS_SUBSCRIPTION_BACKOFF_MAX": "250ms",
            "MESOS_RECOVERY_TIMEOUT": "15mins",
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "5secs",
        }
    )
    assert (env.agent_host, env.checkpoint, env.backoff_max, env.recovery_timeout, env.shutdown_grace) == (
        "10.0.0.7",
        True,
        0.25,
        900.0,
        5.0,
    )
    assert env.sandbox == tmp_path
    plain = MesosEnvironment.from_environ(
        {"MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "e", "MESOS_AGENT_ENDPOINT": "h:1"}
    )
    assert not plain.checkpoint and plain.backoff_max == 2.0


async def _no_events(event: dict[str, Any]) -> None:
    raise AssertionError(f"no event expected, got {event}")


async def test_without_its_agent_the_driver_gives_up_as_mesos_says() -> None:
    # A port nothing listens on: bound then closed.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{probe.getsockname()[1]}"
    base = MesosEnvironment("fw", "ex", endpoint, Path("."), checkpoint=False)
    # Without checkpointing an executor exits as soon as its agent is gone.
    assert await ExecutorDriver(base, _no_events).run() == "disconnected"
    # With it, it retries (backing off) for the recovery timeout, keeping its updates meanwhile.
    patient = MesosEnvironment(
        "fw", "ex", endpoint, Path("."), checkpoint=True, backoff_max=0.05, recovery_timeout=0.3
    )
    driver = ExecutorDriver(patient, _no_events)
    await driver.update("t1", "TASK_RUNNING", b"{}")
    assert await asyncio.wait_for(driver.run(), DEADLINE) == "recovery timeout"
    [kept] = driver.unacknowledged_updates.values()
    assert (kept["task_id"], kept["state"], kept["source"]) == (
        {"value": "t1"},
        "TASK_RUNNING",
        "SOURCE_EXECUTOR",
    )
