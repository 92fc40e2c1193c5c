"""The append-only audit log: every event the core publishes, one JSON object per line.

Format: `<state dir>/events.jsonl`, UTF-8, one `events.Event` per line in the protobuf JSON mapping
(camelCase field names as in events.proto, e.g. `{"timestamp": "...", "timestampNano": "...",
"environmentEvent": {...}}`; 64-bit integers are strings, as the JSON mapping specifies). Lines are
only ever appended.

Why JSON lines rather than length-delimited protobuf: operators read and grep it during an
incident, and any tool can parse it. Writing never blocks the event loop: a pump task turns events
into lines in memory, and a writer task hands whatever has accumulated to a thread in one write.

Failures are never silent and never leave half a line:
- at start, a last line without its newline (a crash mid-write) is moved to `events.jsonl.torn`
  and cut from the log, so the next event starts a valid line;
- a failed or short write (disk full) is undone by truncating the file back to its last complete
  line; the batch stays queued, the error is logged, counted (`write_errors`, `failing`, shown by
  GetFrameworkInfo) and the write retried every `RETRY_S` seconds on a freshly opened file, so
  logging resumes by itself once space returns. At most `MAX_QUEUED` lines wait; older ones are
  dropped and counted (`dropped`) rather than exhausting memory.

Durability policy: every batch reaches the kernel with one `write()` before the next is taken, so
a crash of the core loses nothing already written; the file is `fdatasync`ed at most once per
`SYNC_INTERVAL_S` (and at stop), so a crash of the machine loses at most the last second of events.
What that costs in events per second, against never syncing and syncing every write, is measured by
`python -m bench audit_fsync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import stat
import time
from pathlib import Path

from aliecs.events import AUDIT_FILE, Event, EventBus, SubscriberOverflow, Subscription
from aliecs.server.events import to_proto

log = logging.getLogger(__name__)

__all__ = ["AUDIT_FILE", "AuditLog", "isolate_torn_line"]
TORN_SUFFIX = ".torn"
RETRY_S = 1.0
SYNC_INTERVAL_S = 1.0
MAX_QUEUED = 100_000
FILE_MODE = 0o600


def isolate_torn_line(path: Path) -> bytes:
    """Cut a last line that lacks its newline from `path`, appending it to `<path>.torn`.

    Returns the fragment (empty if the log was intact or is not a regular file).
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return b""
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return b""
    with path.open("r+b") as file:
        end = info.st_size
        file.seek(end - 1)
        if file.read(1) == b"\n":
            return b""
        start = end
        while start > 0:  # find the last newline, reading backwards in blocks
            block = min(65536, start)
            file.seek(start - block)
            chunk = file.read(block)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                start = start - block + cut + 1
                break
            start -= block
        file.seek(start)
        fragment = file.read()
        torn = path.with_name(path.name + TORN_SUFFIX)
        fd = os.open(torn, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            os.write(fd, fragment + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        file.truncate(start)
        file.flush()
        os.fsync(file.fileno())
    log.warning(
        "audit log %s ended with a torn line of %d bytes (a crash mid-write): moved to %s",
        path,
        len(fragment),
        torn,
    )
    return fragment


class AuditLog:
    def __init__(self, bus: EventBus, path: Path, sync_interval: float | None = SYNC_INTERVAL_S) -> None:
        """`sync_interval`: seconds between `fdatasync`s at most (0: after every write; None: never,
        only at stop; for comparison in the benchmark)."""
        self.bus = bus
        self.path = path
        self.sync_interval = sync_interval
        self.written = 0
        #: Failed write attempts since start, lines dropped because too many were queued, and the
        #: current failure (None while writing works).
        self.write_errors = 0
        self.dropped = 0
        self.failing: str | None = None
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._fd: int | None = None
        self._size = 0
        self._last_sync = 0.0

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(isolate_torn_line, self.path)
        try:
            await asyncio.to_thread(self._open)
        except OSError as exc:
            self._failed(exc)
        self._closing = False
        self._subscription = self.bus.subscribe()
        self._tasks = [
            asyncio.create_task(self._pump(), name="aliecs-audit-pump"),
            asyncio.create_task(self._writer(), name="aliecs-audit-writer"),
        ]

    def health(self) -> str:
        """Empty when the log is written, else one line saying what is wrong (for GetFrameworkInfo)."""
        if self.failing is None and not self.dropped:
            return ""
        parts = []
        if self.failing is not None:
            parts.append(f"audit log {self.path} not written: {self.failing} ({self.write_errors} errors)")
        if self.dropped:
            parts.append(f"{self.dropped} audit events dropped")
        return "; ".join(parts)

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        if stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.fchmod(self._fd, FILE_MODE)  # private even if an older version created it 0644
        self._size = os.lseek(self._fd, 0, os.SEEK_END)

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):  # a full disk: the data is in the kernel or was undone
                os.fsync(fd)
            os.close(fd)

    def record(self, event: Event) -> None:
        """Queue one event for the log (also the events published before the log started)."""
        self._pending.append(json.dumps(to_proto(event).to_dict(), separators=(",", ":")) + "\n")
        if len(self._pending) > MAX_QUEUED:
            excess = len(self._pending) - MAX_QUEUED
            del self._pending[:excess]
            self.dropped += excess
        self._wake.set()

    async def _pump(self) -> None:
        while True:
            assert self._subscription is not None
            try:
                async for event in self._subscription:
                    self.record(event)
                break
            except SubscriberOverflow as exc:
                log.error("audit log fell behind, some events are missing from it: %s", exc)
                self._subscription = self.bus.subscribe()
        self._closing = True
        self._wake.set()

    async def _writer(self) -> None:
        while True:
            if self.failing is None:
                await self._wake.wait()
            else:  # retry after a pause, or at once when closing
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_S)
            self._wake.clear()
            batch = self._pending
            if batch:
                self._pending = []
                try:
                    await asyncio.to_thread(self._write, "".join(batch).encode())
                except OSError as exc:
                    self._pending = batch + self._pending
                    self._failed(exc)
                    if self._closing:
                        log.error("audit log: %d events could not be written before stopping", len(batch))
                        return
                    continue
                self.written += len(batch)
                if self.failing is not None:
                    log.warning("audit log %s written again after %d errors", self.path, self.write_errors)
                    self.failing = None
            if self._closing and not self._pending:
                return

    def _failed(self, exc: OSError) -> None:
        self.write_errors += 1
        reason = exc.strerror or str(exc)
        if self.failing != reason:
            log.error(
                "AUDIT LOG %s CANNOT BE WRITTEN: %s; %d events waiting, retrying every %gs",
                self.path,
                reason,
                len(self._pending),
                RETRY_S,
            )
        self.failing = reason

    def _write(self, data: bytes) -> None:
        """Append `data` completely or not at all (runs in a thread)."""
        if self._fd is None:
            self._open()
        assert self._fd is not None
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
        except OSError:
            self._undo()
            raise
        self._size += written
        now = time.monotonic()
        if self.sync_interval is not None and now - self._last_sync >= self.sync_interval:
            self._last_sync = now
            os.fdatasync(self._fd)

    def _undo(self) -> None:
        """Cut what a failed write left, and drop the descriptor so the next try reopens the path."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.ftruncate(fd, self._size)
        except OSError as exc:
            log.error("audit log %s: cannot cut a partial line: %s", self.path, exc)
        finally:
            os.close(fd)

    async def stop(self) -> None:
        """Write every event published so far, then close the file."""
        if self._subscription is not None:
            self._subscription.close()
        self._wake.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await asyncio.to_thread(self._close)
