"""The emulated Mesos master: the v1 scheduler HTTP API, frameworks, offers, filters, task accounting.

It talks to its agents (`tests.mesos_emulator.agent`) by direct calls, standing in for the master-agent
protocol; everything a framework sees goes over HTTP exactly as docs/scheduler-http-api.md describes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.mesos_emulator.protocol import (
    JSON,
    MAX_BODY_BYTES,
    TERMINAL_STATES,
    CallError,
    EventStream,
    accepts_json,
    b64decode,
    check_uuid,
    enum,
    event,
    get_field,
    id_value,
    ident,
    invalid,
    listen,
    read_call,
    task_status,
)
from tests.mesos_emulator.resources import Resources

if TYPE_CHECKING:
    from tests.mesos_emulator.agent import Agent

log = logging.getLogger("mesos_emulator.master")

CALL_TYPES = frozenset(
    {
        "UNKNOWN",
        "SUBSCRIBE",
        "TEARDOWN",
        "ACCEPT",
        "DECLINE",
        "ACCEPT_INVERSE_OFFERS",
        "DECLINE_INVERSE_OFFERS",
        "REVIVE",
        "KILL",
        "SHUTDOWN",
        "ACKNOWLEDGE",
        "ACKNOWLEDGE_OPERATION_STATUS",
        "RECONCILE",
        "RECONCILE_OPERATIONS",
        "MESSAGE",
        "REQUEST",
        "SUPPRESS",
        "UPDATE_FRAMEWORK",
    }
)
# The member each call type must carry (src/master/validation.cpp, scheduler::call::validate).
_MEMBERS = {
    "ACCEPT": "accept",
    "DECLINE": "decline",
    "ACCEPT_INVERSE_OFFERS": "accept_inverse_offers",
    "DECLINE_INVERSE_OFFERS": "decline_inverse_offers",
    "KILL": "kill",
    "SHUTDOWN": "shutdown",
    "ACKNOWLEDGE": "acknowledge",
    "ACKNOWLEDGE_OPERATION_STATUS": "acknowledge_operation_status",
    "RECONCILE": "reconcile",
    "RECONCILE_OPERATIONS": "reconcile_operations",
    "MESSAGE": "message",
    "REQUEST": "request",
    "UPDATE_FRAMEWORK": "update_framework",
}
OPERATION_TYPES = frozenset(
    {
        "UNKNOWN",
        "LAUNCH",
        "LAUNCH_GROUP",
        "RESERVE",
        "UNRESERVE",
        "CREATE",
        "DESTROY",
        "GROW_VOLUME",
        "SHRINK_VOLUME",
        "CREATE_DISK",
        "DESTROY_DISK",
    }
)
DEFAULT_REFUSE_SECONDS = 5.0  # Filters.refuse_seconds [default = 5.0]
MAX_REFUSE_SECONDS = 31536000.0  # "Mesos will cap Filters.refuse_seconds at 31536000 seconds"


@dataclass
class Offer:
    offer_id: str
    framework_id: str
    agent_id: str
    resources: Resources


@dataclass
class Task:
    task_id: str
    framework_id: str
    agent_id: str
    executor_id: str
    name: str
    resources: Resources
    state: str = "TASK_STAGING"


@dataclass
class _Filter:
    agent_id: str
    resources: Resources
    expires: float


@dataclass
class Framework:
    framework_id: str
    info: JSON
    stream: EventStream | None = None
    suppressed: bool = False
    filters: list[_Filter] = field(default_factory=list)
    offers: dict[str, Offer] = field(default_factory=dict)
    failover: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self.stream is not None and not self.stream.closed.is_set()

    @property
    def role(self) -> str:
        roles = self.info.get("roles") or []
        return str(roles[0]) if roles else str(self.info.get("role", "*"))

    @property
    def partition_aware(self) -> bool:
        return any(c.get("type") == "PARTITION_AWARE" for c in self.info.get("capabilities") or [])

    @property
    def checkpoint(self) -> bool:
        return bool(self.info.get("checkpoint", False))

    def send(self, message: JSON) -> None:
        if self.stream is not None:
            self.stream.send(message)


@dataclass
class _Launch:
    """One launch planned from an ACCEPT: a task (LAUNCH) or a task group (LAUNCH_GROUP)."""

    executor: JSON
    executor_id: str
    executor_resources: Resources
    tasks: list[tuple[JSON, str, str, Resources]]  # (TaskInfo, task id, name, resources)
    group: bool
    invalid: str = ""  # why the executor itself is unusable (all tasks get TASK_ERROR)


class Master:
    def __init__(
        self,
        host: str,
        port: int,
        heartbeat_interval: float = 15.0,
        allocation_interval: float = 1.0,
    ) -> None:
        self.host = host
        self.port = port
        self.heartbeat_interval = heartbeat_interval
        self.allocation_interval = allocation_interval
        self.master_id = str(uuid.uuid4())
        self.agents: dict[str, Agent] = {}
        self.frameworks: dict[str, Framework] = {}
        self.removed_frameworks: set[str] = set()
        self.unreachable_agents: dict[str, float] = {}
        self.tasks: dict[tuple[str, str], Task] = {}  # (framework id, task id) -> task
        self.executors: dict[tuple[str, str, str], Resources] = {}  # (agent, framework, executor)
        self.used: dict[str, Resources] = {}  # agent id -> resources of its tasks and executors
        self._framework_numbers = itertools.count()
        self._offer_numbers = itertools.count()
        self._allocation_pending = False
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/api/v1/scheduler", self.handle)
        self._runner, self.port = await listen(app, self.host, self.port)
        if self._ticker is None:
            self._ticker = asyncio.ensure_future(self._tick())

    async def stop(self) -> None:
        self._stopping = True
        await self._close_http()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for framework in self.frameworks.values():
            if framework.failover is not None:
                framework.failover.cancel()

    async def _close_http(self) -> None:
        for framework in self.frameworks.values():
            if framework.stream is not None:
                framework.stream.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def restart(self, downtime: float = 0.0) -> None:
        """A master failover: every scheduler stream ends, the port refuses connections for `downtime`
        seconds, outstanding offers become invalid. Frameworks, agents and tasks are kept, as the new
        leader recovers them from its registry and the agents' re-registration."""
        log.info("master restarting (down for %gs)", downtime)
        for framework in self.frameworks.values():
            framework.offers.clear()
        await self._close_http()
        if downtime > 0:
            await asyncio.sleep(downtime)  # the emulated outage itself, not a synchronisation
        self.master_id = str(uuid.uuid4())
        await self.start()

    # -- the scheduler endpoint ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(
                status=405,
                headers={"Allow": "POST"},
                text=f"Expecting one of {{ 'POST' }}, but received '{request.method}'",
            )
        try:
            call = await read_call(request)
            kind = self._validate(call)
            if kind == "SUBSCRIBE":
                return await self._subscribe(request, call)
            framework = self._caller(request, call)
            return self._dispatch(kind, framework, call)
        except CallError as exc:
            return exc.response()

    def _validate(self, call: JSON) -> str:
        kind = enum(call, "type", CALL_TYPES, "") if "type" in call else None
        if kind is None:
            raise invalid("Expecting 'type' to be present")
        if kind == "SUBSCRIBE":
            get_field(call, "subscribe", dict, "")
            return kind
        if "framework_id" not in call:
            raise invalid("Expecting 'framework_id' to be present")
        id_value(call, "framework_id", "")
        member = _MEMBERS.get(kind)
        if member is not None and member not in call:
            raise invalid(f"Expecting '{member}' to be present")
        return kind

    def _caller(self, request: web.Request, call: JSON) -> Framework:
        """The framework making a non-SUBSCRIBE call, checked as src/master/http.cpp checks it."""
        framework = self.frameworks.get(str(id_value(call, "framework_id", "")))
        if framework is None:
            raise CallError(400, "Framework cannot be found")
        if not framework.connected:
            raise CallError(403, "Framework is not subscribed")
        stream_id = request.headers.get("Mesos-Stream-Id")
        if stream_id is None:
            raise CallError(400, "All non-subscribe calls should include the 'Mesos-Stream-Id' header")
        assert framework.stream is not None
        if stream_id != framework.stream.stream_id:
            raise CallError(
                400,
                f"The stream ID '{stream_id}' included in this request didn't match the stream ID "
                f"currently associated with framework ID {framework.framework_id}",
            )
        return framework

    def _dispatch(self, kind: str, framework: Framework, call: JSON) -> web.Response:
        handlers = {
            "TEARDOWN": lambda: self.remove_framework(framework, "teardown"),
            "ACCEPT": lambda: self._accept(framework, call["accept"]),
            "DECLINE": lambda: self._decline(framework, call["decline"]),
            "REVIVE": lambda: self._revive(framework),
            "SUPPRESS": lambda: self._suppress(framework),
            "KILL": lambda: self._kill(framework, call["kill"]),
            "SHUTDOWN": lambda: self._shutdown(framework, call["shutdown"]),
            "ACKNOWLEDGE": lambda: self._acknowledge(framework, call["acknowledge"]),
            "RECONCILE": lambda: self._reconcile(framework, call["reconcile"]),
            "MESSAGE": lambda: self._message(framework, call["message"]),
            "UPDATE_FRAMEWORK": lambda: self._update_framework(framework, call["update_framework"]),
        }
        handler = handlers.get(kind)
        if handler is None:
            if kind == "UNKNOWN":
                return web.Response(status=501, text="Received 'UNKNOWN' call")
            log.info("framework %s: %s call accepted and ignored", framework.framework_id, kind)
        else:
            handler()
        return web.Response(status=200 if kind == "UPDATE_FRAMEWORK" else 202)

    # -- SUBSCRIBE ----------------------------------------------------------------------------------

    async def _subscribe(self, request: web.Request, call: JSON) -> web.StreamResponse:
        subscribe = call["subscribe"]
        info = dict(get_field(subscribe, "framework_info", dict, "subscribe."))
        get_field(info, "user", str, "subscribe.framework_info.")
        get_field(info, "name", str, "subscribe.framework_info.")
        timeout = get_field(info, "failover_timeout", float, "subscribe.framework_info.", required=False)
        if timeout is not None and timeout < 0:
            raise invalid("'subscribe.framework_info.failover_timeout' must not be negative")
        info_id = id_value(info, "id", "subscribe.framework_info.", required=False)
        if info_id != id_value(call, "framework_id", "", required=False):
            raise invalid("'framework_id' differs from 'subscribe.framework_info.id'")
        suppressed_roles = get_field(subscribe, "suppressed_roles", list, "subscribe.", required=False) or []
        if not accepts_json(request):
            raise CallError(406, "Expecting 'Accept' to allow 'application/json'")
        if "Mesos-Stream-Id" in request.headers:
            raise CallError(400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")

        stream = EventStream(f"scheduler stream of {info.get('name')}")
        if info_id is not None and info_id in self.removed_frameworks:
            stream.send(event("ERROR", error={"message": "Framework has been removed"}))
            stream.close()
            return await stream.serve(request, {"Mesos-Stream-Id": stream.stream_id})

        framework_id = info_id or f"{self.master_id}-{next(self._framework_numbers):04d}"
        info["id"] = ident(framework_id)
        framework = self.frameworks.get(framework_id)
        if framework is None:
            framework = self.frameworks[framework_id] = Framework(framework_id, info)
            log.info("framework %s (%s) subscribed", framework_id, info.get("name"))
        else:
            if framework.connected:
                framework.send(event("ERROR", error={"message": "Framework failed over"}))
                assert framework.stream is not None
                framework.stream.close()
            framework.info = info
            log.info("framework %s (%s) re-subscribed", framework_id, info.get("name"))
        if framework.failover is not None:
            framework.failover.cancel()
            framework.failover = None
        framework.stream = stream
        framework.suppressed = framework.role in suppressed_roles
        stream.send(
            event(
                "SUBSCRIBED",
                subscribed={
                    "framework_id": ident(framework_id),
                    "heartbeat_interval_seconds": self.heartbeat_interval,
                    "master_info": {
                        "id": self.master_id,
                        "ip": 0,
                        "port": self.port,
                        "hostname": self.host,
                        "address": {"hostname": self.host, "ip": self.host, "port": self.port},
                    },
                },
            )
        )
        for agent in self.agents.values():
            agent.resend_updates(framework_id)
        self.allocate_soon()
        heartbeats = asyncio.ensure_future(self._heartbeats(stream))
        try:
            return await stream.serve(request, {"Mesos-Stream-Id": stream.stream_id})
        finally:
            heartbeats.cancel()
            if framework.stream is stream:
                self._disconnected(framework)

    async def _heartbeats(self, stream: EventStream) -> None:
        while not stream.closed.is_set():
            try:
                await asyncio.wait_for(stream.closed.wait(), self.heartbeat_interval)
            except TimeoutError:
                stream.send(event("HEARTBEAT"))

    def _disconnected(self, framework: Framework) -> None:
        """The subscription connection broke: offers go back, the failover timeout starts."""
        framework.stream = None
        framework.offers.clear()
        if framework.framework_id in self.removed_frameworks or self._stopping:
            return
        timeout = float(framework.info.get("failover_timeout") or 0.0)
        log.info("framework %s disconnected: failover timeout %gs", framework.framework_id, timeout)
        framework.failover = asyncio.get_running_loop().call_later(
            timeout, self.remove_framework, framework, f"failover timeout of {timeout:g}s elapsed"
        )
        self.allocate_soon()

    def remove_framework(self, framework: Framework, reason: str) -> None:
        """TEARDOWN or failover timeout: the framework's executors are shut down, its tasks are gone."""
        log.info("removing framework %s: %s", framework.framework_id, reason)
        self.removed_frameworks.add(framework.framework_id)
        if framework.failover is not None:
            framework.failover.cancel()
            framework.failover = None
        framework.offers.clear()
        if framework.stream is not None:
            framework.stream.close()
            framework.stream = None
        for key, task in list(self.tasks.items()):
            if task.framework_id == framework.framework_id:
                self._release_task(task)
                del self.tasks[key]
        for agent in self.agents.values():
            agent.framework_removed(framework.framework_id)
        del self.frameworks[framework.framework_id]
        self.allocate_soon()

    # -- offers -------------------------------------------------------------------------------------

    def allocate_soon(self) -> None:
        if not self._allocation_pending:
            self._allocation_pending = True
            asyncio.get_running_loop().call_soon(self._allocate)

    async def _tick(self) -> None:
        """The periodic batch allocation (Mesos's --allocation_interval): filters expire here."""
        while True:
            await asyncio.sleep(self.allocation_interval)  # the allocator's period, as in Mesos
            self.allocate_soon()

    def available(self, agent: Agent) -> Resources:
        offered = Resources()
        for framework in self.frameworks.values():
            for offer in framework.offers.values():
                if offer.agent_id == agent.agent_id:
                    offered = offered + offer.resources
        return agent.total - self.used.get(agent.agent_id, Resources()) - offered

    def _allocate(self) -> None:
        self._allocation_pending = False
        now = time.monotonic()
        for framework in list(self.frameworks.values()):
            if not framework.connected or framework.suppressed:
                continue
            framework.filters = [f for f in framework.filters if f.expires > now]
            new: list[Offer] = []
            for agent in self.agents.values():
                if not agent.active or not agent.up:
                    continue  # lost, or restarting: offered again once it is back
                available = self.available(agent)
                if not available.allocatable():
                    continue
                if any(
                    f.agent_id == agent.agent_id and f.resources.contains(available)
                    for f in framework.filters
                ):
                    continue
                offer = Offer(
                    f"{self.master_id}-O{next(self._offer_numbers)}",
                    framework.framework_id,
                    agent.agent_id,
                    available,
                )
                framework.offers[offer.offer_id] = offer
                new.append(offer)
            if new:
                framework.send(
                    event("OFFERS", offers={"offers": [self._offer_json(o, framework) for o in new]})
                )

    def _offer_json(self, offer: Offer, framework: Framework) -> JSON:
        agent = self.agents[offer.agent_id]
        executor_ids = sorted(
            {
                eid
                for (aid, fid, eid) in self.executors
                if aid == agent.agent_id and fid == framework.framework_id
            }
        )
        return {
            "id": ident(offer.offer_id),
            "framework_id": ident(framework.framework_id),
            "agent_id": ident(agent.agent_id),
            "hostname": agent.hostname,
            "url": {
                "scheme": "http",
                "address": {"hostname": agent.hostname, "ip": agent.host, "port": agent.port},
                "path": "/slave(1)",
            },
            "resources": offer.resources.to_json(framework.role),
            "attributes": agent.attributes_json(),
            "executor_ids": [ident(eid) for eid in executor_ids],
            "allocation_info": {"role": framework.role},
        }

    def rescind_offers(self, agent_id: str | None = None) -> int:
        """Rescind outstanding offers (of one agent, or all): RESCIND events, resources offered again."""
        count = 0
        for framework in self.frameworks.values():
            for offer_id, offer in list(framework.offers.items()):
                if agent_id is None or offer.agent_id == agent_id:
                    del framework.offers[offer_id]
                    framework.send(event("RESCIND", rescind={"offer_id": ident(offer_id)}))
                    count += 1
        self.allocate_soon()
        return count

    def _refuse(self, framework: Framework, agent_id: str, resources: Resources, filters: Any) -> None:
        seconds = DEFAULT_REFUSE_SECONDS
        if isinstance(filters, dict) and filters.get("refuse_seconds") is not None:
            seconds = get_field(filters, "refuse_seconds", float, "filters.")
            if seconds < 0:
                seconds = DEFAULT_REFUSE_SECONDS  # as Mesos does for a negative value
        seconds = min(seconds, MAX_REFUSE_SECONDS)
        if seconds > 0 and resources.allocatable():
            framework.filters.append(_Filter(agent_id, resources, time.monotonic() + seconds))

    def _decline(self, framework: Framework, decline: JSON) -> None:
        ids = self._offer_ids(decline, "decline.")
        filters = get_field(decline, "filters", dict, "decline.", required=False)
        for offer_id in ids:
            offer = framework.offers.pop(offer_id, None)
            if offer is None:
                log.info(
                    "framework %s: DECLINE of unknown offer %s ignored", framework.framework_id, offer_id
                )
                continue
            self._refuse(framework, offer.agent_id, offer.resources, filters)
        self.allocate_soon()

    def _revive(self, framework: Framework) -> None:
        framework.filters.clear()
        framework.suppressed = False
        self.allocate_soon()

    def _suppress(self, framework: Framework) -> None:
        framework.suppressed = True

    @staticmethod
    def _offer_ids(member: JSON, where: str) -> list[str]:
        items = get_field(member, "offer_ids", list, where, required=False) or []
        ids = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise invalid(f"'{where}offer_ids[{index}]' must be an OfferID object")
            ids.append(str(id_value({"id": item}, "id", f"{where}offer_ids[{index}].")))
        return ids

    # -- ACCEPT: launching tasks --------------------------------------------------------------------

    def _accept(self, framework: Framework, accept: JSON) -> None:
        offer_ids = self._offer_ids(accept, "accept.")
        launches = self._parse_operations(accept)
        filters = get_field(accept, "filters", dict, "accept.", required=False)

        error = self._offers_error(framework, offer_ids)
        offers = [framework.offers.pop(i) for i in offer_ids if i in framework.offers]
        if error:
            # src/master/master.cpp: every task of the call is dropped, the offers' resources recovered.
            state = "TASK_DROPPED" if framework.partition_aware else "TASK_LOST"
            for launch in launches:
                for _info, task_id, _name, _resources in launch.tasks:
                    framework.send(
                        _update(
                            task_status(
                                task_id,
                                state,
                                "SOURCE_MASTER",
                                reason="REASON_INVALID_OFFERS",
                                message=f"Task launched with invalid offers: {error}",
                            )
                        )
                    )
            self.allocate_soon()
            return

        agent = self.agents[offers[0].agent_id]
        pool = Resources()
        for offer in offers:
            pool = pool + offer.resources
        for launch in launches:
            pool = self._launch(framework, agent, pool, launch)
        self._refuse(framework, agent.agent_id, pool, filters)
        self.allocate_soon()

    def _offers_error(self, framework: Framework, offer_ids: list[str]) -> str:
        if not offer_ids:
            return "No offers specified"
        if len(set(offer_ids)) != len(offer_ids):
            return "Duplicate offer IDs in the call"
        for offer_id in offer_ids:
            if offer_id not in framework.offers:
                return f"Offer {offer_id} is no longer valid"
        agents = {framework.offers[i].agent_id for i in offer_ids}
        if len(agents) > 1:
            return "Aggregated offers must belong to one single agent"
        agent = self.agents[agents.pop()]
        if not agent.active or not agent.up:
            return "Agent is not active"
        return ""

    def _parse_operations(self, accept: JSON) -> list[_Launch]:
        """Every LAUNCH / LAUNCH_GROUP of the call, checked for shape before anything changes (400)."""
        launches: list[_Launch] = []
        operations = get_field(accept, "operations", list, "accept.", required=False) or []
        for index, operation in enumerate(operations):
            where = f"accept.operations[{index}]."
            if not isinstance(operation, dict):
                raise invalid(f"'accept.operations[{index}]' must be an Operation object")
            kind = enum(operation, "type", OPERATION_TYPES, where)
            if kind == "LAUNCH":
                launch = get_field(operation, "launch", dict, where)
                for number, info in enumerate(get_field(launch, "task_infos", list, f"{where}launch.")):
                    task_where = f"{where}launch.task_infos[{number}]."
                    task = self._task(info, task_where)
                    executor = info.get("executor")
                    if executor is None:
                        # Command tasks need Mesos's command executor, which the emulator does not have.
                        bad = "TaskInfo.executor must be set: the emulator runs custom executors only"
                        launches.append(_Launch({}, "", Resources(), [task], False, bad))
                        continue
                    launches.append(self._executor_launch(executor, f"{task_where}executor.", [task], False))
            elif kind == "LAUNCH_GROUP":
                group = get_field(operation, "launch_group", dict, where)
                executor = get_field(group, "executor", dict, f"{where}launch_group.")
                task_group = get_field(group, "task_group", dict, f"{where}launch_group.")
                tasks = [
                    self._task(info, f"{where}launch_group.task_group.tasks[{number}].")
                    for number, info in enumerate(
                        get_field(task_group, "tasks", list, f"{where}launch_group.task_group.")
                    )
                ]
                launches.append(
                    self._executor_launch(executor, f"{where}launch_group.executor.", tasks, True)
                )
            else:
                log.info("operation %s is not emulated: ignored", kind)
        return launches

    @staticmethod
    def _task(info: Any, where: str) -> tuple[JSON, str, str, Resources]:
        if not isinstance(info, dict):
            raise invalid(f"'{where[:-1]}' must be a TaskInfo object")
        name = get_field(info, "name", str, where)
        task_id = str(id_value(info, "task_id", where))
        id_value(info, "agent_id", where)
        resources = Resources.parse(info.get("resources"), f"{where}resources")
        if "data" in info:
            b64decode(info["data"], f"{where}data")
        return info, task_id, name, resources

    @staticmethod
    def _executor_launch(executor: Any, where: str, tasks: list[Any], group: bool) -> _Launch:
        if not isinstance(executor, dict):
            raise invalid(f"'{where[:-1]}' must be an ExecutorInfo object")
        executor_id = str(id_value(executor, "executor_id", where))
        resources = Resources.parse(executor.get("resources"), f"{where}resources")
        bad = ""
        kind = executor.get("type", "CUSTOM")
        if kind not in ("CUSTOM", "UNKNOWN"):
            bad = f"'ExecutorInfo.type' must be 'CUSTOM' (the emulator has no {kind} executor)"
        elif not isinstance(executor.get("command"), dict):
            bad = "'ExecutorInfo.command' must be set for 'CUSTOM' executor"
        return _Launch(executor, executor_id, resources, tasks, group, bad)

    def _launch(self, framework: Framework, agent: Agent, pool: Resources, launch: _Launch) -> Resources:
        """Validate one launch against the pool of offered resources; start it or answer TASK_ERROR."""
        reason = "REASON_TASK_GROUP_INVALID" if launch.group else "REASON_TASK_INVALID"
        error = launch.invalid
        needed = Resources()
        for info, task_id, _name, resources in launch.tasks:
            if error:
                break
            if (framework.framework_id, task_id) in self.tasks:
                error = f"Task has duplicate ID: {task_id}"
            elif info["agent_id"]["value"] != agent.agent_id:
                error = f"Task uses invalid agent: {info['agent_id']['value']}"
            needed = needed + resources
        key = (agent.agent_id, framework.framework_id, launch.executor_id)
        new_executor = key not in self.executors
        if new_executor:
            needed = needed + launch.executor_resources
        if not error and not pool.contains(needed):
            error = f"Task uses more resources than available: missing {pool.shortfall(needed)}"
        if error:
            for _info, task_id, _name, _resources in launch.tasks:
                framework.send(
                    _update(task_status(task_id, "TASK_ERROR", "SOURCE_MASTER", reason=reason, message=error))
                )
            return pool
        if new_executor:
            self.executors[key] = launch.executor_resources
        self.used[agent.agent_id] = self.used.get(agent.agent_id, Resources()) + needed
        for _info, task_id, name, resources in launch.tasks:
            self.tasks[(framework.framework_id, task_id)] = Task(
                task_id, framework.framework_id, agent.agent_id, launch.executor_id, name, resources
            )
        infos = [info for info, *_rest in launch.tasks]
        agent.run_tasks(framework.info, launch.executor, infos, launch.group)
        return pool - needed

    # -- other calls --------------------------------------------------------------------------------

    def _kill(self, framework: Framework, kill: JSON) -> None:
        task_id = str(id_value(kill, "task_id", "kill."))
        agent_id = id_value(kill, "agent_id", "kill.", required=False)
        task = self.tasks.get((framework.framework_id, task_id))
        if task is None or task.state in TERMINAL_STATES:
            # "If the task is unknown to the master, a TASK_LOST will be generated": Mesos reconciles it.
            self._reconcile_one(framework, task_id, agent_id)
            return
        agent = self.agents.get(task.agent_id)
        if agent is not None and agent.active:
            agent.kill_task(framework.framework_id, task_id, kill.get("kill_policy"))

    def _shutdown(self, framework: Framework, shutdown: JSON) -> None:
        executor_id = str(id_value(shutdown, "executor_id", "shutdown."))
        agent = self.agents.get(str(id_value(shutdown, "agent_id", "shutdown.")))
        if agent is not None and agent.active:
            agent.shutdown_executor(framework.framework_id, executor_id)

    def _acknowledge(self, framework: Framework, acknowledge: JSON) -> None:
        agent_id = str(id_value(acknowledge, "agent_id", "acknowledge."))
        task_id = str(id_value(acknowledge, "task_id", "acknowledge."))
        raw = b64decode(get_field(acknowledge, "uuid", str, "acknowledge."), "acknowledge.uuid")
        check_uuid(raw, "acknowledge.uuid")
        agent = self.agents.get(agent_id)
        if agent is not None and agent.active:
            agent.acknowledge(framework.framework_id, task_id, raw)

    def _message(self, framework: Framework, message: JSON) -> None:
        agent = self.agents.get(str(id_value(message, "agent_id", "message.")))
        executor_id = str(id_value(message, "executor_id", "message."))
        data = get_field(message, "data", str, "message.")
        b64decode(data, "message.data")
        if agent is not None and agent.active:
            agent.send_message(framework.framework_id, executor_id, data)

    def _update_framework(self, framework: Framework, update: JSON) -> None:
        info = dict(get_field(update, "framework_info", dict, "update_framework."))
        if id_value(info, "id", "update_framework.framework_info.", required=False) != framework.framework_id:
            raise invalid("'framework_id' differs from 'update_framework.framework_info.id'")
        framework.info = info
        framework.suppressed = framework.role in (update.get("suppressed_roles") or [])
        self.allocate_soon()

    def _reconcile(self, framework: Framework, reconcile: JSON) -> None:
        items = get_field(reconcile, "tasks", list, "reconcile.", required=False) or []
        if not items:
            # Implicit reconciliation: the latest state of every task the master knows.
            for task in self.tasks.values():
                if task.framework_id == framework.framework_id:
                    self._reconcile_one(framework, task.task_id, task.agent_id)
            return
        for index, item in enumerate(items):
            where = f"reconcile.tasks[{index}]."
            if not isinstance(item, dict):
                raise invalid(f"'{where[:-1]}' must be a Task object")
            task_id = str(id_value(item, "task_id", where))
            self._reconcile_one(framework, task_id, id_value(item, "agent_id", where, required=False))

    def _reconcile_one(self, framework: Framework, task_id: str, agent_id: str | None) -> None:
        """One task's answer, by the cases of Master::reconcile (src/master/master.cpp)."""
        task = self.tasks.get((framework.framework_id, task_id))
        aware = framework.partition_aware
        if task is not None:
            state, agent_id, message = task.state, task.agent_id, "Reconciliation: Latest task state"
            executor_id: str | None = task.executor_id
        elif agent_id is not None and agent_id in self.agents and self.agents[agent_id].active:
            state, message, executor_id = (
                ("TASK_GONE" if aware else "TASK_LOST"),
                "Reconciliation: Task is unknown to the agent",
                None,
            )
        elif agent_id is not None and agent_id in self.unreachable_agents:
            state, message, executor_id = (
                ("TASK_UNREACHABLE" if aware else "TASK_LOST"),
                "Reconciliation: Task is unreachable",
                None,
            )
        elif agent_id is not None:
            state, message, executor_id = (
                ("TASK_UNKNOWN" if aware else "TASK_LOST"),
                "Reconciliation: Task is unknown",
                None,
            )
        else:
            return  # unknown task, no agent given: Mesos answers only for tasks it can place
        framework.send(
            _update(
                task_status(
                    task_id,
                    state,
                    "SOURCE_MASTER",
                    agent_id=agent_id,
                    executor_id=executor_id,
                    reason="REASON_RECONCILIATION",
                    message=message,
                )
            )
        )

    # -- from the agents ----------------------------------------------------------------------------

    def status_update(self, agent: Agent, framework_id: str, status: JSON) -> None:
        """An agent forwards a task's status update (the head of its stream) to the framework."""
        framework = self.frameworks.get(framework_id)
        if framework is not None and framework.connected:
            framework.send(_update(status))

    def task_state(self, framework_id: str, task_id: str, state: str) -> None:
        """An agent learned a task's latest state: a terminal one gives the resources back."""
        task = self.tasks.get((framework_id, task_id))
        if task is None or task.state in TERMINAL_STATES:
            return
        task.state = state
        if state in TERMINAL_STATES:
            self._release_task(task)
            self.allocate_soon()

    def task_done(self, framework_id: str, task_id: str) -> None:
        """A task's terminal update was acknowledged: the master forgets it."""
        task = self.tasks.get((framework_id, task_id))
        if task is not None and task.state in TERMINAL_STATES:
            del self.tasks[(framework_id, task_id)]

    def executor_exited(self, agent: Agent, framework_id: str, executor_id: str, status: int) -> None:
        resources = self.executors.pop((agent.agent_id, framework_id, executor_id), None)
        if resources is not None:
            self.used[agent.agent_id] = self.used.get(agent.agent_id, Resources()) - resources
        framework = self.frameworks.get(framework_id)
        if framework is not None:
            framework.send(
                event(
                    "FAILURE",
                    failure={
                        "agent_id": ident(agent.agent_id),
                        "executor_id": ident(executor_id),
                        "status": status,
                    },
                )
            )
        self.allocate_soon()

    def executor_message(self, agent: Agent, framework_id: str, executor_id: str, data: str) -> None:
        framework = self.frameworks.get(framework_id)
        if framework is not None:
            framework.send(
                event(
                    "MESSAGE",
                    message={
                        "agent_id": ident(agent.agent_id),
                        "executor_id": ident(executor_id),
                        "data": data,
                    },
                )
            )

    def agent_disconnected(self, agent: Agent) -> None:
        """An agent went away for a while (restart): no offers for it, outstanding ones rescinded."""
        self.rescind_offers(agent.agent_id)

    def agent_reconnected(self, agent: Agent) -> None:
        self.allocate_soon()

    def remove_agent(self, agent: Agent, message: str) -> None:
        """An agent is lost (health checks failed): its tasks are TASK_LOST, or TASK_UNREACHABLE for
        PARTITION_AWARE frameworks (Master::__removeSlave), its offers rescinded, FAILURE sent."""
        self.unreachable_agents[agent.agent_id] = time.time()
        for key, task in list(self.tasks.items()):
            if task.agent_id != agent.agent_id:
                continue
            framework = self.frameworks.get(task.framework_id)
            if task.state not in TERMINAL_STATES and framework is not None:
                state = "TASK_UNREACHABLE" if framework.partition_aware else "TASK_LOST"
                framework.send(
                    _update(
                        task_status(
                            task.task_id,
                            state,
                            "SOURCE_MASTER",
                            agent_id=agent.agent_id,
                            executor_id=task.executor_id,
                            reason="REASON_AGENT_REMOVED",
                            message=f"Agent {agent.hostname} removed: {message}",
                        )
                    )
                )
            del self.tasks[key]
        for executor in [k for k in self.executors if k[0] == agent.agent_id]:
            del self.executors[executor]
        self.used[agent.agent_id] = Resources()
        self.rescind_offers(agent.agent_id)
        for framework in self.frameworks.values():
            framework.send(event("FAILURE", failure={"agent_id": ident(agent.agent_id)}))

    def _release_task(self, task: Task) -> None:
        self.used[task.agent_id] = self.used.get(task.agent_id, Resources()) - task.resources

    # -- views for the admin API --------------------------------------------------------------------

    def snapshot(self) -> JSON:
        return {
            "master": self.url,
            "master_id": self.master_id,
            "frameworks": [
                {
                    "id": f.framework_id,
                    "name": f.info.get("name"),
                    "connected": f.connected,
                    "suppressed": f.suppressed,
                    "offers": sorted(f.offers),
                    "filters": len(f.filters),
                }
                for f in self.frameworks.values()
            ],
            "removed_frameworks": sorted(self.removed_frameworks),
            "tasks": [
                {
                    "task_id": t.task_id,
                    "framework_id": t.framework_id,
                    "agent_id": t.agent_id,
                    "hostname": self.agents[t.agent_id].hostname if t.agent_id in self.agents else "",
                    "executor_id": t.executor_id,
                    "name": t.name,
                    "state": t.state,
                }
                for t in self.tasks.values()
            ],
        }


def _update(status: JSON) -> JSON:
    return event("UPDATE", update={"status": status})
