"""One emulated Mesos agent: its resources and attributes, the v1 executor HTTP API on its own port,
the executor processes it launches, and the status update streams it keeps for the framework.

Status updates follow the agent's status update manager: an executor's UPDATE is stored, answered
with ACKNOWLEDGED to the executor at once (the agent now owns it), and forwarded to the framework one
at a time per task; the next one goes after the framework's ACKNOWLEDGE, and unacknowledged ones are
sent again on a retry timer and when the framework re-subscribes. Duplicates (an executor re-sending
an update the agent already had) are recognised by their uuid.

A "container" here is a process tree: the executor is started in its own session with the
MESOS_* environment, and destroying its container SIGKILLs the executor and every descendant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.mesos_emulator.protocol import (
    JSON,
    MAX_BODY_BYTES,
    TASK_STATES,
    TERMINAL_STATES,
    CallError,
    EventStream,
    accepts_json,
    b64decode,
    b64encode,
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
    from tests.mesos_emulator.master import Master

log = logging.getLogger("mesos_emulator.agent")

EXECUTOR_CALL = "Executor::Call"
EXECUTOR_CALL_TYPES = frozenset({"UNKNOWN", "SUBSCRIBE", "UPDATE", "MESSAGE", "HEARTBEAT"})


@dataclass
class AgentTimings:
    """The agent flags that matter to the emulator (seconds)."""

    executor_registration_timeout: float = 60.0  # --executor_registration_timeout (1mins)
    executor_reregistration_timeout: float = 10.0  # time executors get to come back after a restart
    executor_shutdown_grace_period: float = 5.0  # --executor_shutdown_grace_period (5secs)
    subscription_backoff_max: float = 1.0  # MESOS_SUBSCRIPTION_BACKOFF_MAX given to executors
    recovery_timeout: float = 900.0  # MESOS_RECOVERY_TIMEOUT (15mins)
    update_retry_interval: float = 10.0  # the status update manager's first retry interval
    executor_heartbeat_interval: float = 30.0  # HEARTBEAT events to executors


@dataclass
class _Termination:
    """Why the agent is ending an executor: the state and reason its live tasks get."""

    state: str
    reason: str
    message: str


@dataclass
class _Executor:
    framework_id: str
    executor_id: str
    info: JSON
    framework_info: JSON
    sandbox: Path
    state: str = "REGISTERING"  # RUNNING, TERMINATING, TERMINATED
    process: asyncio.subprocess.Process | None = None
    stream: EventStream | None = None
    queued: list[JSON] = field(default_factory=list)  # LAUNCH / LAUNCH_GROUP events not yet delivered
    live: set[str] = field(default_factory=set)  # tasks without a terminal update
    termination: _Termination | None = None
    timer: asyncio.TimerHandle | None = None
    framework_removed: bool = False
    subscriptions: int = 0
    resent_updates: int = 0  # unacknowledged updates received in SUBSCRIBE calls
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0


@dataclass
class _UpdateStream:
    """The updates of one task not yet acknowledged by the framework, in order."""

    pending: deque[JSON] = field(default_factory=deque)
    seen: set[str] = field(default_factory=set)


class Agent:
    def __init__(
        self,
        master: Master,
        agent_id: str,
        hostname: str,
        total: Resources,
        attributes: dict[str, str],
        host: str,
        work_dir: Path,
        timings: AgentTimings,
        port: int = 0,
    ) -> None:
        self.master = master
        self.agent_id = agent_id
        self.hostname = hostname
        self.total = total
        self.attributes = attributes
        self.host = host
        self.port = port
        self.work_dir = work_dir
        self.timings = timings
        self.active = True  # registered with the master and reachable
        self.up = False  # its HTTP endpoint listens
        self.executors: dict[tuple[str, str], _Executor] = {}
        self.updates: dict[tuple[str, str], _UpdateStream] = {}
        self._runner: web.AppRunner | None = None
        self._retry: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def attributes_json(self) -> list[JSON]:
        return [
            {"name": name, "type": "TEXT", "text": {"value": value}}
            for name, value in self.attributes.items()
        ]

    def info_json(self) -> JSON:
        return {
            "hostname": self.hostname,
            "port": self.port,
            "id": ident(self.agent_id),
            "resources": self.total.to_json(),
            "attributes": self.attributes_json(),
        }

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/api/v1/executor", self.handle)
        self._runner, self.port = await listen(app, self.host, self.port)
        self.up = True
        if self._retry is None:
            self._retry = asyncio.ensure_future(self._retry_updates())

    async def stop(self) -> None:
        """Destroy every container and stop listening (the emulator shutting down)."""
        for executor in list(self.executors.values()):
            executor.framework_removed = True
            self._destroy(executor)
        await asyncio.gather(*(e.exited.wait() for e in self.executors.values() if e.process is not None))
        await self._close_http()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for task in list(self._background):
            task.cancel()

    async def _close_http(self) -> None:
        self.up = False
        for executor in self.executors.values():
            if executor.stream is not None:
                executor.stream.close()
                executor.stream = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def restart(self, downtime: float = 0.0) -> None:
        """The agent process restarts: executor streams end and the port refuses connections for
        `downtime` seconds. Executors of checkpointing frameworks keep running and must re-subscribe
        within the re-registration timeout; the others are destroyed (their tasks TASK_LOST)."""
        await self.go_down()
        if downtime > 0:
            await asyncio.sleep(downtime)  # the emulated outage itself, not a synchronisation
        await self.come_back()

    async def go_down(self) -> None:
        """The first half of a restart: the agent process is gone, its executors keep running."""
        if not self.up:
            return
        log.info("%s going down", self.hostname)
        self.master.agent_disconnected(self)
        for executor in list(self.executors.values()):
            if executor.state == "TERMINATED":
                continue
            if not executor.framework_info.get("checkpoint", False):
                executor.termination = _Termination(
                    "TASK_LOST", "REASON_AGENT_RESTARTED", "Agent restarted; framework does not checkpoint"
                )
                self._destroy(executor)
        await self._close_http()

    async def come_back(self) -> None:
        """The second half of a restart: the agent listens again and waits for its executors."""
        if self.up:
            return
        log.info("%s back", self.hostname)
        await self.start()
        for executor in self.executors.values():
            if executor.state in ("RUNNING", "REGISTERING"):
                executor.state = "REGISTERING"
                self._arm(
                    executor,
                    self.timings.executor_reregistration_timeout,
                    _Termination(
                        "TASK_LOST",
                        "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
                        "Executor did not re-register after the agent restarted",
                    ),
                )
        self.master.agent_reconnected(self)
        for framework_id in {key[0] for key in self.updates}:
            self.resend_updates(framework_id)

    def lose(self) -> None:
        """The machine is gone: the master removes the agent and every container on it dies (no
        updates from here: the agent cannot send any)."""
        self.active = False
        for executor in list(self.executors.values()):
            executor.framework_removed = True  # nothing of this agent reaches a framework any more
            self._destroy(executor)
        self.updates.clear()
        self.master.remove_agent(self, "health check timed out")
        self._spawn(self._close_http())

    # -- from the master ----------------------------------------------------------------------------

    def run_tasks(self, framework_info: JSON, executor_info: JSON, tasks: list[JSON], group: bool) -> None:
        framework_id = framework_info["id"]["value"]
        executor_id = executor_info["executor_id"]["value"]
        key = (framework_id, executor_id)
        executor = self.executors.get(key)
        if executor is None or executor.state == "TERMINATED":
            sandbox = (
                self.work_dir
                / "agents"
                / self.agent_id
                / "frameworks"
                / framework_id
                / "executors"
                / executor_id
                / "runs"
                / "latest"
            )
            info = {**executor_info, "framework_id": ident(framework_id)}
            executor = self.executors[key] = _Executor(
                framework_id, executor_id, info, framework_info, sandbox
            )
            self._spawn(self._launch_executor(executor))
        if group:
            events = [event("LAUNCH_GROUP", launch_group={"task_group": {"tasks": tasks}})]
        else:
            events = [
                event("LAUNCH", launch={"framework_info": framework_info, "task": task}) for task in tasks
            ]
        executor.live.update(task["task_id"]["value"] for task in tasks)
        if executor.state == "RUNNING" and executor.stream is not None:
            for message in events:
                executor.stream.send(message)
        else:
            executor.queued.extend(events)

    def kill_task(self, framework_id: str, task_id: str, kill_policy: Any = None) -> None:
        executor = self._executor_of(framework_id, task_id)
        if executor is None:
            self._agent_update(
                framework_id,
                task_status(
                    task_id,
                    "TASK_LOST",
                    "SOURCE_AGENT",
                    agent_id=self.agent_id,
                    reason="REASON_TASK_UNKNOWN",
                    message="Task is unknown to the agent",
                    reliable=True,
                ),
            )
            return
        for queued in list(executor.queued):
            ids = _task_ids(queued)
            if task_id in ids:
                # Not yet delivered: the launch is dropped (a whole group with it), TASK_KILLED.
                executor.queued.remove(queued)
                for killed in ids:
                    executor.live.discard(killed)
                    self._agent_update(
                        framework_id,
                        task_status(
                            killed,
                            "TASK_KILLED",
                            "SOURCE_AGENT",
                            agent_id=self.agent_id,
                            executor_id=executor.executor_id,
                            reason="REASON_TASK_KILLED_DURING_LAUNCH",
                            message="Killed before delivery to the executor",
                            reliable=True,
                        ),
                    )
                return
        if executor.stream is not None:
            kill: JSON = {"task_id": ident(task_id)}
            if kill_policy is not None:
                kill["kill_policy"] = kill_policy
            executor.stream.send(event("KILL", kill=kill))
        else:
            log.warning("%s: cannot kill task %s: its executor is not connected", self.hostname, task_id)

    def shutdown_executor(self, framework_id: str, executor_id: str) -> None:
        executor = self.executors.get((framework_id, executor_id))
        if executor is not None and executor.state != "TERMINATED":
            self._shutdown(executor)

    def framework_removed(self, framework_id: str) -> None:
        for executor in self.executors.values():
            if executor.framework_id == framework_id and executor.state != "TERMINATED":
                executor.framework_removed = True
                self._shutdown(executor)
        for key in [k for k in self.updates if k[0] == framework_id]:
            del self.updates[key]

    def send_message(self, framework_id: str, executor_id: str, data: str) -> None:
        executor = self.executors.get((framework_id, executor_id))
        if executor is not None and executor.stream is not None:
            executor.stream.send(event("MESSAGE", message={"data": data}))

    def acknowledge(self, framework_id: str, task_id: str, raw_uuid: bytes) -> None:
        stream = self.updates.get((framework_id, task_id))
        if not stream or not stream.pending or stream.pending[0].get("uuid") != b64encode(raw_uuid):
            log.info("%s: unexpected acknowledgement for task %s ignored", self.hostname, task_id)
            return
        head = stream.pending.popleft()
        if not stream.pending and head["state"] in TERMINAL_STATES:
            del self.updates[(framework_id, task_id)]
            self.master.task_done(framework_id, task_id)
        elif stream.pending:
            self.master.status_update(self, framework_id, stream.pending[0])

    def resend_updates(self, framework_id: str) -> None:
        """Forward again the head update of every task of the framework not yet acknowledged."""
        if not self.up or not self.active:
            return
        for (owner, _task_id), stream in self.updates.items():
            if owner == framework_id and stream.pending:
                self.master.status_update(self, framework_id, stream.pending[0])

    async def _retry_updates(self) -> None:
        while True:
            await asyncio.sleep(self.timings.update_retry_interval)  # the agent's retry period, as in Mesos
            for framework_id in {key[0] for key in self.updates}:
                self.resend_updates(framework_id)

    # -- executor processes -------------------------------------------------------------------------

    def _environment(self, executor: _Executor) -> dict[str, str]:
        """What a Mesos agent gives its executors: its own environment, the CommandInfo's, MESOS_*."""
        env = dict(os.environ)
        command = executor.info.get("command") or {}
        for variable in (command.get("environment") or {}).get("variables") or []:
            if isinstance(variable, dict) and isinstance(variable.get("name"), str):
                env[variable["name"]] = str(variable.get("value", ""))
        checkpoint = bool(executor.framework_info.get("checkpoint", False))
        env.update(
            {
                "MESOS_FRAMEWORK_ID": executor.framework_id,
                "MESOS_EXECUTOR_ID": executor.executor_id,
                "MESOS_AGENT_ENDPOINT": self.endpoint,
                "MESOS_DIRECTORY": str(executor.sandbox),
                "MESOS_SANDBOX": str(executor.sandbox),
                "MESOS_CHECKPOINT": "1" if checkpoint else "0",
                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": _duration(self._grace_period(executor)),
            }
        )
        if checkpoint:
            env["MESOS_RECOVERY_TIMEOUT"] = _duration(self.timings.recovery_timeout)
            env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = _duration(self.timings.subscription_backoff_max)
        return env

    def _grace_period(self, executor: _Executor) -> float:
        period = executor.info.get("shutdown_grace_period")
        if isinstance(period, dict) and isinstance(period.get("nanoseconds"), int):
            return float(period["nanoseconds"]) / 1e9
        return self.timings.executor_shutdown_grace_period

    async def _launch_executor(self, executor: _Executor) -> None:
        command = executor.info.get("command") or {}
        value = str(command.get("value", ""))
        arguments = [str(a) for a in command.get("arguments") or []]
        if command.get("shell", True):
            program, argv = "/bin/sh", ["sh", "-c", value]
        else:
            # execvp(value, arguments): arguments[0] is argv[0], as CommandInfo documents.
            program, argv = value, arguments or [value]
        try:
            executor.sandbox.mkdir(parents=True, exist_ok=True)
            with (
                open(executor.sandbox / "stdout", "ab") as out,
                open(executor.sandbox / "stderr", "ab") as err,
            ):
                executor.process = await asyncio.create_subprocess_exec(
                    *argv,
                    executable=program,
                    cwd=executor.sandbox,
                    env=self._environment(executor),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
        except OSError as exc:
            executor.termination = _Termination(
                "TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED", f"Failed to launch container: {exc}"
            )
            self._executor_exited(executor, 1 << 8)
            return
        log.info("%s: executor %s started (pid %d)", self.hostname, executor.executor_id, executor.pid)
        if executor.state == "TERMINATING":
            self._destroy(executor)  # shut down or destroyed while it was being started
        self._arm(
            executor,
            self.timings.executor_registration_timeout,
            _Termination(
                "TASK_FAILED", "REASON_EXECUTOR_REGISTRATION_TIMEOUT", "Executor did not register in time"
            ),
        )
        returncode = await executor.process.wait()
        # Wait status as waitpid reports it: the signal number, or the exit code shifted left by 8.
        self._executor_exited(executor, -returncode if returncode < 0 else returncode << 8)

    def _arm(self, executor: _Executor, timeout: float, termination: _Termination) -> None:
        """Destroy the executor unless it subscribes within `timeout`."""
        if executor.timer is not None:
            executor.timer.cancel()

        def expire() -> None:
            if executor.state == "REGISTERING":
                log.warning("%s: executor %s: %s", self.hostname, executor.executor_id, termination.message)
                executor.termination = termination
                self._destroy(executor)

        executor.timer = asyncio.get_running_loop().call_later(timeout, expire)

    def _shutdown(self, executor: _Executor) -> None:
        """SHUTDOWN to the executor; its container is destroyed after the grace period."""
        if executor.state == "TERMINATING":
            return
        subscribed = executor.state == "RUNNING" and executor.stream is not None
        executor.state = "TERMINATING"
        if not subscribed:
            self._destroy(executor)
            return
        assert executor.stream is not None
        executor.stream.send(event("SHUTDOWN"))
        if executor.timer is not None:
            executor.timer.cancel()
        executor.timer = asyncio.get_running_loop().call_later(
            self._grace_period(executor), self._destroy, executor
        )

    def _destroy(self, executor: _Executor) -> None:
        """SIGKILL the executor's process tree (its "container")."""
        if executor.process is None or executor.process.returncode is not None:
            if executor.process is None and executor.state != "TERMINATED":
                executor.state = "TERMINATING"  # not started yet: _launch_executor will see it end
            return
        for pid in [executor.process.pid, *_descendants(executor.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def kill_executor(self, executor: _Executor) -> int:
        """Fault injection: the executor process dies (SIGKILL), as if it crashed."""
        pid = executor.pid
        if pid and executor.process is not None and executor.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pid

    def _executor_exited(self, executor: _Executor, status: int) -> None:
        log.info("%s: executor %s exited (status %d)", self.hostname, executor.executor_id, status)
        executor.state = "TERMINATED"
        if executor.timer is not None:
            executor.timer.cancel()
        if executor.stream is not None:
            executor.stream.close()
            executor.stream = None
        # What the executor left behind in its container goes with it.
        if executor.process is not None:
            for pid in _descendants_by_session(executor.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        executor.queued.clear()
        termination = executor.termination or _Termination(
            "TASK_FAILED", "REASON_EXECUTOR_TERMINATED", "Executor terminated"
        )
        if not executor.framework_removed and self.active:
            for task_id in sorted(executor.live):
                self._agent_update(
                    executor.framework_id,
                    task_status(
                        task_id,
                        termination.state,
                        "SOURCE_AGENT",
                        agent_id=self.agent_id,
                        executor_id=executor.executor_id,
                        reason=termination.reason,
                        message=termination.message,
                        reliable=True,
                    ),
                )
        executor.live.clear()
        if self.active:
            self.master.executor_exited(self, executor.framework_id, executor.executor_id, status)
        executor.exited.set()

    # -- the executor endpoint ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(
                status=405, headers={"Allow": "POST"}, text=f"Expecting 'POST', received '{request.method}'"
            )
        try:
            call = await read_call(request, EXECUTOR_CALL)
            kind, framework_id, executor_id = self._validate(call)
            if kind == "HEARTBEAT":
                return web.Response(status=202)
            if not any(key[0] == framework_id for key in self.executors):
                raise CallError(400, "Framework cannot be found")
            executor = self.executors.get((framework_id, executor_id))
            if executor is None or executor.state == "TERMINATED":
                raise CallError(400, "Executor cannot be found")
            if kind == "SUBSCRIBE":
                if not accepts_json(request):
                    raise CallError(406, "Expecting 'Accept' to allow 'application/json'")
                return await self._subscribe(request, executor, call["subscribe"])
            if executor.state == "REGISTERING" or executor.stream is None:
                raise CallError(403, "Executor is not subscribed")
            if kind == "UPDATE":
                self._executor_update(executor, call["update"]["status"])
            elif kind == "MESSAGE":
                data = get_field(call["message"], "data", str, "message.")
                b64decode(data, "message.data")
                self.master.executor_message(self, framework_id, executor_id, data)
            else:
                return web.Response(status=501, text="Received 'UNKNOWN' call")
            return web.Response(status=202)
        except CallError as exc:
            return exc.response()

    def _validate(self, call: JSON) -> tuple[str, str, str]:
        """common::validation::validateExecutorCall of src/common/validation.cpp."""
        if "type" not in call:
            raise invalid("Expecting 'type' to be present", EXECUTOR_CALL)
        kind = enum(call, "type", EXECUTOR_CALL_TYPES, "")
        if "executor_id" not in call:
            raise invalid("Expecting 'executor_id' to be present", EXECUTOR_CALL)
        if "framework_id" not in call:
            raise invalid("Expecting 'framework_id' to be present", EXECUTOR_CALL)
        executor_id = str(id_value(call, "executor_id", ""))
        framework_id = str(id_value(call, "framework_id", ""))
        if kind == "SUBSCRIBE":
            subscribe = get_field(call, "subscribe", dict, "") if "subscribe" in call else None
            if subscribe is None:
                raise invalid("Expecting 'subscribe' to be present", EXECUTOR_CALL)
            for index, update in enumerate(
                get_field(subscribe, "unacknowledged_updates", list, "subscribe.", False) or []
            ):
                where = f"subscribe.unacknowledged_updates[{index}]."
                if not isinstance(update, dict):
                    raise invalid(f"'{where[:-1]}' must be an Update object", EXECUTOR_CALL)
                self._check_status(
                    get_field(update, "status", dict, where), executor_id, framework_id, f"{where}status."
                )
            for index, task in enumerate(
                get_field(subscribe, "unacknowledged_tasks", list, "subscribe.", False) or []
            ):
                where = f"subscribe.unacknowledged_tasks[{index}]."
                if not isinstance(task, dict):
                    raise invalid(f"'{where[:-1]}' must be a TaskInfo object", EXECUTOR_CALL)
                id_value(task, "task_id", where)
        elif kind == "UPDATE":
            if "update" not in call:
                raise invalid("Expecting 'update' to be present", EXECUTOR_CALL)
            update = get_field(call, "update", dict, "")
            self._check_status(
                get_field(update, "status", dict, "update."), executor_id, framework_id, "update.status."
            )
        elif kind == "MESSAGE" and "message" not in call:
            raise invalid("Expecting 'message' to be present", EXECUTOR_CALL)
        return kind, framework_id, executor_id

    @staticmethod
    def _check_status(status: JSON, executor_id: str, framework_id: str, where: str) -> None:
        id_value(status, "task_id", where)
        state = enum(status, "state", TASK_STATES, where)
        if "uuid" not in status:
            raise invalid("Expecting 'uuid' to be present", EXECUTOR_CALL)
        check_uuid(b64decode(status["uuid"], f"{where}uuid"), f"{where}uuid", EXECUTOR_CALL)
        own = id_value(status, "executor_id", where, required=False)
        if own is not None and own != executor_id:
            raise invalid(
                f"ExecutorID in Call: {executor_id} does not match ExecutorID in TaskStatus: {own}",
                EXECUTOR_CALL,
            )
        if status.get("source") != "SOURCE_EXECUTOR":
            raise invalid(
                f"Received Call from executor {executor_id} of framework {framework_id} with invalid source, "
                "expecting 'SOURCE_EXECUTOR'",
                EXECUTOR_CALL,
            )
        if state == "TASK_STAGING":
            raise invalid(
                f"Received TASK_STAGING from executor {executor_id} of framework {framework_id} "
                "which is not allowed",
                EXECUTOR_CALL,
            )
        if "data" in status:
            b64decode(status["data"], f"{where}data")

    async def _subscribe(
        self, request: web.Request, executor: _Executor, subscribe: JSON
    ) -> web.StreamResponse:
        if executor.stream is not None:
            executor.stream.close()  # a new subscription replaces the old connection
        stream = executor.stream = EventStream(f"{self.hostname} executor {executor.executor_id}")
        stream.send(
            event(
                "SUBSCRIBED",
                subscribed={
                    "executor_info": executor.info,
                    "framework_info": executor.framework_info,
                    "agent_info": self.info_json(),
                    "container_id": {"value": f"{self.agent_id}-{executor.executor_id}"},
                },
            )
        )
        executor.subscriptions += 1
        for update in subscribe.get("unacknowledged_updates") or []:
            executor.resent_updates += 1
            self._executor_update(executor, update["status"])
        if executor.state == "TERMINATING":
            stream.send(event("SHUTDOWN"))
        else:
            executor.state = "RUNNING"
            if executor.timer is not None:
                executor.timer.cancel()
                executor.timer = None
            for queued in executor.queued:
                stream.send(queued)
            executor.queued.clear()
        log.info("%s: executor %s subscribed", self.hostname, executor.executor_id)
        heartbeats = asyncio.ensure_future(self._heartbeats(stream))
        try:
            return await stream.serve(request, {})
        finally:
            heartbeats.cancel()
            if executor.stream is stream:
                executor.stream = None

    async def _heartbeats(self, stream: EventStream) -> None:
        while not stream.closed.is_set():
            try:
                await asyncio.wait_for(stream.closed.wait(), self.timings.executor_heartbeat_interval)
            except TimeoutError:
                stream.send(event("HEARTBEAT"))

    # -- status updates -----------------------------------------------------------------------------

    def _executor_update(self, executor: _Executor, status: JSON) -> None:
        status = {**status, "agent_id": ident(self.agent_id), "executor_id": ident(executor.executor_id)}
        task_id = status["task_id"]["value"]
        if status["state"] in TERMINAL_STATES:
            executor.live.discard(task_id)
        self._store(executor.framework_id, status)
        if executor.stream is not None:
            acknowledged = {"task_id": ident(task_id), "uuid": status["uuid"]}
            executor.stream.send(event("ACKNOWLEDGED", acknowledged=acknowledged))

    def _agent_update(self, framework_id: str, status: JSON) -> None:
        self._store(framework_id, status)

    def _store(self, framework_id: str, status: JSON) -> None:
        """Keep an update until the framework acknowledges it; forward it when it is the head."""
        task_id = status["task_id"]["value"]
        stream = self.updates.setdefault((framework_id, task_id), _UpdateStream())
        if status["uuid"] in stream.seen:
            return  # a retry of an update the agent already has
        stream.seen.add(status["uuid"])
        stream.pending.append(status)
        self.master.task_state(framework_id, task_id, status["state"])
        if len(stream.pending) == 1 and self.up and self.active:
            self.master.status_update(self, framework_id, status)

    # -- helpers ------------------------------------------------------------------------------------

    def _executor_of(self, framework_id: str, task_id: str) -> _Executor | None:
        for executor in self.executors.values():
            if executor.framework_id == framework_id and task_id in executor.live:
                return executor
        return None

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def snapshot(self) -> JSON:
        return {
            "hostname": self.hostname,
            "agent_id": self.agent_id,
            "endpoint": self.endpoint,
            "active": self.active,
            "up": self.up,
            "attributes": dict(self.attributes),
            "total": self.total.summary(),
            "available": self.master.available(self).summary() if self.active else {},
            "executors": [
                {
                    "framework_id": e.framework_id,
                    "executor_id": e.executor_id,
                    "pid": e.pid,
                    "state": e.state,
                    "connected": e.stream is not None,
                    "live_tasks": sorted(e.live),
                    "subscriptions": e.subscriptions,
                    "resent_updates": e.resent_updates,
                    "sandbox": str(e.sandbox),
                }
                for e in self.executors.values()
            ],
            "unacknowledged_updates": sum(len(s.pending) for s in self.updates.values()),
        }


def _task_ids(launch_event: JSON) -> list[str]:
    if launch_event["type"] == "LAUNCH":
        return [launch_event["launch"]["task"]["task_id"]["value"]]
    return [task["task_id"]["value"] for task in launch_event["launch_group"]["task_group"]["tasks"]]


def _duration(seconds: float) -> str:
    """A Mesos Duration string ("250ms", "5secs"), as agents put in MESOS_* variables."""
    if seconds < 1 or seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    return f"{int(seconds)}secs"


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (children of children included), from /proc."""
    children = _children()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child)
    return found


def _descendants_by_session(session: int) -> list[int]:
    """Processes still in the executor's session (it was started as a session leader): what a
    cgroup would still hold after the executor itself exited. Task processes that started their own
    session are not found this way; they die with their executor by PR_SET_PDEATHSIG."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == session:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == session:
            found.append(int(entry.name))
    return found
