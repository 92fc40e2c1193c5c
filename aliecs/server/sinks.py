"""Where the core's events go besides live subscribers: event sinks.

A sink takes every event the core publishes (`EventSink`: `start`, `stop`, `health`). The default
sink is the JSONL audit log in the state directory (`aliecs.server.audit.AuditLog`); `aliecs-core
--kafka-endpoint HOST:PORT` adds `KafkaSink`, which publishes each event as the original does: the
protobuf `events.Event`, keyed by environment id (so one environment's events stay in order in one
partition), on the topic of its kind (`aliecs.environment`, `aliecs.task`, `aliecs.role`,
`aliecs.call`, `aliecs.run`, `aliecs.core`, `aliecs.integrated_service.<service>`).

The Kafka sink needs the optional `kafka` extra (aiokafka). It is untested here: no Kafka broker can
run on these machines. Its topic and message mapping (`kafka_record`) is tested; sending is
aiokafka's producer, started with the bootstrap servers and stopped with the core. A broker that is
away never slows the core: events wait in a bounded queue (oldest dropped and counted, as the audit
log does) and `health` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from typing import Any, Protocol

from aliecs import events as ev
from aliecs.events import Event, EventBus, SubscriberOverflow, Subscription
from aliecs.server.events import to_proto

log = logging.getLogger(__name__)

MAX_QUEUED = 100_000
TOPIC_PREFIX = "aliecs"
_TOPICS: dict[type, str] = {
    ev.EnvironmentEvent: "environment",
    ev.TaskEvent: "task",
    ev.RoleEvent: "role",
    ev.CallEvent: "call",
    ev.RunEvent: "run",
    ev.CoreStartEvent: "core",
}


class EventSink(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> str:
        """Empty while events are delivered, else one line saying what is wrong."""
        ...


def kafka_record(event: Event, prefix: str = TOPIC_PREFIX) -> tuple[str, bytes, bytes]:
    """(topic, key, value) of one event: `aliecs.<kind>`, the environment id, the protobuf Event."""
    if isinstance(event, ev.IntegratedServiceEvent):
        service = (event.operation_name or event.name).split(".")[0]
        topic = f"{prefix}.integrated_service.{service}"
    else:
        topic = f"{prefix}.{_TOPICS[type(event)]}"
    key = getattr(event, "environment_id", "")
    return topic, key.encode(), bytes(to_proto(event))


class KafkaSink:
    """Publishes every event to Kafka (see the module docstring; untested without a broker)."""

    def __init__(self, bus: EventBus, bootstrap_servers: str, prefix: str = TOPIC_PREFIX) -> None:
        self.bus = bus
        self.bootstrap_servers = bootstrap_servers
        self.prefix = prefix
        self.sent = 0
        self.dropped = 0
        self.failing: str | None = None
        self._queue: asyncio.Queue[Event] = asyncio.Queue(MAX_QUEUED)
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._producer: Any = None

    async def start(self) -> None:
        try:
            aiokafka = importlib.import_module("aiokafka")
        except ImportError as exc:
            raise RuntimeError("the Kafka event sink needs aiokafka: pip install 'aliecs[kafka]'") from exc
        self._producer = aiokafka.AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers)
        self._subscription = self.bus.subscribe()
        self._tasks = [
            asyncio.create_task(self._pump(), name="aliecs-kafka-pump"),
            asyncio.create_task(self._send(), name="aliecs-kafka-send"),
        ]

    def health(self) -> str:
        parts = []
        if self.failing:
            parts.append(f"Kafka at {self.bootstrap_servers}: {self.failing}")
        if self.dropped:
            parts.append(f"{self.dropped} events not sent to Kafka")
        return "; ".join(parts)

    async def _pump(self) -> None:
        while self._subscription is not None:
            try:
                async for event in self._subscription:
                    if self._queue.full():
                        self._queue.get_nowait()
                        self.dropped += 1
                    self._queue.put_nowait(event)
                return
            except SubscriberOverflow:
                self._subscription = self.bus.subscribe()

    async def _send(self) -> None:
        started = False
        while True:
            event = await self._queue.get()
            topic, key, value = kafka_record(event, self.prefix)
            while True:
                try:
                    if not started:
                        await self._producer.start()
                        started = True
                    await self._producer.send_and_wait(topic, value=value, key=key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if self.failing is None:
                        log.error("Kafka at %s: %s; events wait", self.bootstrap_servers, exc)
                    self.failing = str(exc) or type(exc).__name__
                    await asyncio.sleep(1.0)  # poll: retry the broker
                    continue
                self.sent += 1
                self.failing = None
                break

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None
