"""pykka actors on the asyncio event loop: one mailbox and one task per actor, no threads.

pykka 4 ships only a thread-per-actor runtime whose futures block when awaited; a control system with
thousands of task actors on one uvloop needs actors that are cheap coroutines instead. This module is
a small runtime of our own that keeps pykka's semantics and vocabulary (refs, `tell`/`ask`/`stop`,
proxies with pykka's attribute rules and its public `pykka.messages`, `ActorDeadError`,
`pykka.Timeout`, the `on_start`/`on_stop`/`on_failure`/`on_receive` hooks) without subclassing
pykka's `Actor`, `ActorRef`, `ActorProxy` or `Future`. Why not subclass them: filling pykka's
runtime slots (its inbox, future and loop-start methods) still runs pykka's `Actor.__init__` (a uuid4
from `os.urandom`, a `threading.Event`), its eager proxy introspection (about 150 us per actor) and
its registry (a list scanned on every unregister: O(N^2) when 10,000 task actors stop, 1.8 s), and
replacing those costs meant reaching into pykka's private modules, which any minor release may
change. Here everything pykka-shaped is ours, at O(1) per actor, and only pykka's public names are
used (tests/test_private_names.py fails otherwise). Live actors are found through
`actors.supervision` (`live_actors`, `stop_all`), not through pykka's `ActorRegistry`.

How to use it::

    class Counter(AsyncioActor):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        async def add(self, n: int) -> int:  # handlers may be `async def` or plain
            await asyncio.sleep(0)  # awaiting inside a handler never blocks the loop
            self.count += n
            return self.count

    ref = Counter.start()  # on the loop thread, from a coroutine or a loop callback
    assert await ref.proxy().add(2) == 2
    assert await ref.proxy().count == 2
    await ref.stop()  # returns once the actor (and its children) have terminated

Semantics, message by message:

- An actor handles its messages strictly one at a time, in arrival order (FIFO per sender). When a
  handler returns a coroutine (`async def` handlers), it is awaited inside the actor's task before
  the next message is taken. Only coroutines are awaited: a plain handler returning a future (say,
  another actor's reply) replies with that future.
- `ask` (and proxy calls/reads): the handler's exception is set on the reply future and the actor
  keeps running.
- `tell` (and `CallableProxy.defer`): an exception makes the actor fail: `on_failure` runs (after
  its children were stopped), the actor terminates and its parent is told (`on_child_failure`).
- `stop`: messages queued before the stop request are handled first; then `on_stopping` runs
  (children still running), then the children are stopped, then `on_stop` runs. Messages queued
  behind the stop request are not handled: asks among them fail with `ActorDeadError`, tells are
  dropped (pykka's behaviour). Once the stop request is taken from the mailbox, `tell` raises
  `ActorDeadError` and `ask` returns a future failed with it. A stop waits for the handler in
  progress: an actor stuck in a handler does not stop (give such work a deadline).
- A failing `on_start` stops the actor without `on_stop` or `on_failure` (pykka's behaviour) and
  reports the failure to the parent.

The actor's task being cancelled (e.g. by `asyncio.run` tearing down a loop with live actors) ends
it abruptly: no `on_stop`, children are not stopped, queued asks fail with `ActorDeadError`. Shut
down with `await stop_all()` (in `actors.supervision`) before the loop ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import sys
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import CoroutineType, TracebackType
from typing import (
    Any,
    Concatenate,
    Generic,
    Literal,
    NamedTuple,
    ParamSpec,
    Protocol,
    Self,
    TypeVar,
    cast,
    overload,
)

import pykka
from pykka import ActorDeadError
from pykka.messages import ProxyCall, ProxyGetAttr, ProxySetAttr

from actors.supervision import ChildFailed, ChildFailedError, ChildStopped, SupervisionNode, register

__all__ = [
    "AskTimeout",
    "AsyncActorProxy",
    "AsyncActorRef",
    "AsyncioActor",
    "AsyncioFuture",
    "BlockingGetError",
    "CallableProxy",
    "Mailbox",
    "proxied",
    "traversable",
]

logger = logging.getLogger(__name__)
_pykka_logger = logging.getLogger("pykka")

T = TypeVar("T")
J = TypeVar("J")
M = TypeVar("M")
R = TypeVar("R")
A = TypeVar("A", bound="AsyncioActor[Any]")
A_co = TypeVar("A_co", bound="AsyncioActor[Any]", covariant=True)
PX = TypeVar("PX")  # an actor's typed proxy (see `proxied`)
P = ParamSpec("P")

#: A proxy attribute path, as in pykka's messages: ("settings", "level").
AttrPath = tuple[str, ...]

_get_ident = threading.get_ident
# Replies go to our own futures only (AsyncActorRef creates them): call asyncio's C method directly.
_set_result: Callable[[Any, Any], None] = asyncio.Future.set_result


class _Stop:
    """The stop request in a mailbox (pykka's own stop message is private to pykka)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<stop request>"


_STOP = _Stop()


#: A mailbox entry: the message and, for an ask, the future its reply goes to. A plain tuple: it
#: is made once per message, on the hottest path of the runtime.
Envelope = tuple[Any, "asyncio.Future[Any] | None"]


def traversable(obj: T) -> T:
    """Mark an actor attribute (or a class) as traversable: proxies reach into its own attributes.

    It sets `pykka_traversable = True`, the marker pykka documents for doing this by hand, so an
    object marked here is traversable for pykka's own proxies too.
    """
    if hasattr(obj, "__slots__"):
        msg = f"{type(obj).__name__} uses __slots__ and cannot be marked traversable"
        raise ValueError(msg)
    obj.pykka_traversable = True  # type: ignore[attr-defined]
    return obj


def _new_urn() -> str:
    """A random (version 4) UUID URN, as pykka's `uuid.uuid4().urn`, at a third of the cost.

    122 random bits from `random.getrandbits` (reseeded in forked children by the random module)
    instead of `os.urandom`: actor URNs must be unique, not unpredictable.
    """
    h = f"{_getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_getrandbits = random.getrandbits
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)  # version and variant bits
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


class StoppedFlag:
    """`Actor.actor_stopped`: the API of a `threading.Event`, whose condition is made on first `wait`.

    pykka gives every actor a `threading.Event` (a `Condition` and a `Lock`), but on this runtime
    only the event loop thread sets it and hardly anybody waits on it (`is_set` is what refs use).
    Same API and thread safety; `set` is lock-free until a thread waits.
    """

    __slots__ = ("cond", "flag")

    _lock = threading.Lock()  # guards the lazy creation of `cond` (shared: it is held for nanoseconds)

    def __init__(self) -> None:
        self.flag = False
        self.cond: threading.Condition | None = None

    def _condition(self) -> threading.Condition:
        cond = self.cond
        if cond is None:
            with self._lock:
                cond = self.cond
                if cond is None:
                    cond = self.cond = threading.Condition(threading.Lock())
        return cond

    def is_set(self) -> bool:
        return self.flag

    def set(self) -> None:
        # The flag is written before the condition is read, and `wait` creates the condition before
        # reading the flag: a waiter either sees the flag or is notified.
        self.flag = True
        cond = self.cond
        if cond is not None:
            with cond:
                cond.notify_all()

    def clear(self) -> None:
        cond = self.cond
        if cond is None:
            self.flag = False
        else:
            with cond:
                self.flag = False

    def wait(self, timeout: float | None = None) -> bool:
        if self.flag:
            return True
        cond = self._condition()
        with cond:
            signaled: bool = self.flag
            if not signaled:
                signaled = cond.wait(timeout)
            return signaled


_ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]


def _loop_running_here() -> bool:
    """Whether this thread runs an event loop (public API: `get_running_loop` raises if not)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class BlockingGetError(RuntimeError):
    """A blocking `Future.get()` was called on a thread that runs an event loop.

    Blocking there would freeze every actor on the loop, and when the awaited reply must come from
    that same loop, deadlock. Raising is the only safe answer: use `await future` instead.
    """


class AskTimeout(pykka.Timeout, TimeoutError):
    """An actor did not reply (or stop) within the caller's deadline.

    A `pykka.Timeout` for pykka code and a `TimeoutError` for asyncio code (`except TimeoutError`
    catches it like an `asyncio.wait_for` timeout). The message names the actor and the request.
    """


def _describe(message: Any) -> str:
    """A short human description of a request, for timeout messages."""
    if type(message) is ProxyCall:
        return f"call of {'.'.join(message.attr_path)}()"
    if type(message) is ProxyGetAttr:
        return f"read of attribute {'.'.join(message.attr_path)}"
    if type(message) is ProxySetAttr:
        return f"write of attribute {'.'.join(message.attr_path)}"
    text = repr(message)
    return text if len(text) <= 120 else text[:117] + "..."


def _expire(future: asyncio.Future[Any], what: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(AskTimeout(f"{what} within {timeout:g} s"))


def _arm_timeout(future: asyncio.Future[Any], timeout: float, what: Callable[[], str]) -> None:
    """Fail `future` with `AskTimeout` after `timeout` s; the timer is cancelled if it completes first.

    A timer handle rather than `asyncio.wait_for` so that a deadline costs no extra task.
    """
    loop = future.get_loop()
    handle = loop.call_later(timeout, lambda: _expire(future, what(), timeout))
    future.add_done_callback(lambda _future: handle.cancel())


class AsyncioFuture(asyncio.Future[T]):
    """An `asyncio.Future` with the API of a pykka `Future`.

    Being a real asyncio future (not a wrapper) matters for speed and for composition: `await` costs
    nothing extra, and `asyncio.gather`/`wait`/`wait_for`/`as_completed` take it as is, without
    wrapping each reply in a task (fan-outs to thousands of actors rely on that).

    pykka's API is kept: `set`, `set_exception(exc_info)`, `map`/`filter`/`join`/`reduce` (which
    return new awaitable futures), and `get()`, which blocks only off the loop: called on a thread that
    runs an event loop it raises `BlockingGetError`, always, instead of freezing or deadlocking it.
    Get hooks are not supported (they can only be evaluated by blocking).
    """

    def set(self, value: T | None = None) -> None:
        """pykka's name for `set_result`."""
        self.set_result(value)  # type: ignore[arg-type]

    def set_exception(  # type: ignore[override]
        self,
        exc_info: BaseException | type[BaseException] | _ExcInfo | None = None,
    ) -> None:
        """Accept both conventions: asyncio's exception object/class and pykka's `exc_info` triple."""
        exception: BaseException | type[BaseException] | None
        if exc_info is None:
            exception = sys.exc_info()[1]
        elif isinstance(exc_info, tuple):
            exc_type, exception, traceback = exc_info
            if exception is None and exc_type is not None:
                exception = exc_type()
            if isinstance(exception, BaseException) and traceback is not None:
                exception = exception.with_traceback(traceback)
        else:
            exception = exc_info
        if exception is None:
            msg = "set_exception() without an exception outside of an except block"
            raise TypeError(msg)
        asyncio.Future.set_exception(self, exception)

    def get(self, *, timeout: float | None = None) -> T:
        """Block the calling thread until the result is there; never on an event loop thread."""
        if _loop_running_here():
            msg = (
                "blocking Future.get() on an event loop thread would freeze the loop "
                "(and deadlock if the reply must come from it): use `await future` instead"
            )
            raise BlockingGetError(msg)
        if not self.done():
            finished = threading.Event()
            try:
                self.get_loop().call_soon_threadsafe(self.add_done_callback, lambda _f: finished.set())
            except RuntimeError as exc:  # the loop is closed: the result can never come
                raise ActorDeadError(f"the event loop of this future is closed: {exc}") from exc
            if not finished.wait(timeout):
                raise pykka.Timeout(f"{timeout} seconds")
        return self.result()

    def set_get_hook(self, func: Callable[[float | None], T]) -> None:
        """Not supported: a get hook can only be evaluated by blocking. Use `map()` or callbacks."""
        msg = "AsyncioFuture does not support get hooks; use map() or add_done_callback()"
        raise NotImplementedError(msg)

    def _derive(self, sources: list[asyncio.Future[Any]], combine: Callable[[list[Any]], Any]) -> Any:
        """A new future resolved with `combine(results)` once all `sources` succeed, or their failure."""
        out: AsyncioFuture[Any] = AsyncioFuture(loop=self.get_loop())
        remaining = len(sources)

        def on_done(source: asyncio.Future[Any]) -> None:
            nonlocal remaining
            if out.done():
                return
            if source.cancelled():
                out.cancel()
                return
            exception = source.exception()
            if exception is not None:
                out.set_exception(exception)
                return
            remaining -= 1
            if remaining == 0:
                try:
                    value = combine([s.result() for s in sources])
                except Exception as exc:
                    out.set_exception(exc)
                else:
                    out.set_result(value)

        for source in sources:
            source.add_done_callback(on_done)
        return out

    def map(self, func: Callable[[T], M]) -> AsyncioFuture[M]:
        """Like pykka's `map`, but awaitable: the function runs in a done-callback on the loop."""
        return cast("AsyncioFuture[M]", self._derive([self], lambda values: func(values[0])))

    def filter(self: AsyncioFuture[Iterable[J]], func: Callable[[J], bool]) -> AsyncioFuture[Iterable[J]]:
        """Like pykka's `filter`, but awaitable."""
        return cast(
            "AsyncioFuture[Iterable[J]]", self._derive([self], lambda values: list(filter(func, values[0])))
        )

    def join(self, *futures: asyncio.Future[Any]) -> AsyncioFuture[Iterable[Any]]:
        """Like pykka's `join`, but awaitable; all futures must be asyncio futures of the same loop."""
        sources: list[asyncio.Future[Any]] = [self]
        for future in futures:
            if not isinstance(future, asyncio.Future):
                msg = f"can only join asyncio futures, not {future!r}"
                raise TypeError(msg)
            sources.append(future)
        return cast("AsyncioFuture[Iterable[Any]]", self._derive(sources, list))

    def reduce(self: AsyncioFuture[Iterable[J]], func: Callable[[R, J], R], *args: R) -> AsyncioFuture[R]:
        """Like pykka's `reduce`, but awaitable."""
        return cast(
            "AsyncioFuture[R]", self._derive([self], lambda values: functools.reduce(func, values[0], *args))
        )


def _fail_quietly(future: asyncio.Future[Any], exception: BaseException) -> None:
    """Set `exception` on a reply future unless the asker already gave up (timeout, cancel)."""
    with contextlib.suppress(asyncio.InvalidStateError):
        future.set_exception(exception)


class Mailbox:
    """An actor's inbox: a deque, plus the future the idle actor task sleeps on.

    Lighter than `asyncio.Queue` (no size limit, no putter bookkeeping): putting a message is a
    deque append and, only if the actor is idle, one `set_result`. Puts from another thread are
    handed to the loop with `call_soon_threadsafe`, which keeps each sending thread's order.

    The mailbox also holds the state that refs need without touching the actor object: `closed`
    (stopping has begun: no more messages accepted), `terminated` (fully stopped) and the futures of
    `stop()` callers waiting for termination.
    """

    __slots__ = ("closed", "loop", "queue", "stop_waiters", "terminated", "thread_id", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread_id = _get_ident()
        self.queue: deque[Envelope] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.terminated = False
        self.stop_waiters: list[asyncio.Future[bool]] = []

    def put(self, envelope: Envelope, /) -> None:
        """Enqueue `envelope`, from the loop thread or (thread-safely) from any other thread."""
        if _get_ident() != self.thread_id:
            try:
                self.loop.call_soon_threadsafe(self._put_from_thread, envelope)
            except RuntimeError as exc:  # the loop is closed: nothing will ever handle it
                raise ActorDeadError(f"the actor's event loop is closed ({exc})") from exc
            return
        self.queue.append(envelope)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            try:  # noqa: SIM105 (hot path: cheaper than contextlib.suppress)
                waiter.set_result(None)
            except asyncio.InvalidStateError:  # the actor task was cancelled while idle
                pass

    def _put_from_thread(self, envelope: Envelope) -> None:
        # The sender checked `closed` on its thread; by the time we run on the loop it may have
        # changed. Answer as if the message had been sent after the stop (which it now is).
        if self.closed:
            reply_to = envelope[1]
            if reply_to is not None:
                _fail_quietly(reply_to, ActorDeadError("the actor stopped before the message arrived"))
            return
        self.put(envelope)

    def request_stop(self, future: asyncio.Future[bool]) -> None:
        """Ask for a stop; `future` resolves True at termination, or False if already terminated."""
        if self.terminated:
            future.set_result(False)
        elif self.closed:
            self.stop_waiters.append(future)
        else:
            self.put((_STOP, future))

    def get(self) -> Envelope:
        """Take the next envelope (pykka's inbox protocol; the actor task reads `queue` directly)."""
        return self.queue.popleft()

    def empty(self) -> bool:
        """Whether no message is waiting (pykka's inbox protocol)."""
        return not self.queue


class AsyncActorRef(Generic[A_co]):
    """A ref to an `AsyncioActor`, with pykka's `ActorRef` API; `ask` and `stop` return awaitables.

    - `tell(message)`: enqueue, no reply. Thread-safe. Raises `ActorDeadError` once stopping began.
    - `ask(message, timeout=None)`: an `AsyncioFuture` of the reply; `await` it. With `timeout` (s)
      the future fails with `AskTimeout` naming the actor. `block=True` blocks for the reply (off the
      loop only, see `AsyncioFuture.get`).
    - `call(Actor.method, *args, timeout=None, **kwargs)`: a typed ask of one method (see `call`).
    - `stop(timeout=None)`: an `AsyncioFuture[bool]`, True once the actor and its subtree have
      terminated, False if it had already terminated. Do not await your own stop from inside the
      actor (that waits for itself forever): call `self.stop()` there and return.
    - `proxy()`: an `AsyncActorProxy`, cached per ref, whose calls and attribute reads return
      `AsyncioFuture`s. Attribute *writes* through a proxy are fire-and-forget on this runtime.

    There is one ref object per actor (the tree and `start()` hand out the same one), so refs
    compare and hash by identity, as in pykka.
    """

    __slots__ = (
        "__weakref__",
        "_proxy",
        "actor_class",
        "actor_inbox",
        "actor_stopped",
        "actor_urn",
        "actor_weakref",
    )

    def __init__(self, actor: A_co) -> None:
        self.actor_weakref: weakref.ReferenceType[A_co] = weakref.ref(actor)
        self.actor_class: type[A_co] = type(actor)
        self.actor_urn: str = actor.actor_urn
        self.actor_inbox: Mailbox = actor.actor_inbox
        self.actor_stopped: StoppedFlag = actor.actor_stopped
        self._proxy: AsyncActorProxy[A_co] | None = None

    def __repr__(self) -> str:
        return f"<ActorRef for {self}>"

    def __str__(self) -> str:
        return f"{self.actor_class.__name__} ({self.actor_urn})"

    def is_alive(self) -> bool:
        """Whether the actor still accepts messages (False once stopping has begun)."""
        return not self.actor_stopped.flag

    def _dead(self) -> ActorDeadError:
        return ActorDeadError(f"{self} is not running (stopped or failed)")

    def tell(self, message: Any) -> None:
        """Send `message` without waiting for a reply (thread-safe)."""
        if self.actor_inbox.closed:
            raise self._dead()
        self.actor_inbox.put((message, None))

    @overload
    def ask(
        self, message: Any, *, block: Literal[False] = False, timeout: float | None = None
    ) -> AsyncioFuture[Any]: ...

    @overload
    def ask(self, message: Any, *, block: Literal[True], timeout: float | None = None) -> Any: ...

    @overload
    def ask(self, message: Any, *, block: bool = ..., timeout: float | None = None) -> Any: ...

    def ask(self, message: Any, *, block: bool = False, timeout: float | None = None) -> Any:
        """Send `message` and return a future of the reply (see the class docstring)."""
        mailbox = self.actor_inbox
        future: AsyncioFuture[Any] = AsyncioFuture(loop=mailbox.loop)
        if mailbox.closed:
            future.set_exception(self._dead())
        elif _get_ident() == mailbox.thread_id:
            # Hot path: inline Mailbox.put.
            mailbox.queue.append((message, future))
            waiter = mailbox.waiter
            if waiter is not None:
                mailbox.waiter = None
                try:  # noqa: SIM105 (hot path: cheaper than contextlib.suppress)
                    waiter.set_result(None)
                except asyncio.InvalidStateError:  # the actor task was cancelled while idle
                    pass
            if timeout is not None:
                _arm_timeout(future, timeout, lambda: f"{self} did not reply to {_describe(message)}")
        else:
            try:
                mailbox.loop.call_soon_threadsafe(self._ask_from_thread, (message, future), timeout)
            except RuntimeError as exc:  # loop closed
                future.set_exception(ActorDeadError(f"{self}: its event loop is closed ({exc})"))
        if block:
            return future.get(timeout=timeout)
        return future

    @overload
    def call(
        self,
        method: Callable[Concatenate[A_co, P], Coroutine[Any, Any, R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> AsyncioFuture[R]: ...

    @overload
    def call(
        self, method: Callable[Concatenate[A_co, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncioFuture[R]: ...

    def call(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncioFuture[Any]:
        """Ask the actor to run `method` (named through its class: `ref.call(Task.kill, 5)`): typed.

        The same message as `ref.proxy().kill(5)`, but mypy checks that `method` belongs to the
        actor's class, that the arguments fit its signature, and knows what the reply is: a wrong
        message is a type error, not a runtime surprise. The method must be public.
        """
        name = method.__name__
        if name.startswith("_"):
            msg = f"{self}: {name!r} is private and cannot be called through a ref"
            raise AttributeError(msg)
        return cast("AsyncioFuture[Any]", self.ask(ProxyCall(attr_path=(name,), args=args, kwargs=kwargs)))

    def _ask_from_thread(self, envelope: Envelope, timeout: float | None) -> None:
        self.actor_inbox._put_from_thread(envelope)
        message, future = envelope
        if timeout is not None and future is not None and not future.done():
            _arm_timeout(future, timeout, lambda: f"{self} did not reply to {_describe(message)}")

    @overload
    def stop(self, *, block: Literal[True], timeout: float | None = None) -> bool: ...

    @overload
    def stop(self, *, block: Literal[False] = False, timeout: float | None = None) -> AsyncioFuture[bool]: ...

    @overload
    def stop(self, *, block: bool = ..., timeout: float | None = None) -> Any: ...

    def stop(self, *, block: bool = False, timeout: float | None = None) -> Any:
        """Ask the actor to stop; the future resolves when it (and its subtree) has terminated."""
        mailbox = self.actor_inbox
        future: AsyncioFuture[bool] = AsyncioFuture(loop=mailbox.loop)
        if _get_ident() == mailbox.thread_id:
            self._request_stop(future, timeout)
        else:
            try:
                mailbox.loop.call_soon_threadsafe(self._request_stop, future, timeout)
            except RuntimeError:  # loop closed: nothing runs there any more
                future.set_result(False)
        if block:
            return future.get(timeout=timeout)
        return future

    def _request_stop(self, future: AsyncioFuture[bool], timeout: float | None) -> None:
        self.actor_inbox.request_stop(future)
        if timeout is not None and not future.done():
            _arm_timeout(future, timeout, lambda: f"{self} did not stop")

    def proxy(self: AsyncActorRef[AsyncioActor[PX]]) -> PX:
        """A proxy to the actor (cached); raises `ActorDeadError` if it is not running.

        Typed as the actor's declared proxy (`class TaskActor(AsyncioActor["TaskProxy"])`, see
        `proxied`), so mypy checks what is sent through it; an actor that declares none gives an
        unchecked proxy.
        """
        proxy = self._proxy
        if proxy is None or self.actor_inbox.closed:
            proxy = AsyncActorProxy(actor_ref=self)
            self._proxy = proxy
        return cast("PX", proxy)


class ProxiedMethod(Protocol[P, R]):
    """How a method looks through a proxy: same parameters, the result as a future."""

    def __get__(self, instance: Any, owner: type | None = None) -> Callable[P, AsyncioFuture[R]]: ...


@overload
def proxied(method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]) -> ProxiedMethod[P, R]: ...


@overload
def proxied(method: Callable[Concatenate[Any, P], R]) -> ProxiedMethod[P, R]: ...


def proxied(method: Callable[..., Any]) -> Any:
    """Declare a method of an actor's typed proxy from the actor's own method (no signature copied).

    An actor declares what callers may send it as a class, and names it as its type parameter::

        class TaskActor(AsyncioActor["TaskProxy"]): ...

        class TaskProxy:
            kill = proxied(TaskActor.kill)  # proxy.kill(5): an AsyncioFuture of kill's result
            critical: AsyncioFuture[bool]  # an attribute read

    `ref.proxy()` of an `AsyncActorRef[TaskActor]` is then a `TaskProxy` for mypy: a method the
    Protocol does not list, or wrong arguments, is a type error. At run time this returns `method`.
    """
    return method


class _AttrInfo(NamedTuple):
    """How a proxy exposes an attribute: a method (callable), a nested proxy (traversable), a value."""

    callable: bool
    traversable: bool


# Actor class (or the class of a traversable attribute) -> attribute name -> its proxy classification.
# Weak keys: classes made on the fly (in tests, say) are not kept alive by the cache.
_class_attr_infos: weakref.WeakKeyDictionary[type, dict[str, _AttrInfo]] = weakref.WeakKeyDictionary()


class CallableProxy(Generic[A]):
    """A proxied method: call it for an ask (a future of the result), `defer` it for a tell.

    pykka's `CallableProxy`, typed for our refs.
    """

    __slots__ = ("actor_ref", "attr_path")

    def __init__(self, *, actor_ref: AsyncActorRef[A], attr_path: AttrPath) -> None:
        self.actor_ref = actor_ref
        self.attr_path = attr_path

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncioFuture[Any]:
        return self.actor_ref.ask(ProxyCall(attr_path=self.attr_path, args=args, kwargs=kwargs))

    def defer(self, *args: Any, **kwargs: Any) -> None:
        """Call without waiting for the result; an exception fails the actor (tell semantics)."""
        self.actor_ref.tell(ProxyCall(attr_path=self.attr_path, args=args, kwargs=kwargs))


class AsyncActorProxy(Generic[A]):
    """pykka's `ActorProxy` semantics, introspecting the actor lazily, one attribute at a time.

    pykka's proxy introspects every attribute of the actor when it is built (about 150 us for a
    small actor), which dominates the first call to each of thousands of task actors. This one
    classifies an attribute (method, traversable, plain value) the first time it is used, with
    pykka's rules: private (`_`) names are hidden, values are looked up in the instance and class
    dicts, traversable attributes (`traversable`, or `pykka_traversable = True`) give nested
    proxies, proxies to the actor itself are refused.
    """

    actor_ref: AsyncActorRef[A]

    def __init__(self, *, actor_ref: AsyncActorRef[A], attr_path: AttrPath | None = None) -> None:
        if not actor_ref.is_alive():
            raise ActorDeadError(f"{actor_ref} not found")
        actor = actor_ref.actor_weakref()
        if actor is None:
            raise ActorDeadError(f"{actor_ref}'s actor weakref has been deallocated")
        # Straight into the instance dict: __setattr__ turns public names into remote writes.
        self.__dict__.update(
            actor_ref=actor_ref,
            _actor=actor,
            _attr_path=attr_path or (),
            _known_attrs={},
            _actor_proxies={},
            _callable_proxies={},
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AsyncActorProxy):
            return False
        return bool(self._actor is other._actor and self._attr_path == other._attr_path)

    def __hash__(self) -> int:
        return hash((id(self._actor), self._attr_path))

    def __repr__(self) -> str:
        return f"<ActorProxy for {self.actor_ref}, attr_path={self._attr_path!r}>"

    def __dir__(self) -> list[str]:
        target: Any = self._actor
        for step in self._attr_path:
            target = getattr(target, step)
        names = {name for name in dir(target) if not name.startswith("_")}
        names.update(path[-1] for path in self._known_attrs)
        return sorted({"__class__", *type(self).__dict__, *self.__dict__, *names})

    def __setattr__(self, name: str, value: Any) -> None:
        """Write an attribute of the actor (fire-and-forget, ordered with the following messages)."""
        if name == "actor_ref" or name.startswith("_"):
            super().__setattr__(name, value)
            return
        self.actor_ref.ask(ProxySetAttr(attr_path=(*self._attr_path, name), value=value))

    def _introspect(self, attr_path: AttrPath) -> _AttrInfo:
        name = attr_path[-1]
        if name.startswith("_"):
            raise AttributeError(self._missing(name))
        parent: Any = self._actor
        for step in attr_path[:-1]:
            parent = getattr(parent, step)
        # pykka's lookup: the instance dict first, then the class dicts along the MRO (descriptors
        # are not invoked). What a class attribute is does not depend on the instance, so it is
        # classified once per class and name.
        instance_dict = getattr(parent, "__dict__", None)
        if instance_dict is not None and name in instance_dict:
            return self._classify(instance_dict[name], name)
        per_class = _class_attr_infos.get(type(parent))
        if per_class is None:
            per_class = _class_attr_infos[type(parent)] = {}
        info = per_class.get(name)
        if info is not None:
            return info
        for klass in type(parent).__mro__:
            klass_dict = klass.__dict__
            if name in klass_dict:
                attr = klass_dict[name]
                break
        else:
            raise AttributeError(self._missing(name))
        info = self._classify(attr, name)
        if not isinstance(attr, AsyncActorProxy):  # a proxy's verdict depends on which actor asks
            per_class[name] = info
        return info

    def _classify(self, attr: Any, name: str) -> _AttrInfo:
        if isinstance(attr, AsyncActorProxy) and attr._actor is self._actor:
            hint = f"it is a proxy to the actor itself (make it private: {'_' + name!r})"
            msg = f"{self._missing(name)}: {hint}"
            raise AttributeError(msg)
        return _AttrInfo(
            callable=callable(attr), traversable=getattr(attr, "pykka_traversable", False) is True
        )

    def _missing(self, name: str) -> str:
        return f"{self.actor_ref} has no attribute {name!r}"

    def __getattr__(self, name: str) -> Any:
        attr_path: AttrPath = (*self._attr_path, name)
        info = self._known_attrs.get(attr_path)
        if info is None:
            info = self._introspect(attr_path)
            self._known_attrs[attr_path] = info
        if info.callable:
            callable_proxy = self._callable_proxies.get(attr_path)
            if callable_proxy is None:
                callable_proxy = CallableProxy(actor_ref=self.actor_ref, attr_path=attr_path)
                self._callable_proxies[attr_path] = callable_proxy
            return callable_proxy
        if info.traversable:
            nested = self._actor_proxies.get(attr_path)
            if nested is None:
                nested = AsyncActorProxy(actor_ref=self.actor_ref, attr_path=attr_path)
                self._actor_proxies[attr_path] = nested
            return nested
        return self.actor_ref.ask(ProxyGetAttr(attr_path=attr_path))


class AsyncioActor(Generic[PX]):
    """A pykka-style actor whose message loop is an asyncio task on the running loop.

    Start it with `Cls.start(*args, **kwargs)` (on the loop thread; returns an `AsyncActorRef`), or,
    from inside another actor, with `self.start_child(Cls, *args, **kwargs)` to put it in the
    supervision tree. `on_start`, `on_stopping`, `on_stop`, `on_failure`, `on_receive`,
    `on_child_failure`, `on_child_stopped` and proxied methods may all be `async def`. See the
    module docstring for the message semantics and `actors.supervision` for the tree.
    """

    actor_urn: str
    actor_inbox: Mailbox
    actor_stopped: StoppedFlag
    _actor_ref: AsyncActorRef[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # pykka's Actor attributes (its __init__ takes and ignores arguments too), minus its costs:
        # a uuid4 from os.urandom and a threading.Event with its Condition and Lock. The inbox needs
        # the running loop.
        self.actor_urn = _new_urn()
        self.actor_inbox = _new_inbox()
        self.actor_stopped = StoppedFlag()
        self._actor_ref = AsyncActorRef(self)
        self._supervision = SupervisionNode(self._actor_ref, self.actor_inbox.loop)
        self._actor_task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> AsyncActorRef[Self]:
        """Create the actor and schedule its task on the running loop; `on_start` runs in that task.

        pykka's `Actor.start`: create, register (in the live actors of `actors.supervision`),
        start the message loop.
        """
        obj = cls(*args, **kwargs)
        ref = obj.__dict__.get("_actor_ref")
        if ref is None:
            msg = f"{cls.__name__}.__init__() did not call super().__init__()"
            raise AssertionError(msg)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Starting %s", obj)
        register(obj._supervision)
        obj._actor_task = obj.actor_inbox.loop.create_task(obj._actor_main(), name=str(obj))
        return cast("AsyncActorRef[Self]", ref)

    def __str__(self) -> str:
        return f"{type(self).__name__} ({self.actor_urn})"

    @property
    def actor_ref(self) -> AsyncActorRef[Self]:
        """The actor's own ref."""
        return self._actor_ref

    @property
    def parent_ref(self) -> AsyncActorRef[Any] | None:
        """The ref of the actor that started us with `start_child`, or None for a root actor."""
        parent = self._supervision.parent
        return None if parent is None else parent.ref

    @property
    def child_refs(self) -> list[AsyncActorRef[Any]]:
        """Refs of our children that have not terminated yet, in start order."""
        return [child.ref for child in self._supervision.children.values()]

    def start_child(self, actor_class: type[A], *args: Any, **kwargs: Any) -> AsyncActorRef[A]:
        """Start `actor_class(*args, **kwargs)` as our child and return its ref.

        The child's `on_start` runs later, in the child's task. From then on, the child's failure
        arrives in our mailbox as `on_child_failure(child_ref, exception)`, a normal stop of the child
        (while we run) as `on_child_stopped(child_ref)`, and our own stop stops the child first.
        """
        if not (isinstance(actor_class, type) and issubclass(actor_class, AsyncioActor)):
            msg = f"start_child() needs an AsyncioActor subclass, not {actor_class!r}"
            raise TypeError(msg)
        if self.actor_inbox.closed:
            msg = f"{self} is stopping and cannot start a child {actor_class.__name__}"
            raise ActorDeadError(msg)
        ref = actor_class.start(*args, **kwargs)
        child = ref.actor_weakref()
        assert child is not None  # its task holds it
        self._supervision.adopt(child._supervision)
        return ref

    def stop(self) -> None:
        """Ask ourselves to stop once the messages already queued are handled (never blocks).

        This is the way for an actor to stop itself: awaiting `self.actor_ref.stop()` from inside
        the actor would wait for its own termination, forever. A no-op once stopping has begun.
        """
        if not self.actor_inbox.closed:
            self._actor_ref.tell(_STOP)

    # Hooks. Widened to allow `async def` overrides (pykka declares them `-> None`).

    def on_start(self) -> Awaitable[None] | None:
        """Set up, in the actor's task, before the first message. May be `async def`."""
        return None

    def on_stopping(self) -> Awaitable[None] | None:
        """A normal stop begins: wind down while the children still run. May be `async def`.

        Runs when the stop request is taken from the mailbox (no new messages are accepted from then
        on), before the children are stopped: the place for a parent to take its children down in
        order (say, tell task actors to exit cleanly) rather than just having them stopped.
        Not called when the actor fails.
        """
        return None

    def on_stop(self) -> Awaitable[None] | None:
        """Clean up after a normal stop, once all children have terminated. May be `async def`."""
        return None

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Awaitable[None] | None:
        """Clean up after an unhandled exception in a told message, once all children have terminated."""
        return None

    def on_receive(self, message: Any) -> Any:
        """Handle a plain (non-proxy) message; may be `async def`. Default: log it as unexpected."""
        _pykka_logger.warning("Unexpected message received by %s: %s", self, message)
        return None

    def on_child_failure(self, child_ref: AsyncActorRef[Any], exception: BaseException) -> Any:
        """A child died of `exception` (it has already terminated). Default: escalate (we fail too).

        Override to restart the child, mark something as ERROR, etc. May be `async def`. Raising
        from here fails this actor like an exception in a told message.
        """
        raise ChildFailedError(child_ref, exception) from exception

    def on_child_stopped(self, child_ref: AsyncActorRef[Any]) -> Any:
        """A child stopped normally while we were running (not because we stopped). Default: nothing."""
        return None

    # The message loop.

    def _handle_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is ProxyCall:
            path = message.attr_path
            callee = getattr(self, path[0])
            for name in path[1:]:
                callee = getattr(callee, name)
            return callee(*message.args, **message.kwargs)
        if kind is ProxyGetAttr:
            value: Any = self
            for name in message.attr_path:
                value = getattr(value, name)
            return _Plain(value)  # never awaited, even if it happens to be a coroutine
        if kind is ProxySetAttr:
            target: Any = self
            for name in message.attr_path[:-1]:
                target = getattr(target, name)
            setattr(target, message.attr_path[-1], message.value)
            return None
        if kind is ChildFailed:
            return self.on_child_failure(message.child_ref, message.exception)
        if kind is ChildStopped:
            return self.on_child_stopped(message.child_ref)
        return self.on_receive(message)

    def _own_cancellation(self) -> bool:
        task = self._actor_task
        return task is not None and task.cancelling() > 0

    async def _receive_loop(self) -> BaseException | None:
        """Handle messages until a stop request (returns None) or a told message fails (returns it)."""
        mailbox = self.actor_inbox
        queue = mailbox.queue
        create_future = mailbox.loop.create_future
        handle = self._handle_receive
        while True:
            while not queue:
                waiter: asyncio.Future[None] = create_future()
                mailbox.waiter = waiter
                await waiter
            message, reply_to = queue.popleft()
            if type(message) is _Stop:
                self._mark_stopped()
                if reply_to is not None:
                    mailbox.stop_waiters.append(reply_to)
                return None
            try:
                result = handle(message)
                if type(result) is CoroutineType:
                    result = await result
                elif type(result) is _Plain:
                    result = result.value
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and self._own_cancellation():
                    if reply_to is not None:
                        _fail_quietly(
                            reply_to, ActorDeadError(f"{self} was cancelled while handling the message")
                        )
                    raise
                if reply_to is None:
                    return exc
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("%s: exception returned to the asker", self, exc_info=exc)
                _fail_quietly(reply_to, exc)
            else:
                if reply_to is not None:
                    try:  # noqa: SIM105 (hot path: cheaper than contextlib.suppress)
                        _set_result(reply_to, result)
                    except asyncio.InvalidStateError:  # the asker gave up (timeout, cancel)
                        pass

    async def _run_hook(self, hook: Callable[..., Any], *args: Any) -> None:
        result = hook(*args)
        if type(result) is CoroutineType:
            await result

    async def _actor_main(self) -> None:
        """The actor's whole life: on_start, messages, then an orderly stop or a failure."""
        failure: BaseException | None = None
        try:
            started = False
            try:
                await self._run_hook(self.on_start)
                started = True
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and self._own_cancellation():
                    raise
                failure = exc
                self._log_failure("on_start", exc)
            if started:
                failure = await self._receive_loop()
                if failure is not None:
                    self._log_failure("a told message", failure)
            self._mark_stopped()
            if started and failure is None:
                # Orderly stop: wind down (children still running), stop the subtree, clean up.
                failure = await self._run_stop_hook(self.on_stopping, "on_stopping")
                await self._supervision.stop_children()
                failure = await self._run_stop_hook(self.on_stop, "on_stop") or failure
            else:
                await self._supervision.stop_children()
                if started and failure is not None:  # a told message failed (not on_start: pykka)
                    try:
                        await self._run_hook(self.on_failure, type(failure), failure, failure.__traceback__)
                    except Exception as exc:
                        logger.exception("%s: on_failure raised %r", self, exc)
        except BaseException as exc:
            # Cancellation of our task, KeyboardInterrupt, SystemExit: end now, without hooks.
            self._terminate(exc)
            raise
        self._terminate(failure)

    async def _run_stop_hook(self, hook: Callable[[], Any], name: str) -> BaseException | None:
        """Run a stop hook; its exception is logged and returned (the stop goes on regardless)."""
        try:
            await self._run_hook(hook)
        except Exception as exc:
            self._log_failure(name, exc)
            return exc
        return None

    def _log_failure(self, where: str, exception: BaseException) -> None:
        # A supervised actor's failure is handled by its parent: the parent decides whether it is an
        # error; a root actor's failure has nobody to handle it.
        level = logging.WARNING if self._supervision.parent is not None else logging.ERROR
        logger.log(level, "%s failed in %s: %r", self, where, exception, exc_info=exception)

    def _mark_stopped(self) -> None:
        """Stopping begins: refuse new messages (`is_alive()` turns False, as in pykka)."""
        if self.actor_inbox.closed:
            return
        self.actor_inbox.closed = True
        self.actor_stopped.set()

    def _terminate(self, failure: BaseException | None) -> None:
        """The end: answer what is left in the mailbox, leave the tree, tell the parent, wake stop()s."""
        self._mark_stopped()
        mailbox = self.actor_inbox
        queue = mailbox.queue
        dead: ActorDeadError | None = None
        while queue:
            message, reply_to = queue.popleft()
            if reply_to is None:
                continue  # a tell queued behind the stop: dropped, as in pykka
            if type(message) is _Stop:
                mailbox.stop_waiters.append(reply_to)
            else:
                if dead is None:
                    dead = ActorDeadError(f"{self._actor_ref} stopped before handling the message")
                _fail_quietly(reply_to, dead)
        mailbox.terminated = True
        mailbox.waiter = None
        self._actor_ref._proxy = None  # the proxy holds the actor: let it go
        self._supervision.detach(failure)
        for waiter in mailbox.stop_waiters:
            if not waiter.done():
                waiter.set_result(True)
        mailbox.stop_waiters.clear()


def _new_inbox() -> Mailbox:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        msg = (
            "AsyncioActor.start() must be called on the event loop thread, "
            "from a coroutine or a loop callback (no running event loop here)"
        )
        raise RuntimeError(msg) from None
    return Mailbox(loop)


class _Plain:
    """Wraps a proxied attribute value so the message loop never awaits it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value
