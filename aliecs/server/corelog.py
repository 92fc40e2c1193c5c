"""What `aliecs-core` tells its operator: log level, a log file in the state directory, and one
line per environment transition.

A daemon that says nothing leaves the operator guessing whether a request even arrived. Every
transition is logged once it ends, with what it was, how it ended, how long it took and the run
number, from the core's event bus (the same events clients see), so the log and the event stream
never disagree. The log file is private (0600) like the rest of the state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import os
from pathlib import Path

from aliecs.events import (
    DONE_ERROR,
    DONE_OK,
    DONE_TIMEOUT,
    STARTED,
    EnvironmentEvent,
    EventBus,
    SubscriberOverflow,
)

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FILE = "aliecs-core.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MAX_BYTES = 10 * 1024 * 1024
_BACKUPS = 3
_ERROR_TEXT = 300  # an error can list thousands of tasks: the log line keeps its start

log = logging.getLogger("aliecs.core")


def configure_logging(level: str, state_dir: Path) -> Path:
    """Log at `level` to stderr and to `<state_dir>/logs/aliecs-core.log` (rotated at 10 MB)."""
    path = state_dir / "logs" / LOG_FILE
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.mkdir(exist_ok=True, mode=0o700)
    path.touch(mode=0o600, exist_ok=True)
    os.chmod(path, 0o600)
    formatter = logging.Formatter(_FORMAT)
    file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=_MAX_BYTES, backupCount=_BACKUPS)
    stream_handler = logging.StreamHandler()
    root = logging.getLogger()
    for handler in (file_handler, stream_handler):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())
    quiet_disconnects()
    return path


def quiet_disconnects() -> None:
    """grpclib logs every client that leaves mid-call (an ended `env watch`, a closed stream) as
    "Request was cancelled: Connection lost" at INFO: routine, and noise in every log."""
    logging.getLogger("grpclib.server").setLevel(logging.WARNING)


def transition_line(event: EnvironmentEvent, began_ns: int | None, from_state: str, run: int = 0) -> str:
    """`environment ID: CONFIGURE DONE_OK in 1.234s (DEPLOYED -> CONFIGURED), run 12`; `run` is the
    run number when the transition started (a finished STOP_ACTIVITY no longer has one)."""
    took = f" in {(event.timestamp_ns - began_ns) / 1e9:.3f}s" if began_ns else ""
    states = f" ({from_state} -> {event.state})" if from_state else f" (now {event.state})"
    line = f"environment {event.environment_id}: {event.transition} {event.transition_status}{took}{states}"
    if event.run_number or run:
        line += f", run {event.run_number or run}"
    if event.error:
        error = " ".join(event.error.split())
        line += ": " + (error if len(error) <= _ERROR_TEXT else error[:_ERROR_TEXT] + "...")
    return line


class TransitionLog:
    """Logs one line per finished transition of any environment (start/stop with the server)."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._task: asyncio.Task[None] | None = None
        self._started: dict[tuple[str, str], tuple[int, str, int]] = {}

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def handle(self, event: EnvironmentEvent) -> None:
        if not event.transition or event.transition_step:
            return  # hook trigger points are steps of a transition, not transitions
        key = (event.environment_id, event.transition)
        if event.transition_status == STARTED:
            self._started[key] = (event.timestamp_ns, event.state, event.run_number)
            log.debug("environment %s: %s started", event.environment_id, event.transition)
            return
        if event.transition_status not in (DONE_OK, DONE_ERROR, DONE_TIMEOUT):
            return
        began, from_state, run = self._started.pop(key, (0, "", 0))
        level = logging.INFO if event.transition_status == DONE_OK else logging.WARNING
        log.log(level, "%s", transition_line(event, began or None, from_state, run))

    async def _run(self) -> None:
        subscription = self.bus.subscribe()
        try:
            while True:
                try:
                    event = await subscription.next()
                except StopAsyncIteration:
                    return
                except SubscriberOverflow:
                    log.warning(
                        "transition log fell behind the event stream; some transitions are not logged"
                    )
                    subscription = self.bus.subscribe()
                    continue
                if isinstance(event, EnvironmentEvent):
                    self.handle(event)
        finally:
            subscription.close()
