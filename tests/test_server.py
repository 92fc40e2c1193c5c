"""The o2control.Control gRPC server, in process, driven by a real grpclib client over loopback.

Tasks are real processes (aliecs-fake-task); every RPC implemented is called, and each error class
is checked for its status code and an actionable message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import betterproto
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from aliecs.api import Core
from aliecs.cli.coconut_progress import with_progress
from aliecs.events import EnvironmentEvent
from aliecs.generated import events as events_pb
from aliecs.generated import o2control as pb
from aliecs.server import ControlClient, ControlServer
from aliecs.server.auth import TokenRequiredError
from aliecs.server.rolepath import matches
from aliecs.server.streams import is_destroyed
from aliecs.testing import isolated_nodes, wait_for, wait_for_environment_state
from aliecs.testing import poll_until as until
from tests.conftest import FAKES, GitRepoBuilder, RepoBuilder, process_args
from tests.control_harness import Harness, expect_status, harness

BIN = Path(sys.executable).parent

__all__ = ["harness"]  # the fixture, used by the tests below

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(90)]

Op = pb.ControlEnvironmentRequestOptype


def payloads(events: list[events_pb.Event], kind: str) -> list[Any]:
    """The payloads of one kind ("environment_event", "run_event", ...) in order."""
    found = []
    for event in events:
        name, message = betterproto.which_one_of(event, "Payload")
        if name == kind:
            found.append(message)
    return found


async def test_framework_info_and_empty_answers(harness: Harness) -> None:
    info = await harness.stub.get_framework_info(pb.GetFrameworkInfoRequest())
    assert info.state == "CONNECTED" and info.hosts_count == 1 and info.version.product_name == "aliecs"
    assert info.environments_count == 0 and info.timestamp > 0
    assert (await harness.stub.get_active_detectors(pb.Empty())).detectors == []
    assert (await harness.stub.get_available_detectors(pb.Empty())).detectors == []
    services = (await harness.stub.get_integrated_services(pb.Empty())).services
    assert list(services) == ["testplugin"] and services["testplugin"].connection_state == "READY"
    templates = await harness.stub.get_workflow_templates(pb.GetWorkflowTemplatesRequest(all_workflows=True))
    assert [(t.repo, t.template) for t in templates.workflow_templates] == [("test-repo", "fakes")]
    public = await harness.stub.get_workflow_templates(pb.GetWorkflowTemplatesRequest())
    assert public.workflow_templates == []  # `fakes` is not `!public`
    none = await harness.stub.get_workflow_templates(
        pb.GetWorkflowTemplatesRequest(repo_pattern="other*", all_workflows=True)
    )
    assert none.workflow_templates == []
    tasks = await harness.stub.get_tasks(pb.GetTasksRequest())
    assert tasks.tasks == []


async def test_reserved_rpcs_are_unimplemented(harness: Harness) -> None:
    stub = harness.stub
    await expect_status(stub.teardown(pb.TeardownRequest()), Status.UNIMPLEMENTED, "SIGTERM")
    await expect_status(stub.modify_environment(pb.ModifyEnvironmentRequest(id="x")), Status.NOT_FOUND, "x")


async def test_full_cycle_over_grpc_with_events_and_audit_log(harness: Harness) -> None:
    env = await harness.new()
    assert env.state == "CONFIGURED" and env.number_of_tasks == 2 and env.description == "two fake tasks"
    assert {t.state for t in env.tasks} == {"CONFIGURED"} and all(t.locked for t in env.tasks)

    received: list[events_pb.Event] = []

    async def collect() -> None:
        async for event in harness.client.subscribe(env.id):
            received.append(event)

    env_stream = asyncio.ensure_future(collect())
    try:
        await _drive_full_cycle(harness, env, env_stream, received)
    finally:
        env_stream.cancel()
        await asyncio.gather(env_stream, return_exceptions=True)


async def _drive_full_cycle(
    harness: Harness,
    env: pb.EnvironmentInfo,
    env_stream: asyncio.Future[None],
    received: list[events_pb.Event],
) -> None:
    stub = harness.stub
    await until(lambda: harness.core.events.subscribers >= 2, "the subscriber")

    listed = await stub.get_environments(pb.GetEnvironmentsRequest())
    assert [e.id for e in listed.environments] == [env.id] and listed.environments[0].tasks == []
    detailed = await stub.get_environment(pb.GetEnvironmentRequest(id=env.id, show_workflow_tree=True))
    tree = detailed.workflow
    assert tree.full_path == "fakes" and [r.name for r in tree.roles] == ["readout", "group"]
    assert tree.roles[1].roles[0].full_path == "fakes.group.slow" and len(tree.task_ids) == 2
    assert tree.defaults["slow_args"] == ""

    roles = await stub.get_roles(pb.GetRolesRequest(env_id=env.id, path_spec="fakes.*"))
    assert sorted(r.full_path for r in roles.roles) == ["fakes.group", "fakes.readout"]
    deep = await stub.get_roles(pb.GetRolesRequest(env_id=env.id, path_spec="**.slow"))
    assert [r.full_path for r in deep.roles] == ["fakes.group.slow"]
    assert deep.roles[0].consolidated_stack["environment_id"] == env.id

    tasks = (await stub.get_tasks(pb.GetTasksRequest())).tasks
    assert len(tasks) == 2 and all(t.pid and t.deployment_info.hostname == "localhost" for t in tasks)
    one = await stub.get_task(pb.GetTaskRequest(task_id=tasks[0].task_id))
    assert one.task.env_id == env.id and one.task.short_info.task_id == tasks[0].task_id
    cleanup = await stub.cleanup_tasks(pb.CleanupTasksRequest())
    assert cleanup.killed_tasks == [] and len(cleanup.running_tasks) == 2

    started = await harness.control(env.id, Op.START_ACTIVITY)
    assert started.state == "RUNNING" and started.current_run_number > 0
    assert started.end_of_transition >= started.start_of_transition > 0
    destroyed = await stub.destroy_environment(
        pb.DestroyEnvironmentRequest(id=env.id, allow_in_running_state=True)
    )
    assert len(destroyed.cleanup_tasks_reply.killed_tasks) == 2
    await asyncio.wait_for(env_stream, 10)  # the stream ends once the environment is destroyed

    kinds = {betterproto.which_one_of(event, "Payload")[0] for event in received}
    assert {"environment_event", "task_event", "role_event", "run_event"} <= kinds
    transitions = [(e.transition, e.transition_status) for e in payloads(received, "environment_event")]
    for name in ("START_ACTIVITY", "STOP_ACTIVITY", "RESET", "EXIT", "DESTROY"):
        assert (name, events_pb.OpStatus.DONE_OK) in transitions
    runs = payloads(received, "run_event")
    run = started.current_run_number
    assert [(r.transition, r.transition_status.name, r.run_number) for r in runs] == [
        ("START_ACTIVITY", "STARTED", run),  # start of SOR
        ("START_ACTIVITY", "DONE_OK", run),  # end of SOR
        ("STOP_ACTIVITY", "STARTED", run),  # start of EOR
        ("STOP_ACTIVITY", "DONE_OK", run),  # end of EOR
    ]
    assert all(e.timestamp == e.timestamp_nano // 1_000_000 for e in received)
    assert (await stub.get_environments(pb.GetEnvironmentsRequest())).environments == []

    await harness.server.audit.stop()  # flush
    lines = (harness.core.state_dir / "events.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert any(r.get("environmentEvent", {}).get("transition") == "DESTROY" for r in records)
    assert len(records) >= len(received)
    await harness.server.audit.start()


async def test_error_codes_are_actionable(harness: Harness) -> None:
    stub = harness.stub
    await expect_status(
        stub.get_environment(pb.GetEnvironmentRequest(id="nope")), Status.NOT_FOUND, "'nope'", "env list"
    )
    await expect_status(
        stub.new_environment(pb.NewEnvironmentRequest(workflow_template="ghost")),
        Status.NOT_FOUND,
        "ghost",
        "template list",
    )
    await expect_status(
        stub.new_environment(pb.NewEnvironmentRequest(workflow_template=" ")),
        Status.INVALID_ARGUMENT,
        "empty",
    )
    await expect_status(stub.get_task(pb.GetTaskRequest(task_id="t0")), Status.NOT_FOUND, "t0")
    env = await harness.new()
    await expect_status(harness.control(env.id, Op.CONFIGURE), Status.FAILED_PRECONDITION, "not allowed")
    await expect_status(harness.control(env.id, Op.NOOP), Status.INVALID_ARGUMENT, "not a transition")
    await expect_status(
        stub.control_environment(pb.ControlEnvironmentRequest(id="", type=Op.RESET)),
        Status.INVALID_ARGUMENT,
        "id is empty",
    )
    await expect_status(
        stub.destroy_environment(pb.DestroyEnvironmentRequest(id=env.id, keep_tasks=True)),
        Status.INVALID_ARGUMENT,
        "keepTasks",
    )
    await expect_status(
        stub.get_roles(pb.GetRolesRequest(env_id=env.id, path_spec="{a")),
        Status.INVALID_ARGUMENT,
        "unbalanced",
    )
    await expect_status(stub.cleanup_tasks(pb.CleanupTasksRequest(task_ids=["zz"])), Status.NOT_FOUND, "zz")
    await stub.destroy_environment(pb.DestroyEnvironmentRequest(id=env.id))


async def test_failed_transition_lists_task_errors(harness: Harness) -> None:
    env = await harness.new(slow_args="--fail-on START")
    events: list[events_pb.Event] = []

    async def collect() -> None:
        async for event in harness.client.subscribe(""):
            events.append(event)

    stream = asyncio.ensure_future(collect())
    await until(lambda: harness.core.events.subscribers > 0, "the subscription")
    reason = "on_start raised RuntimeError: fake failure in START (--fail-on)"
    try:
        message = await expect_status(
            harness.control(env.id, Op.START_ACTIVITY),
            Status.ABORTED,
            "START_ACTIVITY failed",
            "group.slow",
            reason,  # the device's own words, not just "task went to ERROR"
        )
        assert "ERROR" in message
        got = await harness.stub.get_environment(pb.GetEnvironmentRequest(id=env.id))
        assert got.environment.state == "ERROR"
        assert reason in got.environment.error
        (failed,) = [task for task in got.environment.tasks if task.error]
        assert failed.name.endswith("group.slow") and reason in failed.error
        await until(lambda: any(reason in e.error for e in payloads(events, "task_event")), "the task event")
        assert any(reason in e.error for e in payloads(events, "environment_event"))
        # the task's output, as `coconut task log` reads it: the OCC library logged the exception
        log = await harness.stub.get_task_log(pb.GetTaskLogRequest(task_id=failed.task_id))
        assert "fake failure in START" in log.data and log.environment_id == env.id
        assert log.next_offset == len(log.data.encode()) and log.task_active
        await expect_status(
            harness.stub.get_task_log(pb.GetTaskLogRequest(task_id="nope")), Status.NOT_FOUND, "nope"
        )
        # the same through coconut: env show names the failed task and why, task log prints its output
        shown = await coconut(harness, "env", "show", env.id)
        assert reason in shown and f"coconut task log {failed.task_id}" in shown, shown
        printed = await coconut(harness, "task", "log", failed.task_id)
        assert "fake failure in START" in printed
        # -f follows until the task's process is gone (here: destroyed with its environment)
        follower = await asyncio.create_subprocess_exec(
            str(BIN / "coconut"), "--endpoint", harness.endpoint, "task", "log", "-f", failed.task_id,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert follower.stdout is not None
        first = await asyncio.wait_for(follower.stdout.readline(), 30)
        assert first, "coconut task log -f printed nothing"
        await harness.stub.destroy_environment(pb.DestroyEnvironmentRequest(id=env.id, force=True))
        await asyncio.wait_for(follower.communicate(), 30)
        assert follower.returncode == 0
    finally:
        stream.cancel()
        with contextlib.suppress(GRPCError):
            await harness.stub.destroy_environment(pb.DestroyEnvironmentRequest(id=env.id, force=True))


async def coconut(harness: Harness, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(BIN / "coconut"), "--endpoint", harness.endpoint, "--nocolor", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"coconut {' '.join(args)} failed:\n{out.decode()}{err.decode()}"
    return out.decode()


async def test_crashed_task_shows_its_last_output(harness: Harness) -> None:
    env = await harness.new(slow_args="--crash-on START")
    try:
        message = await expect_status(
            harness.control(env.id, Op.START_ACTIVITY), Status.ABORTED, "START_ACTIVITY failed", "group.slow"
        )
        assert "last output:" in message and "aliecs-fake-task" in message, message
        got = await harness.stub.get_environment(pb.GetEnvironmentRequest(id=env.id))
        assert "last output:" in got.environment.error
    finally:
        await harness.stub.destroy_environment(pb.DestroyEnvironmentRequest(id=env.id, force=True))


async def test_concurrent_transition_waits_for_the_running_one(harness: Harness) -> None:
    env = await harness.new(slow_args="--latency RESET=0.5")
    first = asyncio.ensure_future(harness.control(env.id, Op.RESET))
    handle = harness.core.environment(env.id)
    await wait_for(harness.core, lambda: handle.current_transition == "RESET", "RESET to start", 10)
    second = await harness.control(env.id, Op.CONFIGURE)  # queued behind RESET, as in the original
    assert (await first).state == "DEPLOYED" and second.state == "CONFIGURED"
    await harness.stub.destroy_environment(pb.DestroyEnvironmentRequest(id=env.id))


async def test_new_environment_async_returns_pending(harness: Harness) -> None:
    created: list[EnvironmentEvent] = []
    watch = harness.core.events.subscribe()
    reply = await harness.stub.new_environment_async(pb.NewEnvironmentRequest(workflow_template="fakes"))
    env_id = reply.environment.id
    assert reply.environment.state == "PENDING" and env_id
    async for event in watch:
        if (
            isinstance(event, EnvironmentEvent)
            and event.environment_id == env_id
            and event.transition == "CREATE"
        ):
            created.append(event)
            if event.transition_status != "STARTED":
                break
    watch.close()
    assert [(e.transition_status, e.state) for e in created] == [
        ("STARTED", "PENDING"),
        ("DONE_OK", "CONFIGURED"),
    ]
    await harness.stub.destroy_environment(pb.DestroyEnvironmentRequest(id=env_id))


async def test_auto_environment_streams_its_whole_cycle(harness: Harness) -> None:
    await harness.stub.new_auto_environment(
        pb.NewAutoEnvironmentRequest(
            workflow_template="fakes",
            id="sub-1",
            vars={"eos_args": "--end-of-stream-after 0.2", "slow_args": "--end-of-stream-after 0.2"},
        )
    )
    events = [event async for event in harness.client.subscribe("sub-1")]  # ends after DESTROY
    steps = [(e.transition, e.transition_status.name) for e in payloads(events, "environment_event")]
    for step in (
        ("CREATE", "STARTED"),
        ("DEPLOY", "DONE_OK"),
        ("CONFIGURE", "DONE_OK"),
        ("START_ACTIVITY", "DONE_OK"),
        ("STOP_ACTIVITY", "DONE_OK"),
        ("DESTROY", "DONE_OK"),
    ):
        assert step in steps
    assert steps[-1] == ("DESTROY", "DONE_OK")
    assert harness.core._handles() == []


def as_from_a_terminal() -> None:
    """In the child before exec: Ctrl-C as a terminal delivers it (default action, not blocked),
    whatever this test process inherited or set up (a test runner may ignore or block SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def signal_state(pid: int) -> str:
    """The process's ignored, blocked and caught signal masks as /proc shows them (failure message)."""
    with contextlib.suppress(OSError):
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        return ", ".join(line for line in lines if line.startswith(("SigIgn", "SigBlk", "SigCgt")))
    return "no /proc status"


async def test_auto_environment_says_what_it_waits_for_and_stops_when_the_client_leaves(
    harness: Harness,
) -> None:
    """`coconut env create -a` on a run that never ends by itself: it says what the run waits for,
    and Ctrl-C stops the cycle on the core (the environment is destroyed, no task left)."""
    events = harness.core.events.subscribe()
    process = await asyncio.create_subprocess_exec(
        str(BIN / "coconut"), "--endpoint", harness.endpoint, "--nocolor",
        "env", "create", "-w", "fakes", "-a",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "COLUMNS": "300"},
        preexec_fn=as_from_a_terminal,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(60):
            while True:
                line = (await process.stdout.readline()).decode()
                assert line, "coconut ended before the run started"
                if "AUTO" in line:
                    break
        assert "ends when all 2 task(s) have reported END_OF_STREAM" in line, line
        (env,) = harness.core._handles()
        assert env.state == "RUNNING"
        signals = signal_state(process.pid)
        process.send_signal(signal.SIGINT)
        try:
            _out, err = await asyncio.wait_for(process.communicate(), 30)
        except TimeoutError:
            raise AssertionError(f"coconut still running 30 s after Ctrl-C ({signals})") from None
        assert "Ctrl-C stops the sequence" in err.decode()
        assert "interrupted: the core stops the auto sequence" in err.decode()
        stopped = False
        async with asyncio.timeout(30):
            while not is_destroyed(event := await events.next(), env.id):
                if isinstance(event, EnvironmentEvent) and event.transition == "AUTO" and event.error:
                    stopped = "the client left" in event.error
        assert stopped and harness.core._handles() == []
    finally:
        events.close()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_coconut_progress_shows_deadline_tasks_and_teardown_steps(harness: Harness) -> None:
    """What coconut's spinner shows, from the environment's events (`coconut_progress`)."""
    env = await harness.new(slow_args="--latency CONFIGURE=2.5 --latency RESET=1.5", configure_timeout="45s")
    await harness.control(env.id, Op.RESET)  # created CONFIGURED: back to DEPLOYED to watch CONFIGURE
    shown: list[str] = []
    request = pb.ControlEnvironmentRequest(id=env.id, type=Op.CONFIGURE)
    reply = await with_progress(
        harness.client, env.id, "CONFIGURE", shown.append, lambda: harness.stub.control_environment(request)
    )
    assert reply.state == "CONFIGURED"
    assert shown[0].startswith("CONFIGURE: 0.0s of 45s deadline")  # the workflow's configure_timeout
    assert any("tasks 1 CONFIGURED / 1 pending · waiting for fakes.group.slow" in text for text in shown), (
        shown
    )
    shown.clear()
    destroy = pb.DestroyEnvironmentRequest(id=env.id)
    await with_progress(
        harness.client, env.id, "DESTROY", shown.append, lambda: harness.stub.destroy_environment(destroy)
    )
    # the teardown's steps (RESET, then EXIT) and the tasks it waits for
    assert any("step EXIT" in text and "waiting for" in text for text in shown), shown


async def test_client_leaving_mid_subscribe_is_cleaned_up(harness: Harness) -> None:
    bus = harness.core.events
    baseline = bus.subscribers
    client = ControlClient(f"127.0.0.1:{harness.server.port}")
    stream = client.subscribe("")
    first = asyncio.ensure_future(anext(stream))
    await until(lambda: bus.subscribers == baseline + 1, "the server to subscribe")
    env = await harness.new()
    assert (await asyncio.wait_for(first, 10)).to_dict()
    client.close()  # the connection goes away with the stream still open
    await asyncio.gather(first, return_exceptions=True)
    await until(lambda: bus.subscribers == baseline, "the server to drop the subscriber")
    await harness.stub.destroy_environment(pb.DestroyEnvironmentRequest(id=env.id))  # publishes events
    assert bus.subscribers == baseline


async def test_token_is_required_and_checked(tmp_path: Path, repo: RepoBuilder) -> None:
    repo.workflow("fakes", FAKES)
    async with Core.embedded(
        state_dir=tmp_path / "state", nodes=isolated_nodes(), repository=repo.repository
    ) as core:
        with pytest.raises(TokenRequiredError, match="--token"):
            ControlServer(core, host="0.0.0.0", port=0)
        async with ControlServer(core, port=0, token="s3cret") as server:
            endpoint = f"127.0.0.1:{server.port}"
            for token, fragment in ((None, "requires a token"), ("wrong", "wrong token")):
                async with ControlClient(endpoint, token=token) as client:
                    await expect_status(
                        client.stub.get_framework_info(pb.GetFrameworkInfoRequest()),
                        Status.UNAUTHENTICATED,
                        fragment,
                    )
            async with ControlClient(endpoint, token="s3cret") as client:
                assert (
                    await client.stub.get_framework_info(pb.GetFrameworkInfoRequest())
                ).state == "CONNECTED"


def test_role_path_glob() -> None:
    assert matches("a.*", "a.b") and not matches("a.*", "a.b.c")
    assert matches("a.**", "a.b.c") and matches("**.c", "a.b.c")
    assert matches("a.{b,x}", "a.x") and matches("a.?", "a.b") and matches("a.[bc]", "a.c")
    assert not matches("a.[!bc]", "a.c")


async def test_control_latency_round_trip(harness: Harness, record_property: pytest.RecordProperty) -> None:
    """20 CONFIGURE/RESET round trips on a 2-task environment each land where they should, and the
    tasks follow; the median latency is reported (a property of the run, never asserted)."""
    env = await harness.new()
    samples = []
    for _ in range(20):
        for op, state in ((Op.RESET, "DEPLOYED"), (Op.CONFIGURE, "CONFIGURED")):
            began = time.perf_counter()
            reply = await harness.control(env.id, op)
            samples.append(time.perf_counter() - began)
            assert reply.state == state, (op, reply)
            tasks = harness.core.environment(env.id).tasks
            assert {task.state for task in tasks} == {"STANDBY" if op == Op.RESET else "CONFIGURED"}
    median_ms = statistics.median(samples) * 1000
    record_property("control_round_trip_median_ms", round(median_ms, 2))
    print(f"ControlEnvironment round trip, median of {len(samples)}: {median_ms:.2f} ms")
    await wait_for_environment_state(harness.core, harness.core.environment(env.id), "CONFIGURED", 5)
    await harness.stub.destroy_environment(pb.DestroyEnvironmentRequest(id=env.id))


# -- configuration repositories ---------------------------------------------------------------------


async def test_repository_rpcs(harness: Harness, versioned_repo: GitRepoBuilder) -> None:
    stub = harness.stub
    listed = await stub.list_repos(pb.ListReposRequest())
    assert [(r.name, r.default, r.default_revision) for r in listed.repos] == [("test-repo", True, "local")]
    assert listed.global_default_revision == "master" and listed.timestamp > 0

    path = str(versioned_repo.path)
    added = await stub.add_repo(pb.AddRepoRequest(name=path))
    assert added.new_default_revision == "master" and "the global default" in added.info
    await expect_status(stub.add_repo(pb.AddRepoRequest(name=path)), Status.ALREADY_EXISTS, "refresh")
    await expect_status(stub.add_repo(pb.AddRepoRequest(name=" ")), Status.INVALID_ARGUMENT, "github.com")
    await expect_status(
        stub.add_repo(pb.AddRepoRequest(name="file:///nonexistent/x.git")),
        Status.UNAVAILABLE,
        "cannot fetch repository file:///nonexistent/x.git",
        "check the URL",
    )
    assert len((await stub.list_repos(pb.ListReposRequest())).repos) == 2  # failures added nothing

    with_revisions = await stub.list_repos(pb.ListReposRequest(get_revisions=True))
    assert [r.revisions for r in with_revisions.repos] == [["local"], ["master", "v1"]]

    reply = await stub.set_repo_default_revision(pb.SetRepoDefaultRevisionRequest(index=1, revision="v1"))
    assert reply.info == ""  # the original's success
    unknown = await stub.set_repo_default_revision(pb.SetRepoDefaultRevisionRequest(index=1, revision="v9"))
    assert unknown.info == "master\nv1\n"  # the original's answer: OK, with the available revisions
    directory = await stub.set_repo_default_revision(pb.SetRepoDefaultRevisionRequest(index=0, revision="v1"))
    assert directory.info == "local\n"
    for request, status, fragment in (
        (pb.SetRepoDefaultRevisionRequest(index=7, revision="v1"), Status.NOT_FOUND, "repository list"),
        (pb.SetRepoDefaultRevisionRequest(index=1), Status.INVALID_ARGUMENT, "revision is empty"),
    ):
        await expect_status(stub.set_repo_default_revision(request), status, fragment)
    await expect_status(
        stub.set_global_default_revision(pb.SetGlobalDefaultRevisionRequest()), Status.INVALID_ARGUMENT
    )
    await stub.set_global_default_revision(pb.SetGlobalDefaultRevisionRequest(revision="main"))
    await stub.set_default_repo(pb.SetDefaultRepoRequest(index=1))
    await expect_status(stub.set_default_repo(pb.SetDefaultRepoRequest(index=5)), Status.NOT_FOUND, "0-1")
    listed = await stub.list_repos(pb.ListReposRequest())
    assert [(r.default, r.default_revision) for r in listed.repos] == [(False, "local"), (True, "v1")]
    assert listed.global_default_revision == "main"

    versioned_repo.commit({"workflows/later.yaml": "name: !public later\nroles: []\n"}, "later")
    await expect_status(stub.refresh_repos(pb.RefreshReposRequest(index=7)), Status.NOT_FOUND)
    await stub.refresh_repos(pb.RefreshReposRequest(index=-1))
    await stub.refresh_repos(pb.RefreshReposRequest(index=1))
    master = await stub.get_workflow_templates(pb.GetWorkflowTemplatesRequest(revision_pattern="master"))
    assert [(t.template, t.revision) for t in master.workflow_templates] == [
        ("later", "master"),
        ("solo", "master"),
    ]

    removed = await stub.remove_repo(pb.RemoveRepoRequest(index=1))
    assert removed.new_default_repo == "test-repo"
    await expect_status(
        stub.remove_repo(pb.RemoveRepoRequest(index=0)), Status.INVALID_ARGUMENT, "ships with"
    )
    await expect_status(stub.remove_repo(pb.RemoveRepoRequest(index=3)), Status.NOT_FOUND, "no repository")


async def test_workflow_templates_by_repository_and_revision(
    harness: Harness, versioned_repo: GitRepoBuilder
) -> None:
    stub = harness.stub
    path = str(versioned_repo.path)
    await stub.add_repo(pb.AddRepoRequest(name=path))

    async def listing(**fields: Any) -> list[tuple[str, str, str]]:
        reply = await stub.get_workflow_templates(pb.GetWorkflowTemplatesRequest(**fields))
        return [(t.repo, t.revision, t.template) for t in reply.workflow_templates]

    assert await listing() == [(path, "master", "solo")]  # only public templates by default
    assert await listing(all_workflows=True) == [("test-repo", "local", "fakes"), (path, "master", "solo")]
    assert await listing(repo_pattern="test-*", all_workflows=True) == [("test-repo", "local", "fakes")]
    assert await listing(repo_pattern=path, all_tags=True) == [(path, "v1", "solo")]
    assert await listing(repo_pattern=path, all_branches=True, all_tags=True) == [
        (path, "master", "solo"),
        (path, "v1", "solo"),
    ]
    assert await listing(revision_pattern="v*") == [(path, "v1", "solo")]
    assert await listing(revision_pattern=versioned_repo.first[:10]) == [
        (path, versioned_repo.first[:10], "solo")
    ]
    assert await listing(revision_pattern="nope") == []

    (solo,) = (await stub.get_workflow_templates(pb.GetWorkflowTemplatesRequest())).workflow_templates
    assert solo.description == "one fake task"
    note = solo.var_spec_map["note"]
    assert (note.default_value, note.label, note.type) == ("hello", "Note", pb.VarSpecMessageType.string)
    assert note.widget == pb.VarSpecMessageUiWidget.dropDownBox and note.allowed_values == ["hello", "bye"]


async def test_new_environment_from_a_repository_revision(
    harness: Harness, versioned_repo: GitRepoBuilder
) -> None:
    stub = harness.stub
    path = str(versioned_repo.path)
    await stub.add_repo(pb.AddRepoRequest(name=path))
    request = pb.NewEnvironmentRequest(workflow_template=f"{path}/workflows/solo@v1")
    env = (await stub.new_environment(request)).environment
    assert env.state == "CONFIGURED" and env.root_role == "solo"
    assert process_args(int(env.tasks[0].pid))[-1] == "INFO"
    for template, status, fragment in (
        (f"{path}/workflows/solo@v9", Status.NOT_FOUND, "no revision 'v9'"),
        ("elsewhere/workflows/solo", Status.NOT_FOUND, "coconut repository list"),
        (f"{path}/workflows/ghost", Status.NOT_FOUND, "no workflow named 'ghost'"),
    ):
        await expect_status(
            stub.new_environment(pb.NewEnvironmentRequest(workflow_template=template)), status, fragment
        )
    listed = await stub.get_environments(pb.GetEnvironmentsRequest(show_all=True))
    assert [e.id for e in listed.environments] == [env.id]  # the failures left nothing
    await stub.destroy_environment(pb.DestroyEnvironmentRequest(id=env.id))
