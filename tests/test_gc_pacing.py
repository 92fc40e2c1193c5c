"""The collection pace after connections end (`aliecs.gc_pacing`), alone and in `GrpcServer`."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from grpclib.client import Channel
from grpclib.health.service import Health
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest

from aliecs.gc_pacing import GarbagePacer
from aliecs.grpcserver import GrpcServer
from aliecs.testing import poll_until


class Node:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.itself = self


@pytest.fixture
def automatic_gc_off() -> Iterator[None]:
    """The collector runs only when asked, so what frees a cycle is what the test says."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def test_a_cycle_left_behind_is_freed_soon_after(automatic_gc_off: None) -> None:
    pacer = GarbagePacer(period=60.0)
    garbage = weakref.ref(Node())
    assert garbage() is not None  # a cycle: reference counting alone keeps it
    pacer.garbage_made()
    await poll_until(lambda: pacer.collections == 1, "the first collection, due at once")
    assert garbage() is None
    assert not pacer.waiting


async def test_collections_are_paced_however_many_connections_end(automatic_gc_off: None) -> None:
    pacer = GarbagePacer(period=60.0)
    pacer.garbage_made()
    await poll_until(lambda: pacer.collections == 1, "the first collection")
    for _ in range(100):
        pacer.garbage_made()
    # One collection waits for the end of the period, whatever the number of endings meanwhile.
    assert pacer.waiting and pacer.collections == 1
    pacer.cancel()
    assert not pacer.waiting and pacer.collections == 1


def test_a_negative_period_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        GarbagePacer(period=-1)


async def test_a_grpc_connection_that_ends_gets_its_garbage_collected() -> None:
    server = GrpcServer([Health()])
    await server.start("127.0.0.1", 0)
    try:
        assert server.port is not None
        channel = Channel("127.0.0.1", server.port)
        await HealthStub(channel).Check(HealthCheckRequest())
        assert server.garbage.collections == 0
        channel.close()
        await poll_until(lambda: server.garbage.collections == 1, "a collection after the connection ended")
    finally:
        server.close()
        await server.wait_closed()
