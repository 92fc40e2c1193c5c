"""The process entry point of the OCC library: a program that `run`s a handler is a controllable task.

`run` takes the control port from the command line or the environment (as the executor passes it),
serves the handler (`aliecs.occ.server.OccTask`) on uvloop until DONE or a stop signal, and returns
the exit code; `serve` is the same inside a running event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence

from aliecs.occ.errors import OccError
from aliecs.occ.server import (
    CONTROL_PORT_ENV,
    DEFAULT_CONTROL_PORT,
    DEFAULT_HOST,
    EXIT_PORT_UNAVAILABLE,
    EXIT_USAGE,
    OccTask,
)
from aliecs.runtime import run as aliecs_run

__all__ = ["control_port_from", "run", "serve"]

log = logging.getLogger("aliecs.occ.server")


def control_port_from(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The control port: ``--control-port`` in argv, else ``$OCC_CONTROL_PORT``, else 47100.

    Unknown arguments are ignored, so the program can have its own options. ValueError names the
    offending source when the value is not a port number.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--control-port", dest="control_port")
    known, _rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    env = os.environ if environ is None else environ
    if known.control_port is not None:
        text, source = known.control_port, "--control-port"
    elif env.get(CONTROL_PORT_ENV):
        text, source = env[CONTROL_PORT_ENV], CONTROL_PORT_ENV
    else:
        return DEFAULT_CONTROL_PORT
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{source}={text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{source}={port} is out of range (1-65535)")
    return port


async def serve(
    handler: object | None = None,
    *,
    port: int = DEFAULT_CONTROL_PORT,
    host: str = DEFAULT_HOST,
    stop_signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> int:
    """Serve ``handler`` until DONE or a stop signal; returns the process exit code.

    The stop signals end the process gracefully (streams closed, port released, exit code 0); pass an
    empty tuple to leave signal handling to the program.
    """
    grpclib_log = logging.getLogger("grpclib.server")
    if grpclib_log.level == logging.NOTSET:  # unless the program chose otherwise:
        # a stream client (peanut, the executor) leaving is routine, not a line in every device log
        grpclib_log.setLevel(logging.WARNING)
    task = OccTask(handler, host=host, port=port)
    try:
        await task.start()
    except OccError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_PORT_UNAVAILABLE
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in stop_signals:
        loop.add_signal_handler(sig, _on_signal, task, sig)
        installed.append(sig)
    try:
        await task.wait_finished()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await task.close()
    return 0


def _on_signal(task: OccTask, sig: signal.Signals) -> None:
    log.info("received %s in state %s, shutting down", sig.name, task.state)
    task.request_stop()


def run(
    handler: object | None = None,
    argv: Sequence[str] | None = None,
    *,
    host: str = DEFAULT_HOST,
    stop_signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> int:
    """Make the program controllable and block until it is done; returns the exit code.

    Typical use: ``sys.exit(run(MyHandler()))``. The port comes from ``--control-port`` in ``argv``
    (default ``sys.argv``), else ``$OCC_CONTROL_PORT``, else 47100. Runs on uvloop (`aliecs.runtime`).
    """
    try:
        port = control_port_from(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return aliecs_run(serve(handler, port=port, host=host, stop_signals=stop_signals))
