"""Actor ask round-trips against a bare `asyncio.Queue` + `Future` ping-pong, side by side, on uvloop.

The goal (DESIGN.md) is an ask round-trip rate of at least half the bare ping-pong's: the baseline
is the least any asyncio request/reply can cost, so the ratio is the price of the actor runtime.

Both sides are measured in the same process, in alternating short windows (several rounds), so CPU
frequency changes and noisy neighbours hit both alike. Each rate is the best of its rounds (the
round least disturbed by anything else on the machine) and the ratios are ratios of those.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from actors import AsyncActorRef, AsyncioActor, stop_all

GOAL = 0.5
ROUNDS = 5
_CHECK_EVERY = 32  # round trips between clock reads

Measure = Callable[[int, float], Awaitable[float]]


class Echo(AsyncioActor):
    """Replies with the message: the cheapest possible handler."""

    def on_receive(self, message: Any) -> Any:
        return message

    def echo(self, value: Any) -> Any:
        return value


async def _drive(askers: list[Callable[[int], Awaitable[Any]]], window: float) -> float:
    """Run every asker in a loop for `window` seconds; return round trips per second (all askers)."""
    deadline = time.perf_counter() + window
    counts = [0] * len(askers)

    async def loop(index: int, ask: Callable[[int], Awaitable[Any]]) -> None:
        done = 0
        while True:
            for i in range(_CHECK_EVERY):
                await ask(i)
            done += _CHECK_EVERY
            if time.perf_counter() >= deadline:
                break
        counts[index] = done

    started = time.perf_counter()
    await asyncio.gather(*(loop(n, ask) for n, ask in enumerate(askers)))
    return sum(counts) / (time.perf_counter() - started)


async def queue_future_rate(pairs: int, window: float) -> float:
    """Baseline: `pairs` askers, each pinging its own server task through a Queue with a Future."""
    loop = asyncio.get_running_loop()

    async def server(queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]]) -> None:
        while True:
            message, future = await queue.get()
            future.set_result(message)

    def asker(queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]]) -> Callable[[int], Awaitable[Any]]:
        def ask(message: int) -> Awaitable[Any]:
            future = loop.create_future()
            queue.put_nowait((message, future))
            return future

        return ask

    queues: list[asyncio.Queue[tuple[Any, asyncio.Future[Any]]]] = [asyncio.Queue() for _ in range(pairs)]
    servers = [asyncio.create_task(server(queue)) for queue in queues]
    try:
        return await _drive([asker(queue) for queue in queues], window)
    finally:
        for task in servers:
            task.cancel()
        await asyncio.gather(*servers, return_exceptions=True)


async def actor_ask_rate(pairs: int, window: float) -> float:
    """`pairs` askers, each doing `await ref.ask(message)` to its own `Echo` actor."""
    refs: list[AsyncActorRef[Echo]] = [Echo.start() for _ in range(pairs)]
    try:
        return await _drive([ref.ask for ref in refs], window)
    finally:
        await stop_all()


async def actor_proxy_rate(pairs: int, window: float) -> float:
    """Like `actor_ask_rate` through a proxy method call (`await proxy.echo(message)`)."""
    refs = [Echo.start() for _ in range(pairs)]
    try:
        return await _drive([ref.proxy().echo for ref in refs], window)
    finally:
        await stop_all()


async def _measure(seconds: float) -> dict[str, Any]:
    scenarios: dict[str, tuple[Measure, int]] = {
        "queue_future_per_s": (queue_future_rate, 1),
        "actor_ask_per_s": (actor_ask_rate, 1),
        "queue_future_100_per_s": (queue_future_rate, 100),
        "actor_ask_100_per_s": (actor_ask_rate, 100),
        "actor_proxy_call_per_s": (actor_proxy_rate, 1),
    }
    window = seconds / (ROUNDS * len(scenarios))
    for measure, pairs in scenarios.values():  # warm-up, discarded
        await measure(pairs, min(window, 0.02))
    rates: dict[str, list[float]] = {name: [] for name in scenarios}
    for _ in range(ROUNDS):
        for name, (measure, pairs) in scenarios.items():
            rates[name].append(await measure(pairs, window))
    best = {name: max(values) for name, values in rates.items()}
    result: dict[str, Any] = {name: round(rate) for name, rate in best.items()}
    result["actor_ask_ratio"] = round(best["actor_ask_per_s"] / best["queue_future_per_s"], 3)
    result["actor_ask_100_ratio"] = round(best["actor_ask_100_per_s"] / best["queue_future_100_per_s"], 3)
    result["actor_ask_goal"] = GOAL
    result["actor_ask_ok"] = result["actor_ask_ratio"] >= GOAL
    result["loop"] = type(asyncio.get_running_loop()).__module__.split(".")[0]
    result["seconds"] = seconds
    return result


def run(seconds: float = 2.0) -> dict[str, Any]:
    """Measure for about `seconds` in a fresh uvloop and return rates (round trips/s) and ratios.

    Keys: `actor_ask_per_s` (one asker, one actor), `queue_future_per_s` (baseline, one pair),
    `actor_ask_ratio` = their ratio; the same with 100 concurrent askers to 100 actors/servers
    (`actor_ask_100_per_s`, `queue_future_100_per_s`, `actor_ask_100_ratio`);
    `actor_proxy_call_per_s`; `actor_ask_goal` and `actor_ask_ok`.
    """
    return uvloop.run(_measure(seconds))


def report(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for the human table of `python -m bench`."""
    return [
        ("ask round-trips/s, 1 asker -> 1 actor", f"{result['actor_ask_per_s']:,}"),
        ("queue+future ping-pong/s, 1 pair (baseline)", f"{result['queue_future_per_s']:,}"),
        ("ratio (goal >= {:g})".format(result["actor_ask_goal"]), _verdict(result["actor_ask_ratio"])),
        ("ask round-trips/s, 100 askers -> 100 actors", f"{result['actor_ask_100_per_s']:,}"),
        ("queue+future ping-pong/s, 100 pairs", f"{result['queue_future_100_per_s']:,}"),
        (
            "ratio, 100 pairs (goal >= {:g})".format(result["actor_ask_goal"]),
            _verdict(result["actor_ask_100_ratio"]),
        ),
        ("proxy method calls/s, 1 asker -> 1 actor", f"{result['actor_proxy_call_per_s']:,}"),
    ]


def _verdict(ratio: float) -> str:
    return f"{ratio:.2f}x  {'ok' if ratio >= GOAL else 'BELOW GOAL'}"
