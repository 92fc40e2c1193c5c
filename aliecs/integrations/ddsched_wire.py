"""The DD scheduler's client stub and server base, written by hand over grpclib.

Why not generated like the other services: the service's package, `o2.DataDistribution.Control`,
has capitalised segments, which betterproto 2.0.0b7 takes for message names. Its generated stub and
base for this one service drop the request argument, and its messages name the types of their
fields as `o2.DataDistributionControl<Name>`, which does not exist. The message classes themselves
are right: this module gives `aliecs.generated.o2` the five names the generated fields look up, and
spells out the three methods with grpclib's public method and handler classes.
"""

from __future__ import annotations

import abc

from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.const import Cardinality, Handler
from grpclib.server import Stream

from aliecs.generated import o2
from aliecs.generated.o2.DataDistribution import Control
from aliecs.generated.o2.DataDistribution.Control import (
    PartitionInfo,
    PartitionInitRequest,
    PartitionResponse,
    PartitionTermRequest,
)

for _name in (
    "PartitionInfo",
    "PartitionInitRequest",
    "PartitionResponse",
    "PartitionState",
    "PartitionTermRequest",
):
    setattr(o2, f"DataDistributionControl{_name}", getattr(Control, _name))

SERVICE = "/o2.DataDistribution.Control.DataDistributionControl/"


class DataDistributionControlStub:
    def __init__(self, channel: Channel) -> None:
        self.partition_initialize = UnaryUnaryMethod(
            channel, SERVICE + "PartitionInitialize", PartitionInitRequest, PartitionResponse
        )
        self.partition_terminate = UnaryUnaryMethod(
            channel, SERVICE + "PartitionTerminate", PartitionTermRequest, PartitionResponse
        )
        self.partition_status = UnaryUnaryMethod(
            channel, SERVICE + "PartitionStatus", PartitionInfo, PartitionResponse
        )


class DataDistributionControlBase(abc.ABC):
    """A DD scheduler service: implement the three methods, serve with `grpclib.server.Server([it])`."""

    @abc.abstractmethod
    async def partition_initialize(self, request: PartitionInitRequest) -> PartitionResponse: ...

    @abc.abstractmethod
    async def partition_terminate(self, request: PartitionTermRequest) -> PartitionResponse: ...

    @abc.abstractmethod
    async def partition_status(self, request: PartitionInfo) -> PartitionResponse: ...

    async def _initialize(self, stream: Stream[PartitionInitRequest, PartitionResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(await self.partition_initialize(request))

    async def _terminate(self, stream: Stream[PartitionTermRequest, PartitionResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(await self.partition_terminate(request))

    async def _status(self, stream: Stream[PartitionInfo, PartitionResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(await self.partition_status(request))

    def __mapping__(self) -> dict[str, Handler]:
        unary = Cardinality.UNARY_UNARY
        return {
            SERVICE + "PartitionInitialize": Handler(
                self._initialize, unary, PartitionInitRequest, PartitionResponse
            ),
            SERVICE + "PartitionTerminate": Handler(
                self._terminate, unary, PartitionTermRequest, PartitionResponse
            ),
            SERVICE + "PartitionStatus": Handler(self._status, unary, PartitionInfo, PartitionResponse),
        }
