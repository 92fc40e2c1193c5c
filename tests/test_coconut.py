"""The issue's "done when": a real `aliecs-core` process driven by `coconut` exactly as a user types it.

The core runs as a subprocess on a free port with a temporary state directory; every coconut
command is a subprocess too. A Subscribe stream opened by the test sees every event the core logs
in its audit log. SIGTERM must tear down what is still running, exit 0 and leave no process.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import betterproto
import pytest
import pytest_asyncio

from aliecs.generated import events as events_pb
from aliecs.server import ControlClient
from tests.conftest import GitRepoBuilder, pid_alive, process_args
from tests.core_process import BIN, CoreProcess, coconut, field, start_core, stop_or_kill
from tests.occ_helpers import free_port

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(120)]


@pytest_asyncio.fixture
async def core(tmp_path: Path) -> AsyncIterator[CoreProcess]:
    running = await start_core(tmp_path, free_port())
    try:
        yield running
    finally:
        await stop_or_kill(running)


async def test_full_cycle_with_coconut_against_a_real_core(core: CoreProcess) -> None:
    received: list[events_pb.Event] = []
    client = ControlClient(core.endpoint)

    destroyed_seen = asyncio.Event()

    async def collect() -> None:
        async for event in client.subscribe(""):
            received.append(event)
            kind, payload = betterproto.which_one_of(event, "Payload")
            if kind == "environment_event" and payload.transition == "DESTROY" and payload.state == "DONE":
                destroyed_seen.set()

    stream = asyncio.ensure_future(collect())
    try:
        assert "aliecs" in await coconut(core, "info")
        assert "copypush" in await coconut(core, "template", "list")

        created = await coconut(core, "env", "create", "-w", "copypush")
        assert "new environment created" in created
        env_id = field(created, "environment id")
        assert field(created, "state") == "CONFIGURED"

        listing = await coconut(core, "env", "list")
        assert re.search(rf"^{env_id}\s+copypush\s+.*CONFIGURED", listing, re.M), listing
        assert [e["id"] for e in json.loads(await coconut(core, "e", "ls", "-o", "json"))] == [env_id]

        shown = await coconut(core, "env", "show", env_id, "-w", "-t")
        assert "[ CONFIGURED ] copypush" in shown and "── [ CONFIGURED ] sampler" in shown
        tasks = json.loads(await coconut(core, "task", "list", "-o", "json"))
        assert len(tasks) == 4 and all(t["state"] == "CONFIGURED" for t in tasks)
        pids = [int(t["pid"]) for t in tasks]

        started = await coconut(core, "env", "control", env_id, "-e", "START_ACTIVITY")
        assert field(started, "state") == "RUNNING"
        run = int(field(started, "run number"))
        assert run > 0 and field(started, "duration").endswith(" ms")

        refused = await coconut(core, "env", "control", env_id, "-e", "CONFIGURE", ok=False)
        assert "FAILED_PRECONDITION" in refused and "not allowed from state RUNNING" in refused
        assert "NOT_FOUND" in await coconut(core, "repo", "default", "7", ok=False)
        assert "NOT_FOUND" in await coconut(core, "env", "show", "nope", ok=False)

        roles = await coconut(core, "role", "query", env_id, "copypush.sink*")
        assert roles.count("[ RUNNING ] sink") == 3 and "consolidated stack:" in roles

        stopped = await coconut(core, "env", "ctl", env_id, "-e", "STOP")
        assert field(stopped, "state") == "CONFIGURED" and field(stopped, "run number") == "-"
        assert field(await coconut(core, "env", "show", env_id), "run number") == f"- (last run: {run})"
        reset = await coconut(core, "env", "t", env_id, "-e", "RESET")
        assert field(reset, "state") == "DEPLOYED"
        tree = await coconut(core, "env", "show", env_id, "-w")
        # the root is the environment: DEPLOYED like the header, with its tasks' aggregate beside it
        assert "[ DEPLOYED ] copypush  ACTIVE  (tasks STANDBY)" in tree, tree

        destroyed = await coconut(core, "env", "destroy", env_id)
        assert f"teardown complete for environment {env_id}: 4 task(s) killed" in destroyed
        assert "no environments running" in await coconut(core, "env", "list")
        assert not any(pid_alive(pid) for pid in pids)

        await asyncio.wait_for(destroyed_seen.wait(), 10)
    finally:
        stream.cancel()
        client.close()
        await asyncio.gather(stream, return_exceptions=True)

    steps = [
        (payload.transition, payload.transition_status.name)
        for payload in (betterproto.which_one_of(e, "Payload")[1] for e in received)
        if isinstance(payload, events_pb.EvEnvironmentEvent)
    ]
    for name in (
        "CREATE",
        "DEPLOY",
        "CONFIGURE",
        "START_ACTIVITY",
        "STOP_ACTIVITY",
        "RESET",
        "EXIT",
        "DESTROY",
    ):
        assert (name, "DONE_OK") in steps, (name, steps)
    runs = [e.run_event for e in received if betterproto.which_one_of(e, "Payload")[0] == "run_event"]
    assert [(r.transition, r.transition_status.name, r.run_number) for r in runs] == [
        ("START_ACTIVITY", "STARTED", run),
        ("START_ACTIVITY", "DONE_OK", run),
        ("STOP_ACTIVITY", "STARTED", run),
        ("STOP_ACTIVITY", "DONE_OK", run),
    ]

    core.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(core.process.wait(), 30) == 0
    # the core's own log: one line per transition, with its duration and run number
    log = (core.state_dir / "logs" / "aliecs-core.log").read_text()
    for line in (
        rf"environment {env_id}: CONFIGURE DONE_OK in [0-9.]+s \(DEPLOYED -> CONFIGURED\)",
        rf"environment {env_id}: START_ACTIVITY DONE_OK in [0-9.]+s \(CONFIGURED -> RUNNING\), run {run}",
        rf"environment {env_id}: STOP_ACTIVITY DONE_OK in [0-9.]+s \(RUNNING -> CONFIGURED\), run {run}",
        rf"environment {env_id}: DESTROY DONE_OK",
    ):
        assert re.search(line, log), (line, log)
    assert core.process.stdout is not None
    assert "INFO aliecs.core: environment" in (await core.process.stdout.read()).decode()  # and on stderr
    assert (core.state_dir / "logs" / "aliecs-core.log").stat().st_mode & 0o777 == 0o600
    audit = [json.loads(line) for line in (core.state_dir / "events.jsonl").read_text().splitlines()]
    logged = [r for r in audit if "coreStartEvent" not in r]
    assert len(logged) == len(received)
    assert [int(r["timestampNano"]) for r in logged] == [e.timestamp_nano for e in received]


async def test_sigterm_stops_running_environments_and_leaves_no_process(core: CoreProcess) -> None:
    running = await coconut(core, "env", "create", "-w", "copypush")
    running_id = field(running, "environment id")
    await coconut(core, "env", "control", running_id, "-e", "START")
    configured_id = field(await coconut(core, "env", "create", "-w", "copypush"), "environment id")
    pids = [int(t["pid"]) for t in json.loads(await coconut(core, "task", "list", "-o", "json"))]
    assert len(pids) == 8

    core.process.send_signal(signal.SIGTERM)
    await core.read_until("stopped, no task left")
    assert await asyncio.wait_for(core.process.wait(), 30) == 0
    text = "\n".join(core.lines)
    assert "SIGTERM received, shutting down" in text
    assert f"environment {running_id}: STOP_ACTIVITY (run " in text
    assert f"environment {running_id}: RESET" in text and f"environment {configured_id}: RESET" in text
    assert "2 environment(s) to tear down" in text
    assert not any(pid_alive(pid) for pid in pids)


async def test_unreachable_core_and_bad_usage(tmp_path: Path) -> None:
    port = free_port()
    fake = CoreProcess(process=None, port=port, state_dir=tmp_path, lines=[])  # type: ignore[arg-type]
    message = await coconut(fake, "env", "list", ok=False)
    assert f"cannot reach the core at 127.0.0.1:{port}" in message and "aliecs-core" in message
    process = await asyncio.create_subprocess_exec(
        str(BIN / "coconut"),
        "--endpoint",
        fake.endpoint,
        "env",
        "control",
        "x",
        "-e",
        "BOGUS",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await process.communicate()
    assert process.returncode == 2 and b"unknown event 'BOGUS'" in err
    mesos = await asyncio.create_subprocess_exec(
        str(BIN / "aliecs-core"),
        "--mesos",
        "ftp://m:5050",
        "--state-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await mesos.communicate()
    assert (
        mesos.returncode == 2
        and b"--mesos: Mesos master URL 'ftp://m:5050': expected http://HOST:PORT" in err
    )


async def test_repositories_and_an_environment_at_a_revision(
    core: CoreProcess, versioned_repo: GitRepoBuilder
) -> None:
    path = str(versioned_repo.path)
    added = await coconut(core, "repository", "add", path)
    assert f"repository added: {path}: default revision master" in added
    assert "ALREADY_EXISTS" in await coconut(core, "repo", "add", path, ok=False)
    refused = await coconut(core, "repo", "default-revision", "1", "v9", ok=False)
    assert "Operation failed." in refused and "Available revisions for this repo:\nmaster\nv1" in refused
    updated = await coconut(core, "repo", "default-revision", "1", "v1")
    assert 'successfully updated to "v1"' in updated

    listing = await coconut(core, "repo", "list")
    assert re.search(r"^id\s+repository\s+default\s+default revision", listing, re.M), listing
    assert re.search(r"^0\s+aliecs/templates\s+yes\s+local\s*$", listing, re.M), listing
    assert re.search(rf"^1\s+{re.escape(path)}\s+v1\s*$", listing, re.M), listing
    repos = json.loads(await coconut(core, "repo", "ls", "-o", "json"))["repos"]
    assert [(r["name"], r["default"], r["defaultRevision"]) for r in repos] == [
        ("aliecs/templates", True, "local"),
        (path, False, "v1"),
    ]

    tree = await coconut(core, "template", "list", f"{path}@*", "-d")
    assert f"{path}\n" in tree and "master" in tree and "v1" in tree and "solo  one fake task" in tree
    templates = json.loads(await coconut(core, "templ", "list", "-o", "json", "-a"))
    assert {(t["repo"], t["revision"], t["template"]) for t in templates} == {
        ("aliecs/templates", "local", "copypush"),
        (path, "v1", "solo"),
    }

    # a workflow of another repository, named without it: the error says where it is
    missing = await coconut(core, "env", "create", "-w", "solo", ok=False)
    assert f"it exists as {path}/workflows/solo" in missing, missing
    # non-public templates are hidden, and the listing says so
    versioned_repo.commit(
        {"workflows/hidden.yaml": "name: hidden\nroles:\n  - {name: a, task: {load: fake}}\n"}, "x"
    )
    await coconut(core, "repo", "refresh", "1")
    hidden = await coconut(core, "template", "list", f"{path}@master")
    assert "solo" in hidden and "hidden" not in hidden and "(1 non-public template(s) not shown" in hidden

    created = await coconut(core, "env", "create", "-w", f"{path}/workflows/solo@master")
    env_id = field(created, "environment id")
    assert field(created, "state") == "CONFIGURED"
    (task,) = json.loads(await coconut(core, "task", "list", "-o", "json"))
    assert process_args(int(task["pid"]))[-1] == "WARNING"  # master, not the repository default v1
    await coconut(core, "env", "destroy", env_id)
    assert "repository 1 removed; default repository: aliecs/templates" in await coconut(
        core, "repo", "del", "1"
    )


async def test_coconut_shows_who_controls_an_environment_from_the_web_page(core: CoreProcess) -> None:
    line = await core.read_until("web page and REST API at")
    match = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
    assert match, line
    url, session = match.group(1), {"X-Aliecs-Session": "coconut-lock-test"}
    async with aiohttp.ClientSession() as http:
        body = {"workflow": "copypush", "vars": {"last_sink": "0"}, "operator": "alice"}
        async with http.post(url + "api/environments", json=body, headers=session) as response:
            env = await response.json()
            assert response.status == 201, env
        shown = await coconut(core, "env", "show", env["id"])
        assert re.search(r"^controlled by:\s+alice since \d\d:\d\d:\d\d$", shown, re.M), shown
        async with http.delete(url + f"api/environments/{env['id']}/lock", headers=session) as response:
            assert response.status == 200
        assert field(await coconut(core, "env", "show", env["id"]), "controlled by") == "nobody"
    await coconut(core, "env", "destroy", env["id"])
