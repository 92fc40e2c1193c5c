"""Run numbers are unique, monotonic and survive restarts, even with concurrent allocators."""

import asyncio
import multiprocessing
from pathlib import Path

from aliecs.environment.runnumber import RunNumberStore


def _allocate_many(path: str, count: int, queue: "multiprocessing.Queue[list[int]]") -> None:
    store = RunNumberStore(Path(path))
    queue.put([store.allocate_blocking("other-process", 0) for _ in range(count)])


async def test_monotonic_and_persisted(tmp_path: Path) -> None:
    store = RunNumberStore(tmp_path / "runs.sqlite")
    first = [await store.allocate("env-a", 1) for _ in range(5)]
    assert first == [1, 2, 3, 4, 5]
    reopened = RunNumberStore(tmp_path / "runs.sqlite")  # a restarted core
    assert await reopened.allocate("env-b", 2) == 6
    assert reopened.last() == 6


async def test_concurrent_allocations_never_collide(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    store = RunNumberStore(path)
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[list[int]] = context.Queue()
    worker = context.Process(target=_allocate_many, args=(str(path), 40, queue))
    worker.start()
    mine = await asyncio.gather(*(store.allocate("env", 0) for _ in range(40)))
    theirs = await asyncio.to_thread(queue.get, True, 60)
    await asyncio.to_thread(worker.join, 60)
    numbers = list(mine) + theirs
    assert len(set(numbers)) == 80
    assert sorted(numbers) == list(range(1, 81))
