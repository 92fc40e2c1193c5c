"""`aliecs-executor`'s server: the executor protocol over a node's `NodeAgent`, and its failover timer.

The core must contact the executor (a heartbeat, about every second) at least once per failover
timeout. An executor whose core stays away longer concludes that nobody will come back for its
tasks, kills them and exits, as a Mesos agent does with the tasks of a framework gone past its
failover timeout: nothing is orphaned forever, and a core that comes back in time finds every task
still running.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator

from grpclib.const import Handler

import aliecs.http2  # noqa: F401 (bounds what each connection keeps of its closed streams)
from aliecs.executor import wire
from aliecs.executor.agent import NodeAgent
from aliecs.executor.orders import MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from aliecs.generated import aliecs_executor as pb
from aliecs.grpcserver import GrpcServer
from aliecs.grpcservice import routes
from aliecs.wire import RequestCodec

log = logging.getLogger(__name__)

DEFAULT_FAILOVER_TIMEOUT = 60.0


def executor_server(service: ExecutorService) -> GrpcServer:
    """The server an executor serves its protocol with: requests over `MAX_MESSAGE_BYTES` refused
    before their body is read, and handed over undecoded to be decoded strictly (`__mapping__`)."""
    return GrpcServer([service], codec=RequestCodec(), max_request_bytes=MAX_MESSAGE_BYTES)


class ExecutorService(pb.ExecutorBase):
    def __init__(
        self, agent: NodeAgent, failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT, tasks_outlive: bool = True
    ) -> None:
        self.agent = agent
        self.tasks_outlive = tasks_outlive
        self.failover_timeout = failover_timeout
        self.executor_id = uuid.uuid4().hex[:12]
        self.core_id = ""
        self._last_contact = asyncio.get_running_loop().time()

    def __mapping__(self) -> dict[str, Handler]:
        """The generated handlers, each reading its request strictly (`aliecs.grpcservice.routes`)."""
        return routes(super().__mapping__())

    def _touch(self) -> None:
        self._last_contact = asyncio.get_running_loop().time()

    async def failover_expired(self) -> None:
        """Returns once the core has stayed away for longer than the failover timeout."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = self._last_contact + self.failover_timeout - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 1.0))

    async def register(self, register_request: pb.RegisterRequest) -> pb.RegisterReply:
        self._touch()
        if register_request.core_id != self.core_id:
            log.info("core %s registered", register_request.core_id)
            self.core_id = register_request.core_id
        return pb.RegisterReply(
            protocol_version=PROTOCOL_VERSION,
            hostname=self.agent.node.hostname,
            executor_id=self.executor_id,
            pid=os.getpid(),
            tasks=[wire.status_to_wire(status) for status in self.agent.status()],
            last_seq=self.agent.outbox.last_seq,
            failover_timeout=self.failover_timeout,
        )

    async def heartbeat(self, heartbeat_request: pb.HeartbeatRequest) -> pb.HeartbeatReply:
        self._touch()
        return pb.HeartbeatReply(
            last_seq=self.agent.outbox.last_seq, tasks=len(self.agent.tasks), executor_id=self.executor_id
        )

    async def launch(self, launch_batch: pb.LaunchBatch) -> pb.BatchReply:
        self._touch()
        orders = [wire.launch_from_wire(order, self.tasks_outlive) for order in launch_batch.tasks]
        results = await self.agent.launch(orders, launch_batch.startup_timeout)
        return wire.results_to_wire(results)

    async def transition(self, transition_batch: pb.TransitionBatch) -> pb.BatchReply:
        self._touch()
        orders = wire.transitions_from_wire(transition_batch)
        results = await self.agent.transition(
            orders, dict(transition_batch.common_arguments), transition_batch.timeout
        )
        return wire.results_to_wire(results)

    async def kill(self, kill_batch: pb.KillBatch) -> pb.BatchReply:
        self._touch()
        results = await self.agent.kill(list(kill_batch.task_ids))
        return wire.results_to_wire(results)

    async def run_hook(self, hook_request: pb.HookRequest) -> pb.HookReply:
        self._touch()
        try:
            order = wire.launch_from_wire(hook_request.task, self.tasks_outlive)
            outcome = await self.agent.run_hook(order, hook_request.timeout)
        except Exception as exc:
            return pb.HookReply(error=str(exc))
        return pb.HookReply(
            finished=outcome.returncode is not None,
            returncode=outcome.returncode or 0,
            log_tail=list(outcome.log_tail),
        )

    async def events(self, events_request: pb.EventsRequest) -> AsyncIterator[pb.TaskEvent]:
        self._touch()
        async for seq, message in self.agent.outbox.follow(events_request.after_seq):
            yield wire.event_to_wire(seq, message)

    async def acknowledge(self, ack_request: pb.AckRequest) -> pb.AckReply:
        self._touch()
        self.agent.outbox.acknowledge(ack_request.seq)
        return pb.AckReply()
