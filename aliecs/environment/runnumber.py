"""Run numbers: unique, monotonic, persisted, never reused, even across core restarts or crashes.

The counter lives in SQLite in the state directory. Each allocation is one committed write
transaction (BEGIN IMMEDIATE serialises concurrent writers, even from other processes sharing the
state directory), so a number handed out has been made durable first: a crash right after can waste
a number but can never hand the same one out twice. The original's file backend had no such guarantee.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run_counter (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
INSERT OR IGNORE INTO run_counter (id, last) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS runs (
    run_number INTEGER PRIMARY KEY,
    environment_id TEXT NOT NULL,
    allocated_at_ms INTEGER NOT NULL
);
"""


class RunNumberStore:
    """Allocates run numbers; blocking SQLite work runs in a thread so the event loop never waits on fsync."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def allocate_blocking(self, environment_id: str, now_ms: int) -> int:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            (last,) = conn.execute("SELECT last FROM run_counter WHERE id = 1").fetchone()
            number = int(last) + 1
            conn.execute("UPDATE run_counter SET last = ? WHERE id = 1", (number,))
            conn.execute(
                "INSERT INTO runs (run_number, environment_id, allocated_at_ms) VALUES (?, ?, ?)",
                (number, environment_id, now_ms),
            )
            conn.execute("COMMIT")
            return number
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    async def allocate(self, environment_id: str, now_ms: int) -> int:
        return await asyncio.to_thread(self.allocate_blocking, environment_id, now_ms)

    def last(self) -> int:
        conn = self._connect()
        try:
            (last,) = conn.execute("SELECT last FROM run_counter WHERE id = 1").fetchone()
            return int(last)
        finally:
            conn.close()
