"""The audit log's durability policy: events per second with `fdatasync` at most once a second (the
default), against never syncing and syncing after every write, measured side by side.

Every event the core publishes is appended to `events.jsonl` (`aliecs.server.audit`). Each batch
reaches the kernel with one `write()`; the policy decides how often the file is also forced to disk,
which bounds what a crash of the *machine* loses (a crash of the core loses nothing written). The
headline is the ratio default / never: the price of that bound, 1.0 being free.

Events are published in bursts of `BURST` (as a transition of a large environment does: one event
per task), yielding to the loop between bursts so the log's writer runs concurrently, until
`EVENTS` are published; the rate is events written (`AuditLog.written`) per second until the last
one is written. The policies take turns over `ROUNDS` rounds and each keeps its best round (the
least disturbed by other work on the machine). Turning an event into its JSON line (betterproto's
`to_dict`, on the event loop) costs about 1-15 ms (quiet to loaded 2-core machine): that, not the
disk, bounds the log's rate, so the counts are small. The log is written in a temporary directory on the
filesystem of the system's temporary directory, which the result names: on tmpfs syncing is free.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from aliecs.events import ONGOING, EnvironmentEvent, EventBus
from aliecs.server.audit import SYNC_INTERVAL_S, AuditLog

EVENTS = (1_000, 100)  # normal, quick
ROUNDS = (2, 1)
BURST = 200
#: Name -> sync interval (seconds between fdatasyncs at most; None: never).
POLICIES: dict[str, float | None] = {"never": None, "default": SYNC_INTERVAL_S, "every_write": 0.0}


def filesystem_of(path: Path) -> str:
    """The type of the filesystem `path` is on (from /proc/mounts), or "unknown"."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if (
            len(fields) > 2
            and (resolved + "/").startswith(fields[1].rstrip("/") + "/")
            and len(fields[1]) > len(best)
        ):
            best, kind = fields[1], fields[2]
    return kind


def event(index: int) -> EnvironmentEvent:
    """A task-sized environment event (about the size of the core's, once in JSON)."""
    return EnvironmentEvent(
        environment_id="2oDvieFrVTi",
        state="CONFIGURED",
        transition="START_ACTIVITY",
        transition_step=f"tasks_START_ACTIVITY_{index}",
        transition_status=ONGOING,
        run_number=504_000 + index,
        message="transition step finished",
    )


async def one_round(directory: Path, events: int, sync_interval: float | None) -> float:
    """Events per second written to a fresh audit log with this policy."""
    bus = EventBus()
    audit = AuditLog(bus, directory / "events.jsonl", sync_interval=sync_interval)
    await audit.start()
    try:
        began = time.perf_counter()
        for start in range(0, events, BURST):
            for index in range(start, min(start + BURST, events)):
                bus.publish(event(index))
            await asyncio.sleep(0)
        while audit.written < events:
            if audit.failing is not None:
                raise RuntimeError(f"audit_fsync: the log cannot be written: {audit.failing}")
            await asyncio.sleep(0.001)  # poll: nothing announces a written batch
        elapsed = time.perf_counter() - began
    finally:
        await audit.stop()
    return events / elapsed


async def measure(events: int, rounds: int) -> dict[str, Any]:
    best: dict[str, float] = {name: 0.0 for name in POLICIES}
    with tempfile.TemporaryDirectory(prefix="aliecs-audit-") as tmp:
        for round_number in range(rounds):
            for name, interval in POLICIES.items():
                directory = Path(tmp) / f"{name}-{round_number}"
                directory.mkdir()
                best[name] = max(best[name], await one_round(directory, events, interval))
                for entry in directory.iterdir():
                    entry.unlink()
        kind = filesystem_of(Path(tmp))
    never = best["never"]
    return {
        "events": events,
        "rounds": rounds,
        "filesystem": kind,
        "events_per_s": {name: round(rate) for name, rate in best.items()},
        # The headline: what the default policy keeps of the never-syncing rate (1.0: free).
        "fsync_ratio": round(best["default"] / never, 3),
        "every_write_ratio": round(best["every_write"] / never, 3),
        "sync_interval_s": SYNC_INTERVAL_S,
        "cpus": os.cpu_count(),
    }


def run(seconds: float = 2.0, quick: bool = False) -> dict[str, Any]:
    """1,000 events per policy and round, 2 rounds (100 and 1 with `quick`)."""
    started = time.perf_counter()
    result = uvloop.run(measure(EVENTS[quick], ROUNDS[quick]))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def report(result: dict[str, Any]) -> list[tuple[str, str]]:
    rates = result["events_per_s"]
    return [
        (f"events per policy and round (rounds: {result['rounds']})", f"{result['events']:,}"),
        ("filesystem of the log", result["filesystem"]),
        ("events/s, never fdatasync", f"{rates['never']:,}"),
        (
            f"events/s, fdatasync at most every {result['sync_interval_s']:g} s (default)",
            f"{rates['default']:,}",
        ),
        ("events/s, fdatasync after every write", f"{rates['every_write']:,}"),
        ("ratio default / never", f"{result['fsync_ratio']}"),
        ("ratio every write / never", f"{result['every_write_ratio']}"),
    ]
