"""A control server on an embedded core, with a client: the fixture of the control API tests, and
the checks they share (a call's gRPC status, a call that must not stall the server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from aliecs.api import Core
from aliecs.generated import o2control as pb
from aliecs.server import ControlClient, ControlServer
from aliecs.testing import isolated_nodes
from tests.conftest import FAKES, RepoBuilder


class Harness:
    def __init__(self, core: Core, server: ControlServer, client: ControlClient) -> None:
        self.core, self.server, self.client = core, server, client
        self.stub = client.stub

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def new(self, **vars: str) -> pb.EnvironmentInfo:
        reply = await self.stub.new_environment(
            pb.NewEnvironmentRequest(workflow_template="fakes", vars=vars, public=True)
        )
        return reply.environment

    async def control(
        self, env_id: str, op: pb.ControlEnvironmentRequestOptype
    ) -> pb.ControlEnvironmentReply:
        return await self.stub.control_environment(pb.ControlEnvironmentRequest(id=env_id, type=op))


@pytest_asyncio.fixture
async def harness(tmp_path: Path, repo: RepoBuilder) -> AsyncIterator[Harness]:
    repo.workflow("fakes", FAKES)
    async with (
        Core.embedded(
            state_dir=tmp_path / "state", nodes=isolated_nodes(), repository=repo.repository
        ) as core,
        ControlServer(core, port=0) as server,
        ControlClient(f"127.0.0.1:{server.port}", timeout=60) as client,
    ):
        yield Harness(core, server, client)


async def expect_status(call: object, status: Status, *fragments: str) -> str:
    """Await `call`, which must fail with `status` and a message holding every one of `fragments`;
    returns the message."""
    assert asyncio.iscoroutine(call)
    with pytest.raises(GRPCError) as caught:
        await call
    assert caught.value.status == status, caught.value
    message = caught.value.message or ""
    for fragment in fragments:
        assert fragment in message, message
    return message


async def answered_meanwhile(harness: Harness, bad: object) -> None:
    """Run the `bad` call while another client asks GetFrameworkInfo, which must answer in 5 s."""
    assert asyncio.iscoroutine(bad)
    async with ControlClient(f"127.0.0.1:{harness.server.port}", timeout=5) as other:
        bad_call = asyncio.ensure_future(bad)
        info = await other.stub.get_framework_info(pb.GetFrameworkInfoRequest())
        assert info.state == "CONNECTED"
        await bad_call
