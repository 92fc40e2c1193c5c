"""The Mesos v1 executor HTTP API client (docs/executor-http-api.md): subscription, events, updates.

An executor launched by a Mesos agent learns everything from its environment (MESOS_FRAMEWORK_ID,
MESOS_EXECUTOR_ID, MESOS_AGENT_ENDPOINT, ...), SUBSCRIBEs to the agent and then reads its RecordIO
event stream (LAUNCH, LAUNCH_GROUP, KILL, ACKNOWLEDGED, MESSAGE, SHUTDOWN, ERROR) while it sends
UPDATE calls on other connections.

Status updates are only delivered once the agent ACKNOWLEDGEs them: until then the driver keeps
every update, and the TaskInfo of every task none of whose updates is acknowledged yet. When the
connection to the agent breaks (an agent restart), a checkpointing framework's executor subscribes
again, backing off up to MESOS_SUBSCRIPTION_BACKOFF_MAX, for at most MESOS_RECOVERY_TIMEOUT, and sends
what is unacknowledged in its SUBSCRIBE call; the agent then forwards it. Without checkpointing, the
executor is expected to exit on disconnection, and `run()` returns.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from aliecs.mesos.recordio import Decoder, RecordIOError

log = logging.getLogger(__name__)

JSON = dict[str, Any]

# Mesos defaults for what the agent may leave unset (src/slave/constants.hpp, docs).
DEFAULT_BACKOFF_MAX = 2.0
DEFAULT_RECOVERY_TIMEOUT = 900.0
DEFAULT_SHUTDOWN_GRACE = 5.0
# Updates kept unacknowledged at most (a stuck agent must not grow the executor without bound).
MAX_UNACKNOWLEDGED = 100_000
_FIRST_BACKOFF = 0.05
_CALL_TIMEOUT = 30.0

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "secs": 1.0,
    "mins": 60.0,
    "hrs": 3600.0,
    "days": 86400.0,
    "weeks": 604800.0,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|secs|mins|hrs|days|weeks)\s*$")


class MesosEnvironmentError(ValueError):
    """The MESOS_* environment an agent gives its executors is missing or malformed."""


def parse_duration(text: str, name: str) -> float:
    """A Mesos Duration ("250ms", "5secs", "15mins") in seconds; `name` is the variable, for errors."""
    match = _DURATION.match(text)
    if not match:
        raise MesosEnvironmentError(
            f"{name}={text!r}: not a Mesos duration (a number and one of {', '.join(_UNITS)}, e.g. 5secs)"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class MesosEnvironment:
    framework_id: str
    executor_id: str
    agent_endpoint: str  # HOST:PORT
    sandbox: Path
    checkpoint: bool
    backoff_max: float = DEFAULT_BACKOFF_MAX
    recovery_timeout: float = DEFAULT_RECOVERY_TIMEOUT
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE

    @property
    def agent_host(self) -> str:
        return self.agent_endpoint.rpartition(":")[0].strip("[]")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> MesosEnvironment:
        missing = [
            name
            for name in ("MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID", "MESOS_AGENT_ENDPOINT")
            if not environ.get(name)
        ]
        if missing:
            raise MesosEnvironmentError(
                f"{', '.join(missing)} not set: `aliecs-executor --mesos` runs when a Mesos agent launches it"
            )
        endpoint = environ["MESOS_AGENT_ENDPOINT"]
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise MesosEnvironmentError(f"MESOS_AGENT_ENDPOINT={endpoint!r}: expected HOST:PORT")

        def duration(name: str, default: float) -> float:
            value = environ.get(name)
            return parse_duration(value, name) if value else default

        return cls(
            framework_id=environ["MESOS_FRAMEWORK_ID"],
            executor_id=environ["MESOS_EXECUTOR_ID"],
            agent_endpoint=endpoint,
            sandbox=Path(environ.get("MESOS_SANDBOX") or environ.get("MESOS_DIRECTORY") or "."),
            checkpoint=environ.get("MESOS_CHECKPOINT", "0").strip().lower() in ("1", "true"),
            backoff_max=duration("MESOS_SUBSCRIPTION_BACKOFF_MAX", DEFAULT_BACKOFF_MAX),
            recovery_timeout=duration("MESOS_RECOVERY_TIMEOUT", DEFAULT_RECOVERY_TIMEOUT),
            shutdown_grace=duration("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", DEFAULT_SHUTDOWN_GRACE),
        )


class AgentRefusedError(RuntimeError):
    """The agent answered a call with an error status (4xx/5xx): the call is wrong, retrying won't help."""


EventHandler = Callable[[JSON], Awaitable[None]]


class ExecutorDriver:
    """Speaks to one agent for one executor. `handler` gets every event but ACKNOWLEDGED and
    HEARTBEAT (the driver's own business), in stream order; it must not block for long (start tasks
    for slow work)."""

    def __init__(self, env: MesosEnvironment, handler: EventHandler) -> None:
        self.env = env
        self.handler = handler
        self.url = f"http://{env.agent_endpoint}/api/v1/executor"
        self.unacknowledged_updates: dict[str, JSON] = {}  # uuid (base64) -> TaskStatus, in order
        self.unacknowledged_tasks: dict[str, JSON] = {}  # task id -> TaskInfo
        self.subscribed = asyncio.Event()
        self.stopped = asyncio.Event()
        self.acknowledged = asyncio.Condition()
        self.subscriptions = 0
        self._session: aiohttp.ClientSession | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._sending: dict[str, tuple[asyncio.Lock, int]] = {}  # task id -> (its lock, calls using it)

    def _ids(self) -> JSON:
        return {
            "executor_id": {"value": self.env.executor_id},
            "framework_id": {"value": self.env.framework_id},
        }

    # -- the subscription ---------------------------------------------------------------------------

    def stop(self) -> None:
        """End the subscription (the executor is done, e.g. after SHUTDOWN): `run()` returns "stopped"."""
        self.stopped.set()
        if self._response is not None:
            self._response.close()

    async def run(self) -> str:
        """Subscribe and handle events until `stop()`, or until the agent is gone for good.

        Returns why it ended: "stopped", "disconnected" (no checkpointing: an executor exits when its
        agent goes away), "recovery timeout", or "error: ..." (the agent refused the subscription).
        """
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=_CALL_TIMEOUT)
        ) as session:
            self._session = session
            backoff = _FIRST_BACKOFF
            disconnected_since: float | None = None
            while not self.stopped.is_set():
                try:
                    await self._subscribe_once(session)
                except AgentRefusedError as exc:
                    return f"error: {exc}"
                except (aiohttp.ClientError, OSError, RecordIOError, ValueError, TimeoutError) as exc:
                    if not self.stopped.is_set():  # stop() closes the stream: no loss to report then
                        log.warning("connection to the agent at %s lost: %s", self.env.agent_endpoint, exc)
                finally:
                    was_subscribed = self.subscribed.is_set()
                    self.subscribed.clear()
                if self.stopped.is_set():
                    return "stopped"
                if not self.env.checkpoint:
                    return "disconnected"
                now = time.monotonic()
                if was_subscribed or disconnected_since is None:
                    disconnected_since, backoff = now, _FIRST_BACKOFF
                if now - disconnected_since > self.env.recovery_timeout:
                    return "recovery timeout"
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.env.backoff_max)
            return "stopped"

    async def _subscribe_once(self, session: aiohttp.ClientSession) -> None:
        body = {
            **self._ids(),
            "type": "SUBSCRIBE",
            "subscribe": {
                "unacknowledged_tasks": list(self.unacknowledged_tasks.values()),
                "unacknowledged_updates": [
                    {"status": status} for status in self.unacknowledged_updates.values()
                ],
            },
        }
        headers = {"Accept": "application/json"}
        async with session.post(self.url, json=body, headers=headers) as response:
            if response.status != 200:
                text = (await response.text())[:500]
                raise AgentRefusedError(f"SUBSCRIBE answered {response.status}: {text}")
            self._response = response
            try:
                decoder = Decoder(source=f"agent {self.env.agent_endpoint}")
                async for chunk in response.content.iter_any():
                    for record in decoder.feed(chunk):
                        await self._event(json.loads(record))
                if not self.stopped.is_set():
                    decoder.close()
            finally:
                self._response = None

    async def _event(self, event: JSON) -> None:
        kind = event.get("type")
        if kind == "SUBSCRIBED":
            self.subscriptions += 1
            self.subscribed.set()
            log.info(
                "subscribed to agent %s (%d unacknowledged update(s) re-sent)",
                self.env.agent_endpoint,
                len(self.unacknowledged_updates),
            )
        elif kind == "ACKNOWLEDGED":
            acknowledged = event.get("acknowledged") or {}
            await self._acknowledged(
                str(acknowledged.get("uuid", "")), (acknowledged.get("task_id") or {}).get("value", "")
            )
            return
        elif kind == "HEARTBEAT":
            return
        await self.handler(event)

    async def _acknowledged(self, uuid_b64: str, task_id: str) -> None:
        if self.unacknowledged_updates.pop(uuid_b64, None) is not None:
            self.unacknowledged_tasks.pop(task_id, None)
            async with self.acknowledged:
                self.acknowledged.notify_all()

    async def all_acknowledged(self, timeout: float) -> bool:
        """Wait until no update is unacknowledged (True), at most `timeout` seconds (False)."""
        try:
            async with asyncio.timeout(timeout), self.acknowledged:
                await self.acknowledged.wait_for(lambda: not self.unacknowledged_updates)
        except TimeoutError:
            return False
        return True

    # -- calls --------------------------------------------------------------------------------------

    def launched(self, task: JSON) -> None:
        """Remember a task the agent gave us, until one of its updates is acknowledged."""
        task_id = (task.get("task_id") or {}).get("value", "")
        if task_id:
            self.unacknowledged_tasks[task_id] = task

    async def update(
        self, task_id: str, state: str, data: bytes | None = None, message: str = "", reason: str = ""
    ) -> None:
        """Send a status update; it is kept (and re-sent at the next subscription) until acknowledged."""
        status: JSON = {
            "task_id": {"value": task_id},
            "state": state,
            "source": "SOURCE_EXECUTOR",
            "executor_id": {"value": self.env.executor_id},
            "timestamp": time.time(),
            "uuid": base64.b64encode(uuid.uuid4().bytes).decode(),
        }
        if data is not None:
            status["data"] = base64.b64encode(data).decode()
        if message:
            status["message"] = message
        if reason:
            status["reason"] = reason
        if len(self.unacknowledged_updates) >= MAX_UNACKNOWLEDGED:
            oldest = next(iter(self.unacknowledged_updates))
            log.error("%d updates unacknowledged: dropping the oldest (%s)", MAX_UNACKNOWLEDGED, oldest)
            del self.unacknowledged_updates[oldest]
        self.unacknowledged_updates[status["uuid"]] = status
        # One task's updates go out in the order they were made (the agent keeps that order).
        lock, users = self._sending.get(task_id, (asyncio.Lock(), 0))
        self._sending[task_id] = (lock, users + 1)
        try:
            async with lock:
                await self._send(status)
        finally:
            lock, users = self._sending[task_id]
            if users == 1:
                del self._sending[task_id]
            else:
                self._sending[task_id] = (lock, users - 1)

    async def _send(self, status: JSON) -> None:
        task_id, state = status["task_id"]["value"], status["state"]
        if status["uuid"] not in self.unacknowledged_updates:
            return  # acknowledged already (re-sent in a SUBSCRIBE meanwhile)
        if not self.subscribed.is_set():
            log.info(
                "UPDATE %s of %s kept until the agent is back (sent with the next SUBSCRIBE)", state, task_id
            )
            return
        try:
            await self._call({"type": "UPDATE", "update": {"status": status}})
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info(
                "UPDATE %s of %s not delivered now (%s): kept for the next subscription", state, task_id, exc
            )
        except AgentRefusedError as exc:
            # A malformed update is refused again at every try: dropped, loudly.
            log.error("UPDATE %s of %s refused by the agent: %s", state, task_id, exc)
            self.unacknowledged_updates.pop(status["uuid"], None)

    async def message(self, data: bytes) -> None:
        """An executor MESSAGE to the scheduler (no delivery guarantee, as in Mesos)."""
        await self._call({"type": "MESSAGE", "message": {"data": base64.b64encode(data).decode()}})

    async def _call(self, body: JSON) -> None:
        if self._session is None:
            raise aiohttp.ClientConnectionError("not connected to the agent")
        async with self._session.post(
            self.url, json={**self._ids(), **body}, timeout=aiohttp.ClientTimeout(total=_CALL_TIMEOUT)
        ) as response:
            if response.status != 202:
                text = (await response.text())[:500]
                if response.status >= 500 or response.status == 403:
                    # Not subscribed (any more) or the agent is recovering: it comes with the next SUBSCRIBE.
                    raise aiohttp.ClientConnectionError(f"{body['type']} answered {response.status}: {text}")
                raise AgentRefusedError(f"{body['type']} answered {response.status}: {text}")
