"""Operator locks: who has taken control of an environment.

In a control room several people watch the same environments; only the one who took control may
send it transitions, so two shifters never fight over a detector. A lock names its holder (the
operator's name, shown to everyone) and the session that took it (a random id only that browser
or client knows, never shown to others). Locks live in the core, next to the environments, so
every front end (the web page, coconut) shows the same holder. They are not persisted: after a
core restart nobody holds anything.

Taking a lock held by someone else needs `force` (a shift leader taking over from a browser left
open in another room); the previous holder sees the change like everyone else.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aliecs.errors import AliecsError

MAX_OPERATOR = 64
# gRPC clients (coconut) see the holder in EnvironmentInfo.integratedServicesData under this key,
# as JSON {"operator", "since_ms"}: the wire format stays the original's.
SERVICE_KEY = "aliecs.lock"
_SESSION = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


class LockError(AliecsError):
    """The caller does not hold the environment's lock."""


class LockRequestError(LockError):
    """An unusable operator name or session id (a bad request, not a conflict)."""


@dataclass(frozen=True)
class Lock:
    environment_id: str
    operator: str
    session: str
    since_ms: int


Listener = Callable[[str, "Lock | None"], None]


def check_session(session: str) -> str:
    if not _SESSION.match(session or ""):
        raise LockRequestError("session id must be 8-128 characters of letters, digits, '-' or '_'")
    return session


def check_operator(operator: str) -> str:
    name = " ".join((operator or "").split())
    if not name:
        raise LockRequestError("operator name is empty: say who takes control (e.g. your name)")
    if len(name) > MAX_OPERATOR or not name.isprintable():
        raise LockRequestError(f"operator name must be printable and at most {MAX_OPERATOR} characters")
    return name


class LockTable:
    """Environment id -> lock. Plain methods on the event loop thread; listeners hear every change."""

    def __init__(self) -> None:
        self._locks: dict[str, Lock] = {}
        self._listeners: list[Listener] = []

    def holder(self, env_id: str) -> Lock | None:
        return self._locks.get(env_id)

    def take(self, env_id: str, operator: str, session: str, force: bool = False) -> Lock:
        """Take control of `env_id`; raises LockError when someone else holds it and not `force`."""
        name, session = check_operator(operator), check_session(session)
        current = self._locks.get(env_id)
        if current is not None and current.session != session and not force:
            raise LockError(
                f"environment {env_id} is controlled by {current.operator} since "
                f"{_clock(current.since_ms)}; ask them to release it, or take over with force"
            )
        if current is not None and current.session == session and current.operator == name:
            return current
        lock = Lock(env_id, name, session, time.time_ns() // 1_000_000)
        self._locks[env_id] = lock
        self._notify(env_id, lock)
        return lock

    def release(self, env_id: str, session: str) -> None:
        """Give control back; releasing a lock you do not hold is an error, releasing none is not."""
        current = self._locks.get(env_id)
        if current is None:
            return
        if current.session != check_session(session):
            raise LockError(f"environment {env_id} is controlled by {current.operator}, not by you")
        del self._locks[env_id]
        self._notify(env_id, None)

    def require(self, env_id: str, session: str, what: str) -> None:
        """Raise LockError unless `session` holds `env_id` (say what was refused and what to do)."""
        current = self._locks.get(env_id)
        if current is None:
            raise LockError(f"take control of environment {env_id} before {what}: nobody holds it")
        if current.session != session:
            raise LockError(
                f"environment {env_id} is controlled by {current.operator}: {what} refused "
                "until they release it"
            )

    def forget(self, env_id: str) -> None:
        """The environment is gone: drop its lock."""
        if self._locks.pop(env_id, None) is not None:
            self._notify(env_id, None)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(env_id, lock or None)` on every change; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self, env_id: str, lock: Lock | None) -> None:
        for listener in list(self._listeners):
            listener(env_id, lock)


def as_service_data(lock: Lock | None) -> dict[str, str]:
    if lock is None:
        return {}
    return {SERVICE_KEY: json.dumps({"operator": lock.operator, "since_ms": lock.since_ms})}


def describe_service_data(data: Mapping[str, str]) -> str:
    """ "alice since 17:03:12" from EnvironmentInfo.integratedServicesData ("" when nobody holds it)."""
    try:
        lock = json.loads(data.get(SERVICE_KEY, "") or "null")
        return f"{lock['operator']} since {_clock(int(lock['since_ms']))}" if lock else ""
    except (ValueError, KeyError, TypeError):
        return ""


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))
