"""The core's journal: every environment, durably, so that a restarted core can take them back.

One SQLite row per environment: what it was made from (workflow and variables, written at creation)
and a snapshot of where it stands (state, run number and run timestamps, task ids in role-tree order,
each task's node, ports, pid and state), written after every transition and before the transition is
reported done. After a crash of the core, `aliecs-core` started on the same state directory reads it,
reconnects to the executors (which kept the tasks running) and restores each environment as it was.

SQLite calls block: the core calls these methods from a worker thread (`asyncio.to_thread`), and a
lock serialises them on the one connection.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class JournalError(RuntimeError):
    pass


@dataclass(frozen=True)
class JournalEntry:
    env_id: str
    workflow: str
    variables: dict[str, str]
    snapshot: dict[str, Any]


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS environments ("
                " id TEXT PRIMARY KEY, workflow TEXT NOT NULL, variables TEXT NOT NULL, snapshot TEXT)"
            )
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"environment journal {path}: {exc}") from exc
        self._lock = threading.Lock()

    def create(self, env_id: str, workflow: str, variables: dict[str, str]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO environments (id, workflow, variables, snapshot)"
                " VALUES (?, ?, ?, NULL)",
                (env_id, workflow, json.dumps(variables)),
            )

    def save(self, env_id: str, snapshot: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE environments SET snapshot = ? WHERE id = ?", (json.dumps(snapshot), env_id)
            )

    def remove(self, env_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM environments WHERE id = ?", (env_id,))

    def load(self) -> list[JournalEntry]:
        with self._lock:
            rows = self._db.execute("SELECT id, workflow, variables, snapshot FROM environments").fetchall()
        return [
            JournalEntry(env_id, workflow, json.loads(variables), json.loads(snapshot))
            for env_id, workflow, variables, snapshot in rows
            if snapshot is not None
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()
