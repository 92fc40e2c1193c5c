"""The REST API and live events of the web server, over real HTTP against a running core.

The core is embedded in the test process with real task processes (aliecs-fake-task); the web
server listens on a free loopback port and every request goes through aiohttp's client, as a
browser's would.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from aliecs.events import EnvironmentEvent
from aliecs.server.auth import TokenRequiredError
from aliecs.web import WebServer, live
from aliecs.web.openapi import document
from tests.conftest import RepoBuilder, pid_alive
from tests.web_helpers import Operator, web_core

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(90)]


@pytest_asyncio.fixture
async def server(tmp_path: Path, repo: RepoBuilder) -> AsyncIterator[WebServer]:
    async with web_core(tmp_path, repo) as running:
        yield running


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def operator(server: WebServer, http: aiohttp.ClientSession, name: str = "alice") -> Operator:
    return Operator(http, server.url, name)


class EventStream:
    """A client of GET /api/events: parses `data:` lines into JSON objects."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.seen: list[dict[str, Any]] = []

    async def next(self, timeout: float = 30.0) -> dict[str, Any] | None:
        """The next event, or None when the server ended the stream."""
        async with asyncio.timeout(timeout):
            while True:
                line = await self.response.content.readline()
                if not line:
                    return None
                text = line.decode().rstrip("\n")
                if text.startswith("data: "):
                    event: dict[str, Any] = json.loads(text[len("data: ") :])
                    self.seen.append(event)
                    return event

    async def until(self, predicate: Any, what: str) -> dict[str, Any]:
        while True:
            event = await self.next()
            assert event is not None, f"stream ended before {what}; saw {self.seen}"
            if predicate(event):
                return event


def env_event(env_id: str, transition: str, status: str) -> Any:
    def match(event: dict[str, Any]) -> bool:
        inner = event.get("environmentEvent", {})
        return (
            inner.get("environmentId") == env_id
            and inner.get("transition") == transition
            and inner.get("transitionStatus") == status
            and not inner.get("transitionStep")
        )

    return match


async def test_a_whole_data_taking_cycle_over_rest(server: WebServer, http: aiohttp.ClientSession) -> None:
    alice = operator(server, http)
    env = await alice.create(readouts=3, qc_enabled=True)
    env_id = env["id"]
    assert env["state"] == "DEPLOYED" and env["workflow"].endswith("shift")
    assert env["user_vars"]["qc_enabled"] == "true"  # booleans become template text
    assert env["lock"] == {"operator": "alice", "since_ms": env["lock"]["since_ms"], "mine": True}
    assert env["allowed_events"] == ["CONFIGURE", "EXIT"]
    names = sorted(task["name"] for task in env["task_list"])
    assert len(names) == 4 and all(task["pid"] > 0 for task in env["task_list"])
    tree = env["tree"]
    assert [child["name"] for child in tree["children"]] == ["readout1", "readout2", "readout3", "qc"]
    assert tree["children"][0]["task"]["state"] == "STANDBY"
    assert tree["children"][0]["task"]["host"] in ("node00", "node01")

    configured = await alice.transition(env_id, "CONFIGURE")
    assert (
        configured["result"]["from_state"] == "DEPLOYED" and configured["result"]["to_state"] == "CONFIGURED"
    )
    assert configured["environment"]["allowed_events"] == ["RESET", "START_ACTIVITY", "EXIT"]
    running = (await alice.transition(env_id, "START"))["environment"]
    assert running["state"] == "RUNNING" and running["run_number"] > 0 and running["run_start_ms"] > 0
    assert running["runs"][-1]["run_number"] == running["run_number"]
    assert running["runs"][-1]["outcome"] == "running"
    listed = (await alice.call("GET", "/api/environments"))["environments"]
    assert [(e["id"], e["state"], e["run_number"]) for e in listed] == [
        (env_id, "RUNNING", running["run_number"])
    ]

    stopped = (await alice.transition(env_id, "STOP_ACTIVITY"))["environment"]
    run = stopped["runs"][-1]
    assert (
        run["outcome"] == "stopped"
        and run["start_ms"] <= run["started_ms"] <= run["stop_ms"] <= run["end_ms"]
    )
    assert stopped["run_number"] == 0 and stopped["last_run_number"] == running["run_number"]
    await alice.transition(env_id, "RESET")
    pids = [task["pid"] for task in stopped["task_list"]]
    done = (await alice.transition(env_id, "EXIT"))["environment"]
    assert done["state"] == "DONE" and done["allowed_events"] == []
    events = [step["event"] for step in done["history"]]
    assert events == ["DEPLOY", "CONFIGURE", "START_ACTIVITY", "STOP_ACTIVITY", "RESET", "EXIT"]

    destroyed = await alice.call("DELETE", f"/api/environments/{env_id}")
    assert destroyed == {"id": env_id, "state": "DONE", "tasks_killed": 4}
    assert not any(pid_alive(pid) for pid in pids)
    assert (await alice.call("GET", "/api/environments"))["environments"] == []


async def test_errors_are_json_with_the_right_status(server: WebServer, http: aiohttp.ClientSession) -> None:
    alice = operator(server, http)
    missing = await alice.call("GET", "/api/environments/nosuchenv", 404)
    assert "nosuchenv" in missing["error"] and missing["status"] == 404
    assert "letters, digits" in (await alice.call("GET", "/api/environments/" + "x" * 65, 400))["error"]
    assert "no such API route" in (await alice.call("GET", "/api/nothing", 404))["error"]
    assert (await alice.call("PUT", "/api/environments", 405))["status"] == 405
    url = server.url + "api/environments"
    async with http.post(url, data="workflow=shift", headers={"Content-Type": "text/plain"}) as response:
        assert response.status == 415 and "JSON" in (await response.json())["error"]
    async with http.post(url, data="{not json", headers={"Content-Type": "application/json"}) as response:
        assert response.status == 400 and "not valid JSON" in (await response.json())["error"]
    async with http.post(url, json={"workflow": "shift", "vars": {"big": "x" * 300_000}}) as response:
        assert response.status == 413 and "too large" in (await response.json())["error"]
    assert "workflow" in (await alice.call("POST", "/api/environments", 400, json={"vars": {}}))["error"]
    bad_vars = {"workflow": "shift", "vars": {"k": {"nested": 1}}}
    assert "vars.k" in (await alice.call("POST", "/api/environments", 400, json=bad_vars))["error"]
    assert "nosuchflow" in (await alice.create("nosuchflow", status=404))["error"]

    env = await alice.create(readouts=1, readout_args="--fail-on CONFIGURE")
    env_id = env["id"]
    wrong = await alice.transition(env_id, "STOP_ACTIVITY", 409)
    assert wrong["state"] == "DEPLOYED" and wrong["allowed"] == ["CONFIGURE", "EXIT", "GO_ERROR"]
    assert "event must be one of" in (await alice.transition(env_id, "JUMP", 400))["error"]
    failed = await alice.transition(env_id, "CONFIGURE", 502)
    assert failed["state"] == "ERROR" and failed["task_errors"][0]["name"].endswith("readout1")
    shown = await alice.call("GET", f"/api/environments/{env_id}")
    assert shown["state"] == "ERROR" and shown["allowed_events"] == ["RECOVER"] and shown["error"]
    recovered = (await alice.transition(env_id, "RECOVER"))["environment"]
    assert recovered["state"] == "DEPLOYED"
    await alice.call("DELETE", f"/api/environments/{env_id}")


async def test_a_second_transition_while_one_runs_is_refused(
    server: WebServer, http: aiohttp.ClientSession
) -> None:
    alice = operator(server, http)
    env_id = (await alice.create(readouts=1, readout_args="--latency CONFIGURE=2"))["id"]
    subscription = server.core.events.subscribe()
    try:
        first = asyncio.ensure_future(alice.transition(env_id, "CONFIGURE"))
        while True:  # wait until CONFIGURE has started in the environment
            event = await subscription.next(30)
            if (
                isinstance(event, EnvironmentEvent)
                and event.environment_id == env_id
                and (event.transition, event.transition_status) == ("CONFIGURE", "STARTED")
            ):
                break
        busy = await alice.transition(env_id, "EXIT", 409)
        assert "busy with CONFIGURE" in busy["error"]
        shown = await alice.call("GET", f"/api/environments/{env_id}")
        progress = shown["progress"]
        assert progress["event"] == "CONFIGURE" and progress["tasks_total"] == 1
        assert (
            progress["deadline_s"] == 120.0 and progress["started_ms"] > 0 and shown["allowed_events"] == []
        )
        assert (await first)["environment"]["state"] == "CONFIGURED"
    finally:
        subscription.close()
    await alice.call("DELETE", f"/api/environments/{env_id}")


async def test_locks_keep_other_operators_out(server: WebServer, http: aiohttp.ClientSession) -> None:
    alice, bob = operator(server, http, "alice"), operator(server, http, "bob")
    env_id = (await alice.create(readouts=1))["id"]
    seen_by_bob = await bob.call("GET", f"/api/environments/{env_id}")
    assert seen_by_bob["lock"]["operator"] == "alice" and seen_by_bob["lock"]["mine"] is False
    refused = await bob.transition(env_id, "CONFIGURE", 423)
    assert "controlled by alice" in refused["error"]
    assert "controlled by alice" in (await bob.lock(env_id, 423))["error"]
    assert (await bob.call("DELETE", f"/api/environments/{env_id}/lock", 423))["status"] == 423
    assert (await bob.call("DELETE", f"/api/environments/{env_id}", 423))["status"] == 423
    nameless = await bob.call("POST", f"/api/environments/{env_id}/lock", 400, json={"operator": " "})
    assert "operator" in nameless["error"]
    bob.session = "bad session!"
    assert "session id" in (await bob.lock(env_id, 400))["error"]
    bob.session = "bob-session-id"

    await alice.call("DELETE", f"/api/environments/{env_id}/lock")
    nobody = await alice.transition(env_id, "CONFIGURE", 423)
    assert "nobody holds it" in nobody["error"]
    taken = await bob.lock(env_id)
    assert taken["lock"]["operator"] == "bob" and taken["lock"]["mine"] is True
    await bob.transition(env_id, "CONFIGURE")
    await alice.transition(env_id, "RESET", 423)
    await alice.lock(env_id, force=True)  # the shift leader takes over
    assert (await bob.transition(env_id, "START", 423))["error"].startswith(
        f"environment {env_id} is controlled"
    )
    assert (await bob.call("GET", "/api/environments"))["environments"][0]["lock"]["operator"] == "alice"
    await alice.call("DELETE", f"/api/environments/{env_id}")
    assert server.core.locks.holder(env_id) is None


async def test_tasks_with_filters_counts_and_log_tails(
    server: WebServer, http: aiohttp.ClientSession
) -> None:
    alice = operator(server, http)
    first = (await alice.create(readouts=2))["id"]
    second = (await alice.create(readouts=1))["id"]
    await alice.transition(first, "CONFIGURE")
    every = await alice.call("GET", "/api/tasks")
    assert every["total"] == 3 and every["counts"] == {"CONFIGURED": 2, "STANDBY": 1}
    only_first = await alice.call("GET", f"/api/tasks?environment={first}")
    assert {t["environment_id"] for t in only_first["tasks"]} == {first} and only_first["total"] == 2
    standby = await alice.call("GET", "/api/tasks?state=standby")
    assert [t["environment_id"] for t in standby["tasks"]] == [second]
    named = await alice.call("GET", "/api/tasks?name=readout2")
    assert [t["name"] for t in named["tasks"]] == ["shift.readout2"]
    globbed = await alice.call("GET", "/api/tasks?name=shift.read*&limit=1")
    assert globbed["total"] == 3 and len(globbed["tasks"]) == 1
    host = every["tasks"][0]["host"]
    on_host = await alice.call("GET", f"/api/tasks?host={host}")
    assert on_host["tasks"] and all(t["host"] == host for t in on_host["tasks"])
    assert "limit" in (await alice.call("GET", "/api/tasks?limit=0", 400))["error"]

    task = only_first["tasks"][0]
    assert await alice.call("GET", f"/api/tasks/{task['id']}") == task
    assert "no task" in (await alice.call("GET", "/api/tasks/nosuchtask", 404))["error"]
    log = await alice.call("GET", f"/api/tasks/{task['id']}/log?lines=50")
    assert log["path"] == task["log_path"] and 0 < len(log["lines"]) <= 50
    assert any("CONFIGURE" in line for line in log["lines"]), log["lines"]
    assert len((await alice.call("GET", f"/api/tasks/{task['id']}/log?lines=1"))["lines"]) == 1
    await alice.call("GET", f"/api/tasks/{task['id']}/log?lines=5000", 400)
    for env_id in (first, second):
        await alice.call("DELETE", f"/api/environments/{env_id}")


async def test_templates_repositories_and_info(server: WebServer, http: aiohttp.ClientSession) -> None:
    alice = operator(server, http)
    templates = (await alice.call("GET", "/api/templates"))["templates"]
    assert [t["name"] for t in templates] == ["shift"]  # `hidden` is not !public
    shift = templates[0]
    assert shift["description"] == "a readout chain of fake tasks"
    variables = shift["variables"]
    assert set(variables) == {"readouts", "qc_enabled", "qc_level", "qc_histograms"}
    assert variables["qc_enabled"]["widget"] == "checkBox" and variables["qc_enabled"]["type"] == "bool"
    assert variables["qc_level"]["allowedValues"] == ["basic", "full"]
    assert variables["qc_level"]["visibleIf"] == '$$qc_enabled === "true"'
    assert variables["readouts"]["defaultValue"] == "2" and variables["readouts"]["index"] == 1
    every = (await alice.call("GET", "/api/templates?all=true"))["templates"]
    assert sorted(t["name"] for t in every) == ["hidden", "shift"]
    created = await alice.create(shift["reference"], readouts=1)  # the reference the form sends
    assert created["state"] == "DEPLOYED"
    await alice.call("DELETE", f"/api/environments/{created['id']}")

    repos = await alice.call("GET", "/api/repositories")
    assert [r["default"] for r in repos["repositories"]] == [True]
    assert repos["repositories"][0]["identifier"] == shift["repository"]
    info = await alice.call("GET", "/api/info")
    assert info["product"] == "aliecs" and [n["hostname"] for n in info["nodes"]] == ["node00", "node01"]
    assert info["environments"] == 0 and info["token_required"] is False


async def test_live_events_filtered_by_environment(server: WebServer, http: aiohttp.ClientSession) -> None:
    alice = operator(server, http)
    watched = (await alice.create(readouts=1))["id"]
    other = (await alice.create(readouts=1))["id"]
    async with http.get(server.url + f"api/events?environment={watched}") as response:
        assert response.status == 200 and response.content_type == "text/event-stream"
        stream = EventStream(response)
        await alice.transition(other, "CONFIGURE")
        await alice.transition(watched, "CONFIGURE")
        await stream.until(env_event(watched, "CONFIGURE", "DONE_OK"), "CONFIGURE of the watched environment")
        kinds = {next(key for key in event if key.endswith("Event")) for event in stream.seen}
        assert {"environmentEvent", "taskEvent", "roleEvent"} <= kinds
        assert all(next(iter(e.values())) for e in stream.seen)
        for event in stream.seen:
            inner = next(value for key, value in event.items() if key.endswith("Event"))
            assert inner["environmentId"] == watched, event
        await alice.call("DELETE", f"/api/environments/{watched}/lock")
        released = await stream.until(lambda e: "lockEvent" in e, "the lock event")
        assert released["lockEvent"] == {
            "environmentId": watched,
            "operator": "",
            "sinceMs": "0",
            "locked": False,
        }
        await alice.lock(watched)
        await alice.call("DELETE", f"/api/environments/{watched}")
        await stream.until(env_event(watched, "DESTROY", "DONE_OK"), "the destruction")
        assert await stream.next() is None  # the stream of a destroyed environment ends
    await alice.call("DELETE", f"/api/environments/{other}")


async def test_event_streams_are_bounded_and_end_when_the_server_closes(
    tmp_path: Path, repo: RepoBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "MAX_STREAMS", 1)
    async with (
        web_core(tmp_path, repo) as server,
        aiohttp.ClientSession() as http,
        http.get(server.url + "api/events") as response,
    ):
        stream = EventStream(response)
        async with http.get(server.url + "api/events") as second:
            assert second.status == 503 and "too many event streams" in (await second.json())["error"]
        await server.close()  # closing twice (again on leaving web_core) is harmless
        assert await stream.next(timeout=10) is None


async def test_openapi_describes_exactly_the_routes(server: WebServer, http: aiohttp.ClientSession) -> None:
    served = await operator(server, http).call("GET", "/api/openapi.json")
    assert served == json.loads(json.dumps(document())) and served["openapi"].startswith("3.")
    described = {(path, method.upper()) for path, item in served["paths"].items() for method in item}
    routes = {
        (route.resource.canonical, route.method)
        for route in server.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
    }
    assert routes == described
    schemas = served["components"]["schemas"]
    refs = {
        value.rsplit("/", 1)[1]
        for value in _walk(served)
        if isinstance(value, str) and value.startswith("#/")
    }
    assert refs <= set(schemas), refs - set(schemas)


def _walk(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [x for value in node.values() for x in _walk(value)]
    if isinstance(node, list):
        return [x for value in node for x in _walk(value)]
    return [node]


async def test_tokens_origins_and_host_names(tmp_path: Path, repo: RepoBuilder) -> None:
    token = "s3cret-token"
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of 127.0.0.1, as browsers do
    async with web_core(tmp_path, repo, token=token) as server, aiohttp.ClientSession(cookie_jar=jar) as http:
        info = server.url + "api/info"
        async with http.get(info) as response:
            assert response.status == 401 and "requires a token" in (await response.json())["error"]
        async with http.get(info, headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401 and "wrong token" in (await response.json())["error"]
        async with http.get(info, headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 200 and (await response.json())["token_required"] is True
        async with http.get(server.url) as response:  # the page itself carries no data
            assert response.status == 200 and "<html" in (await response.text()).lower()
        async with http.post(server.url + "api/login", json={"token": "wrong"}) as response:
            assert response.status == 401
        async with http.post(server.url + "api/login", json={"token": token}) as response:
            assert response.status == 200
            cookie = response.cookies["aliecs_token"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
        async with http.get(info) as response:  # the cookie now authenticates
            assert response.status == 200
        async with http.get(info, headers={"Origin": "http://evil.example"}) as response:
            assert response.status == 403 and "cross-site" in (await response.json())["error"]
        async with http.get(info, headers={"Host": f"rebound.example:{server.port}"}) as response:
            assert response.status == 403 and "loopback" in (await response.json())["error"]
    with pytest.raises(TokenRequiredError, match="without a token"):
        WebServer(server.core, host="0.0.0.0", port=0)


async def test_the_readme_example_runs(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (example,) = [block for block in blocks if "WebServer(core" in block]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        example,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "ALIECS_STATE_DIR": str(tmp_path / "state")},
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out.decode()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/ \['node00', 'node01'\]\n", out.decode()), out.decode()
