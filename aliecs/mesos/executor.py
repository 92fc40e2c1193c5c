"""`aliecs-executor --mesos`: the aliecs executor of one node as a Mesos custom executor.

Mesos carries what it must know about: launches (a TaskInfo whose `data` is the task's
`aliecs_executor.LaunchOrder`), kills, and the tasks' status (TASK_STARTING, TASK_RUNNING once the
process is up, TASK_FINISHED / TASK_FAILED when it ends on its own, TASK_KILLED). Everything else
(OCC transitions, hooks, the tasks' events) goes straight between the core and this executor over
the executor protocol of `aliecs.executor.service`, as on the local cluster: every update's `data`
says where that service listens (JSON {"executor_address", "node", "pid", "state"}), so the core
connects to it after the first one.

Task processes die with this executor (PR_SET_PDEATHSIG): under Mesos the executor's container is the
unit of life, and the master, not the executor, decides when a framework is gone (it then SHUTs DOWN
its executors), so the executor protocol's own failover timer is not used here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actors.messages import ProcessExited
from aliecs.cluster.inventory import NodeSpec
from aliecs.executor import wire
from aliecs.executor.agent import NodeAgent
from aliecs.executor.orders import LaunchOrder, TaskResult
from aliecs.executor.service import ExecutorService, executor_server
from aliecs.generated import aliecs_executor as pb
from aliecs.grpcserver import GrpcServer
from aliecs.mesos.executor_driver import JSON, ExecutorDriver, MesosEnvironment

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_LABEL = "aliecs.startup_timeout"
_TERMINAL = frozenset({"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST"})
DEFAULT_STARTUP_TIMEOUT = 60.0
MAX_STARTUP_TIMEOUT = 3600.0


class MesosNodeAgent(NodeAgent):
    """A NodeAgent that tells the Mesos executor when one of its tasks ends, however it ends: on its
    own (a process exit) or killed (by a Mesos KILL or by the core over the executor protocol)."""

    def __init__(self, node: NodeSpec, executor_class: type, owner: MesosExecutor) -> None:
        super().__init__(node, executor_class)
        self.owner = owner

    def noticed(self, message: Any) -> None:
        super().noticed(message)
        if isinstance(message, ProcessExited):
            self.owner.process_exited(message)

    async def kill(self, task_ids: Sequence[str]) -> list[TaskResult]:
        self.owner.killing.update(task_ids)
        try:
            results = await super().kill(task_ids)
        finally:
            self.owner.killing.difference_update(task_ids)
        for result in results:
            self.owner.killed(result)
        return results


@dataclass
class _Task:
    info: JSON
    state: str = "TASK_STAGING"
    pid: int = 0
    aliecs_state: str = ""


class MesosExecutor:
    """Glue between the agent's events (`ExecutorDriver`) and this node's `NodeAgent`."""

    def __init__(self, env: MesosEnvironment, executor_class: type, token: str | None = None) -> None:
        self.env = env
        self.executor_class = executor_class
        self.token = token
        self.driver = ExecutorDriver(env, self.handle)
        self.agent: MesosNodeAgent | None = None
        self.server: GrpcServer | None = None
        self.address = ""
        self.hostname = ""
        self.tasks: dict[str, _Task] = {}
        self.killing: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._shutting_down = False

    # -- lifecycle ----------------------------------------------------------------------------------

    async def run(self) -> str:
        """Serve until SHUTDOWN (or the agent is gone for good); kill every task; say why it ended."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.driver.stop)
        try:
            reason = await self.driver.run()
        finally:
            await self._close()
        return reason

    async def _start_node(self, agent_info: JSON) -> None:
        """On the first SUBSCRIBED: the node's agent and the executor protocol's server."""
        self.hostname = str(agent_info.get("hostname") or self.env.agent_host)
        self.agent = MesosNodeAgent(NodeSpec(self.hostname), self.executor_class, self)
        await self.agent.start()
        # No failover timer under Mesos (see the module docstring): a timeout far beyond any run.
        service = ExecutorService(self.agent, failover_timeout=float("inf"), tasks_outlive=False)
        self.server = executor_server(service)
        if self.token:
            from aliecs.server.auth import require_token

            require_token(self.server, self.token)
        listening = socket.create_server((self.env.agent_host, 0))
        await self.server.start(sock=listening)
        self.address = f"{self.env.agent_host}:{listening.getsockname()[1]}"
        print(
            f"aliecs-executor: ready {self.address} pid {os.getpid()} mesos {self.env.executor_id}",
            flush=True,
        )

    async def _close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self.agent is not None:
            await self.agent.stop(kill_tasks=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- events from the agent ----------------------------------------------------------------------

    async def handle(self, event: JSON) -> None:
        kind = event.get("type")
        if kind == "SUBSCRIBED":
            if self.agent is None:
                await self._start_node((event.get("subscribed") or {}).get("agent_info") or {})
        elif kind == "LAUNCH":
            task = (event.get("launch") or {}).get("task") or {}
            self._spawn(self._launch([task]))
        elif kind == "LAUNCH_GROUP":
            tasks = ((event.get("launch_group") or {}).get("task_group") or {}).get("tasks") or []
            self._spawn(self._launch(list(tasks)))
        elif kind == "KILL":
            task_id = ((event.get("kill") or {}).get("task_id") or {}).get("value", "")
            self._spawn(self._kill(task_id))
        elif kind == "SHUTDOWN":
            self._spawn(self._shutdown())
        elif kind == "ERROR":
            log.error("agent error: %s", (event.get("error") or {}).get("message", event))
        elif kind == "MESSAGE":
            log.info("message from the scheduler ignored (%d bytes)", len(str(event.get("message"))))

    def _data(self, task_id: str) -> bytes:
        """Every update's `data`: where the core reaches this executor, and the task's pid and state."""
        task = self.tasks.get(task_id)
        return json.dumps(
            {
                "executor_address": self.address,
                "node": self.hostname,
                "pid": task.pid if task else 0,
                "state": task.aliecs_state if task else "",
            }
        ).encode()

    async def _update(self, task_id: str, state: str, message: str = "", reason: str = "") -> None:
        """Send one update. A terminal one forgets the task at once, before the call goes out, so
        that no second terminal update can follow it (a process exit noticed during a kill)."""
        task = self.tasks.get(task_id)
        if task is None and state not in _TERMINAL:
            return  # it ended meanwhile (its terminal update is on its way): nothing follows that
        data = self._data(task_id)
        if task is not None:
            task.state = state
        if state in _TERMINAL:
            self.tasks.pop(task_id, None)
        await self.driver.update(task_id, state, data, message, reason)

    def _finish(self, task_id: str, state: str, message: str = "") -> None:
        """A task's terminal update, from code that cannot wait for the call to go out."""
        if task_id in self.tasks:
            data = self._data(task_id)
            self.tasks.pop(task_id)
            self._spawn(self.driver.update(task_id, state, data, message))

    async def _launch(self, infos: list[JSON]) -> None:
        assert self.agent is not None
        orders: list[LaunchOrder] = []
        refused: list[tuple[str, str, str, str]] = []  # (task id, state, message, reason)
        timeout = 0.0
        for info in infos:
            task_id = str((info.get("task_id") or {}).get("value", ""))
            self.driver.launched(info)
            self.tasks[task_id] = _Task(info)
            try:
                order = _order(info, task_id)
            except ValueError as exc:
                refused.append((task_id, "TASK_FAILED", str(exc), "REASON_TASK_INVALID"))
                continue
            if self._shutting_down:
                refused.append((task_id, "TASK_KILLED", "executor shutting down", ""))
                continue
            orders.append(order)
            timeout = max(timeout, _startup_timeout(info))
        await asyncio.gather(
            *(self._update(*answer) for answer in refused),
            *(self._update(order.spec.task_id, "TASK_STARTING") for order in orders),
        )
        orders = [order for order in orders if order.spec.task_id in self.tasks]  # not killed meanwhile
        if not orders:
            return
        answers = []
        for result in await self.agent.launch(orders, timeout):
            task = self.tasks.get(result.task_id)
            if task is None:
                continue  # killed meanwhile: its TASK_KILLED is sent
            task.aliecs_state = result.state
            if result.ok:
                task.pid = result.pid
                answers.append(self._update(result.task_id, "TASK_RUNNING"))
            else:
                answers.append(self._update(result.task_id, "TASK_FAILED", result.error or "launch failed"))
        await asyncio.gather(*answers)

    async def _kill(self, task_id: str) -> None:
        if self.agent is None or task_id not in self.tasks:
            return  # not ours (any more): it already had its terminal update
        if task_id in self.agent.tasks:
            await self.agent.kill([task_id])  # `killed` sends TASK_KILLED
        else:
            await self._update(task_id, "TASK_KILLED", "killed before it started")

    def killed(self, result: TaskResult) -> None:
        """The NodeAgent killed a task (a Mesos KILL, SHUTDOWN or the core's own kill)."""
        self._finish(result.task_id, "TASK_KILLED", result.error)

    def process_exited(self, message: ProcessExited) -> None:
        """A controllable task's process ended: the Mesos task is over, unless it is being killed."""
        if message.task_id in self.killing or message.task_id not in self.tasks:
            return
        if message.expected or message.exit.clean:
            self._finish(message.task_id, "TASK_FINISHED", message.exit.report())
        else:
            self._finish(message.task_id, "TASK_FAILED", message.exit.report(message.log_tail))

    async def _shutdown(self) -> None:
        """SHUTDOWN: kill every task, report them TASK_KILLED, and exit within the grace period."""
        self._shutting_down = True
        if self.agent is not None and self.agent.tasks:
            await self.agent.kill(list(self.agent.tasks))
        for task_id in list(self.tasks):
            await self._update(task_id, "TASK_KILLED", "executor shut down")
        await self.driver.all_acknowledged(max(self.env.shutdown_grace / 2, 0.1))
        self.driver.stop()


def _order(info: JSON, task_id: str) -> LaunchOrder:
    """The task's LaunchOrder, from TaskInfo.data (base64 of the serialized protobuf message)."""
    data = info.get("data")
    if not isinstance(data, str) or not data:
        raise ValueError(f"task {task_id}: TaskInfo.data must carry the task's aliecs_executor.LaunchOrder")
    try:
        message = pb.LaunchOrder().parse(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"task {task_id}: TaskInfo.data is not a serialized LaunchOrder ({exc})") from None
    if message.task_id != task_id:
        raise ValueError(f"task {task_id}: TaskInfo.data launches task {message.task_id!r} instead")
    return wire.launch_from_wire(message, outlive_executor=False)


def _startup_timeout(info: JSON) -> float:
    for label in (info.get("labels") or {}).get("labels") or []:
        if isinstance(label, dict) and label.get("key") == STARTUP_TIMEOUT_LABEL:
            try:
                return min(max(float(label.get("value", "")), 0.1), MAX_STARTUP_TIMEOUT)
            except ValueError:
                break
    return DEFAULT_STARTUP_TIMEOUT
