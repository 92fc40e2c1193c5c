"""Run numbers: unique, monotonic, persisted, never reused, even across core restarts or crashes.

The counter lives in SQLite in the state directory. Each allocation is one committed write
transaction (BEGIN IMMEDIATE serialises concurrent writers, even from other processes sharing the
state directory), so a number handed out has been made durable first: a crash right after can waste
a number but can never hand the same one out twice. The original's file backend had no such guarantee.

A damaged database is a start-up error naming the file (never a traceback, never a silent reset).
A database that is missing while the state directory has an audit log (deleted by hand, lost with
a disk) is recreated continuing after the highest run number the audit log records, so a number
already given to a run is never handed out again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
from pathlib import Path

from aliecs.errors import AliecsError

log = logging.getLogger(__name__)

_RUN_NUMBER = re.compile(rb'"runNumber":"?(\d+)')


class RunNumberStoreError(AliecsError):
    """The run number database cannot be used; the message names the file and what to do."""


def highest_recorded_run(audit_log: Path) -> int:
    """The highest run number in an audit log (events.jsonl), 0 if none or no log."""
    highest = 0
    try:
        with audit_log.open("rb") as file:
            for line in file:
                for match in _RUN_NUMBER.finditer(line):
                    highest = max(highest, int(match.group(1)))
    except FileNotFoundError:
        return 0
    return highest


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

    def __init__(self, path: Path, audit_log: Path | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        try:
            conn = self._connect()
            try:
                conn.executescript(_SCHEMA)
                if created and audit_log is not None:
                    self._continue_after(conn, highest_recorded_run(audit_log), audit_log)
                self._last(conn)
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise RunNumberStoreError(
                f"run number database {path} is damaged ({exc}): move it away and restart; the core "
                "then recreates it and continues after the highest run number in the audit log "
                "(events.jsonl)"
            ) from None
        for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
            if (path.parent / name).exists():
                os.chmod(path.parent / name, 0o600)

    @staticmethod
    def _continue_after(conn: sqlite3.Connection, highest: int, audit_log: Path) -> None:
        if highest:
            conn.execute("UPDATE run_counter SET last = MAX(last, ?) WHERE id = 1", (highest,))
            log.warning(
                "run number database was missing and has been recreated; it continues after run %d, "
                "the highest recorded in %s",
                highest,
                audit_log,
            )

    @staticmethod
    def _last(conn: sqlite3.Connection) -> int:
        """The highest number handed out: the counter, or a recorded run above it if the counter row
        was damaged or reset by hand."""
        row = conn.execute("SELECT last FROM run_counter WHERE id = 1").fetchone()
        (recorded,) = conn.execute("SELECT COALESCE(MAX(run_number), 0) FROM runs").fetchone()
        return max(int(row[0]) if row else 0, int(recorded))

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def allocate_blocking(self, environment_id: str, now_ms: int) -> int:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            number = self._last(conn) + 1
            conn.execute("INSERT OR REPLACE INTO run_counter (id, last) VALUES (1, ?)", (number,))
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
            return self._last(conn)
        finally:
            conn.close()
