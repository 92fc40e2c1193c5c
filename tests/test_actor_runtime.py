"""The asyncio runtime for pykka actors: messaging, futures, lifecycle, threads, uvloop.

Synchronisation is by events and futures with deadlines (`within`), never by sleeping; the only
sleeps are simulated work inside handlers.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pykka
import pytest
import uvloop
from pykka import ActorDeadError, ActorRegistry

from actors import (
    AskTimeout,
    AsyncActorRef,
    AsyncioActor,
    AsyncioFuture,
    BlockingGetError,
    live_actors,
    stop_all,
)
from actors.runtime import traversable

T = TypeVar("T")
DEADLINE = 5.0


async def within(awaitable: Awaitable[T], seconds: float = DEADLINE) -> T:
    """Await with a deadline, so a bug shows up as a failure instead of a hung test."""
    return await asyncio.wait_for(awaitable, seconds)


@pytest.fixture(autouse=True)
async def _no_actor_left_behind() -> Any:
    yield
    await within(stop_all())
    assert live_actors() == []


class Recorder(AsyncioActor):
    """Records what it receives; answers some commands."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[Any] = []
        self.failures: list[BaseException | None] = []
        self.stopped = asyncio.Event()
        self.count = 0
        self.reached: asyncio.Event | None = None
        self.target = 0

    def on_receive(self, message: Any) -> Any:
        if message == "log":
            return list(self.log)
        if message == "boom":
            raise ValueError("boom")
        self.log.append(message)
        self.count += 1
        if self.reached is not None and self.count >= self.target:
            self.reached.set()
        return message

    def add(self, a: int, b: int) -> int:
        return a + b

    async def slow_add(self, a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    def fail(self, text: str) -> None:
        raise KeyError(text)

    def on_stop(self) -> None:
        self.stopped.set()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self.failures.append(exception_value)


def actor_of(ref: AsyncActorRef[Any]) -> Any:
    actor = ref.actor_weakref()
    assert actor is not None
    return actor


# Messaging


async def test_many_told_messages_are_handled_in_order() -> None:
    ref = Recorder.start()
    for i in range(10_000):
        ref.tell(i)
    assert await within(ref.ask("log")) == list(range(10_000))


async def test_order_is_kept_per_sender_with_concurrent_senders() -> None:
    ref = Recorder.start()

    async def sender(name: str) -> None:
        for i in range(500):
            ref.tell((name, i))
            if i % 7 == 0:
                await asyncio.sleep(0)  # let the other senders interleave

    await within(asyncio.gather(*(sender(f"s{n}") for n in range(5))))
    log = await within(ref.ask("log"))
    assert len(log) == 2500
    for n in range(5):
        assert [i for name, i in log if name == f"s{n}"] == list(range(500))
    assert [name for name, _ in log[:10]] != ["s0"] * 10  # they really did interleave


async def test_ask_returns_an_awaitable_asyncio_future() -> None:
    ref = Recorder.start()
    future = ref.ask("hello")
    assert isinstance(future, AsyncioFuture)
    assert asyncio.isfuture(future)  # gather/wait take it without wrapping it in a task
    assert await within(future) == "hello"


async def test_proxy_calls_and_attributes() -> None:
    ref = Recorder.start()
    proxy = ref.proxy()
    assert await within(proxy.add(2, 3)) == 5
    assert await within(proxy.slow_add(4, 5)) == 9  # an async method, awaited in the actor
    ref.tell("x")
    assert await within(proxy.count) == 1
    proxy.count = 41  # a fire-and-forget write, ordered before the next read
    assert await within(proxy.count) == 41
    assert ref.proxy() is proxy  # cached: building a proxy introspects the actor


@traversable
class Settings:
    def __init__(self) -> None:
        self.level = 3

    def double(self) -> int:
        return self.level * 2


class WithParts(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.settings = Settings()
        self._secret = "hidden"


async def test_proxy_follows_pykka_rules() -> None:
    ref = WithParts.start()
    proxy = ref.proxy()
    assert await within(proxy.settings.level) == 3  # traversable attribute: nested proxy
    assert await within(proxy.settings.double()) == 6
    with pytest.raises(AttributeError):
        proxy._secret  # noqa: B018  (private names are not exposed)
    with pytest.raises(AttributeError, match="no_such_thing"):
        proxy.no_such_thing  # noqa: B018
    assert {"add", "slow_add", "settings", "count"} <= set(dir(proxy))
    actor_of(ref).late_attribute = 7  # attributes added after the proxy was built are found too
    assert await within(proxy.late_attribute) == 7


async def test_replies_compose_with_asyncio_primitives() -> None:
    refs = [Recorder.start() for _ in range(3)]
    done, pending = await within(asyncio.wait([ref.ask(n) for n, ref in enumerate(refs)], timeout=DEADLINE))
    assert not pending
    assert sorted(f.result() for f in done) == [0, 1, 2]
    assert await within(asyncio.wait_for(refs[0].ask("w"), DEADLINE)) == "w"
    stopping = asyncio.ensure_future(refs[1].stop())
    assert stopping is not None
    assert await within(stopping) is True


async def test_ask_exception_is_returned_and_the_actor_keeps_running() -> None:
    ref = Recorder.start()
    with pytest.raises(ValueError, match="boom"):
        await within(ref.ask("boom"))
    with pytest.raises(KeyError, match="nope"):
        await within(ref.proxy().fail("nope"))
    assert ref.is_alive()
    assert await within(ref.ask("still here")) == "still here"
    assert actor_of(ref).failures == []


class Serial(AsyncioActor):
    """An async handler that yields to the loop several times per message."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.max_active = 0
        self.done: list[int] = []

    async def on_receive(self, message: Any) -> Any:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        for _ in range(3):
            await asyncio.sleep(0)
        self.done.append(message)
        self.active -= 1
        return message * 2


async def test_async_handlers_handle_one_message_at_a_time_in_order() -> None:
    ref = Serial.start()
    results = await within(asyncio.gather(*(ref.ask(i) for i in range(200))))
    assert results == [i * 2 for i in range(200)]
    actor = actor_of(ref)
    assert actor.max_active == 1
    assert actor.done == list(range(200))


async def test_told_failure_calls_on_failure_and_stops_the_actor() -> None:
    ref = Recorder.start()
    actor = actor_of(ref)
    ref.tell("boom")
    assert await within(ref.stop()) is True  # queued behind "boom": resolves at termination
    assert [type(e) for e in actor.failures] == [ValueError]
    assert not actor.stopped.is_set()  # on_stop is not called after a failure (pykka semantics)
    assert not ref.is_alive()
    with pytest.raises(ActorDeadError):
        ref.tell("late")
    with pytest.raises(ActorDeadError):
        await within(ref.ask("late"))
    with pytest.raises(ActorDeadError):
        ref.proxy()


async def test_deferred_proxy_call_failure_is_a_told_failure() -> None:
    ref = Recorder.start()
    actor = actor_of(ref)
    ref.proxy().fail.defer("deferred")
    await within(ref.stop())
    assert [type(e) for e in actor.failures] == [KeyError]


class SlowStarter(AsyncioActor):
    def __init__(self, gate: asyncio.Event, starting: asyncio.Event) -> None:
        super().__init__()
        self.gate = gate
        self.starting = starting
        self.ready = False

    async def on_start(self) -> None:
        self.starting.set()
        await self.gate.wait()
        self.ready = True

    def on_receive(self, message: Any) -> Any:
        return self.ready


async def test_async_on_start_completes_before_the_first_message() -> None:
    gate, starting = asyncio.Event(), asyncio.Event()
    ref = SlowStarter.start(gate, starting)
    reply = ref.ask("ready?")
    await within(starting.wait())  # on_start runs and waits for the gate: the message must wait too
    assert not reply.done()
    gate.set()
    assert await within(reply) is True  # answered by a started actor, not before on_start ended


class BrokenStart(Recorder):
    async def on_start(self) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("cannot start")


async def test_on_start_failure_stops_the_actor_and_fails_queued_asks() -> None:
    ref = BrokenStart.start()
    actor = actor_of(ref)
    reply = ref.ask("hello")
    with pytest.raises(ActorDeadError):
        await within(reply)
    assert await within(ref.stop()) is False  # already terminated: not an error
    assert actor.failures == []  # neither on_failure ...
    assert not actor.stopped.is_set()  # ... nor on_stop (pykka semantics)


# Stop


async def test_stop_handles_messages_queued_before_it_and_refuses_the_rest() -> None:
    ref = Recorder.start()
    actor = actor_of(ref)
    for i in range(100):
        ref.tell(i)
    before = ref.ask("before")
    stopping = ref.stop()
    after = ref.ask("after")  # queued behind the stop: fails with ActorDeadError
    ref.tell("dropped")  # queued behind the stop: dropped, as pykka does
    second_stop = ref.stop()
    assert await within(stopping) is True
    assert await within(second_stop) is True
    assert await within(before) == "before"
    with pytest.raises(ActorDeadError):
        await within(after)
    assert actor.log == [*range(100), "before"]
    assert actor.stopped.is_set()
    with pytest.raises(ActorDeadError):
        ref.tell("too late")
    assert await within(ref.stop()) is False


class SelfStopper(Recorder):
    def on_receive(self, message: Any) -> Any:
        if message == "quit":
            self.stop()
            return "bye"
        return super().on_receive(message)


async def test_an_actor_stops_itself_after_its_queued_messages() -> None:
    ref = SelfStopper.start()
    actor = actor_of(ref)
    bye = ref.ask("quit")
    queued = ref.ask("queued")  # before the self-stop request: handled
    assert await within(bye) == "bye"
    assert await within(queued) == "queued"
    await within(actor.stopped.wait())
    assert not ref.is_alive()


async def test_stop_waits_for_async_on_stop() -> None:
    release, stopping_began = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    class SlowStop(AsyncioActor):
        async def on_stop(self) -> None:
            stopping_began.set()
            await release.wait()
            order.append("on_stop ended")

    ref = SlowStop.start()
    stopping = ref.stop()
    stopping.add_done_callback(lambda _: order.append("stop resolved"))
    await within(stopping_began.wait())
    assert not stopping.done()
    assert not ref.is_alive()  # stopping has begun: no new messages
    release.set()
    assert await within(stopping) is True
    assert order == ["on_stop ended", "stop resolved"]


# The loop is never blocked


class Worker(AsyncioActor):
    def __init__(self, ticks: list[int], started: asyncio.Event) -> None:
        super().__init__()
        self.ticks = ticks
        self.started = started

    async def work(self) -> int:
        self.started.set()
        first = len(self.ticks)
        for _ in range(5):
            # Simulated work. While it sleeps, every loop iteration runs the (always ready)
            # heartbeat, so each sleep lets it tick at least once, unless something blocks the loop.
            await asyncio.sleep(0.001)  # simulated work, not a synchronisation
        return len(self.ticks) - first


async def test_awaiting_an_ask_never_blocks_the_loop() -> None:
    ticks: list[int] = []
    started = asyncio.Event()
    stop_beating = asyncio.Event()

    async def heartbeat() -> None:
        await started.wait()
        while not stop_beating.is_set():
            ticks.append(len(ticks))
            await asyncio.sleep(0)

    beating = asyncio.create_task(heartbeat())
    ref = Worker.start(ticks, started)
    assert await within(ref.proxy().work()) >= 5
    stop_beating.set()
    await within(beating)


async def test_blocking_get_on_the_loop_thread_raises() -> None:
    ref = Recorder.start()
    pending = ref.ask("x")
    with pytest.raises(BlockingGetError, match="await"):
        pending.get()
    await within(pending)
    with pytest.raises(BlockingGetError):
        pending.get()  # even once done: the rule does not depend on timing
    with pytest.raises(BlockingGetError):
        ref.ask("y", block=True)
    with pytest.raises(BlockingGetError):
        ref.stop(block=True)


# Threads


async def test_blocking_ask_and_stop_from_another_thread() -> None:
    ref = Recorder.start()
    assert await within(asyncio.to_thread(ref.ask, "from a thread", block=True, timeout=DEADLINE)) == (
        "from a thread"
    )
    future = await within(asyncio.to_thread(ref.ask, "future"))
    assert await within(future) == "future"
    assert await within(asyncio.to_thread(ref.stop, block=True, timeout=DEADLINE)) is True
    assert not ref.is_alive()


async def test_tell_from_another_thread_keeps_order() -> None:
    ref = Recorder.start()
    actor = actor_of(ref)
    actor.reached = asyncio.Event()
    actor.target = 1000

    def send() -> None:
        for i in range(1000):
            ref.tell(i)

    thread = threading.Thread(target=send)
    thread.start()
    await within(actor.reached.wait())
    await within(asyncio.to_thread(thread.join))
    assert await within(ref.ask("log")) == list(range(1000))


# Timeouts, futures, registry


class Silent(AsyncioActor):
    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__()
        self.gate = gate
        self.handling = asyncio.Event()  # set once a message is being handled

    async def on_receive(self, message: Any) -> Any:
        self.handling.set()
        await self.gate.wait()
        return "late"


async def test_ask_timeout_names_the_actor() -> None:
    gate = asyncio.Event()
    ref = Silent.start(gate)
    with pytest.raises(AskTimeout) as caught:
        await within(ref.ask("are you there?", timeout=0.01))
    text = str(caught.value)
    assert "Silent" in text
    assert ref.actor_urn in text
    assert "are you there?" in text
    assert isinstance(caught.value, pykka.Timeout)
    assert isinstance(caught.value, TimeoutError)
    gate.set()
    # The actor still handles the abandoned request, then carries on.
    assert await within(ref.ask("next", timeout=DEADLINE)) == "late"


async def test_stop_timeout_names_the_actor() -> None:
    gate = asyncio.Event()
    ref = Silent.start(gate)
    busy = ref.ask("busy")
    with pytest.raises(AskTimeout, match=r"Silent .* did not stop"):
        await within(ref.stop(timeout=0.01))  # a stop waits for the handler in progress
    gate.set()
    assert await within(busy) == "late"
    assert await within(ref.stop()) in (True, False)  # the first request still stands


async def test_an_abandoned_ask_does_not_disturb_the_actor() -> None:
    gate = asyncio.Event()
    ref = Silent.start(gate)
    first = ref.ask("first")
    first.cancel()
    gate.set()
    assert await within(ref.ask("second")) == "late"


async def test_future_combinators_are_awaitable() -> None:
    ref = Recorder.start()
    assert await within(ref.proxy().add(1, 2).map(lambda v: v * 10)) == 30
    assert await within(ref.ask([1, 5, 2, 8]).filter(lambda v: v > 2)) == [5, 8]
    assert await within(ref.ask([1, 2, 3]).reduce(lambda a, b: a + b)) == 6
    assert await within(ref.ask("a").join(ref.ask("b"), ref.ask("c"))) == ["a", "b", "c"]
    with pytest.raises(ValueError):
        await within(ref.ask("boom").map(lambda v: v))


async def test_live_actors_track_running_actors() -> None:
    ref = Recorder.start()
    assert ref in live_actors()
    assert ref.is_alive()
    await within(ref.stop())
    assert not ref.is_alive()
    assert ref not in live_actors()


async def test_stopping_thousands_of_actors_leaves_no_live_actor() -> None:
    refs = [Recorder.start() for _ in range(5000)]
    assert [ref for ref in live_actors() if ref in set(refs)] == refs  # start order
    # Stop them out of start order (odd ones first, then the even ones from the end).
    order = refs[1::2] + refs[::2][::-1]
    assert await within(asyncio.gather(*(ref.stop() for ref in order)), 30) == [True] * 5000
    assert live_actors() == []


async def test_stopping_a_large_subtree_leaves_no_live_actor() -> None:
    class Parent(Recorder):
        def spawn(self, count: int) -> list[AsyncActorRef[Recorder]]:
            return [self.start_child(Recorder) for _ in range(count)]

    parent = Parent.start()
    children = await within(parent.proxy().spawn(5000))
    assert len(live_actors()) == 5001
    assert await within(parent.stop(), 30) is True
    assert not any(child.is_alive() for child in children)
    assert live_actors() == []


async def test_our_actors_stay_out_of_pykkas_registry() -> None:
    """pykka's registry belongs to pykka's (threading) actors; ours are found with `live_actors`."""
    ref = Recorder.start()
    assert ActorRegistry.get_by_urn(ref.actor_urn) is None
    assert ref in live_actors()
    await within(ref.stop())


async def test_actor_urns_are_unique_uuid4_urns() -> None:
    refs = [Recorder.start() for _ in range(1000)]
    urns = [ref.actor_urn for ref in refs]
    assert len(set(urns)) == len(urns)
    for urn in urns[:50]:
        parsed = uuid.UUID(urn)
        assert parsed.urn == urn
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    assert str(actor_of(refs[0])) == f"Recorder ({urns[0]})"


async def test_actor_stopped_is_an_event_that_threads_can_wait_on() -> None:
    ref = Recorder.start()
    stopped = ref.actor_stopped
    assert not stopped.is_set()
    assert stopped.wait(0) is False  # nothing blocks: the flag is not set
    waiter = asyncio.ensure_future(asyncio.to_thread(stopped.wait, DEADLINE))
    await within(ref.stop())
    assert stopped.is_set()
    assert await within(waiter) is True
    assert stopped.wait() is True
    other = Recorder.start()
    await within(other.stop())
    assert other.actor_stopped.wait(0) is True  # set before anybody waited: no condition needed


class Shapes(AsyncioActor):
    """Attributes whose kind differs per instance, to check per-class introspection caching."""

    limit = 3  # a class attribute, plain value

    def __init__(self, hook: Any) -> None:
        super().__init__()
        self.hook = hook

    def method(self) -> str:
        return "method"


async def test_proxy_introspection_is_per_class_but_instance_attributes_win() -> None:
    callable_hook = Shapes.start(lambda: "called")
    plain_hook = Shapes.start("plain")
    assert await within(callable_hook.proxy().hook()) == "called"  # a method proxy
    assert await within(plain_hook.proxy().hook) == "plain"  # a value read, same class
    assert await within(callable_hook.proxy().method()) == "method"
    assert await within(plain_hook.proxy().method()) == "method"  # cached for the class
    assert await within(plain_hook.proxy().limit) == 3
    shadowed = Shapes.start(None)
    actor_of(shadowed).limit = 4  # the instance dict comes before the class
    assert await within(shadowed.proxy().limit) == 4
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        plain_hook.proxy().nothing_here  # noqa: B018
    Shapes.added_later = 5  # type: ignore[attr-defined]  # a name missing at first is looked up again
    try:
        assert await within(plain_hook.proxy().added_later) == 5
    finally:
        del Shapes.added_later  # type: ignore[attr-defined]


async def test_a_proxy_to_the_actor_itself_is_refused() -> None:
    class Selfish(AsyncioActor):
        def on_start(self) -> None:
            self.me = self.actor_ref.proxy()

    ref = Selfish.start()
    assert await within(ref.ask("anything")) is None  # on_start has run (on_receive: logged, None)
    with pytest.raises(AttributeError, match="proxy to the actor itself"):
        ref.proxy().me  # noqa: B018


async def test_many_actors_fan_out() -> None:
    refs = [Recorder.start() for _ in range(1000)]
    replies = await within(asyncio.gather(*(ref.proxy().add(i, 1) for i, ref in enumerate(refs))))
    assert replies == [i + 1 for i in range(1000)]
    await within(stop_all())
    assert not any(ref.is_alive() for ref in refs)


async def test_cancelling_the_actor_task_ends_it_abruptly() -> None:
    gate = asyncio.Event()
    ref = Silent.start(gate)
    busy = ref.ask("busy")
    queued = ref.ask("queued")
    await within(actor_of(ref).handling.wait())  # "busy" is in its handler
    actor_of(ref)._actor_task.cancel()
    with pytest.raises(ActorDeadError):
        await within(queued)
    with pytest.raises(ActorDeadError, match="cancelled"):
        await within(busy)  # its handler was cancelled with the task
    assert not ref.is_alive()
    assert await within(ref.stop()) is False


def test_starting_outside_the_loop_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="event loop"):
        Recorder.start()


def test_everything_runs_on_uvloop() -> None:
    async def scenario() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        ref = Recorder.start()
        assert await within(ref.proxy().slow_add(1, 1)) == 2
        ref.tell("t")
        assert await within(ref.ask("log")) == ["t"]
        assert (
            await within(asyncio.to_thread(ref.ask, "threaded", block=True, timeout=DEADLINE)) == "threaded"
        )
        gate = asyncio.Event()
        with pytest.raises(AskTimeout):
            await within(Silent.start(gate).ask("x", timeout=0.01))
        gate.set()  # a stop waits for the handler in progress
        await within(stop_all())
        assert live_actors() == []

    uvloop.run(scenario())


def test_benchmark_runs_and_reports_the_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # bench/ is not installed
    from bench import actor_ask

    result = actor_ask.run(seconds=0.2)
    for key in ("actor_ask_per_s", "queue_future_per_s", "actor_ask_ratio", "actor_ask_100_per_s"):
        assert result[key] > 0
