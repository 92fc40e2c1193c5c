"""The Mesos adapter: the scheduler of a core running on Apache Mesos (`aliecs-core --mesos URL`).

It is a framework on the v1 scheduler HTTP API (`aliecs.mesos.scheduler_api`) and implements the same
`Scheduler` interface as the local cluster, so environments run unchanged on either:

- `place`: the batch waits for offers; each task is matched against them (constraints on the
  agents' attributes, cpu, memory, and its ports taken from the offer's port ranges). A task that no
  offer fits is tried again, alone, at each retry tick (`RetryPolicy`, the original's 5 tries 1 s
  apart) and on every new offer; what was placed keeps its offer meanwhile. The answer is an
  awaitable: placements of different environments never queue behind each other.
- launching (the `launch` of each agent's `MesosAgentLink`): ACCEPT of the offers the tasks were placed
  on, with a LAUNCH of TaskInfos whose `data` is the task's `LaunchOrder`. The first task on an agent
  starts our executor there (`aliecs-executor --mesos`, one per agent); its TASK_RUNNING update is the
  launch's answer and tells where the executor's own gRPC service listens: transitions, hooks, kills
  and the task's events then go straight to it over the executor protocol (`RemoteLink`).
- offers nothing waits for are declined with a refuse filter, and the framework SUPPRESSes offers
  while nothing is pending and REVIVEs them when something is.
- status updates are acknowledged; TASK_LOST and its kin (an agent lost, an executor gone) mark the
  task lost, which puts the environment in ERROR for a critical task, as for local tasks.
- after every (re)subscription the adapter RECONCILEs; the framework ID is kept in the state
  directory (private) and reused by a core started again within the failover timeout, which then
  finds its executors and tasks still running (`readopt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.messages import TaskLost
from actors.runtime import AsyncioActor
from aliecs.cluster.ports import PortExhaustedError
from aliecs.cluster.scheduler_interface import (
    ORIGINAL_RETRY,
    DeployRequest,
    Placement,
    PlacementFailure,
    PlacementResult,
    RetryPolicy,
    answer,
)
from aliecs.executor import wire
from aliecs.executor.link import ExecutorLink, RemoteLink
from aliecs.executor.orders import (
    ExecutorUnavailableError,
    HookOutcome,
    LaunchOrder,
    TaskResult,
    TaskStatus,
    TransitionOrder,
)
from aliecs.mesos.offers import EXECUTOR_CPUS, EXECUTOR_MEM, Match, Offer, OfferError, match_batch
from aliecs.mesos.scheduler_api import MesosCallError, SchedulerClient, decode_bytes, encode_bytes
from aliecs.workflow.channels import Endpoint

log = logging.getLogger(__name__)

FRAMEWORK_NAME = "aliecs"
FRAMEWORK_ID_FILE = "mesos-framework.json"
# Offers nothing waits for are refused for this long (REVIVE clears the filter when work comes).
IDLE_REFUSE_SECONDS = 30.0
# What a placed task's launch may take on top of its startup timeout before the core gives up.
LAUNCH_MARGIN = 10.0
# ... and how long the executor's own start may add, on the agent where a launch starts it.
EXECUTOR_START_ALLOWANCE = 30.0
# How long a launch waits for the agent's executor to answer on its own protocol.
EXECUTOR_CONNECT_TIMEOUT = 30.0
STARTUP_TIMEOUT_LABEL = "aliecs.startup_timeout"
# Mesos states that mean the task is gone without its executor saying how it ended.
LOST_STATES = frozenset(
    {"TASK_LOST", "TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_DROPPED", "TASK_UNKNOWN"}
)
TERMINAL_STATES = LOST_STATES | {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR"}


def executor_id(hostname: str) -> str:
    return f"aliecs-executor-{hostname}"


def executor_info(hostname: str, role: str, kind: str = "process") -> dict[str, Any]:
    """Our custom executor on one agent (the same for every task there: one executor per agent).
    `kind` is the executor's task kind (`aliecs-executor --kind`: real processes, or fake-farm
    endpoints for benchmarks)."""
    arguments = [sys.executable, "-m", "aliecs.cli.executor", "--mesos"]
    if kind != "process":
        arguments += ["--kind", kind]
    return {
        "executor_id": {"value": executor_id(hostname)},
        "type": "CUSTOM",
        "name": f"aliecs executor on {hostname}",
        "command": {
            "shell": False,
            "value": sys.executable,
            "arguments": arguments,
        },
        "resources": [_scalar("cpus", EXECUTOR_CPUS, role), _scalar("mem", EXECUTOR_MEM, role)],
    }


def _scalar(name: str, value: float, role: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "SCALAR",
        "scalar": {"value": value},
        "role": "*",
        "allocation_info": {"role": role},
    }


def _ports(ports: Sequence[int], role: str) -> dict[str, Any]:
    spans = [{"begin": port, "end": port} for port in sorted(ports)]
    return {
        "name": "ports",
        "type": "RANGES",
        "ranges": {"range": spans},
        "role": "*",
        "allocation_info": {"role": role},
    }


class MesosAgentLink(ExecutorLink):
    """One Mesos agent as environments see it: launches go through the master (ACCEPT of the offers
    the tasks were placed on), everything else to the agent's executor over the executor protocol."""

    def __init__(self, hostname: str, agent_id: str, adapter: Any, heartbeat_interval: float) -> None:
        super().__init__(hostname)
        self.agent_id = agent_id
        self.adapter = adapter  # the MesosAdapter's ref
        self.heartbeat_interval = heartbeat_interval
        self.remote: RemoteLink | None = None
        self.adopted: list[TaskStatus] = []
        self._ready = asyncio.Event()
        self._connecting: asyncio.Task[None] | None = None
        self._target: tuple[str, int] | None = None  # the executor address connected (or connecting) to

    def executor_at(self, address: str) -> None:
        """The agent's executor listens at `address` (from a status update): connect to it."""
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            log.warning("agent %s: executor address %r is not HOST:PORT", self.hostname, address)
            return
        if self._target == (host, int(port)):
            return  # connected or connecting there already
        self._target = (host, int(port))
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        self._ready.clear()
        self._connecting = asyncio.ensure_future(self._connect(host, int(port)))

    async def _connect(self, host: str, port: int) -> None:
        old, self.remote = self.remote, None
        if old is not None:
            await old.close()
        remote = RemoteLink(self.hostname, host, port, heartbeat_interval=self.heartbeat_interval)
        remote.listeners = self.listeners  # one set of listeners: events and losses reach the tasks
        try:
            self.adopted = await remote.start()
        except ExecutorUnavailableError as exc:
            log.error("agent %s: executor at %s:%d does not answer: %s", self.hostname, host, port, exc)
            await remote.close()
            self._target = None  # the next update naming it tries again
            return
        except asyncio.CancelledError:
            await remote.close()
            raise
        self.remote = remote
        self._ready.set()
        log.info("agent %s: connected to its executor at %s:%d", self.hostname, host, port)

    def executor_gone(self) -> None:
        self._ready.clear()
        self._target = None
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        remote, self.remote = self.remote, None
        if remote is not None:
            self._connecting = asyncio.ensure_future(remote.close())

    async def connected(self, timeout: float) -> RemoteLink:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise ExecutorUnavailableError(
                f"the executor on Mesos agent {self.hostname} is not running or not reachable"
            ) from None
        assert self.remote is not None
        return self.remote

    async def start(self) -> list[TaskStatus]:
        return list(self.adopted)

    async def close(self, stop_executor: bool = True) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connecting
        if self.remote is not None:
            await self.remote.close()
            self.remote = None

    async def launch(self, orders: Sequence[LaunchOrder], startup_timeout: float) -> list[TaskResult]:
        results: list[TaskResult] = await answer(
            self.adapter.proxy().launch(self.agent_id, list(orders), startup_timeout)
        )
        if any(result.ok for result in results):
            await self.connected(EXECUTOR_CONNECT_TIMEOUT)  # transitions come next: be ready for them
        return results

    async def transition(
        self, orders: Sequence[TransitionOrder], common: dict[str, str], timeout: float
    ) -> list[TaskResult]:
        return await (await self.connected(timeout)).transition(orders, common, timeout)

    async def kill(self, task_ids: Sequence[str]) -> list[TaskResult]:
        try:
            remote = await self.connected(5.0)
        except ExecutorUnavailableError as exc:
            # No executor to walk them to DONE: have Mesos kill them (or know them gone).
            await answer(self.adapter.proxy().kill(list(task_ids)))
            return [TaskResult(task_id, True, "DONE", error=str(exc)) for task_id in task_ids]
        return await remote.kill(task_ids)

    async def run_hook(self, order: LaunchOrder, timeout: float) -> HookOutcome:
        return await (await self.connected(EXECUTOR_CONNECT_TIMEOUT)).run_hook(order, timeout)

    async def status(self) -> list[TaskStatus]:
        return await (await self.connected(EXECUTOR_CONNECT_TIMEOUT)).status()


@dataclass
class _Agent:
    agent_id: str
    hostname: str
    address: str
    attributes: dict[str, str]
    link: MesosAgentLink
    executor_launched: bool = False
    executor_address: str = ""  # where its executor's own service listens (HOST:PORT)
    next_port: int = 0  # where the next dynamic port is looked for (see Offer.next_port)


@dataclass
class _Task:
    task_id: str
    name: str
    agent_id: str
    hostname: str
    match: Match | None  # until launched: the offer it was placed on and what it takes
    ports: tuple[int, ...] = ()
    state: str = ""  # the last Mesos state heard of
    answer: asyncio.Future[TaskResult] | None = None  # its launch, while under way


@dataclass
class _Batch:
    number: int
    requests: list[DeployRequest]
    results: dict[str, PlacementResult] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)
    done: asyncio.Future[list[PlacementResult]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def pending(self) -> list[DeployRequest]:
        return [request for request in self.requests if request.placement.task_id not in self.results]


class MesosAdapter(AsyncioActor):
    def __init__(
        self,
        master: str,
        state_dir: Path,
        failover_timeout: float = 60.0,
        retry: RetryPolicy = ORIGINAL_RETRY,
        heartbeat_interval: float = 1.0,
        user: str | None = None,
        executor_kind: str = "process",
    ) -> None:
        super().__init__()
        self.executor_kind = executor_kind
        self.master = master
        self.state_dir = state_dir
        self.failover_timeout = failover_timeout
        self.retry = retry
        self.heartbeat_interval = heartbeat_interval
        self.user = user or os.environ.get("USER") or "root"
        self.role = "*"
        self.offers: dict[str, Offer] = {}
        self.agents: dict[str, _Agent] = {}
        self.tasks: dict[str, _Task] = {}
        self.batches: list[_Batch] = []
        self.suppressed = False
        self.client: SchedulerClient | None = None
        self.ipc_dir = Path(tempfile.gettempdir()) / f"aliecs-ipc-{os.getuid()}"
        self._numbers = 0
        self._ticker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._order = asyncio.Lock()
        self._saved_at = 0.0  # when the framework file was last written
        self._reconciled: asyncio.Event = asyncio.Event()
        self._teardown = True

    # -- lifetime --------------------------------------------------------------------------------

    @property
    def _id_file(self) -> Path:
        return self.state_dir / FRAMEWORK_ID_FILE

    def _saved_framework_id(self) -> str | None:
        """The framework ID of an earlier core, if it left less than `failover_timeout` ago (after
        that the master has removed the framework and a new one must be registered), and where its
        executors listened: the master's reconciliation does not say (its updates carry no data)."""
        try:
            saved = json.loads(self._id_file.read_text())
            seen = float(saved["seen"])
            framework_id = str(saved["framework_id"])
            executors = {
                str(agent_id): (str(where["hostname"]), str(where["address"]))
                for agent_id, where in saved.get("executors", {}).items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if time.time() - seen > self.failover_timeout:
            log.info("Mesos framework %s expired (failover timeout); registering anew", framework_id)
            return None
        for agent_id, (hostname, address) in executors.items():
            agent = self._agent(agent_id, hostname, "", None)
            agent.executor_launched = True
            agent.executor_address = address
            agent.link.executor_at(address)
        return framework_id

    def _save_framework_id(self, framework_id: str | None) -> None:
        if framework_id is None:
            with contextlib.suppress(FileNotFoundError):
                self._id_file.unlink()
            return
        temporary = self._id_file.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        executors = {
            agent.agent_id: {"hostname": agent.hostname, "address": agent.executor_address}
            for agent in self.agents.values()
            if agent.executor_address
        }
        self._saved_at = time.time()
        saved = {
            "framework_id": framework_id,
            "master": self.master,
            "seen": self._saved_at,
            "executors": executors,
        }
        with os.fdopen(fd, "w") as out:
            json.dump(saved, out)
        os.replace(temporary, self._id_file)

    def on_start(self) -> None:
        info: dict[str, Any] = {
            "user": self.user,
            "name": FRAMEWORK_NAME,
            "failover_timeout": self.failover_timeout,
            "checkpoint": True,
            "roles": [self.role],
            "capabilities": [{"type": "MULTI_ROLE"}],
        }
        framework_id = self._saved_framework_id()
        if framework_id is not None:
            info["id"] = {"value": framework_id}
        ref = self.actor_ref
        self.client = SchedulerClient(
            self.master,
            info,
            lambda event: ref.proxy().handle_event(event),
            lambda framework_id: ref.proxy().subscribed(framework_id),
        )
        self.client.start()
        self._ticker = asyncio.ensure_future(self._tick())

    def wait_subscribed(self, timeout: float) -> asyncio.Future[None]:
        """Wait for the first subscription (the core starts only once it is there)."""
        assert self.client is not None
        return asyncio.ensure_future(self.client.wait_subscribed(timeout))

    def keep_framework(self) -> None:
        """Leave without TEARDOWN: executors and tasks wait for the next core (failover timeout)."""
        self._teardown = False

    async def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for batch in self.batches:
            if not batch.done.done():
                batch.done.set_exception(RuntimeError("the Mesos scheduler stopped"))
        for agent in self.agents.values():
            await agent.link.close()
        if self.client is not None:
            if self._teardown and self.client.subscribed:
                with contextlib.suppress(MesosCallError):
                    await self.client.teardown()
                self._save_framework_id(None)
            elif self.client.framework_id is not None:
                self._save_framework_id(self.client.framework_id)
            await self.client.close()
        for task in self._background:
            task.cancel()

    def _spawn(self, coroutine: Any, what: str, ordered: bool = False) -> None:
        """A call to the master in the background: the mailbox never waits for the network.

        `ordered` calls (those that steer the offers: ACCEPT, DECLINE, SUPPRESS, REVIVE) reach the
        master in the order they were made, one at a time: on connections of their own, a REVIVE
        could otherwise overtake the SUPPRESS before it and leave the framework without offers."""

        async def guarded() -> None:
            try:
                if ordered:
                    async with self._order:  # FIFO: tasks start, and queue here, in creation order
                        await coroutine
                else:
                    await coroutine
            except MesosCallError as exc:
                log.warning("Mesos %s: %s", what, exc)

        task = asyncio.ensure_future(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- events ----------------------------------------------------------------------------------

    def subscribed(self, framework_id: str) -> None:
        self._save_framework_id(framework_id)
        self.suppressed = False  # a new subscription starts unsuppressed
        # Offers of an earlier subscription are void (a new master, or the old one failed over);
        # tasks placed on them and not launched yet fail at launch, naming it.
        for offer_id in list(self.offers):
            self._rescind(offer_id)
        assert self.client is not None
        known = [(task_id, task.agent_id) for task_id, task in self.tasks.items() if task.match is None]
        # Explicit for the tasks we know; implicit (all of the framework's) after a restart of the core.
        self._spawn(self.client.reconcile(known), "RECONCILE")
        self._decide_offers()

    def handle_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "OFFERS":
            self._offers((event.get("offers") or {}).get("offers", []))
        elif kind == "RESCIND":
            self._rescind(((event.get("rescind") or {}).get("offer_id") or {}).get("value", ""))
        elif kind == "UPDATE":
            self._update((event.get("update") or {}).get("status") or {})
        elif kind == "FAILURE":
            self._failure(event.get("failure") or {})
        elif kind == "ERROR":
            message = (event.get("error") or {}).get("message", "")
            log.error("Mesos master: %s", message)
            if "removed" in message or "cannot be found" in message:
                assert self.client is not None
                self.client.framework_info.pop("id", None)  # subscribe as a new framework
                self._save_framework_id(None)
        elif kind == "HEARTBEAT":
            # The saved ID says when this core was last connected: a core started again decides by it
            # whether the framework can still be failed over to (a crash leaves no last word).
            if time.time() - self._saved_at > min(self.failover_timeout / 4, 30.0):
                assert self.client is not None
                if self.client.framework_id is not None:
                    self._save_framework_id(self.client.framework_id)
        else:
            log.debug("Mesos event %s ignored", kind)

    def _agent(self, agent_id: str, hostname: str, address: str, attributes: dict[str, str] | None) -> _Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            link = MesosAgentLink(hostname, agent_id, self.actor_ref, self.heartbeat_interval)
            agent = self.agents[agent_id] = _Agent(agent_id, hostname, address, dict(attributes or {}), link)
        elif attributes is not None:
            agent.attributes, agent.address = dict(attributes), address
        return agent

    def _offers(self, offers: list[dict[str, Any]]) -> None:
        for data in offers:
            try:
                offer = Offer.from_json(data)
            except OfferError as exc:
                log.error("Mesos offer ignored: %s", exc)
                continue
            agent = self._agent(offer.agent_id, offer.hostname, offer.address, offer.attributes)
            offer.next_port = agent.next_port
            self.offers[offer.offer_id] = offer
        self._match()
        self._decide_offers()

    def _rescind(self, offer_id: str) -> None:
        offer = self.offers.pop(offer_id, None)
        if offer is None:
            return
        log.info("Mesos rescinded offer %s of %s", offer_id, offer.hostname)
        # Tasks placed on it and not launched yet lose their resources: they fail at launch.
        for task_id in offer.tasks:
            task = self.tasks.get(task_id)
            if task is not None and task.match is not None:
                task.state = "RESCINDED"

    def _failure(self, failure: dict[str, Any]) -> None:
        agent_id = (failure.get("agent_id") or {}).get("value", "")
        agent = self.agents.get(agent_id)
        if agent is None:
            return
        gone = failure.get("executor_id")
        what = (
            f"executor on Mesos agent {agent.hostname} exited"
            if gone
            else f"Mesos agent {agent.hostname} lost"
        )
        log.error("%s", what)
        agent.executor_launched = False
        agent.executor_address = ""
        agent.link.executor_gone()
        for task in list(self.tasks.values()):
            if task.agent_id == agent_id and task.match is None and task.state not in TERMINAL_STATES:
                agent.link.deliver(TaskLost(task.task_id, what))

    def _update(self, status: dict[str, Any]) -> None:
        task_id = (status.get("task_id") or {}).get("value", "")
        state = status.get("state", "")
        agent_id = (status.get("agent_id") or {}).get("value", "")
        uuid = status.get("uuid")
        assert self.client is not None
        if uuid and agent_id:
            self._spawn(self.client.acknowledge(agent_id, task_id, uuid), "ACKNOWLEDGE")
        try:
            data = json.loads(decode_bytes(status.get("data"))) if status.get("data") else {}
        except ValueError:
            data = {}
        task = self.tasks.get(task_id)
        agent = self.agents.get(agent_id)
        if agent is None and agent_id and data.get("node"):
            agent = self._agent(agent_id, str(data["node"]), "", None)
        address = str(data.get("executor_address") or "")
        if agent is not None and address and state not in TERMINAL_STATES:
            agent.executor_launched = True
            agent.link.executor_at(address)
            if address != agent.executor_address:
                agent.executor_address = address
                if self.client is not None and self.client.framework_id is not None:
                    self._save_framework_id(self.client.framework_id)
        message = status.get("message", "")
        reason = status.get("reason", "")
        if task is None:
            if state not in TERMINAL_STATES and agent is not None:
                # A task of an earlier core (reconciliation): known again, for `readopt` to claim.
                self.tasks[task_id] = _Task(task_id, "", agent_id, agent.hostname, None, state=state)
            self._reconciled.set()
            return
        task.state = state
        answer = task.answer
        if answer is not None and not answer.done():
            if state == "TASK_RUNNING":
                answer.set_result(
                    TaskResult(task_id, True, str(data.get("state") or "STANDBY"), int(data.get("pid") or 0))
                )
            elif state in TERMINAL_STATES:
                error = f"{state} on Mesos agent {task.hostname}" + (f": {message}" if message else "")
                answer.set_result(TaskResult(task_id, False, "ERROR", error=error))
            return
        if state in LOST_STATES and agent is not None:
            detail = ", ".join(part for part in (reason, message) if part)
            agent.link.deliver(TaskLost(task_id, f"{state} on Mesos agent {task.hostname} ({detail})"))
        elif state == "TASK_FAILED" and reason == "REASON_EXECUTOR_TERMINATED" and agent is not None:
            agent.link.deliver(TaskLost(task_id, f"executor on Mesos agent {task.hostname} terminated"))

    # -- offers and placement --------------------------------------------------------------------

    def place(self, requests: list[DeployRequest]) -> asyncio.Future[list[PlacementResult]]:
        self._numbers += 1
        batch = _Batch(self._numbers, list(requests))
        self.batches.append(batch)
        if self.suppressed:
            self._revive()
        self._match()
        return batch.done

    def _revive(self) -> None:
        assert self.client is not None
        self.suppressed = False
        if self.client.subscribed:
            self._spawn(self.client.revive(), "REVIVE", ordered=True)

    async def _tick(self) -> None:
        """The retry clock: every `retry.interval`, each task still waiting has used one more try."""
        while True:
            await asyncio.sleep(max(self.retry.interval, 0.05))  # the retry interval of the policy
            if self.batches:
                self.actor_ref.proxy().retry_tick()

    def retry_tick(self) -> None:
        for batch in self.batches:
            for request in batch.pending():
                task_id = request.placement.task_id
                batch.tries[task_id] = batch.tries.get(task_id, 1) + 1
        if self.batches and self.suppressed:
            self._revive()
        self._match(final=True)

    def _match(self, final: bool = False) -> None:
        """Match the waiting tasks of every batch, oldest batch first, against the free offers."""
        running = {agent_id for agent_id, agent in self.agents.items() if agent.executor_launched}
        known = {agent.hostname: agent.attributes for agent in self.agents.values()}
        for batch in list(self.batches):
            pending = batch.pending()
            usable = [o for o in self.offers.values() if o.holder in (None, batch.number)]
            for result, request in zip(match_batch(pending, usable, running, known), pending, strict=True):
                task_id = request.placement.task_id
                if isinstance(result, Match):
                    self.agents[result.offer.agent_id].next_port = result.offer.next_port
                    result.offer.holder = batch.number
                    result.offer.tasks.append(task_id)
                    if result.with_executor:
                        running.add(result.offer.agent_id)
                    batch.results[task_id] = self._placement(request, result)
                    continue
                tries = batch.tries.get(task_id, 1)
                if final and tries >= self.retry.attempts:
                    suffix = f" (after {tries} tries)" if tries > 1 else ""
                    batch.results[task_id] = PlacementFailure(task_id, result.reason + suffix, retryable=True)
            if not batch.pending():
                self.batches.remove(batch)
                batch.done.set_result([batch.results[r.placement.task_id] for r in batch.requests])
        self._decide_offers()

    def _placement(self, request: DeployRequest, match: Match) -> Placement:
        offer = match.offer
        agent = self.agents[offer.agent_id]
        task_id = request.placement.task_id
        ports = iter(match.ports)
        control_port = next(ports) if request.controllable else None
        endpoints = {}
        for channel in request.channels:
            if channel.addressing == "ipc":
                self.ipc_dir.mkdir(parents=True, exist_ok=True)
                path = f"ipc://{self.ipc_dir}/{task_id[:12]}-{channel.name}"
                endpoints[channel.name] = Endpoint(path, path)
            else:
                port = next(ports)
                endpoints[channel.name] = Endpoint(f"tcp://*:{port}", f"tcp://{offer.address}:{port}")
        self.tasks[task_id] = _Task(
            task_id,
            request.placement.name,
            offer.agent_id,
            offer.hostname,
            match,
            ports=match.ports + match.static_ports,
        )
        return Placement(task_id, offer.hostname, offer.address, agent.link, control_port, endpoints)

    def _decide_offers(self) -> None:
        """Decline the offers no batch holds when nothing waits, and SUPPRESS until something does."""
        if self.client is None or not self.client.subscribed:
            return
        waiting = any(batch.pending() for batch in self.batches)
        if waiting:
            return
        idle = [offer_id for offer_id, offer in self.offers.items() if offer.holder is None]
        for offer_id in idle:
            del self.offers[offer_id]
        if idle:
            self._spawn(self.client.decline(idle, IDLE_REFUSE_SECONDS), "DECLINE", ordered=True)
        if not self.suppressed:
            self.suppressed = True
            self._spawn(self.client.suppress(), "SUPPRESS", ordered=True)

    # -- launching -------------------------------------------------------------------------------

    def launch(
        self, agent_id: str, orders: list[LaunchOrder], startup_timeout: float
    ) -> asyncio.Future[list[TaskResult]]:
        """ACCEPT the offers the tasks were placed on, launching them; the answer is each task's
        TASK_RUNNING (or the update that says it failed), within its startup timeout."""
        assert self.client is not None
        agent = self.agents[agent_id]
        loop = asyncio.get_running_loop()
        by_offer: dict[str, list[dict[str, Any]]] = {}
        failed: dict[str, TaskResult] = {}
        for order in orders:
            task_id = order.spec.task_id
            task = self.tasks.get(task_id)
            if task is None or task.match is None:
                failed[task_id] = TaskResult(task_id, False, "ERROR", error="not placed on Mesos")
                continue
            offer = task.match.offer
            if offer.offer_id not in self.offers:
                failed[task_id] = TaskResult(
                    task_id,
                    False,
                    "ERROR",
                    error=f"offer of Mesos agent {agent.hostname} was rescinded before launch",
                )
                continue
            task.answer = loop.create_future()
            info = self._task_info(task, order, startup_timeout, offer.role)
            by_offer.setdefault(offer.offer_id, []).append(info)
        # The first launch on an agent starts its executor too: a process to start before the tasks.
        deadline = (
            startup_timeout + LAUNCH_MARGIN + (0.0 if agent.executor_launched else EXECUTOR_START_ALLOWANCE)
        )
        for offer_id, infos in by_offer.items():
            offer = self.offers.pop(offer_id)
            agent.executor_launched = True
            launch = {"type": "LAUNCH", "launch": {"task_infos": infos}}
            self._spawn(self._accept(offer, [launch]), "ACCEPT", ordered=True)
            for task_id in offer.tasks:
                task = self.tasks.get(task_id)
                if task is not None:
                    task.match = None  # launched: the offer is spent
        return asyncio.ensure_future(self._answers(orders, failed, deadline))

    async def _accept(self, offer: Offer, operations: list[dict[str, Any]]) -> None:
        assert self.client is not None
        try:
            await self.client.accept([offer.offer_id], operations, refuse_seconds=0.0)
        except MesosCallError as exc:
            for operation in operations:
                for info in operation["launch"]["task_infos"]:
                    task = self.tasks.get(info["task_id"]["value"])
                    if task is not None and task.answer is not None and not task.answer.done():
                        task.answer.set_result(TaskResult(task.task_id, False, "ERROR", error=str(exc)))
            raise

    def _task_info(
        self, task: _Task, order: LaunchOrder, startup_timeout: float, role: str
    ) -> dict[str, Any]:
        assert task.match is not None
        resources = [
            _scalar("cpus", max(task.match.cpus, 0.01), role),
            _scalar("mem", max(task.match.mem, 1.0), role),
        ]
        if task.ports:
            resources.append(_ports(task.ports, role))
        return {
            "name": task.name or order.spec.name,
            "task_id": {"value": task.task_id},
            "agent_id": {"value": task.agent_id},
            "executor": executor_info(task.hostname, role, self.executor_kind),
            "resources": resources,
            "data": encode_bytes(bytes(wire.launch_to_wire(order))),
            "labels": {"labels": [{"key": STARTUP_TIMEOUT_LABEL, "value": f"{startup_timeout:g}"}]},
        }

    async def _answers(
        self, orders: list[LaunchOrder], failed: dict[str, TaskResult], timeout: float
    ) -> list[TaskResult]:
        waiting = {
            order.spec.task_id: self.tasks[order.spec.task_id].answer
            for order in orders
            if order.spec.task_id not in failed
        }
        futures = [future for future in waiting.values() if future is not None]
        if futures:
            await asyncio.wait(futures, timeout=timeout)
        results = []
        for order in orders:
            task_id = order.spec.task_id
            future = waiting.get(task_id)
            if task_id in failed:
                results.append(failed[task_id])
            elif future is not None and future.done():
                results.append(future.result())
            else:
                if future is not None:
                    future.cancel()
                results.append(
                    TaskResult(
                        task_id, False, "ERROR", error=f"no TASK_RUNNING from Mesos within {timeout:g}s"
                    )
                )
        return results

    # -- the rest of the Scheduler interface -------------------------------------------------------

    def release(self, task_ids: list[str]) -> None:
        """Forget tasks; an offer held only for tasks never launched goes back to the free pool."""
        for task_id in task_ids:
            task = self.tasks.pop(task_id, None)
            if task is None or task.match is None:
                continue
            offer = task.match.offer
            with contextlib.suppress(ValueError):
                offer.tasks.remove(task_id)
            if not offer.tasks and offer.offer_id in self.offers:
                # Its resources were deducted for tasks that will not run: take the offer again whole.
                del self.offers[offer.offer_id]
                assert self.client is not None
                self._spawn(self.client.decline([offer.offer_id], 0.0), "DECLINE", ordered=True)
        self._decide_offers()

    def kill(self, task_ids: list[str]) -> asyncio.Future[list[TaskResult]]:
        """Mesos KILL of each task (the executor kills it and reports TASK_KILLED)."""
        assert self.client is not None
        client = self.client

        async def kill_all() -> list[TaskResult]:
            results = []
            for task_id in task_ids:
                task = self.tasks.get(task_id)
                try:
                    await client.kill(task_id, task.agent_id if task is not None else None)
                    results.append(TaskResult(task_id, True, "DONE"))
                except MesosCallError as exc:
                    results.append(TaskResult(task_id, False, "ERROR", error=str(exc)))
            return results

        return asyncio.ensure_future(kill_all())

    def status(self) -> dict[str, str]:
        return {task_id: task.hostname for task_id, task in self.tasks.items()}

    def move_control_port(self, placement: Placement) -> Placement:
        """A task's ports come with the offer it was launched from: there is none to move to here,
        so a launch that found its port taken fails as it is."""
        raise PortExhaustedError(
            f"task {placement.task_id}: its control port comes from a Mesos offer; no other port to try"
        )

    def adopt(
        self,
        task_id: str,
        hostname: str,
        address: str,
        control_port: int | None,
        endpoints: dict[str, Endpoint],
    ) -> Placement:
        """Claim a task of an earlier core that reconciliation found running on `hostname`."""
        agent = next((a for a in self.agents.values() if a.hostname == hostname), None)
        if agent is None:
            raise ExecutorUnavailableError(f"Mesos agent {hostname} is not known (any more)")
        task = self.tasks.get(task_id)
        if task is None:
            self.tasks[task_id] = _Task(task_id, "", agent.agent_id, hostname, None, state="TASK_RUNNING")
        return Placement(task_id, hostname, address, agent.link, control_port, endpoints)

    def links(self) -> dict[str, MesosAgentLink]:
        return {agent.hostname: agent.link for agent in self.agents.values()}

    def readopt(self, task_ids: list[str], timeout: float) -> asyncio.Future[dict[str, list[TaskStatus]]]:
        """After a restart of the core: wait (up to `timeout`) until reconciliation reported the
        journaled tasks and their agents' executors answer; returns what each executor runs."""
        return asyncio.ensure_future(self._readopt(task_ids, timeout))

    async def _readopt(self, task_ids: list[str], timeout: float) -> dict[str, list[TaskStatus]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(task_id not in self.tasks for task_id in task_ids) and loop.time() < deadline:
            self._reconciled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconciled.wait(), deadline - loop.time())
        adopted: dict[str, list[TaskStatus]] = {}
        hosts = {self.tasks[task_id].agent_id for task_id in task_ids if task_id in self.tasks}
        for agent_id in hosts:
            agent = self.agents[agent_id]
            with contextlib.suppress(ExecutorUnavailableError):
                await agent.link.connected(max(deadline - loop.time(), 1.0))
                adopted[agent.hostname] = list(agent.link.adopted)
        return adopted
