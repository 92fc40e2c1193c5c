"""The supervision tree: children, failure reports through the parent's mailbox, escalation, stops.

Synchronisation is by events and futures with deadlines (`within`), never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from pykka import ActorDeadError

from actors import AsyncActorRef, AsyncioActor, ChildFailedError, live_actors, stop_all

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


def actor_of(ref: AsyncActorRef[Any]) -> Any:
    actor = ref.actor_weakref()
    assert actor is not None
    return actor


class Node(AsyncioActor):
    """A tree node: records its lifecycle into a shared journal and can start children."""

    def __init__(self, name: str, journal: list[Any]) -> None:
        super().__init__()
        self.name = name
        self.journal = journal
        self.gate: asyncio.Event | None = None
        self.busy = asyncio.Event()

    def spawn(self, cls: type[Node], name: str) -> AsyncActorRef[Any]:
        return self.start_child(cls, name, self.journal)

    async def hold(self, gate: asyncio.Event) -> None:
        """Keep the actor busy until `gate` is set (messages pile up in its mailbox meanwhile)."""
        self.busy.set()
        await gate.wait()

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError(f"{self.name} exploded")
        self.journal.append((self.name, "got", message))
        return message

    async def on_stop(self) -> None:
        await asyncio.sleep(0)
        self.journal.append((self.name, "on_stop"))

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self.journal.append((self.name, "on_failure", repr(exception_value)))


class Supervisor(Node):
    """Handles its children's news itself (no escalation)."""

    async def on_child_failure(self, child_ref: AsyncActorRef[Any], exception: BaseException) -> None:
        await asyncio.sleep(0)
        self.journal.append((self.name, "child_failed", actor_of_name(child_ref), repr(exception)))

    def on_child_stopped(self, child_ref: AsyncActorRef[Any]) -> None:
        self.journal.append((self.name, "child_stopped", actor_of_name(child_ref)))


_names: dict[str, str] = {}


def actor_of_name(ref: AsyncActorRef[Any]) -> str:
    return _names[ref.actor_urn]


async def spawn(parent: AsyncActorRef[Any], cls: type[Node], name: str) -> AsyncActorRef[Any]:
    ref: AsyncActorRef[Any] = await within(parent.proxy().spawn(cls, name))
    _names[ref.actor_urn] = name
    return ref


def root(cls: type[Node], name: str, journal: list[Any]) -> AsyncActorRef[Any]:
    ref = cls.start(name, journal)
    _names[ref.actor_urn] = name
    return ref


async def test_start_child_records_the_tree() -> None:
    journal: list[Any] = []
    parent = root(Supervisor, "parent", journal)
    a = await spawn(parent, Node, "a")
    b = await spawn(parent, Node, "b")
    parent_actor = actor_of(parent)
    assert parent_actor.child_refs == [a, b]
    assert parent_actor.parent_ref is None
    assert actor_of(a).parent_ref == parent
    assert await within(a.ask("hi")) == "hi"


async def test_child_failure_arrives_in_the_parent_mailbox_in_order() -> None:
    journal: list[Any] = []
    parent = root(Supervisor, "parent", journal)
    child = await spawn(parent, Node, "child")
    gate = asyncio.Event()
    parent_actor = actor_of(parent)

    holding = parent.proxy().hold(gate)
    await within(parent_actor.busy.wait())
    parent.tell("m1")  # queued while the parent is busy
    child.tell("boom")
    assert await within(child.stop()) in (True, False)  # returns once the child has terminated
    assert not child.is_alive()
    parent.tell("m2")  # queued after the failure report
    gate.set()
    await within(holding)
    await within(parent.ask("sync"))

    events = [entry for entry in journal if entry[0] == "parent"]
    assert events[:3] == [
        ("parent", "got", "m1"),
        ("parent", "child_failed", "child", repr(ValueError("child exploded"))),
        ("parent", "got", "m2"),
    ]
    # The child was stopped (its on_failure ran) before the parent heard of it.
    assert journal.index(("child", "on_failure", repr(ValueError("child exploded")))) < journal.index(
        events[1]
    )
    assert parent_actor.child_refs == []
    assert parent.is_alive()


class BrokenStart(Node):
    async def on_start(self) -> None:
        raise OSError("no such device")


async def test_a_child_failing_in_on_start_is_reported() -> None:
    journal: list[Any] = []
    parent = root(Supervisor, "parent", journal)
    child = await spawn(parent, BrokenStart, "broken")
    assert await within(child.stop()) in (True, False)
    await within(parent.ask("sync"))
    assert ("parent", "child_failed", "broken", repr(OSError("no such device"))) in journal
    assert ("broken", "on_stop") not in journal


async def test_default_on_child_failure_escalates_up_the_tree() -> None:
    journal: list[Any] = []
    top = root(Supervisor, "top", journal)
    middle = await spawn(top, Node, "middle")  # default: escalate
    leaf = await spawn(middle, Node, "leaf")
    sibling = await spawn(middle, Node, "sibling")
    reported = asyncio.Event()
    failures: list[BaseException] = []
    top_actor = actor_of(top)

    def on_child_failure(child_ref: AsyncActorRef[Any], exception: BaseException) -> None:
        failures.append(exception)
        reported.set()

    top_actor.on_child_failure = on_child_failure
    leaf.tell("boom")
    await within(reported.wait())

    assert not middle.is_alive()
    assert not sibling.is_alive()  # the failing middle stopped its other children too
    assert top.is_alive()
    (escalated,) = failures
    assert isinstance(escalated, ChildFailedError)
    assert escalated.child_ref == leaf
    assert isinstance(escalated.root_cause, ValueError)
    assert escalated.__cause__ is escalated.exception
    # middle's children were down before middle's own on_failure ran
    assert journal.index(("sibling", "on_stop")) < [e[:2] for e in journal].index(("middle", "on_failure"))


class Restarter(Node):
    """Replaces a failed child by a fresh one."""

    def __init__(self, name: str, journal: list[Any]) -> None:
        super().__init__(name, journal)
        self.worker: AsyncActorRef[Any] | None = None
        self.restarted = asyncio.Event()

    def on_start(self) -> None:
        self.worker = self.start_child(Node, "worker", self.journal)

    async def on_child_failure(self, child_ref: AsyncActorRef[Any], exception: BaseException) -> None:
        assert child_ref == self.worker
        self.worker = self.start_child(Node, "worker-2", self.journal)
        self.restarted.set()

    def current(self) -> AsyncActorRef[Any] | None:
        return self.worker


async def test_a_parent_can_restart_a_failed_child() -> None:
    journal: list[Any] = []
    parent = Restarter.start("restarter", journal)
    first = await within(parent.proxy().current())
    first.tell("boom")
    await within(actor_of(parent).restarted.wait())
    second = await within(parent.proxy().current())
    assert second != first
    assert await within(second.ask("work")) == "work"
    assert actor_of(parent).child_refs == [second]


async def test_on_child_stopped_only_when_the_parent_is_running() -> None:
    journal: list[Any] = []
    parent = root(Supervisor, "parent", journal)
    child = await spawn(parent, Node, "child")
    other = await spawn(parent, Node, "other")
    assert await within(child.stop()) is True
    await within(parent.ask("sync"))
    assert ("parent", "child_stopped", "child") in journal
    await within(parent.stop())
    assert ("other", "on_stop") in journal
    assert ("parent", "child_stopped", "other") not in journal  # the parent was stopping itself
    assert not other.is_alive()


async def test_stop_takes_the_subtree_down_children_first() -> None:
    journal: list[Any] = []
    top = root(Node, "top", journal)
    a = await spawn(top, Node, "a")
    b = await spawn(top, Node, "b")
    a1 = await spawn(a, Node, "a1")
    a2 = await spawn(a, Node, "a2")
    b1 = await spawn(b, Node, "b1")
    refs = [top, a, b, a1, a2, b1]

    assert await within(top.stop()) is True
    assert not any(ref.is_alive() for ref in refs)  # all down when stop() returns
    stops = [entry[0] for entry in journal if entry[1:] == ("on_stop",)]
    assert sorted(stops) == sorted(["top", "a", "b", "a1", "a2", "b1"])
    assert stops[-1] == "top"
    assert stops.index("a1") < stops.index("a") and stops.index("a2") < stops.index("a")
    assert stops.index("b1") < stops.index("b")
    assert live_actors() == []


class WindingDown(Node):
    """Talks to its children while stopping, before they are stopped."""

    def on_start(self) -> None:
        self.start_child(Node, "worker-a", self.journal)
        self.start_child(Node, "worker-b", self.journal)

    async def on_stopping(self) -> None:
        replies = await asyncio.gather(*(child.ask("exit cleanly") for child in self.child_refs))
        self.journal.append((self.name, "on_stopping", replies))


async def test_on_stopping_runs_before_the_children_are_stopped() -> None:
    journal: list[Any] = []
    ref = WindingDown.start("parent", journal)
    await within(ref.stop())
    names = [(entry[0], entry[1]) for entry in journal]
    assert names.index(("parent", "on_stopping")) < names.index(("worker-a", "on_stop"))
    assert names.index(("parent", "on_stopping")) < names.index(("worker-b", "on_stop"))
    assert ("parent", "on_stopping", ["exit cleanly", "exit cleanly"]) in journal
    assert names[-1] == ("parent", "on_stop")


class Pair(Node):
    """Two siblings whose on_stop each wait for the other's: only a concurrent stop finishes."""

    def __init__(self, name: str, journal: list[Any], mine: asyncio.Event, theirs: asyncio.Event) -> None:
        super().__init__(name, journal)
        self.mine = mine
        self.theirs = theirs

    async def on_stop(self) -> None:
        self.mine.set()
        await self.theirs.wait()
        await super().on_stop()


class PairParent(Node):
    def on_start(self) -> None:
        x, y = asyncio.Event(), asyncio.Event()
        self.start_child(Pair, "x", self.journal, x, y)
        self.start_child(Pair, "y", self.journal, y, x)


async def test_siblings_stop_concurrently() -> None:
    journal: list[Any] = []
    parent = PairParent.start("parent", journal)
    await within(parent.ask("started"))
    assert await within(parent.stop()) is True
    assert [e[0] for e in journal if e[1:] == ("on_stop",)][-1] == "parent"


async def test_a_stopping_actor_cannot_start_children() -> None:
    errors: list[BaseException] = []

    class Late(Node):
        def on_stop(self) -> None:  # type: ignore[override]
            try:
                self.start_child(Node, "too-late", self.journal)
            except ActorDeadError as exc:
                errors.append(exc)

    ref = Late.start("late", [])
    await within(ref.stop())
    assert len(errors) == 1


async def test_messages_to_a_stopped_child_fail() -> None:
    journal: list[Any] = []
    parent = root(Supervisor, "parent", journal)
    child = await spawn(parent, Node, "child")
    await within(parent.stop())
    with pytest.raises(ActorDeadError):
        child.tell("hello")
    with pytest.raises(ActorDeadError):
        await within(child.ask("hello"))
    assert await within(child.stop()) is False


async def test_stop_all_stops_roots_last_started_first_with_their_subtrees() -> None:
    journal: list[Any] = []
    first = root(Node, "first", journal)
    second = root(Node, "second", journal)
    await spawn(first, Node, "first.child")
    await spawn(second, Node, "second.child")
    assert len(live_actors()) == 4

    await within(stop_all())

    stops = [entry[0] for entry in journal if entry[1:] == ("on_stop",)]
    assert stops == ["second.child", "second", "first.child", "first"]
    assert live_actors() == []


async def test_stop_all_waits_for_actors_already_stopping() -> None:
    release = asyncio.Event()

    stopping_began = asyncio.Event()

    class Slow(Node):
        async def on_stop(self) -> None:
            stopping_began.set()
            await release.wait()
            await super().on_stop()

    journal: list[Any] = []
    ref = Slow.start("slow", journal)
    stopping = ref.stop()
    await within(stopping_began.wait())
    assert not ref.is_alive()  # pykka: no longer alive once stopping begins
    shutdown = asyncio.ensure_future(stop_all())
    shutdown.add_done_callback(lambda _: journal.append(("stop_all", "done")))
    release.set()
    await within(shutdown)
    assert stopping.done()
    # stop_all returned only after the actor it found stopping had finished its on_stop.
    assert journal == [("slow", "on_stop"), ("stop_all", "done")]
