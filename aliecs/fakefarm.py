"""A fake task farm: one process serving many OCC endpoints, for load tests with thousands of tasks.

A thousand ``aliecs-fake-task`` processes do not fit on a 2-core test machine (each is a Python
interpreter of ~30 MB), but a thousand real gRPC endpoints do fit in one process. The farm serves each
endpoint on its own port with its own :class:`~aliecs.occ.OccTask` (so the executor drives it over
real OCC gRPC exactly as it drives a process), with a configurable latency distribution and failure
rate per endpoint.

The farm is controlled over its stdin/stdout with JSON lines, one request per line, because a pipe
needs no port, no address and no clean-up: when the controller goes away the farm reads EOF and
closes everything. Requests carry an ``id`` echoed in the reply::

    {"id": 1, "op": "open", "port": 31000, "argv": ["--latency", "0.01", "--fail-rate", "0.1"]}
    {"id": 1, "ok": true}                      or {"id": 1, "ok": false, "error": "..."}
    {"id": 2, "op": "close", "port": 31000}    -> {"id": 2, "ok": true}

and the farm tells, unasked, when an endpoint went away (after EXIT, or when closed)::

    {"exited": 31000, "code": 0}

The first line the farm prints is ``{"ready": <pid>}``. :class:`FarmClient` is the controller's side.
:class:`Behaviour` (latency and failures, no gRPC) is shared with the in-process fake executor so both
fake kinds misbehave the same way for the same options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aliecs.fake_task import callback_event
from aliecs.occ.server import OccTask
from aliecs.occ.states import Event
from aliecs.runtime import run

log = logging.getLogger("aliecs.fakefarm")

#: Exit code reported for an endpoint closed by request (as if SIGTERM'd: it did not reach DONE).
CLOSED_CODE = -15


class FarmError(RuntimeError):
    """The farm refused a request or is gone."""


# -- behaviour (shared with the in-process fake executor) ------------------------------------------


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: a rate is between 0 and 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must not be negative")
    return value


class _ArgumentError(ValueError):
    pass


class _Parser(argparse.ArgumentParser):
    """Raises instead of exiting: a bad option of one endpoint must not end the whole farm."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise _ArgumentError(message)


def behaviour_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fakefarm endpoint", add_help=False)
    parser.add_argument("--latency", type=_seconds, default=0.0, help="mean time a transition takes")
    parser.add_argument(
        "--latency-dist",
        choices=("fixed", "uniform", "exponential"),
        default="fixed",
        help="fixed: always the mean; uniform: 0..2*mean; exponential: mean-scaled exponential",
    )
    parser.add_argument("--fail-rate", type=_fraction, default=0.0, help="probability a transition fails")
    parser.add_argument(
        "--fail-on", type=callback_event, action="append", default=[], help="EVENT always fails"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (farm default: the port)")
    return parser


@dataclass(frozen=True)
class Behaviour:
    """How a fake task misbehaves: how long each transition takes and whether it fails.

    Immutable and cached per command line (thousands of tasks share a handful of option sets); the
    randomness comes from a `random.Random` the caller owns, so a farm can seed one per endpoint
    (reproducible per port) while the in-process executor shares one per node (memory per task).
    """

    latency: float = 0.0
    latency_dist: str = "fixed"
    fail_rate: float = 0.0
    fail_on: frozenset[Event] = frozenset()
    seed: int | None = None

    @staticmethod
    def parse(argv: Sequence[str]) -> Behaviour:
        """Options from a task's command line; words before the first ``--option`` are ignored, so a
        task class can keep a readable command (``fakefarm-task --latency 0.01``)."""
        return _parse_behaviour(tuple(argv))

    def delay(self, rng: random.Random) -> float:
        """Seconds the next transition takes."""
        if self.latency <= 0 or self.latency_dist == "fixed":
            return self.latency
        if self.latency_dist == "uniform":
            return rng.uniform(0.0, 2 * self.latency)
        return rng.expovariate(1.0 / self.latency)

    def fails(self, event: Event, rng: random.Random) -> bool:
        """Whether this transition fails (decided per call, so a failure rate is a rate)."""
        return event in self.fail_on or (self.fail_rate > 0 and rng.random() < self.fail_rate)

    async def perform(self, event: Event, rng: random.Random) -> None:
        """Simulate the work of `event`; raises when the transition is to fail."""
        seconds = self.delay(rng)
        if seconds > 0:
            await asyncio.sleep(seconds)  # simulated work
        if self.fails(event, rng):
            raise RuntimeError(f"fake failure in {event}")


@functools.lru_cache(maxsize=256)
def _parse_behaviour(words: tuple[str, ...]) -> Behaviour:
    first = next((i for i, word in enumerate(words) if word.startswith("--")), len(words))
    try:
        options = behaviour_parser().parse_args(words[first:])
    except _ArgumentError as exc:
        raise ValueError(f"bad fake task options {' '.join(words[first:])!r}: {exc}") from None
    return Behaviour(
        latency=options.latency,
        latency_dist=options.latency_dist,
        fail_rate=options.fail_rate,
        fail_on=frozenset(options.fail_on),
        seed=options.seed,
    )


class _Handler:
    """OCC callbacks of one farm endpoint, all delegated to its `Behaviour`."""

    def __init__(self, behaviour: Behaviour, seed: int) -> None:
        self.behaviour = behaviour
        self.rng = random.Random(seed)

    async def on_configure(self, args: dict[str, str]) -> None:
        await self.behaviour.perform(Event.CONFIGURE, self.rng)

    async def on_reset(self, args: dict[str, str]) -> None:
        await self.behaviour.perform(Event.RESET, self.rng)

    async def on_start(self, args: dict[str, str]) -> None:
        await self.behaviour.perform(Event.START, self.rng)

    async def on_stop(self, args: dict[str, str]) -> None:
        await self.behaviour.perform(Event.STOP, self.rng)

    async def on_recover(self, args: dict[str, str]) -> None:
        await self.behaviour.perform(Event.RECOVER, self.rng)

    async def on_exit(self, args: dict[str, str]) -> None:
        await self.behaviour.perform(Event.EXIT, self.rng)


# -- the farm (server side) ------------------------------------------------------------------------


class Farm:
    """The endpoints of one farm process, by port. `notify` is told ``(port, exit code)`` when one goes."""

    def __init__(self, notify: Callable[[int, int], None], host: str = "127.0.0.1") -> None:
        self.notify = notify
        self.host = host
        self.endpoints: dict[int, OccTask] = {}
        self._watchers: dict[int, asyncio.Task[None]] = {}

    async def open(self, port: int, argv: Sequence[str]) -> None:
        if port in self.endpoints:
            raise FarmError(f"port {port} is already served by this farm")
        behaviour = Behaviour.parse(argv)
        seed = port if behaviour.seed is None else behaviour.seed
        task = OccTask(_Handler(behaviour, seed), host=self.host, port=port)
        await task.start()
        self.endpoints[port] = task
        self._watchers[port] = asyncio.ensure_future(self._watch(port, task))

    async def _watch(self, port: int, task: OccTask) -> None:
        """An endpoint that reached DONE leaves like a process after EXIT: closed, code 0."""
        await task.wait_finished()
        if self.endpoints.get(port) is task:
            await self._drop(port, 0)

    async def close(self, port: int) -> None:
        if port in self.endpoints:
            await self._drop(port, CLOSED_CODE)

    async def _drop(self, port: int, code: int) -> None:
        task = self.endpoints.pop(port)
        watcher = self._watchers.pop(port, None)
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
        await task.close(grace=0.5)
        self.notify(port, code)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(port) for port in list(self.endpoints)), return_exceptions=True)


async def _serve_control(reader: asyncio.StreamReader, write: Callable[[dict[str, Any]], None]) -> None:
    farm = Farm(lambda port, code: write({"exited": port, "code": code}))
    pending: set[asyncio.Task[None]] = set()

    async def handle(request: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"id": request.get("id")}
        try:
            op = request.get("op")
            if op == "open":
                await farm.open(int(request["port"]), [str(word) for word in request.get("argv", [])])
            elif op == "close":
                await farm.close(int(request["port"]))
            else:
                raise FarmError(f"unknown op {op!r}")
        except Exception as exc:
            reply.update(ok=False, error=str(exc))
        else:
            reply["ok"] = True
        write(reply)

    try:
        while line := await reader.readline():
            try:
                request = json.loads(line)
            except json.JSONDecodeError as exc:
                write({"id": None, "ok": False, "error": f"bad request line: {exc}"})
                continue
            # Concurrently: a slow bind or close must not hold up the other endpoints.
            job = asyncio.ensure_future(handle(request))
            pending.add(job)
            job.add_done_callback(pending.discard)
    finally:
        for job in list(pending):
            job.cancel()
        await farm.close_all()


async def _amain() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer

    def write(message: dict[str, Any]) -> None:
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()

    write({"ready": os.getpid()})
    await _serve_control(reader, write)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aliecs.fakefarm``: serve endpoints until stdin closes."""
    level = os.environ.get("ALIECS_FAKEFARM_LOG", "WARNING")
    logging.basicConfig(level=level, format=f"fakefarm[{os.getpid()}] %(name)s %(levelname)s %(message)s")
    return run(_amain())


# -- the controller's side -------------------------------------------------------------------------


class FarmClient:
    """Starts a farm process and opens/closes endpoints in it; `on_exit(port, code)` hears departures.

    Why a child process and not endpoints in the core's own process: the endpoints' gRPC servers
    would then compete with the control system for the same event loop, and a benchmark would measure
    both sides on one core. In its own process, the farm is where the tasks would be: elsewhere.
    """

    def __init__(self, on_exit: Callable[[int, int], None]) -> None:
        self.on_exit = on_exit
        self.pid = 0
        self._process: asyncio.subprocess.Process | None = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self._gone: asyncio.Future[int] | None = None

    @property
    def alive(self) -> bool:
        return self._gone is not None and not self._gone.done()

    async def start(self, timeout: float = 30.0) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aliecs.fakefarm",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None if os.environ.get("ALIECS_FAKEFARM_LOG") else asyncio.subprocess.DEVNULL,
            limit=1 << 20,
        )
        assert self._process.stdout is not None
        try:
            first = await asyncio.wait_for(self._process.stdout.readline(), timeout)
            self.pid = int(json.loads(first)["ready"])
        except (TimeoutError, ValueError, KeyError) as exc:
            await self.stop()
            raise FarmError(f"the fake farm did not start: {exc!r}") from exc
        self._gone = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        try:
            while line := await process.stdout.readline():
                message = json.loads(line)
                if "exited" in message:
                    self.on_exit(int(message["exited"]), int(message["code"]))
                    continue
                future = self._replies.pop(message.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(message)
        finally:
            code = await process.wait()
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(FarmError(f"the fake farm (pid {self.pid}) ended with code {code}"))
            self._replies.clear()
            if self._gone is not None and not self._gone.done():
                self._gone.set_result(code)

    async def wait_gone(self) -> int:
        """The farm's exit code, once it has ended (for whatever reason)."""
        if self._gone is None:
            raise FarmError("the fake farm was never started")
        return await asyncio.shield(self._gone)

    async def request(self, op: str, timeout: float = 30.0, **fields: Any) -> None:
        """Send one request and wait for its reply; FarmError if refused, gone or too slow."""
        if self._process is None or self._process.stdin is None or not self.alive:
            raise FarmError("the fake farm is not running")
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._next_id] = future
        line = json.dumps({"id": self._next_id, "op": op, **fields}).encode() + b"\n"
        self._process.stdin.write(line)
        try:
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._replies.pop(self._next_id, None)
            raise FarmError(f"the fake farm did not answer {op} within {timeout:g}s") from None
        if not reply.get("ok"):
            raise FarmError(str(reply.get("error", "refused")))

    async def open(self, port: int, argv: Sequence[str], timeout: float = 30.0) -> None:
        await self.request("open", timeout, port=port, argv=list(argv))

    async def close(self, port: int, timeout: float = 30.0) -> None:
        await self.request("close", timeout, port=port)

    async def stop(self, timeout: float = 10.0) -> None:
        """Close stdin (the farm closes every endpoint and exits); kill it if it does not."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


if __name__ == "__main__":
    sys.exit(main())
