"""Issue 11: one bad request must never stall, exhaust or silently break the control system.

Each test sends what an adversarial client would (a 100 kB id, a backtracking pattern, a message
announcing 4 GiB, garbage bytes) and checks the bound, the short error and that another client's
call is still answered within a deadline while the bad request is handled.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpclib.const import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aliecs.generated import o2control as pb
from aliecs.generated import occ_pb
from aliecs.pytest_plugin import isolated_nodes
from aliecs.server.rolepath import MAX_PATTERN, PatternError, compile_glob, matches
from tests.control_harness import Harness, answered_meanwhile, expect_status, harness
from tests.grpc_raw import RawGrpc, frame
from tests.occ_helpers import FakeTaskLauncher, wait_until_sync

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(90)]

__all__ = ["harness"]  # the fixture, used by the tests below

BIN = Path(sys.executable).parent
PROTO = Path(__file__).parent.parent / "protos" / "o2control.proto"
CONTROL_METHODS = sorted(re.findall(r"^\s*rpc\s+(\w+)\s*\(", PROTO.read_text(), re.M))
OCC_METHODS = ["GetState", "Transition", "EventStream", "StateStream"]
STREAMING = {"Subscribe", "EventStream", "StateStream"}


# -- ids, names and echoed text -------------------------------------------------------------------


async def test_huge_id_is_refused_without_echo(harness: Harness) -> None:
    huge = "x" * 100_000
    message = ""

    async def bad() -> None:
        nonlocal message
        message = await expect_status(
            harness.stub.get_environment(pb.GetEnvironmentRequest(id=huge)),
            Status.INVALID_ARGUMENT,
            "GetEnvironmentRequest.id",
            "limit of 256",
        )

    await answered_meanwhile(harness, bad())
    assert len(message) < 200, message
    # below the limit the id is unknown, and the answer still carries a bounded excerpt at most
    unknown = await expect_status(
        harness.stub.get_environment(pb.GetEnvironmentRequest(id="y" * 250)), Status.NOT_FOUND
    )
    assert len(unknown) < 1000
    await expect_status(
        harness.stub.new_environment(
            pb.NewEnvironmentRequest(workflow_template="fakes", vars={"v": "z" * 70_000})
        ),
        Status.INVALID_ARGUMENT,
        "vars[v]",
        "limit of 65536",
    )


# -- role path patterns ---------------------------------------------------------------------------


def test_role_pattern_matching_is_linear() -> None:
    bomb = compile_glob("**" * 16 + "Z")
    assert not bomb.match("a." * 30 + "b")
    assert bomb.match("a.b.Z")
    assert matches("a.{b,c{d,e}}.*", "a.ce.x") and not matches("a.{b,c{d,e}}.*", "a.cf.x")
    assert matches("a.[a-c]?", "a.bq") and not matches("a.[!a-c]?", "a.bq")
    assert not matches("a*", "ab.c") and matches("a**", "ab.c")
    for bad, fragment in (
        ("a.[z-a]", "reversed"),
        ("a.{b", "unbalanced"),
        ("a.[bc", "unclosed"),
        ("x" * (MAX_PATTERN + 1), f"limit of {MAX_PATTERN}"),
        ("{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}{m,n}", "alternatives"),
    ):
        with pytest.raises(PatternError, match=fragment):
            compile_glob(bad)


async def test_role_pattern_errors_are_invalid_argument(harness: Harness) -> None:
    env = await harness.new()
    reply = await harness.stub.get_roles(pb.GetRolesRequest(env_id=env.id, path_spec="**" * 16 + "Z"))
    assert reply.roles == []
    paths = {
        role.full_path
        for role in (await harness.stub.get_roles(pb.GetRolesRequest(env_id=env.id, path_spec="**"))).roles
    }
    assert any(path.endswith("group.slow") for path in paths), paths
    await answered_meanwhile(
        harness,
        expect_status(
            harness.stub.get_roles(pb.GetRolesRequest(env_id=env.id, path_spec="[z-a]")),
            Status.INVALID_ARGUMENT,
            "reversed",
        ),
    )
    await harness.stub.destroy_environment(pb.DestroyEnvironmentRequest(id=env.id))


# -- message size and garbage ----------------------------------------------------------------------


async def test_message_announcing_4_gib_is_refused_before_its_body(harness: Harness) -> None:
    port = harness.server.port

    def half_sent() -> tuple[int | None, str]:
        with RawGrpc(port) as raw:
            prefix = b"\x00\xff\xff\xff\xff"  # 4 GiB announced, 32 kB sent, then silence
            answer = raw.call("/o2control.Control/GetEnvironment", prefix + b"\x0a" * 32768, end=False)
            return answer.status, answer.message

    status, message = await asyncio.to_thread(half_sent)
    assert status == Status.RESOURCE_EXHAUSTED.value, message
    assert "4294967295 bytes" in message and "limit" in message
    info = await harness.stub.get_framework_info(pb.GetFrameworkInfoRequest())
    assert info.state == "CONNECTED"


async def test_malformed_requests_are_invalid_argument(harness: Harness) -> None:
    port = harness.server.port
    bodies = {
        b"\x0a\x05ab": "announces 5 bytes",  # field 1 truncated: 5 bytes announced, 2 present
        b"\xff\xff\xff": "varint",  # a tag that never ends
        b"\x0b\x01": "wire type 3",  # group start: not used by our protocols
        b"\x00\x01": "field number 0",
    }

    def send_all() -> list[tuple[str, bytes, int | None, str]]:
        out = []
        with RawGrpc(port) as raw:
            for method in CONTROL_METHODS:
                for body in bodies:
                    answer = raw.call(f"/o2control.Control/{method}", frame(body))
                    out.append((method, body, answer.status, answer.message))
        return out

    for method, body, status, message in await asyncio.to_thread(send_all):
        assert status == Status.INVALID_ARGUMENT.value, (method, body, status, message)
        assert bodies[body] in message, (method, message)
        assert len(message) < 200 and "Traceback" not in message


# -- fuzzing a real aliecs-core process ------------------------------------------------------------


def wait_for_line(path: Path, fragment: str, process: subprocess.Popen[bytes], timeout: float = 30) -> str:
    """The first line of `path` holding `fragment`, once `process` has written it."""

    def printed() -> bool:
        if fragment in path.read_text():
            return True
        if process.poll() is not None:
            raise AssertionError(f"process ended before printing {fragment!r}: {path.read_text()}")
        return False

    wait_until_sync(printed, timeout, f"{fragment!r} in {path}", interval=0.05)
    return next(line for line in path.read_text().splitlines() if fragment in line)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def core_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real `aliecs-core` on a free port (port 0), its output in a file."""
    root = tmp_path_factory.mktemp("fuzzcore")
    (node,) = isolated_nodes(1)
    inventory = root / "inventory.yaml"
    inventory.write_text(
        "nodes:\n  - hostname: localhost\n"
        f"    control_ports: {node.control_ports.first}-{node.control_ports.last}\n"
        f"    data_ports: {node.data_ports.first}-{node.data_ports.last}\n"
    )
    log = root / "core.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(BIN / "aliecs-core"),
                "--state-dir",
                str(root / "state"),
                "--port",
                "0",
                "--inventory",
                str(inventory),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
    try:
        line = wait_for_line(log, "control API listening", process)
        yield int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
    finally:
        stop(process)


def healthy(port: int) -> None:
    """Another client's call answers (the socket's 10 s timeout is the deadline)."""
    with RawGrpc(port) as raw:
        answer = raw.call("/o2control.Control/GetFrameworkInfo", frame(b""))
    assert answer.status == Status.OK.value, answer


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(CONTROL_METHODS), body=st.binary(max_size=300), framed=st.booleans())
def test_fuzz_control_api(core_port: int, method: str, body: bytes, framed: bool) -> None:
    """Random bytes (framed as a message or raw) to every method: an answer or a close, never
    UNKNOWN, INTERNAL or a traceback, and the core keeps answering others."""
    with RawGrpc(core_port, timeout=1.0 if method in STREAMING else 10.0) as raw:
        try:
            answer = raw.call(f"/o2control.Control/{method}", frame(body) if framed else body)
        except TimeoutError:
            assert method in STREAMING  # a well-formed Subscribe stays open: that is an answer
        else:
            assert answer.status not in (Status.UNKNOWN.value, Status.INTERNAL.value), (method, answer)
            assert "Traceback" not in answer.message and len(answer.message) < 9000
    healthy(core_port)


# -- the OCC library --------------------------------------------------------------------------------


@pytest.fixture
def fake_tasks(tmp_path: Path) -> Iterator[FakeTaskLauncher]:
    launcher = FakeTaskLauncher(tmp_path)
    yield launcher
    launcher.kill_all()


async def test_occ_large_transition_leaves_task_responsive(fake_tasks: FakeTaskLauncher) -> None:
    task = fake_tasks.start()
    await task.wait_serving()
    arguments = [occ_pb.ConfigEntry(key=f"chans.data.{i}.address", value="tcp://x:1") for i in range(6000)]
    request = occ_pb.TransitionRequest(src_state="STANDBY", transition_event="CONFIGURE", arguments=arguments)
    body = await asyncio.to_thread(bytes, request)

    def transition() -> tuple[int | None, str]:
        with RawGrpc(task.port, timeout=60) as raw:
            answer = raw.call("/occ_pb.Occ/Transition", frame(body))
            return answer.status, answer.message

    big = asyncio.ensure_future(asyncio.to_thread(transition))
    async with task.client(timeout=1.5) as client:
        # while the big request is read and decoded, GetState answers within its 1.5 s deadline
        while not big.done():
            assert (await client.get_state())[0] in ("STANDBY", "CONFIGURED")
        assert (await big)[0] == Status.OK.value
        assert (await client.get_state())[0] == "CONFIGURED"

    def oversized() -> tuple[int | None, str]:
        with RawGrpc(task.port) as raw:
            answer = raw.call("/occ_pb.Occ/Transition", b"\x00\xff\xff\xff\xff" + b"\x0a" * 32768, end=False)
            return answer.status, answer.message

    status, message = await asyncio.to_thread(oversized)
    assert status == Status.RESOURCE_EXHAUSTED.value and "limit" in message, message
    task.signal(signal.SIGTERM)
    assert await task.wait_exit() == 0


@pytest.fixture(scope="module")
def occ_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    launcher = FakeTaskLauncher(tmp_path_factory.mktemp("fuzzocc"))
    task = launcher.start()
    try:
        task.wait_serving_sync()
        yield task.port
    finally:
        launcher.kill_all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(OCC_METHODS), body=st.binary(max_size=300), framed=st.booleans())
def test_fuzz_occ_server(occ_port: int, method: str, body: bytes, framed: bool) -> None:
    """Random bytes to every OCC method: an answer or a close, never UNKNOWN; GetState still answers."""
    with RawGrpc(occ_port, timeout=1.0 if method in STREAMING else 10.0) as raw:
        try:
            answer = raw.call(f"/occ_pb.Occ/{method}", frame(body) if framed else body)
        except TimeoutError:
            assert method in STREAMING  # a well-formed stream request stays open: that is an answer
        else:
            assert answer.status not in (Status.UNKNOWN.value, Status.INTERNAL.value), (method, answer)
            assert "Traceback" not in answer.message and len(answer.message) < 1000
    with RawGrpc(occ_port) as raw:
        assert raw.call("/occ_pb.Occ/GetState", frame(b"")).status == Status.OK.value
