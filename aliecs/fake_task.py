"""``aliecs-fake-task``: an OCC process whose behaviour is chosen on the command line.

It stands in for real detector processes in tests, demos and load benchmarks: the executor starts it
like any controllable task, and options make it slow, failing, crashing, hanging or finishing its data
on cue, so every failure path of the control system can be exercised with real processes and real
gRPC. Simulated work uses ``asyncio.sleep`` so the OCC server keeps answering GetState meanwhile, as
a well-behaved process would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from aliecs.occ.process import control_port_from, serve
from aliecs.occ.server import (
    CALLBACK_NAMES,
    CONTROL_PORT_ENV,
    DEFAULT_CONTROL_PORT,
    OccTask,
)
from aliecs.occ.states import Event, parse_event
from aliecs.runtime import run

#: Exit code of --crash-on-start.
EXIT_CRASH_ON_START = 2
#: Exit code of --crash-on EVENT.
EXIT_CRASH_ON_EVENT = 3

log = logging.getLogger("aliecs.fake_task")


def _say(message: str) -> None:
    """A line on stderr, flushed at once: it may be the last thing the process does before os._exit."""
    print(f"aliecs-fake-task: {message}", file=sys.stderr, flush=True)


def callback_event(text: str) -> Event:
    """argparse type: an event that has a callback (GO_ERROR is forced by the executor, no callback)."""
    try:
        event = parse_event(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if event not in CALLBACK_NAMES:
        choices = ", ".join(CALLBACK_NAMES)
        raise argparse.ArgumentTypeError(f"{event} runs no process code; choose one of {choices}")
    return event


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must not be negative")
    return value


def _latency(text: str) -> tuple[Event, float]:
    event_text, sep, seconds_text = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected EVENT=SECONDS, e.g. CONFIGURE=0.5")
    return callback_event(event_text), _seconds(seconds_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aliecs-fake-task",
        description="A controllable fake task: serves OCC (occ_pb.Occ) and misbehaves on request. "
        "EVENT is one of " + ", ".join(CALLBACK_NAMES) + " (case-insensitive).",
    )
    parser.add_argument(
        "--control-port",
        type=int,
        metavar="PORT",
        help=f"OCC port to listen on, on 127.0.0.1 (default: ${CONTROL_PORT_ENV} or {DEFAULT_CONTROL_PORT})",
    )
    parser.add_argument(
        "--latency",
        type=_latency,
        action="append",
        default=[],
        metavar="EVENT=SECONDS",
        help="time the EVENT callback takes (repeatable); overrides --latency-all for that event",
    )
    parser.add_argument(
        "--latency-all", type=_seconds, default=0.0, metavar="SECONDS", help="time every callback takes"
    )
    parser.add_argument(
        "--fail-on",
        type=callback_event,
        action="append",
        default=[],
        metavar="EVENT",
        help="the EVENT callback raises: the task goes to ERROR (repeatable)",
    )
    parser.add_argument(
        "--crash-on",
        type=callback_event,
        action="append",
        default=[],
        metavar="EVENT",
        help=f"exit at once with code {EXIT_CRASH_ON_EVENT} when EVENT is requested (repeatable)",
    )
    parser.add_argument(
        "--hang-on",
        type=callback_event,
        action="append",
        default=[],
        metavar="EVENT",
        help="the EVENT callback never returns (repeatable)",
    )
    parser.add_argument(
        "--crash-on-start",
        action="store_true",
        help=f"exit with code {EXIT_CRASH_ON_START} before serving OCC",
    )
    parser.add_argument(
        "--slow-start",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before serving OCC",
    )
    parser.add_argument(
        "--end-of-stream-after",
        type=_seconds,
        metavar="SECONDS",
        help="once RUNNING for this long, emit END_OF_STREAM (the task asks to be stopped)",
    )
    parser.add_argument(
        "--fail-running-after",
        type=_seconds,
        metavar="SECONDS",
        help="once RUNNING for this long, go to ERROR on its own (TASK_INTERNAL_ERROR event)",
    )
    parser.add_argument(
        "--ignore-sigterm",
        action="store_true",
        help="ignore SIGTERM (SIGINT still stops it gracefully, SIGKILL always works)",
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="append one JSON line per transition request ({event, args}) to FILE",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity on stderr (default: INFO)",
    )
    return parser


class FakeHandler:
    """OCC callbacks driven by the parsed options."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.latencies: dict[Event, float] = dict(options.latency)
        self.latency_all: float = options.latency_all
        self.fail_on: set[Event] = set(options.fail_on)
        self.crash_on: set[Event] = set(options.crash_on)
        self.hang_on: set[Event] = set(options.hang_on)
        self.record: Path | None = options.record
        self.end_of_stream_after: float | None = options.end_of_stream_after
        self.fail_running_after: float | None = options.fail_running_after
        self.task: OccTask | None = None
        self._running_since = 0.0
        # Only a task with timed behaviour in RUNNING gets a running loop: thousands of idle fake tasks
        # must not each wake up every millisecond.
        self.iterate_running: Callable[[], Awaitable[bool]] | None = None
        if self.end_of_stream_after is not None or self.fail_running_after is not None:
            self.iterate_running = self._iterate_running

    def bind(self, task: OccTask) -> None:
        self.task = task

    async def _step(self, event: Event, args: dict[str, str]) -> None:
        if self.record is not None:
            with self.record.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"event": str(event), "args": args}, sort_keys=True) + "\n")
        if event in self.crash_on:
            print(
                f"aliecs-fake-task: crashing on {event} as requested (--crash-on)",
                file=sys.stderr,
                flush=True,
            )
            os._exit(EXIT_CRASH_ON_EVENT)
        latency = self.latencies.get(event, self.latency_all)
        if latency > 0:
            await asyncio.sleep(latency)  # simulated work, not synchronisation
        if event in self.hang_on:
            log.warning("hanging in %s as requested (--hang-on)", event)
            await asyncio.Event().wait()
        if event in self.fail_on:
            raise RuntimeError(f"fake failure in {event} (--fail-on)")

    async def on_configure(self, args: dict[str, str]) -> None:
        await self._step(Event.CONFIGURE, args)

    async def on_reset(self, args: dict[str, str]) -> None:
        await self._step(Event.RESET, args)

    async def on_start(self, args: dict[str, str]) -> None:
        await self._step(Event.START, args)
        self._running_since = asyncio.get_running_loop().time()

    async def on_stop(self, args: dict[str, str]) -> None:
        await self._step(Event.STOP, args)

    async def on_recover(self, args: dict[str, str]) -> None:
        await self._step(Event.RECOVER, args)

    async def on_exit(self, args: dict[str, str]) -> None:
        await self._step(Event.EXIT, args)

    async def _iterate_running(self) -> bool:
        """Sleep until the first timed behaviour is due, then perform it (called while RUNNING)."""
        loop = asyncio.get_running_loop()
        due = [
            (after, kind)
            for after, kind in ((self.end_of_stream_after, "eos"), (self.fail_running_after, "fail"))
            if after is not None
        ]
        after, kind = min(due)
        remaining = self._running_since + after - loop.time()
        if remaining > 0:
            await asyncio.sleep(remaining)  # simulated data taking
        if kind == "eos":
            return True
        assert self.task is not None
        self.task.fail(f"fake internal error after {after:g}s in RUNNING (--fail-running-after)")
        return False


async def _amain(options: argparse.Namespace, port: int) -> int:
    if options.slow_start > 0:
        log.info("slow start: serving in %gs", options.slow_start)
        await asyncio.sleep(options.slow_start)  # simulated initialisation
    stop_signals = (signal.SIGINT,) if options.ignore_sigterm else (signal.SIGTERM, signal.SIGINT)
    return await serve(FakeHandler(options), port=port, stop_signals=stop_signals)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``aliecs-fake-task``; returns the exit code (0 after EXIT or a stop signal)."""
    args = list(sys.argv[1:] if argv is None else argv)
    options = build_parser().parse_args(args)
    logging.basicConfig(
        level=options.log_level,
        format=f"%(asctime)s fake-task[{os.getpid()}] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if options.crash_on_start:
        print(
            "aliecs-fake-task: crashing on start as requested (--crash-on-start)", file=sys.stderr, flush=True
        )
        return EXIT_CRASH_ON_START
    try:
        port = control_port_from(args)
    except ValueError as exc:
        _say(f"error: {exc}")
        return 2
    if options.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return run(_amain(options, port))


if __name__ == "__main__":
    sys.exit(main())
