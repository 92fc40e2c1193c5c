"""The emulated cluster: a master, its agents, an optional standby master, fault injection.

`Emulator` is the Python API (tests in the same event loop use it directly); the admin HTTP API
(`/emulator/...` on its own port, so that it stays up while the master restarts) exposes the same
operations to tests that run the emulator as a subprocess (see `tests.mesos_emulator.fixture`).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.mesos_emulator.agent import Agent, AgentTimings
from tests.mesos_emulator.master import Master
from tests.mesos_emulator.protocol import JSON, listen
from tests.mesos_emulator.resources import Resources

DEFAULT_PORTS_BASE = 61000
PORTS_PER_AGENT = 400


@dataclass
class EmulatorConfig:
    agents: int = 3
    host: str = "127.0.0.1"
    port: int = 0  # the master's port (0: a free one)
    admin_port: int = 0
    standby: bool = False  # also run a non-leading master that answers 307 to the leader
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)  # hostname -> extra attributes
    cpus: float = 8.0
    mem: float = 16384.0
    ports_base: int = DEFAULT_PORTS_BASE
    ports_per_agent: int = PORTS_PER_AGENT
    heartbeat_interval: float = 15.0
    allocation_interval: float = 1.0
    timings: AgentTimings = field(default_factory=AgentTimings)
    work_dir: Path | None = None  # executor sandboxes (default: a temporary directory, removed at stop)

    def __post_init__(self) -> None:
        if not 1 <= self.agents <= 100:
            raise ValueError(f"agents must be between 1 and 100, got {self.agents}")
        last = self.ports_base + self.agents * self.ports_per_agent - 1
        if self.ports_base < 1 or last > 65535:
            raise ValueError(f"agent ports {self.ports_base}..{last} do not fit in 1..65535")
        unknown = set(self.attributes) - {f"agent-{n}" for n in range(1, self.agents + 1)}
        if unknown:
            raise ValueError(
                f"attributes for unknown agent(s) {sorted(unknown)} (agents are agent-1..agent-{self.agents})"
            )


class EmulatorError(Exception):
    """A fault injection asked for something that does not exist (unknown agent, no executor)."""


class Emulator:
    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.master = Master(
            self.config.host,
            self.config.port,
            self.config.heartbeat_interval,
            self.config.allocation_interval,
        )
        self.agents: list[Agent] = []
        self.standby_url: str | None = None
        self.admin_url = ""
        self._work_dir = self.config.work_dir
        self._own_work_dir = False
        self._admin: web.AppRunner | None = None
        self._standby: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return self.master.url

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        config = self.config
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="mesos-emulator-"))
            self._own_work_dir = True
        await self.master.start()
        for number in range(1, config.agents + 1):
            hostname = f"agent-{number}"
            first = config.ports_base + (number - 1) * config.ports_per_agent
            agent = Agent(
                self.master,
                f"{self.master.master_id}-S{number - 1}",
                hostname,
                Resources.of(config.cpus, config.mem, (first, first + config.ports_per_agent - 1)),
                {"machine_id": hostname, **config.attributes.get(hostname, {})},
                config.host,
                self._work_dir,
                config.timings,
            )
            await agent.start()
            self.master.agents[agent.agent_id] = agent
            self.agents.append(agent)
        admin = web.Application()
        admin.router.add_get("/emulator/state", self._admin_state)
        admin.router.add_post("/emulator/agents/{hostname}/lose", self._admin_lose)
        admin.router.add_post("/emulator/agents/{hostname}/restart", self._admin_restart_agent)
        admin.router.add_post("/emulator/agents/{hostname}/stop", self._admin_stop_agent)
        admin.router.add_post("/emulator/agents/{hostname}/start", self._admin_start_agent)
        admin.router.add_post("/emulator/agents/{hostname}/kill-executors", self._admin_kill_executors)
        admin.router.add_post("/emulator/master/restart", self._admin_restart_master)
        admin.router.add_post("/emulator/offers/rescind", self._admin_rescind)
        self._admin, port = await listen(admin, config.host, config.admin_port)
        self.admin_url = f"http://{config.host}:{port}"
        if config.standby:
            standby = web.Application()
            standby.router.add_route("*", "/api/v1/scheduler", self._redirect)
            self._standby, port = await listen(standby, config.host, 0)
            self.standby_url = f"http://{config.host}:{port}"

    async def stop(self) -> None:
        """Destroy every container, close every endpoint, remove the work directory if it made one."""
        for agent in self.agents:
            await agent.stop()
        await self.master.stop()
        for runner in (self._admin, self._standby):
            if runner is not None:
                await runner.cleanup()
        self._admin = self._standby = None
        if self._own_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)

    def ready_info(self) -> JSON:
        """What the ready line announces (see `__main__`)."""
        return {
            "master": self.url,
            "admin": self.admin_url,
            "standby": self.standby_url,
            "agents": {agent.hostname: agent.endpoint for agent in self.agents},
        }

    # -- fault injection ----------------------------------------------------------------------------

    def agent(self, hostname: str) -> Agent:
        for agent in self.agents:
            if agent.hostname == hostname:
                return agent
        names = ", ".join(a.hostname for a in self.agents)
        raise EmulatorError(f"no agent named {hostname!r} (agents: {names})")

    def lose_agent(self, hostname: str) -> None:
        """The agent's machine dies: tasks TASK_LOST (TASK_UNREACHABLE for PARTITION_AWARE frameworks),
        FAILURE, its offers rescinded, never offered again; its executors and tasks are killed."""
        agent = self.agent(hostname)
        if not agent.active:
            raise EmulatorError(f"agent {hostname} is already lost")
        agent.lose()

    async def restart_agent(self, hostname: str, downtime: float = 0.0) -> None:
        """The agent process restarts (down for `downtime` seconds); executors of checkpointing
        frameworks survive and re-subscribe, the others' are destroyed."""
        await self._active(hostname).restart(downtime)

    async def stop_agent(self, hostname: str) -> None:
        """The first half of `restart_agent`, for tests that act while the agent is down."""
        await self._active(hostname).go_down()

    async def start_agent(self, hostname: str) -> None:
        """The second half of `restart_agent`."""
        await self._active(hostname).come_back()

    def _active(self, hostname: str) -> Agent:
        agent = self.agent(hostname)
        if not agent.active:
            raise EmulatorError(f"agent {hostname} is lost")
        return agent

    def kill_executors(self, hostname: str, executor_id: str | None = None) -> list[int]:
        """SIGKILL the running executor processes on an agent (one by id, or all); their pids."""
        agent = self.agent(hostname)
        targets = [
            e
            for e in agent.executors.values()
            if e.state != "TERMINATED" and (executor_id is None or e.executor_id == executor_id)
        ]
        if not targets:
            raise EmulatorError(f"no running executor {executor_id or ''} on {hostname}".replace("  ", " "))
        return [agent.kill_executor(e) for e in targets]

    async def restart_master(self, downtime: float = 0.0) -> None:
        await self.master.restart(downtime)

    def rescind_offers(self, hostname: str | None = None) -> int:
        agent_id = self.agent(hostname).agent_id if hostname else None
        return self.master.rescind_offers(agent_id)

    def state(self) -> JSON:
        return {**self.master.snapshot(), "agents": [agent.snapshot() for agent in self.agents]}

    # -- admin HTTP API -----------------------------------------------------------------------------

    async def _admin_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _admin_lose(self, request: web.Request) -> web.Response:
        return await _answer(lambda: self.lose_agent(request.match_info["hostname"]))

    async def _admin_restart_agent(self, request: web.Request) -> web.Response:
        downtime = _downtime(request)
        return await _answer(lambda: self.restart_agent(request.match_info["hostname"], downtime))

    async def _admin_stop_agent(self, request: web.Request) -> web.Response:
        return await _answer(lambda: self.stop_agent(request.match_info["hostname"]))

    async def _admin_start_agent(self, request: web.Request) -> web.Response:
        return await _answer(lambda: self.start_agent(request.match_info["hostname"]))

    async def _admin_kill_executors(self, request: web.Request) -> web.Response:
        executor_id = request.query.get("executor_id")
        return await _answer(
            lambda: {"pids": self.kill_executors(request.match_info["hostname"], executor_id)}
        )

    async def _admin_restart_master(self, request: web.Request) -> web.Response:
        downtime = _downtime(request)
        return await _answer(lambda: self.restart_master(downtime))

    async def _admin_rescind(self, request: web.Request) -> web.Response:
        hostname = request.query.get("agent")
        return await _answer(lambda: {"rescinded": self.rescind_offers(hostname)})

    async def _redirect(self, request: web.Request) -> web.Response:
        """A non-leading master (src/master/http.cpp, redirect()): 307 to the leader, protocol-relative."""
        leader = self.url.removeprefix("http:")
        return web.Response(status=307, headers={"Location": f"{leader}{request.rel_url}"})


def _downtime(request: web.Request) -> float:
    try:
        downtime = float(request.query.get("downtime", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="downtime must be a number of seconds") from None
    if not 0 <= downtime <= 600:
        raise web.HTTPBadRequest(text="downtime must be between 0 and 600 seconds")
    return downtime


async def _answer(action: Any) -> web.Response:
    try:
        result = action()
        if asyncio.iscoroutine(result):
            result = await result
    except EmulatorError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    return web.json_response({"ok": True, **(result or {})})
