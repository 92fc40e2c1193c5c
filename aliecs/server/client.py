"""A small client of `o2control.Control` for coconut, the pytest plugin and tests.

It is the generated betterproto stub with the two things every caller needs: the bearer token as
metadata on every call, and one deadline default. Errors are grpclib `GRPCError`s carrying the
server's status and message.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from types import TracebackType
from typing import cast

from grpclib.client import Channel

from aliecs.addresses import parse_address
from aliecs.generated import events as events_pb
from aliecs.generated import o2control as pb
from aliecs.server.auth import bearer

DEFAULT_ENDPOINT = "127.0.0.1:32102"


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """The core's `host:port` (`[v6]:port`); ValueError naming what is wrong."""
    return parse_address(endpoint, what="endpoint", example=DEFAULT_ENDPOINT)


class ControlClient:
    def __init__(
        self, endpoint: str = DEFAULT_ENDPOINT, token: str | None = None, timeout: float = 300.0
    ) -> None:
        host, port = parse_endpoint(endpoint)
        self.endpoint = endpoint
        self.channel = Channel(host, port)
        metadata = bearer(token) if token else None
        self.stub = pb.ControlStub(self.channel, timeout=timeout, metadata=metadata)
        # Event streams last as long as the caller wants: no deadline.
        self._streams = pb.ControlStub(self.channel, metadata=metadata)

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def subscribe(self, subscription_id: str = "") -> AsyncGenerator[events_pb.Event, None]:
        """Events for an environment id, an auto-environment subscription id, or (empty) everything.

        An async generator (the generated stub declares an iterator): close it (`aclose`, or
        `contextlib.aclosing`) before the client, so that the call ends while the channel is open."""
        events = self._streams.subscribe(pb.SubscribeRequest(id=subscription_id))
        return cast("AsyncGenerator[events_pb.Event, None]", events)
