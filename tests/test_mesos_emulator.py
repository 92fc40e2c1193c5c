"""The Mesos emulator speaks the v1 scheduler and executor HTTP APIs as Mesos documents them.

The framework here is a few raw aiohttp calls written from docs/scheduler-http-api.md (its own RecordIO
reading, no aliecs code), as someone else's framework would be; the executor is
`tests.mesos_emulator.sample_executor`, equally raw.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.mesos_emulator import AgentTimings, Emulator, EmulatorConfig
from tests.mesos_emulator.__main__ import main as emulator_main
from tests.mesos_emulator.fixture import EmulatorProcess, EmulatorProcessError
from tests.mesos_emulator.raw_framework import DEADLINE, RawFramework

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _config(**overrides: Any) -> EmulatorConfig:
    settings: dict[str, Any] = {"agents": 3, "heartbeat_interval": 0.2, "allocation_interval": 0.05}
    settings.update(overrides)
    return EmulatorConfig(**settings)


def _scalar(offer: dict[str, Any], name: str) -> float:
    return float(next(r["scalar"]["value"] for r in offer["resources"] if r["name"] == name))


def _ports(offer: dict[str, Any]) -> list[tuple[int, int]]:
    spans = next(r["ranges"]["range"] for r in offer["resources"] if r["name"] == "ports")
    return [(span["begin"], span["end"]) for span in spans]


def _attributes(offer: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["text"]["value"] for a in offer["attributes"] if a["type"] == "TEXT"}


async def test_offers_carry_attributes_and_resources_and_decline_filters_hold_until_revive(
    session: aiohttp.ClientSession,
) -> None:
    config = _config(attributes={"agent-2": {"detector": "TPC"}}, cpus=4, mem=2048)
    async with Emulator(config) as emulator:
        framework = RawFramework(session, emulator.url)
        subscribed = await framework.subscribe()
        assert subscribed["subscribed"]["heartbeat_interval_seconds"] == pytest.approx(0.2)
        offers = await framework.offers_from(3)
        assert sorted(offers) == ["agent-1", "agent-2", "agent-3"]
        for number, (hostname, offer) in enumerate(sorted(offers.items())):
            assert offer["framework_id"]["value"] == framework.framework_id
            assert _scalar(offer, "cpus") == 4 and _scalar(offer, "mem") == 2048
            first = 61000 + 400 * number
            assert _ports(offer) == [(first, first + 399)]
            expected = {"machine_id": hostname, **({"detector": "TPC"} if hostname == "agent-2" else {})}
            assert _attributes(offer) == expected

        # Declined for an hour: two heartbeats later (dozens of allocation rounds) still no offer.
        ids = [{"value": o["id"]["value"]} for o in offers.values()]
        answer = await framework.call(
            "DECLINE", decline={"offer_ids": ids, "filters": {"refuse_seconds": 3600}}
        )
        assert answer.status == 202
        for _ in range(2):
            assert (await framework.next("OFFERS", "HEARTBEAT"))["type"] == "HEARTBEAT"
        assert all(not f["offers"] for f in emulator.state()["frameworks"])

        # REVIVE clears the filters: the same agents are offered again.
        assert (await framework.call("REVIVE", revive={})).status == 202
        offers = await framework.offers_from(3)
        assert sorted(offers) == ["agent-1", "agent-2", "agent-3"]

        # A short filter expires on its own, without REVIVE.
        ids = [{"value": o["id"]["value"]} for o in offers.values()]
        await framework.call("DECLINE", decline={"offer_ids": ids, "filters": {"refuse_seconds": 0.1}})
        assert len(await framework.offers_from(3)) == 3
        await framework.close()


async def test_malformed_and_unauthenticated_calls_are_refused_as_mesos_does(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(_config(agents=1)) as emulator:
        url = emulator.url + "/api/v1/scheduler"

        async def post(
            body: Any, headers: dict[str, str] | None = None, raw: bool = False
        ) -> tuple[int, str]:
            data = body if raw else json.dumps(body)
            all_headers = {"Content-Type": "application/json", **(headers or {})}
            async with session.post(url, data=data, headers=all_headers) as response:
                return response.status, await response.text()

        assert (await post(b"{not json", raw=True))[0] == 400
        assert "Failed to parse body into JSON" in (await post(b"{not json", raw=True))[1]
        assert await post({"subscribe": {}}) == (
            400,
            "Failed to validate scheduler::Call: Expecting 'type' to be present",
        )
        status, text = await post({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "x"}}})
        assert (status, text) == (
            400,
            "Failed to validate scheduler::Call: Not initialized: subscribe.framework_info.user",
        )
        status, text = await post({"type": "NONSENSE"})
        assert status == 400 and "Failed to find enum for 'NONSENSE'" in text
        status, text = await post({"type": "DECLINE", "decline": {}})
        assert (status, text) == (
            400,
            "Failed to validate scheduler::Call: Expecting 'framework_id' to be present",
        )
        status, text = await post({"type": "DECLINE", "framework_id": {"value": "nobody"}, "decline": {}})
        assert (status, text) == (400, "Framework cannot be found")
        async with session.post(url, data="{}", headers={"Content-Type": "text/plain"}) as response:
            assert response.status == 415
        async with session.get(url) as response:
            assert response.status == 405
        subscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}}
        status, text = await post(subscribe, {"Mesos-Stream-Id": "x"})
        assert (status, text) == (400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
        assert (await post(subscribe, {"Accept": "application/x-protobuf"}))[0] == 406

        framework = RawFramework(session, emulator.url)
        await framework.subscribe(failover_timeout=60)
        missing = await framework.call("REVIVE", stream_id="", revive={})
        assert missing.status == 400
        wrong = await framework.call("REVIVE", stream_id="not-the-stream", revive={})
        assert wrong.status == 400
        bad_offer = await framework.call("DECLINE", decline={"offer_ids": [{"value": 7}]})
        assert bad_offer.status == 400
        assert (await framework.call("REVIVE", revive={})).status == 202
        await framework.close()
        # Once the subscription connection is gone, calls are forbidden until a new SUBSCRIBE (the
        # framework is kept for its failover timeout).
        async with asyncio.timeout(DEADLINE):
            status = 202
            while status == 202:
                await asyncio.sleep(0.02)  # poll: the master notices the closed connection asynchronously
                status = (await framework.call("REVIVE", revive={})).status
        assert status == 403


async def test_a_standby_master_redirects_to_the_leader(session: aiohttp.ClientSession) -> None:
    async with Emulator(_config(agents=1, standby=True)) as emulator:
        assert emulator.standby_url is not None
        body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}}
        async with session.post(
            emulator.standby_url + "/api/v1/scheduler", json=body, allow_redirects=False
        ) as r:
            assert r.status == 307
            location = r.headers["Location"]
        assert location == emulator.url.removeprefix("http:") + "/api/v1/scheduler"
        framework = RawFramework(session, "http:" + location.removesuffix("/api/v1/scheduler"))
        assert (await framework.subscribe())["type"] == "SUBSCRIBED"
        await framework.close()


async def test_failover_resubscription_keeps_the_framework_and_teardown_removes_it(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(_config(agents=1)) as emulator:
        first = RawFramework(session, emulator.url)
        await first.subscribe(failover_timeout=60)
        framework_id = {"value": first.framework_id}
        # A second scheduler instance with the same id takes over: the first one gets ERROR.
        second = RawFramework(session, emulator.url)
        assert (await second.subscribe(id=framework_id, failover_timeout=60))["type"] == "SUBSCRIBED"
        assert second.framework_id == first.framework_id and second.stream_id != first.stream_id
        error = await first.next("ERROR")
        assert error["error"]["message"] == "Framework failed over"
        assert (await first.call("REVIVE", revive={})).status == 400  # its stream id is no longer valid
        await second.close()
        third = RawFramework(session, emulator.url)
        await third.subscribe(id=framework_id, failover_timeout=60)
        assert third.framework_id == first.framework_id
        assert (await third.call("TEARDOWN")).status == 202
        await asyncio.wait_for(third.ended.wait(), DEADLINE)
        again = RawFramework(session, emulator.url)
        assert (await again.subscribe(id=framework_id))["error"]["message"] == "Framework has been removed"


async def test_rescind_lost_agent_and_master_restart(session: aiohttp.ClientSession) -> None:
    async with Emulator(_config()) as emulator:
        framework = RawFramework(session, emulator.url)
        await framework.subscribe(failover_timeout=60)
        offers = await framework.offers_from(3)
        assert emulator.rescind_offers("agent-1") == 1
        rescind = await framework.next("RESCIND")
        assert rescind["rescind"]["offer_id"] == offers["agent-1"]["id"]
        stale = await framework.offers_from(1)
        assert stale.keys() == {"agent-1"}  # offered again

        emulator.lose_agent("agent-3")
        assert (await framework.next("RESCIND"))["rescind"]["offer_id"] == offers["agent-3"]["id"]
        failure = await framework.next("FAILURE")
        assert failure["failure"] == {"agent_id": offers["agent-3"]["agent_id"]}

        await emulator.restart_master()
        await asyncio.wait_for(framework.ended.wait(), DEADLINE)
        again = RawFramework(session, emulator.url)
        await again.subscribe(id={"value": framework.framework_id}, failover_timeout=60)
        assert again.framework_id == framework.framework_id
        hosts = set(await again.offers_from(2))
        assert hosts == {"agent-1", "agent-2"}  # the lost agent stays gone
        # An offer from before the restart is no longer valid: its task is lost, not launched.
        offer = next(iter(stale.values()))
        task = _task("t-stale", offer, _sample_executor("e-stale"))
        await again.call("ACCEPT", accept=_launch(offer, [task]))
        update = await again.next("UPDATE")
        assert update["update"]["status"]["state"] == "TASK_LOST"
        assert update["update"]["status"]["reason"] == "REASON_INVALID_OFFERS"
        await again.close()


def _sample_executor(executor_id: str, cpus: float = 0.1) -> dict[str, Any]:
    return {
        "type": "CUSTOM",
        "executor_id": {"value": executor_id},
        "command": {
            "shell": False,
            "value": sys.executable,
            "arguments": [sys.executable, "-m", "tests.mesos_emulator.sample_executor"],
            "environment": {"variables": [{"name": "PYTHONPATH", "value": str(ROOT)}]},
        },
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}}],
    }


def _task(task_id: str, offer: dict[str, Any], executor: dict[str, Any], cpus: float = 1.0) -> dict[str, Any]:
    first_port = _ports(offer)[0][0]
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": offer["agent_id"],
        "executor": executor,
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}},
            {
                "name": "ports",
                "type": "RANGES",
                "ranges": {"range": [{"begin": first_port, "end": first_port}]},
            },
        ],
        "data": base64.b64encode(f"payload of {task_id}".encode()).decode(),
    }


def _launch(offer: dict[str, Any], tasks: list[dict[str, Any]], refuse: float = 0.0) -> dict[str, Any]:
    return {
        "offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
        "filters": {"refuse_seconds": refuse},
    }


async def test_tasks_run_under_a_real_executor_and_their_resources_come_back(
    session: aiohttp.ClientSession, no_leaked_processes: None
) -> None:
    async with Emulator(_config(agents=1, cpus=2)) as emulator:
        framework = RawFramework(session, emulator.url)
        await framework.subscribe(checkpoint=True)
        offer = (await framework.offers_from(1))["agent-1"]
        executor = _sample_executor("e1")
        await framework.call("ACCEPT", accept=_launch(offer, [_task("t1", offer, executor)]))
        update = (await framework.next("UPDATE"))["update"]["status"]
        assert update["state"] == "TASK_RUNNING" and update["source"] == "SOURCE_EXECUTOR"
        assert base64.b64decode(update["data"]) == b"payload of t1"
        assert update["agent_id"] == offer["agent_id"] and update["executor_id"] == {"value": "e1"}

        # What the task and its executor hold is not offered: 2 - 1 - 0.1 cpus are left.
        left = await framework.offers_from(1)
        assert _scalar(left["agent-1"], "cpus") == pytest.approx(0.9)
        assert _ports(left["agent-1"])[0] == (61001, 61399)
        assert left["agent-1"]["executor_ids"] == [{"value": "e1"}]
        await framework.call("DECLINE", decline={"offer_ids": [left["agent-1"]["id"]]})

        await framework.acknowledge(update)
        await framework.call("KILL", kill={"task_id": {"value": "t1"}, "agent_id": offer["agent_id"]})
        killed = (await framework.next("UPDATE"))["update"]["status"]
        assert killed["state"] == "TASK_KILLED"
        await framework.acknowledge(killed)
        await framework.call("REVIVE", revive={})
        back = await framework.offers_from(1)
        assert _scalar(back["agent-1"], "cpus") == pytest.approx(1.9)  # only the executor's 0.1 held

        # Reconciliation of the finished task and of one never launched (the agent is registered).
        await framework.call(
            "RECONCILE",
            reconcile={"tasks": [{"task_id": {"value": "never"}, "agent_id": offer["agent_id"]}]},
        )
        reconciled = (await framework.next("UPDATE"))["update"]["status"]
        assert (reconciled["state"], reconciled["reason"]) == ("TASK_LOST", "REASON_RECONCILIATION")
        assert "uuid" not in reconciled

        # Killing the executor process fails its tasks and tells the framework.
        offer = back["agent-1"]
        await framework.call("ACCEPT", accept=_launch(offer, [_task("t2", offer, executor)]))
        running = (await framework.next("UPDATE"))["update"]["status"]
        assert running["state"] == "TASK_RUNNING"
        await framework.acknowledge(running)
        [pid] = emulator.kill_executors("agent-1")
        assert pid > 0
        failed = (await framework.next("UPDATE"))["update"]["status"]
        assert (failed["state"], failed["reason"], failed["source"]) == (
            "TASK_FAILED",
            "REASON_EXECUTOR_TERMINATED",
            "SOURCE_AGENT",
        )
        failure = (await framework.next("FAILURE"))["failure"]
        assert failure["executor_id"] == {"value": "e1"} and failure["status"] == 9  # SIGKILL
        await framework.close()


async def test_invalid_tasks_get_task_error(session: aiohttp.ClientSession) -> None:
    async with Emulator(_config(agents=1, cpus=1)) as emulator:
        framework = RawFramework(session, emulator.url)
        await framework.subscribe()
        offer = (await framework.offers_from(1))["agent-1"]
        greedy = _task("greedy", offer, _sample_executor("e1"), cpus=4)
        command_task = {
            **_task("command", offer, _sample_executor("e1"), cpus=0.1),
            "command": {"value": "true"},
        }
        del command_task["executor"]
        await framework.call("ACCEPT", accept=_launch(offer, [greedy, command_task]))
        errors = {}
        for _ in range(2):
            status = (await framework.next("UPDATE"))["update"]["status"]
            errors[status["task_id"]["value"]] = status
        assert errors["greedy"]["state"] == "TASK_ERROR"
        assert "cpus 4.1 (available 1)" in errors["greedy"]["message"]
        assert errors["command"]["state"] == "TASK_ERROR"
        assert "custom executors only" in errors["command"]["message"]

        # A call of about 2 MB (delivered in many TCP segments) is read whole: every task is answered.
        offer = (await framework.offers_from(1))["agent-1"]
        bulky = []
        for number in range(400):
            task = {
                **_task(f"bulk{number}", offer, _sample_executor("e1"), cpus=0.1),
                "command": {"value": "true"},
            }
            del task["executor"]
            task["data"] = base64.b64encode(b"x" * 4096).decode()
            bulky.append(task)
        assert (await framework.call("ACCEPT", accept=_launch(offer, bulky))).status == 202
        answered = {(await framework.next("UPDATE"))["update"]["status"]["task_id"]["value"] for _ in bulky}
        assert answered == {f"bulk{number}" for number in range(400)}
        await framework.close()


async def test_agent_restart_ends_the_executors_of_frameworks_that_do_not_checkpoint(
    session: aiohttp.ClientSession, no_leaked_processes: None
) -> None:
    timings = AgentTimings(executor_reregistration_timeout=0.5)
    async with Emulator(_config(agents=1, timings=timings)) as emulator:
        framework = RawFramework(session, emulator.url)
        await framework.subscribe(checkpoint=False)
        offer = (await framework.offers_from(1))["agent-1"]
        await framework.call("ACCEPT", accept=_launch(offer, [_task("t1", offer, _sample_executor("e1"))]))
        running = (await framework.next("UPDATE"))["update"]["status"]
        assert running["state"] == "TASK_RUNNING"
        await framework.acknowledge(running)
        # The sample executor does not re-subscribe and the framework does not checkpoint: the agent's
        # restart ends the executor and its task is lost.
        await emulator.restart_agent("agent-1", downtime=0.1)
        lost = (await framework.next("UPDATE"))["update"]["status"]
        assert (lost["state"], lost["reason"]) == ("TASK_LOST", "REASON_AGENT_RESTARTED")
        await framework.close()


async def test_the_emulator_runs_as_a_subprocess_with_an_admin_api(
    session: aiohttp.ClientSession, no_leaked_processes: None
) -> None:
    arguments = ("--agents", "2", "--attribute", "agent-2:detector=TPC", "--ports-base", "63600")
    async with EmulatorProcess(
        *arguments, "--heartbeat-interval", "0.5", "--allocation-interval", "0.05"
    ) as emulator:
        assert sorted(emulator.agents) == ["agent-1", "agent-2"]
        framework = RawFramework(session, emulator.url)
        await framework.subscribe(checkpoint=True, failover_timeout=60)
        offers = await framework.offers_from(2)
        assert _attributes(offers["agent-2"]) == {"machine_id": "agent-2", "detector": "TPC"}
        assert _ports(offers["agent-1"]) == [(63600, 63999)]

        assert await emulator.rescind_offers("agent-1") == 1
        assert (await framework.next("RESCIND"))["rescind"]["offer_id"] == offers["agent-1"]["id"]
        await emulator.lose_agent("agent-2")
        assert (await framework.next("FAILURE"))["failure"]["agent_id"] == offers["agent-2"]["agent_id"]
        with pytest.raises(
            EmulatorProcessError, match=r"404 no agent named 'agent-9' \(agents: agent-1, agent-2\)"
        ):
            await emulator.lose_agent("agent-9")
        state = await emulator.state()
        assert [(a["hostname"], a["active"]) for a in state["agents"]] == [
            ("agent-1", True),
            ("agent-2", False),
        ]

        await emulator.restart_master(downtime=0.1)
        await asyncio.wait_for(framework.ended.wait(), DEADLINE)
        again = RawFramework(session, emulator.url)
        assert (await again.subscribe(id={"value": framework.framework_id}))["type"] == "SUBSCRIBED"
        await again.close()
    assert emulator.process is not None and emulator.process.returncode == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--attribute", "agent-2"], "expected HOSTNAME:NAME=VALUE"),
        (["--agents", "0"], "agents must be between 1 and 100"),
        (["--agents", "2", "--attribute", "agent-3:a=b"], "attributes for unknown agent(s) ['agent-3']"),
        (["--ports-base", "65000"], "do not fit in 1..65535"),
    ],
)
def test_bad_emulator_arguments_are_refused(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = emulator_main(arguments)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


async def test_an_emulator_that_cannot_start_says_why() -> None:
    with pytest.raises(EmulatorProcessError, match=r"did not start.*agents must be between 1 and 100"):
        async with EmulatorProcess("--agents", "0"):
            pass


async def test_task_groups_messages_and_executor_shutdown(
    session: aiohttp.ClientSession, no_leaked_processes: None
) -> None:
    async with Emulator(_config(agents=1)) as emulator:
        framework = RawFramework(session, emulator.url)
        await framework.subscribe()
        offer = (await framework.offers_from(1))["agent-1"]
        executor = _sample_executor("group-executor")
        tasks = [_task(name, offer, executor, cpus=0.5) for name in ("g1", "g2")]
        for task in tasks:
            del task["executor"]
        tasks[1]["resources"] = tasks[1]["resources"][:2]  # the port is g1's alone
        group = {"executor": executor, "task_group": {"tasks": tasks}}
        accept = {"offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH_GROUP", "launch_group": group}]}
        assert (await framework.call("ACCEPT", accept=accept)).status == 202
        for name in ("g1", "g2"):
            status = await framework.next_update(name)
            assert status["state"] == "TASK_RUNNING"
            await framework.acknowledge(status)

        # MESSAGE reaches the executor, which sends it back.
        ids = {"agent_id": offer["agent_id"], "executor_id": {"value": "group-executor"}}
        data = base64.b64encode(b"hello executor").decode()
        await framework.call("MESSAGE", message={**ids, "data": data})
        echoed = (await framework.next("MESSAGE"))["message"]
        assert echoed == {**ids, "data": data}

        # SHUTDOWN: the executor kills its tasks and exits by itself.
        await framework.call("SHUTDOWN", shutdown=ids)
        for name in ("g1", "g2"):
            assert (await framework.next_update(name))["state"] == "TASK_KILLED"
        failure = (await framework.next("FAILURE"))["failure"]
        assert failure == {**ids, "status": 0}
        await framework.close()


async def test_a_framework_gone_past_its_failover_timeout_loses_its_executors(
    session: aiohttp.ClientSession, no_leaked_processes: None
) -> None:
    async with Emulator(_config(agents=1)) as emulator:
        framework = RawFramework(session, emulator.url)
        await framework.subscribe(failover_timeout=0.3)
        offer = (await framework.offers_from(1))["agent-1"]
        await framework.call("ACCEPT", accept=_launch(offer, [_task("t1", offer, _sample_executor("e1"))]))
        assert (await framework.next_update("t1"))["state"] == "TASK_RUNNING"
        executor = emulator.agents[0].executors[(framework.framework_id, "e1")]
        await framework.close()
        await asyncio.wait_for(executor.exited.wait(), DEADLINE)  # shut down once the timeout passed
        assert framework.framework_id in emulator.state()["removed_frameworks"]
        assert not emulator.state()["tasks"]


async def test_a_restarting_agent_is_not_offered_until_it_is_back(session: aiohttp.ClientSession) -> None:
    async with Emulator(_config(agents=2)) as emulator:
        framework = RawFramework(session, emulator.url)
        await framework.subscribe()
        offers = await framework.offers_from(2)
        await emulator.stop_agent("agent-1")
        assert (await framework.next("RESCIND"))["rescind"]["offer_id"] == offers["agent-1"]["id"]
        # Two heartbeats later (dozens of allocation rounds), still nothing offered for agent-1.
        for _ in range(2):
            received = await framework.next("OFFERS", "HEARTBEAT")
            assert received["type"] == "HEARTBEAT", received
        await emulator.start_agent("agent-1")
        assert (await framework.offers_from(1)).keys() == {"agent-1"}
        await framework.close()
