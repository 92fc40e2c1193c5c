"""The supervision tree: who started whom, what a parent hears when a child ends, and shutdown.

Every actor of the asyncio runtime owns one `SupervisionNode`. The node records the actor's parent
and children; the runtime (`actors.runtime`) calls into it at three points of an actor's life:

- when an actor starts a child (`AsyncioActor.start_child`): `adopt`;
- when an actor stops or fails: `stop_children` first, so a subtree always stops bottom-up and an
  actor's `on_stop`/`on_failure` can rely on its children being gone;
- when an actor has fully terminated: `detach`, which tells the parent, *through the parent's own
  mailbox*, `ChildFailed` or `ChildStopped`. Going through the mailbox (rather than calling the
  parent directly) keeps the actor model: the parent handles the news in order with its other
  messages, one at a time, in its own task.

The module also keeps the set of live actors per event loop, which is what `stop_all` walks at
shutdown. pykka's `ActorRegistry` is not enough for that: an actor leaves the registry as soon as it
*begins* to stop (pykka semantics), while shutdown must wait until it has *finished* stopping.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from actors.runtime import AsyncActorRef

__all__ = [
    "ChildFailed",
    "ChildFailedError",
    "ChildStopped",
    "SupervisionNode",
    "live_actors",
    "stop_all",
]


class ChildFailed(NamedTuple):
    """Mailbox message: a child died of an unhandled exception (dispatched to `on_child_failure`)."""

    child_ref: AsyncActorRef[Any]
    exception: BaseException


class ChildStopped(NamedTuple):
    """Mailbox message: a child stopped normally while its parent ran (dispatched to `on_child_stopped`)."""

    child_ref: AsyncActorRef[Any]


class ChildFailedError(Exception):
    """Raised by the default `on_child_failure`: the parent fails because its child failed (escalation).

    The child's exception is both `exception` and `__cause__`, so the log of the actor that finally
    handles (or dies of) the failure shows the original traceback.
    """

    def __init__(self, child_ref: AsyncActorRef[Any], exception: BaseException) -> None:
        super().__init__(f"child {child_ref} failed: {exception!r}")
        self.child_ref = child_ref
        self.exception = exception

    @property
    def root_cause(self) -> BaseException:
        """The exception at the bottom of a chain of escalations."""
        exception: BaseException = self.exception
        while isinstance(exception, ChildFailedError):
            exception = exception.exception
        return exception


class SupervisionNode:
    """One actor's place in the tree. Only touched on the event loop thread, so no locking."""

    __slots__ = ("children", "loop", "parent", "ref")

    def __init__(self, ref: AsyncActorRef[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.ref = ref
        self.loop = loop
        self.parent: SupervisionNode | None = None
        self.children: dict[str, SupervisionNode] = {}

    def adopt(self, child: SupervisionNode) -> None:
        """Record `child` as ours; it reports to us from now on."""
        child.parent = self
        self.children[child.ref.actor_urn] = child

    async def stop_children(self) -> None:
        """Stop every child concurrently and wait until each one (and its subtree) has terminated.

        Siblings stop concurrently so that a slow `on_stop` in one branch does not hold up the others;
        each child stops its own children before itself, so the whole subtree goes down depth-first.
        """
        children = list(self.children.values())
        if children:
            await asyncio.gather(*[child.ref.stop() for child in children])

    def detach(self, failure: BaseException | None) -> None:
        """Leave the tree after termination and tell the parent how we ended.

        The parent is told only while it is still running: a parent that is itself stopping (which is
        why its children are being stopped) has closed its mailbox and needs no news.
        """
        _unregister(self)
        parent = self.parent
        if parent is None:
            return
        parent.children.pop(self.ref.actor_urn, None)
        mailbox = parent.ref.actor_inbox
        if mailbox.closed:
            return
        news = ChildStopped(self.ref) if failure is None else ChildFailed(self.ref, failure)
        parent.ref.tell(news)


# Live (started, not yet terminated) actors per event loop, in start order.
_live: dict[asyncio.AbstractEventLoop, dict[str, SupervisionNode]] = {}


def register(node: SupervisionNode) -> None:
    """Count `node`'s actor as live on its loop (called when its task is created)."""
    _live.setdefault(node.loop, {})[node.ref.actor_urn] = node


def _unregister(node: SupervisionNode) -> None:
    nodes = _live.get(node.loop)
    if nodes is None:
        return
    nodes.pop(node.ref.actor_urn, None)
    if not nodes:
        # Drop the loop's entry so a closed loop is not kept alive by this module.
        del _live[node.loop]


def live_actors(loop: asyncio.AbstractEventLoop | None = None) -> list[AsyncActorRef[Any]]:
    """Refs of the actors started on `loop` (default: the running loop) that have not terminated yet."""
    if loop is None:
        loop = asyncio.get_running_loop()
    return [node.ref for node in _live.get(loop, {}).values()]


async def stop_all() -> None:
    """Stop every actor of the running loop and wait until all of them have terminated.

    Root actors (no parent, or a parent already gone) are stopped one at a time, last started first,
    like pykka's `ActorRegistry.stop_all`: a root started later may depend on one started earlier.
    Each root takes its subtree down with it. Actors started while shutting down are stopped too.
    Use this, not pykka's blocking `ActorRegistry.stop_all()`, on the event loop.
    """
    loop = asyncio.get_running_loop()
    while nodes := _live.get(loop):
        roots = [
            node for node in nodes.values() if node.parent is None or node.parent.ref.actor_urn not in nodes
        ]
        for node in reversed(roots or list(nodes.values())):
            await node.ref.stop()
