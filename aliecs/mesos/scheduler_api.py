"""A client of the Mesos v1 scheduler HTTP API (apache/mesos docs/scheduler-http-api.md), on aiohttp.

pymesos, the usual Python binding, cannot be installed on Python 3.11 (its http-parser dependency
does not build) and runs a thread per driver; this client is a coroutine on the core's event loop.

What it does, following the published API:

- SUBSCRIBE on a connection of its own (`POST /api/v1/scheduler`, JSON) and read the answer as a
  RecordIO stream of events (`aliecs.mesos.recordio`). The first event is SUBSCRIBED (framework ID,
  heartbeat interval) or ERROR; every later one goes to the `on_event` callback in stream order.
- Every other call goes on another connection and carries the `Mesos-Stream-Id` header of the current
  subscription; the master answers 202 (4xx/5xx raise `MesosCallError` with the body).
- A non-leading master answers 307 with a `Location`: the client follows it (for the subscription and
  the calls) and talks to that master from then on.
- Heartbeats are watched: when nothing arrived on the stream for `missed_heartbeats` heartbeat
  intervals, the connection is considered dead (a network partition does not always break it).
- Whenever the subscription ends (stream closed, heartbeats missed, ERROR event, master gone) the
  client subscribes again, with the framework ID it was given (so the master sees a failover, not a
  new framework), backing off exponentially up to `backoff_max` seconds between attempts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from aliecs.mesos.recordio import DEFAULT_MAX_RECORD_SIZE, Decoder, RecordIOError

log = logging.getLogger(__name__)

SCHEDULER_PATH = "/api/v1/scheduler"
STREAM_ID_HEADER = "Mesos-Stream-Id"
# The master's default heartbeat interval (seconds) when SUBSCRIBED does not give one.
DEFAULT_HEARTBEAT_INTERVAL = 15.0
# The docs: "If a scheduler doesn't receive a bunch (e.g., 5) of these heartbeats ... resubscribe".
MISSED_HEARTBEATS = 5
# The docs recommend exponential backoff "up to a maximum of 15s".
BACKOFF_MAX = 15.0
BACKOFF_INITIAL = 0.1
# A redirect chain longer than this is a loop between masters, not a leader change.
MAX_REDIRECTS = 5
# Bounded waits for a call's answer and for the SUBSCRIBE's HTTP response headers.
CALL_TIMEOUT = 30.0

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]


class MesosCallError(RuntimeError):
    """A call the master refused (4xx/5xx) or that could not reach it."""

    def __init__(self, call: str, status: int, message: str) -> None:
        super().__init__(f"Mesos {call}: {f'HTTP {status}: ' if status else ''}{message}")
        self.call = call
        self.status = status


class SubscriptionError(RuntimeError):
    """SUBSCRIBE failed (refused, ERROR event, malformed stream)."""


def scheduler_url(master: str) -> str:
    """The scheduler endpoint of `master` ('http://host:5050', 'host:5050' or a full endpoint URL)."""
    text = master.strip()
    if not text:
        raise ValueError("Mesos master URL is empty")
    if text.startswith("//"):
        text = "http:" + text
    elif "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Mesos master URL {master!r}: expected http://HOST:PORT")
    path = parts.path.rstrip("/")
    if not path.endswith(SCHEDULER_PATH):
        path = path + SCHEDULER_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _redirect_target(current: str, location: str | None) -> str:
    """Where a 307 points: Mesos sends '//host:port/...' (scheme-relative) or 'host:port'."""
    if not location:
        raise MesosCallError("redirect", 307, "redirect without a Location header")
    if location.startswith("//"):
        location = f"{urlsplit(current).scheme}:{location}"
    return scheduler_url(location)


def encode_bytes(data: bytes) -> str:
    """A `bytes` field in the JSON mapping."""
    return base64.b64encode(data).decode("ascii")


def decode_bytes(text: str | None) -> bytes:
    if not text:
        return b""
    return base64.b64decode(text)


def refuse_filters(seconds: float) -> dict[str, float]:
    return {"refuse_seconds": float(seconds)}


class SchedulerClient:
    """One framework's connection to the Mesos master (see the module docstring).

    `framework_info` is the FrameworkInfo (JSON mapping) to subscribe with; its `id` is set from
    SUBSCRIBED, so that every re-subscription is a failover of the same framework. `on_event` gets
    every event after SUBSCRIBED (HEARTBEATs included); `on_subscribed` runs after each successful
    (re)subscription, before any later event is handled (the place to RECONCILE).
    """

    def __init__(
        self,
        master: str,
        framework_info: Mapping[str, Any],
        on_event: EventHandler,
        on_subscribed: Callable[[str], Awaitable[None]] | None = None,
        *,
        missed_heartbeats: int = MISSED_HEARTBEATS,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
    ) -> None:
        self.url = scheduler_url(master)
        self.framework_info: dict[str, Any] = dict(framework_info)
        self.on_event = on_event
        self.on_subscribed = on_subscribed
        self.missed_heartbeats = missed_heartbeats
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_record_size = max_record_size
        self.stream_id: str | None = None
        self.heartbeat_interval = DEFAULT_HEARTBEAT_INTERVAL
        self.subscriptions = 0  # successful SUBSCRIBEs so far (1 + re-subscriptions)
        self.last_error = ""
        self._subscribed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def framework_id(self) -> str | None:
        framework = self.framework_info.get("id")
        return framework.get("value") if isinstance(framework, dict) else None

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    # -- lifetime --------------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe in the background, and again whenever the subscription ends, until `close`."""
        if self._runner is None:
            self._session = aiohttp.ClientSession(headers={"Accept": "application/json"})
            self._runner = asyncio.ensure_future(self._run())

    async def wait_subscribed(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        except TimeoutError:
            raise SubscriptionError(
                f"not subscribed to the Mesos master at {self.url} within {timeout:g}s"
                + (f": {self.last_error}" if self.last_error else "")
            ) from None

    async def close(self) -> None:
        """Drop the subscription (the master then starts the framework's failover timeout)."""
        self._closing = True
        self._subscribed.clear()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the subscription ------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            try:
                await self._subscribe_once()
                failures = 0  # the subscription worked and has now ended: start over quickly
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = str(exc) or type(exc).__name__
                failures += 1
                if not self._closing:  # after TEARDOWN the master ends the stream: no news
                    log.warning("Mesos subscription to %s: %s", self.url, self.last_error)
            finally:
                self._subscribed.clear()
                self.stream_id = None
            if self._closing:
                return
            delay = min(self.backoff_max, self.backoff_initial * 2 ** min(failures, 30))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # backoff, not a synchronisation

    async def _subscribe_once(self) -> None:
        body: dict[str, Any] = {"type": "SUBSCRIBE", "subscribe": {"framework_info": self.framework_info}}
        if self.framework_id is not None:
            body["framework_id"] = {"value": self.framework_id}
        assert self._session is not None
        for _ in range(MAX_REDIRECTS + 1):
            response = await asyncio.wait_for(
                self._session.post(
                    self.url,
                    data=json.dumps(body),
                    headers={"Content-Type": "application/json"},
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=None, connect=CALL_TIMEOUT),
                ),
                CALL_TIMEOUT,
            )
            if response.status == 307:
                self.url = _redirect_target(self.url, response.headers.get("Location"))
                response.release()
                log.info("Mesos master redirects to %s", self.url)
                continue
            try:
                await self._read_stream(response)
            finally:
                response.close()  # drops the connection: the stream never ends on its own
            return
        raise SubscriptionError(f"more than {MAX_REDIRECTS} redirects subscribing to {self.url}")

    async def _read_stream(self, response: aiohttp.ClientResponse) -> None:
        if response.status != 200:
            text = (await response.text())[:500]
            raise SubscriptionError(f"SUBSCRIBE refused by {self.url}: HTTP {response.status}: {text}")
        stream_id = response.headers.get(STREAM_ID_HEADER)
        if not stream_id:
            raise SubscriptionError(f"SUBSCRIBE answer of {self.url} has no {STREAM_ID_HEADER} header")
        decoder = Decoder(self.max_record_size, source=f"event stream of {self.url}")
        first = True
        while True:
            # Before SUBSCRIBED the master's default interval applies; after it, its own.
            window = self.heartbeat_interval * self.missed_heartbeats
            try:
                chunk = await asyncio.wait_for(response.content.readany(), window)
            except TimeoutError:
                raise SubscriptionError(
                    f"no event or heartbeat from {self.url} for {window:g}s: subscribing again"
                ) from None
            if not chunk:
                decoder.close()
                raise SubscriptionError(f"event stream of {self.url} ended")
            for record in decoder.feed(chunk):
                event = _parse_event(record)
                if first:
                    first = False
                    await self._subscribed_event(event, stream_id)
                    continue
                if event.get("type") == "ERROR":
                    message = (event.get("error") or {}).get("message", "")
                    await self.on_event(event)
                    raise SubscriptionError(f"master sent ERROR: {message}")
                await self.on_event(event)

    async def _subscribed_event(self, event: dict[str, Any], stream_id: str) -> None:
        kind = event.get("type")
        if kind == "ERROR":
            message = (event.get("error") or {}).get("message", "")
            await self.on_event(event)
            raise SubscriptionError(f"SUBSCRIBE answered with ERROR: {message}")
        if kind != "SUBSCRIBED":
            raise SubscriptionError(f"first event of {self.url} is {kind}, not SUBSCRIBED")
        subscribed = event.get("subscribed") or {}
        framework_id = (subscribed.get("framework_id") or {}).get("value")
        if not framework_id:
            raise SubscriptionError(f"SUBSCRIBED from {self.url} carries no framework_id")
        self.framework_info["id"] = {"value": framework_id}
        interval = subscribed.get("heartbeat_interval_seconds")
        self.heartbeat_interval = float(interval) if interval else DEFAULT_HEARTBEAT_INTERVAL
        self.stream_id = stream_id
        self.subscriptions += 1
        self.last_error = ""
        self._subscribed.set()
        log.info("subscribed to %s as framework %s (stream %s)", self.url, framework_id, stream_id)
        if self.on_subscribed is not None:
            await self.on_subscribed(framework_id)

    # -- calls -----------------------------------------------------------------------------------

    async def call(self, kind: str, payload: Mapping[str, Any] | None = None) -> None:
        """Send one call (`kind` its Call.Type; `payload` the message under its lower-case field)."""
        if self.stream_id is None or self.framework_id is None:
            raise MesosCallError(kind, 0, f"not subscribed to {self.url}")
        body: dict[str, Any] = {"framework_id": {"value": self.framework_id}, "type": kind}
        if payload is not None:
            body[kind.lower()] = payload
        assert self._session is not None
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with self._session.post(
                    url,
                    data=json.dumps(body),
                    headers={"Content-Type": "application/json", STREAM_ID_HEADER: self.stream_id},
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT),
                ) as response:
                    if response.status == 307:
                        url = _redirect_target(url, response.headers.get("Location"))
                        continue
                    if response.status in (200, 202):
                        return
                    text = (await response.text())[:500]
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise MesosCallError(kind, 0, f"{url}: {exc or type(exc).__name__}") from exc
            raise MesosCallError(kind, response.status, text)
        raise MesosCallError(kind, 307, f"more than {MAX_REDIRECTS} redirects")

    async def accept(
        self, offer_ids: Iterable[str], operations: list[dict[str, Any]], refuse_seconds: float
    ) -> None:
        await self.call(
            "ACCEPT",
            {
                "offer_ids": [{"value": offer_id} for offer_id in offer_ids],
                "operations": operations,
                "filters": refuse_filters(refuse_seconds),
            },
        )

    async def decline(self, offer_ids: Iterable[str], refuse_seconds: float) -> None:
        await self.call(
            "DECLINE",
            {
                "offer_ids": [{"value": offer_id} for offer_id in offer_ids],
                "filters": refuse_filters(refuse_seconds),
            },
        )

    async def revive(self) -> None:
        await self.call("REVIVE", {})

    async def suppress(self) -> None:
        await self.call("SUPPRESS", {})

    async def kill(self, task_id: str, agent_id: str | None) -> None:
        payload: dict[str, Any] = {"task_id": {"value": task_id}}
        if agent_id:
            payload["agent_id"] = {"value": agent_id}
        await self.call("KILL", payload)

    async def acknowledge(self, agent_id: str, task_id: str, uuid: str) -> None:
        """`uuid` exactly as the update carried it (base64 in the JSON mapping)."""
        await self.call(
            "ACKNOWLEDGE", {"agent_id": {"value": agent_id}, "task_id": {"value": task_id}, "uuid": uuid}
        )

    async def reconcile(self, tasks: Iterable[tuple[str, str | None]] = ()) -> None:
        """RECONCILE `(task_id, agent_id)` pairs; none means every task the master knows (implicit)."""
        entries = []
        for task_id, agent_id in tasks:
            entry: dict[str, Any] = {"task_id": {"value": task_id}}
            if agent_id:
                entry["agent_id"] = {"value": agent_id}
            entries.append(entry)
        await self.call("RECONCILE", {"tasks": entries})

    async def shutdown(self, executor_id: str, agent_id: str) -> None:
        await self.call("SHUTDOWN", {"executor_id": {"value": executor_id}, "agent_id": {"value": agent_id}})

    async def teardown(self) -> None:
        """Remove the framework: the master shuts down its executors (and so its tasks) and ends
        the subscription (which is not renewed)."""
        self._closing = True
        await self.call("TEARDOWN")


def _parse_event(record: bytes) -> dict[str, Any]:
    try:
        event = json.loads(record)
    except ValueError as exc:
        raise RecordIOError(f"event is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise RecordIOError(f"event is not a JSON object: {record[:80]!r}")
    return event
