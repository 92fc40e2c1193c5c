"""Issue 11: the executor protocol bounds the messages it reads, as the control API and OCC do."""

from __future__ import annotations

import asyncio
import gc

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from h2.connection import H2Connection

from aliecs.executor.agent import NodeAgent
from aliecs.executor.link import BoundedExecutorStub, executor_channel
from aliecs.executor.orders import MAX_MESSAGE_BYTES
from aliecs.executor.service import ExecutorService, executor_server
from aliecs.executor.wire import results_from_wire
from aliecs.generated import aliecs_executor as pb
from aliecs.http2 import MAX_CLOSED_STREAMS
from aliecs.pytest_plugin import isolated_nodes
from tests.grpc_raw import RawGrpc, frame


async def test_executor_refuses_a_request_above_its_limit_before_reading_it() -> None:
    (node,) = isolated_nodes(1)
    agent = NodeAgent(node)
    await agent.start()
    server = executor_server(ExecutorService(agent))
    await server.start("127.0.0.1", 0)
    port = server.port
    assert port is not None
    try:

        def calls() -> list[tuple[int | None, str]]:
            with RawGrpc(port) as raw:
                # One byte over the limit announced, 32 kB sent, then silence.
                prefix = b"\x00" + (MAX_MESSAGE_BYTES + 1).to_bytes(4, "big")
                too_big = raw.call("/aliecs_executor.Executor/Launch", prefix + b"\x0a" * 32768, end=False)
            with RawGrpc(port) as raw:
                garbage = raw.call("/aliecs_executor.Executor/Kill", frame(b"\x0a\x05ab"))
            return [(too_big.status, too_big.message), (garbage.status, garbage.message)]

        (big_status, big_message), (bad_status, bad_message) = await asyncio.to_thread(calls)
        assert big_status == Status.RESOURCE_EXHAUSTED.value, big_message
        assert f"{MAX_MESSAGE_BYTES + 1} bytes" in big_message and "limit" in big_message
        assert bad_status == Status.INVALID_ARGUMENT.value and "KillBatch" in bad_message, bad_message
        # Still serving, and a well-formed request within the limit is read as before.
        with RawGrpc(port) as raw:
            answer = await asyncio.to_thread(
                raw.call, "/aliecs_executor.Executor/Kill", frame(bytes(pb.KillBatch(["nosuch"])))
            )
        assert answer.status == Status.OK.value, answer.message
    finally:
        server.close()
        await server.wait_closed()
        await agent.stop()


async def test_core_refuses_an_executor_reply_above_its_limit() -> None:
    # The core's side of the protocol reads replies (and events) bounded too: a reply of a few kB
    # is refused by a client whose limit is 1 kB, and read by one with the protocol's limit.
    (node,) = isolated_nodes(1)
    agent = NodeAgent(node)
    await agent.start()
    server = executor_server(ExecutorService(agent))
    await server.start("127.0.0.1", 0)
    port = server.port
    assert port is not None
    channel = executor_channel("127.0.0.1", port)
    try:
        unknown = pb.KillBatch([f"task{index:04d}" for index in range(300)])  # ~3 kB of task ids
        reply = await BoundedExecutorStub(channel).call("kill", unknown, 10)
        assert len(results_from_wire(reply)) == 300 and len(bytes(reply)) > 1024
        with pytest.raises(GRPCError) as refused:
            await BoundedExecutorStub(channel, max_bytes=1024).call("kill", unknown, 10)
        assert refused.value.status == Status.RESOURCE_EXHAUSTED
        assert "limit of 1024 bytes" in str(refused.value.message)
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
        await agent.stop()


async def test_a_long_lived_connection_keeps_a_bounded_record_of_its_closed_streams() -> None:
    # Each call is an HTTP/2 stream; h2 remembered up to 65,536 closed ones per connection (~7.5 MB),
    # which the soak measured as the core's and the executors' RSS growth. Now at most 1,024.
    (node,) = isolated_nodes(1)
    agent = NodeAgent(node)
    await agent.start()
    server = executor_server(ExecutorService(agent))
    await server.start("127.0.0.1", 0)
    port = server.port
    assert port is not None
    channel = executor_channel("127.0.0.1", port)
    try:
        stub = BoundedExecutorStub(channel)
        for _ in range(MAX_CLOSED_STREAMS + 200):
            await stub.call("heartbeat", pb.HeartbeatRequest(), 10)
        connections = [item for item in gc.get_objects() if isinstance(item, H2Connection)]
        assert len(connections) >= 2  # the core's side and the executor's
        assert all(len(connection._closed_streams) <= MAX_CLOSED_STREAMS for connection in connections)
        assert (
            max(connection.highest_outbound_stream_id for connection in connections) > 2 * MAX_CLOSED_STREAMS
        )
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
        await agent.stop()
