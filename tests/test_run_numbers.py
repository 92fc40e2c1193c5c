"""Run numbers are unique, monotonic and survive restarts, even with concurrent allocators."""

import asyncio
import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from aliecs.environment.runnumber import RunNumberStore, RunNumberStoreError
from aliecs.events import AUDIT_FILE


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


def test_damaged_database_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunNumberStoreError) as caught:
        RunNumberStore(path)
    assert str(path) in str(caught.value) and "move it away" in str(caught.value)


def test_damaged_database_stops_aliecs_core_without_traceback(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "runs.sqlite").write_bytes(b"garbage" * 1000)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "aliecs-core"), "--state-dir", str(state), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"error: run number database {state / 'runs.sqlite'} is damaged" in output
    assert "Traceback" not in output and len(output.splitlines()) <= 3, output


async def test_recreated_database_continues_after_the_audit_log(tmp_path: Path) -> None:
    path, audit = tmp_path / "runs.sqlite", tmp_path / AUDIT_FILE
    store = RunNumberStore(path, audit)
    assert [await store.allocate("env", 0) for _ in range(3)] == [1, 2, 3]
    audit.write_text(
        '{"timestamp":"1","runEvent":{"environmentId":"e","runNumber":"7","transition":"START_ACTIVITY"}}\n'
    )
    for name in ("runs.sqlite", "runs.sqlite-wal", "runs.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    recreated = RunNumberStore(path, audit)
    assert await recreated.allocate("env", 0) == 8
    assert path.stat().st_mode & 0o777 == 0o600


async def test_counter_reset_by_hand_never_goes_back(tmp_path: Path) -> None:
    store = RunNumberStore(tmp_path / "runs.sqlite")
    assert [await store.allocate("env", 0) for _ in range(4)] == [1, 2, 3, 4]
    with sqlite3.connect(tmp_path / "runs.sqlite") as conn:
        conn.execute("UPDATE run_counter SET last = 0")
    assert await store.allocate("env", 0) == 5
