"""Event sinks: the audit log by default, Kafka as an option (its mapping is tested; sending is not,
no broker can run here)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import betterproto
import pytest

from aliecs import events as ev
from aliecs.api import Core
from aliecs.events import EventBus
from aliecs.generated import events as events_pb
from aliecs.server import ControlServer
from aliecs.server.sinks import KafkaSink, kafka_record
from aliecs.testing import isolated_nodes

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("event", "topic", "payload"),
    [
        (
            ev.EnvironmentEvent("env1", "CONFIGURED", transition="CONFIGURE"),
            "aliecs.environment",
            "environment_event",
        ),
        (
            ev.TaskEvent("env1", "t1", "reader", "RUNNING", "ACTIVE", "flp001", "readout", "a.b"),
            "aliecs.task",
            "task_event",
        ),
        (ev.RoleEvent("env1", "a", "a", "RUNNING", "ACTIVE"), "aliecs.role", "role_event"),
        (ev.CallEvent("env1", "physics.sor", "dcs.StartOfRun()", "DONE_OK"), "aliecs.call", "call_event"),
        (ev.RunEvent("env1", 42, "RUNNING", "START_ACTIVITY", "DONE_OK"), "aliecs.run", "run_event"),
        (
            ev.IntegratedServiceEvent(
                "physics.sor", operation_name="dcs.StartOfRun()", environment_id="env1"
            ),
            "aliecs.integrated_service.dcs",
            "integrated_service_event",
        ),
    ],
)
def test_each_event_goes_to_the_topic_of_its_kind_keyed_by_environment(
    event: ev.Event, topic: str, payload: str
) -> None:
    found_topic, key, value = kafka_record(event)
    assert (found_topic, key) == (topic, b"env1")
    decoded = events_pb.Event().parse(value)
    name, message = betterproto.which_one_of(decoded, "Payload")
    assert name == payload and message.environment_id == "env1"
    assert decoded.timestamp_nano == event.timestamp_ns


def test_core_wide_events_have_no_key() -> None:
    assert kafka_record(ev.CoreStartEvent("framework"))[:2] == ("aliecs.core", b"")


@pytest.mark.skipif(importlib.util.find_spec("aiokafka") is not None, reason="aiokafka is installed")
async def test_the_kafka_sink_without_its_extra_says_how_to_get_it() -> None:
    sink = KafkaSink(EventBus(), "localhost:9092")
    with pytest.raises(RuntimeError, match=r"pip install 'aliecs\[kafka\]'"):
        await sink.start()
    process = await asyncio.create_subprocess_exec(
        str(BIN / "aliecs-core"), "--kafka-endpoint", "localhost:9092", stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2 and b"--kafka-endpoint needs aiokafka" in err


class RecordingSink:
    """A sink of our own beside the audit log: what the control server starts, feeds and stops."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.events: list[ev.Event] = []
        self.stopped = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        subscription = self.bus.subscribe()
        self._subscription = subscription

        async def pump() -> None:
            async for event in subscription:
                self.events.append(event)

        self._task = asyncio.create_task(pump())

    async def stop(self) -> None:
        self._subscription.close()
        assert self._task is not None
        await self._task
        self.stopped = True

    def health(self) -> str:
        return ""


@pytest.mark.usefixtures("no_leaked_processes")
async def test_the_control_server_feeds_every_sink(tmp_path: Path) -> None:
    async with Core.embedded(state_dir=tmp_path, nodes=isolated_nodes()) as core:
        sink = RecordingSink(core.events)
        async with ControlServer(core, port=0, sinks=[sink]) as server:
            assert server.sinks == [server.audit, sink]
            core.events.publish(ev.CallEvent("env1", "a.b", "testplugin.Noop()", "DONE_OK"))
        assert sink.stopped and [e.func for e in sink.events if isinstance(e, ev.CallEvent)] == [
            "testplugin.Noop()"
        ]
