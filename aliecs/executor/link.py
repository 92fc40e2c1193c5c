"""The core's side of a node's executor: one `ExecutorLink` per node.

Environments send batches through a link (one call per node per step) and register each task's actor
as the listener of that task's events (exits, device events). Two kinds:

- `RemoteLink`, the default: the executor is its own process (`aliecs-executor`) reached over the
  executor protocol. It keeps a heartbeat: an executor that misses two heartbeats in a row (one a
  second, each with a 5 s deadline) is reported (its tasks are told they are lost, naming the node);
  when it answers again (same process after a stall, or a restarted one that adopted the tasks) the
  link reconciles: tasks still running are reported alive again, the others lost for good. Events
  come on one stream with sequence numbers and are acknowledged, so a reconnect replays what was missed.
- `AgentLink`: the executor agent embedded in the core's process (the in-process fake executors the
  10,000-task scale benchmarks use). Same interface, no transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

import aliecs.http2  # noqa: F401 (bounds what each connection keeps of its closed streams)
from actors.messages import TaskLost, TaskReconciled
from aliecs.executor import wire
from aliecs.executor.agent import NodeAgent
from aliecs.executor.orders import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    ExecutorUnavailableError,
    HookOutcome,
    LaunchOrder,
    TaskResult,
    TaskStatus,
    TransitionOrder,
)
from aliecs.generated import aliecs_executor as pb
from aliecs.wire import THREAD_DECODE_BYTES, RequestCodec, Undecoded, decode

log = logging.getLogger(__name__)

# Extra time on top of a batch's own deadline before the core stops waiting for the executor.
_RPC_MARGIN = 5.0
DEFAULT_HEARTBEAT_INTERVAL = 1.0
# How long one heartbeat may take: an executor busy launching thousands of tasks on a loaded machine
# answers late, and a late answer is not a lost executor.
HEARTBEAT_DEADLINE = 5.0
# Heartbeats missed in a row before an executor is declared unreachable and its tasks lost.
MISSED_HEARTBEATS = 2


def executor_channel(host: str, port: int) -> Channel:
    """A channel to an executor whose replies reach `BoundedExecutorStub` undecoded (`RequestCodec`)."""
    return Channel(host, port, codec=RequestCodec())


class BoundedExecutorStub:
    """The executor protocol's client, reading every reply and event bounded (`max_bytes`) and
    strictly decoded (`aliecs.wire.decode`), as the executor reads the core's requests.

    On a channel from `executor_channel` the generated stub hands replies over undecoded; the size
    is checked once the message is received (grpclib's client has no public hook before that, and
    the executors are processes this core started) and before any decoding.
    """

    def __init__(self, channel: Channel, *, metadata: Any = None, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.generated = pb.ExecutorStub(channel, metadata=metadata)
        self.max_bytes = max_bytes

    async def call(self, method: str, request: Any, timeout: float) -> Any:
        """The reply of the unary `method` (a generated stub's method name, e.g. "transition")."""
        received = await getattr(self.generated, method)(request, timeout=timeout)
        return await self._strict(received)

    async def events(self, request: pb.EventsRequest) -> AsyncIterator[pb.TaskEvent]:
        async for received in self.generated.events(request):
            yield await self._strict(received)

    async def _strict(self, received: Any) -> Any:
        if not isinstance(received, Undecoded):
            return received  # a channel with grpclib's own codec
        if len(received.data) > self.max_bytes:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"reply not read: {len(received.data)} bytes is over the limit of {self.max_bytes} bytes",
            )
        if len(received.data) > THREAD_DECODE_BYTES:
            return await asyncio.to_thread(decode, received.data, received.message_type)
        return decode(received.data, received.message_type)


class ExecutorLink:
    """What environments use to reach one node's executor."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.listeners: dict[str, Any] = {}

    def attach(self, task_id: str, listener: Any) -> None:
        """`listener` (a task actor) is told what the task does on its own from now on."""
        self.listeners[task_id] = listener

    def detach(self, task_id: str) -> None:
        self.listeners.pop(task_id, None)

    def deliver(self, message: Any) -> None:
        listener = self.listeners.get(message.task_id)
        if listener is not None:
            listener.tell(message)

    async def start(self) -> list[TaskStatus]:
        """Connect; returns the tasks the executor already runs (after a restart of the core)."""
        raise NotImplementedError

    async def close(self, stop_executor: bool = True) -> None:
        raise NotImplementedError

    async def launch(self, orders: Sequence[LaunchOrder], startup_timeout: float) -> list[TaskResult]:
        raise NotImplementedError

    async def transition(
        self, orders: Sequence[TransitionOrder], common: dict[str, str], timeout: float
    ) -> list[TaskResult]:
        raise NotImplementedError

    async def kill(self, task_ids: Sequence[str]) -> list[TaskResult]:
        raise NotImplementedError

    async def run_hook(self, order: LaunchOrder, timeout: float) -> HookOutcome:
        raise NotImplementedError

    async def status(self) -> list[TaskStatus]:
        raise NotImplementedError


class AgentLink(ExecutorLink):
    """An executor agent in the core's own process."""

    def __init__(self, agent: NodeAgent) -> None:
        super().__init__(agent.node.hostname)
        self.agent = agent
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> list[TaskStatus]:
        await self.agent.start()
        self._pump = asyncio.ensure_future(self._forward())
        return self.agent.status()

    async def _forward(self) -> None:
        async for seq, message in self.agent.outbox.follow(0):
            self.deliver(dataclasses.replace(message, seq=seq))
            self.agent.outbox.acknowledge(seq)

    async def close(self, stop_executor: bool = True) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await self.agent.stop(kill_tasks=True)

    async def launch(self, orders: Sequence[LaunchOrder], startup_timeout: float) -> list[TaskResult]:
        return await self.agent.launch(orders, startup_timeout)

    async def transition(
        self, orders: Sequence[TransitionOrder], common: dict[str, str], timeout: float
    ) -> list[TaskResult]:
        return await self.agent.transition(orders, common, timeout)

    async def kill(self, task_ids: Sequence[str]) -> list[TaskResult]:
        return await self.agent.kill(task_ids)

    async def run_hook(self, order: LaunchOrder, timeout: float) -> HookOutcome:
        return await self.agent.run_hook(order, timeout)

    async def status(self) -> list[TaskStatus]:
        return self.agent.status()


class RemoteLink(ExecutorLink):
    """An `aliecs-executor` process reached over the executor protocol."""

    def __init__(
        self,
        hostname: str,
        host: str,
        port: int,
        token: str | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        core_id: str | None = None,
        will_restart: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(hostname)
        # True when the executor process is gone and its supervisor starts a new one: silence is
        # then a restart, not a loss.
        self.will_restart = will_restart
        self.address = (host, port)
        # Imported here: aliecs.server's package imports the actors, which import this module.
        from aliecs.server.auth import bearer

        self.metadata = bearer(token) if token else None
        self.heartbeat_interval = heartbeat_interval
        self.core_id = core_id or uuid.uuid4().hex[:12]
        self.executor_id = ""
        self.executor_pid = 0
        self.reachable = False
        self._acked = 0
        self._channel: Channel | None = None
        self._stub: BoundedExecutorStub | None = None
        self._background: list[asyncio.Task[None]] = []
        self._acks: set[asyncio.Future[None]] = set()
        self._reconcile_lock = asyncio.Lock()
        # Set while the executor is known to be restarting (see `restarting`): calls wait for it.
        self._restarted: asyncio.Event | None = None

    # -- connection ------------------------------------------------------------------------------

    def _connect(self) -> BoundedExecutorStub:
        if self._channel is not None:
            self._channel.close()
        self._channel = executor_channel(*self.address)
        self._stub = BoundedExecutorStub(self._channel, metadata=self.metadata)
        return self._stub

    async def start(self) -> list[TaskStatus]:
        self._connect()
        statuses = await self._register()
        self.reachable = True
        self._background = [
            asyncio.ensure_future(self._follow_events()),
            asyncio.ensure_future(self._heartbeat()),
        ]
        return statuses

    def restarting(self) -> None:
        """The node's executor died and a new one is being started (the local cluster saw it go):
        calls wait for the new one, and the silence meanwhile does not count as a loss."""
        if self._restarted is None:
            self._restarted = asyncio.Event()

    async def restarted(self, host: str, port: int) -> None:
        """The new executor listens on `host:port`: reconcile with what it adopted, then resume."""
        self.address = (host, port)
        self._connect()
        await self.reconcile()
        if self._restarted is not None:
            self._restarted.set()
            self._restarted = None

    async def _register(self) -> list[TaskStatus]:
        reply = await self._call("register", pb.RegisterRequest(PROTOCOL_VERSION, self.core_id), 10.0)
        if reply.protocol_version != PROTOCOL_VERSION:
            raise ExecutorUnavailableError(
                f"executor of node {self.hostname} speaks executor protocol v{reply.protocol_version}, "
                f"this core v{PROTOCOL_VERSION}"
            )
        if reply.executor_id != self.executor_id:
            self._acked = 0  # a new executor process: its numbering starts again
        self.executor_id = reply.executor_id
        self.executor_pid = reply.pid
        return [wire.status_from_wire(status) for status in reply.tasks]

    async def close(self, stop_executor: bool = True) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    async def _call(self, method: str, request: Any, timeout: float) -> Any:
        if self._restarted is not None and method != "register":
            try:
                await asyncio.wait_for(self._restarted.wait(), timeout)
            except TimeoutError:
                raise ExecutorUnavailableError(
                    f"executor of node {self.hostname} is being restarted "
                    f"and was not back within {timeout:g}s"
                ) from None
        stub = self._stub if self._stub is not None else self._connect()
        try:
            return await stub.call(method, request, timeout)
        except (GRPCError, StreamTerminatedError, OSError, TimeoutError) as exc:
            what = exc.message if isinstance(exc, GRPCError) else (str(exc) or type(exc).__name__)
            raise ExecutorUnavailableError(
                f"executor of node {self.hostname} ({self.address[0]}:{self.address[1]}): {what}"
            ) from exc

    # -- batches ---------------------------------------------------------------------------------

    async def launch(self, orders: Sequence[LaunchOrder], startup_timeout: float) -> list[TaskResult]:
        request = pb.LaunchBatch([wire.launch_to_wire(order) for order in orders], startup_timeout)
        reply = await self._call("launch", request, startup_timeout + _RPC_MARGIN)
        return wire.results_from_wire(reply)

    async def transition(
        self, orders: Sequence[TransitionOrder], common: dict[str, str], timeout: float
    ) -> list[TaskResult]:
        request = wire.transitions_to_wire(orders, common, timeout)
        reply = await self._call("transition", request, timeout + _RPC_MARGIN)
        return wire.results_from_wire(reply)

    async def kill(self, task_ids: Sequence[str]) -> list[TaskResult]:
        reply = await self._call("kill", pb.KillBatch(list(task_ids)), 60.0)
        return wire.results_from_wire(reply)

    async def run_hook(self, order: LaunchOrder, timeout: float) -> HookOutcome:
        request = pb.HookRequest(wire.launch_to_wire(order), timeout)
        reply = await self._call("run_hook", request, (timeout if timeout > 0 else 3600.0) + _RPC_MARGIN)
        if reply.error:
            raise RuntimeError(reply.error)
        return HookOutcome(reply.returncode if reply.finished else None, tuple(reply.log_tail))

    async def status(self) -> list[TaskStatus]:
        return await self._register()

    # -- what the executor reports on its own ----------------------------------------------------

    async def _follow_events(self) -> None:
        """Deliver events in order, acknowledging them; reconnect (replaying from the last
        acknowledged one) whenever the stream breaks."""
        while True:
            stub = self._stub if self._stub is not None else self._connect()
            try:
                async for event in stub.events(pb.EventsRequest(self._acked)):
                    self.deliver(wire.event_from_wire(event))
                    self._acked = event.seq
                    # Not awaited in line: delivery must not wait for the acknowledgement's round trip.
                    acknowledging = asyncio.ensure_future(self._acknowledge(event.seq))
                    self._acks.add(acknowledging)
                    acknowledging.add_done_callback(self._acks.discard)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("executor %s: event stream broken: %s", self.hostname, exc)
            await asyncio.sleep(self.heartbeat_interval / 2)  # reconnect pace, not a synchronisation

    async def _acknowledge(self, seq: int) -> None:
        if seq != self._acked:
            return  # a later acknowledgement covers it
        with contextlib.suppress(ExecutorUnavailableError):
            await self._call("acknowledge", pb.AckRequest(seq), self.heartbeat_interval * 5)

    async def _heartbeat(self) -> None:
        """One heartbeat per interval, each with `HEARTBEAT_DEADLINE`. An executor is declared
        unreachable after `MISSED_HEARTBEATS` in a row (about ten seconds): a late answer from an
        executor busy with thousands of tasks on a loaded machine must not cost a run."""
        missed = 0
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if self._restarted is not None:
                continue  # a restart is under way: `restarted` reconciles
            try:
                reply = await self._call(
                    "heartbeat",
                    pb.HeartbeatRequest(self.core_id),
                    max(self.heartbeat_interval, HEARTBEAT_DEADLINE),
                )
            except ExecutorUnavailableError as exc:
                if self.will_restart is not None and self.will_restart():
                    self.restarting()
                    continue
                missed += 1
                if self.reachable and missed >= MISSED_HEARTBEATS:
                    self.reachable = False
                    self._lost_all(
                        f"executor of node {self.hostname} unreachable ({missed} heartbeats missed): {exc}"
                    )
                continue
            missed = 0
            if not self.reachable or reply.executor_id != self.executor_id:
                await self.reconcile()

    def _lost_all(self, reason: str) -> None:
        log.error("%s; its %d task(s) are lost until it answers again", reason, len(self.listeners))
        for task_id in list(self.listeners):
            self.deliver(TaskLost(task_id, reason))

    async def reconcile(self) -> None:
        """Compare what the executor runs with the tasks the core knows on this node."""
        async with self._reconcile_lock:
            try:
                statuses = {status.task_id: status for status in await self._register()}
            except ExecutorUnavailableError:
                return
            self.reachable = True
            for task_id in list(self.listeners):
                status = statuses.get(task_id)
                if status is not None and status.alive:
                    self.deliver(TaskReconciled(task_id, status.pid, status.state))
                else:
                    self.deliver(TaskLost(task_id, f"no longer running on node {self.hostname}"))
            log.info("executor %s: reconciled %d task(s)", self.hostname, len(statuses))
