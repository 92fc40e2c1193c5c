"""Reading a task's output: what the operator looks at first when a task fails.

Each task's stdout and stderr go to one file in the core's state directory (the executor writes it:
`<state>/logs/<environment id>/<role path>.<task id>.log`; `TaskInfo.log_path` names it). Reading
goes by byte offsets so a follower (`coconut task log -f`) resumes exactly where it stopped, and
every read is bounded: a task that writes gigabytes costs the reader at most `MAX_CHUNK` per call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CHUNK = 64 * 1024
MAX_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LogChunk:
    """`data` read from `path` starting at byte `offset`; the next read starts at `next_offset`."""

    path: str
    offset: int
    data: str
    next_offset: int
    size: int  # the file's size when it was read


def read_chunk(path: Path | str, offset: int = 0, max_bytes: int = DEFAULT_CHUNK) -> LogChunk:
    """Read up to `max_bytes` (at most MAX_CHUNK) from `offset`; a negative offset counts from the end.

    A missing file reads as empty (the task may not have written anything yet). Blocking: run it in a
    worker thread from async code.
    """
    limit = min(max(1, max_bytes or DEFAULT_CHUNK), MAX_CHUNK)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start = max(0, size + offset) if offset < 0 else min(offset, size)
            handle.seek(start)
            raw = handle.read(limit)
    except FileNotFoundError:
        return LogChunk(str(path), 0, "", 0, 0)
    if offset < 0 and start > 0:  # began mid-file: drop the partial first line
        cut = raw.find(b"\n")
        if 0 <= cut < len(raw) - 1:
            raw, start = raw[cut + 1 :], start + cut + 1
    return LogChunk(str(path), start, raw.decode("utf-8", "replace"), start + len(raw), size)


def last_lines(path: Path | str, count: int = 10) -> list[str]:
    """The last `count` non-empty lines of the file (from its last 64 KiB at most)."""
    chunk = read_chunk(path, -DEFAULT_CHUNK, DEFAULT_CHUNK)
    lines = [line for line in chunk.data.splitlines() if line.strip()]
    return lines[-count:] if count > 0 else []
