"""The OCC library for controlled processes: a task's state machine served as ``occ_pb.Occ``.

:class:`OccTask` is the whole controllable process: the state machine and its handler callbacks
(`aliecs.occ.task`, where the callbacks are documented), the gRPC service over it
(`aliecs.occ.service`), and the server's lifecycle here: bind the control port (with a message that
says what to do when it is taken), serve, and close so that the port is free and nothing is left
running. The process entry point (`run`, signals, the port from argv or the environment) is
`aliecs.occ.process`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket

from aliecs.broadcast import Broadcast
from aliecs.grpcserver import GrpcServer
from aliecs.occ.errors import OccError, OccPortInUseError
from aliecs.occ.service import ERROR_DETAIL_LIMIT, ERROR_DETAIL_METADATA, OccService, error_detail
from aliecs.occ.task import CALLBACK_NAMES, OccHandler, SubscriberOverflowError, TaskStateMachine
from aliecs.wire import RequestCodec

log = logging.getLogger("aliecs.occ")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_CONTROL_PORT = 47100
CONTROL_PORT_ENV = "OCC_CONTROL_PORT"

#: Exit code of :func:`run` when the control port cannot be bound.
EXIT_PORT_UNAVAILABLE = 1
#: Exit code of :func:`run` for a bad ``--control-port`` / ``OCC_CONTROL_PORT`` value.
EXIT_USAGE = 2


class OccTask(TaskStateMachine):
    """One controllable process: its OCC state machine and the gRPC server exposing it.

    Lifecycle: ``await start()`` binds and serves; ``await wait_finished()`` returns once the task
    reached DONE (and the EXIT reply went out) or :meth:`request_stop` was called; ``await close()``
    ends the streams cleanly and stops the server. ``async with OccTask(...)`` does start/close, and
    :meth:`serve` does all three. Everything must be used from the event loop's thread.
    """

    def __init__(
        self,
        handler: object | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_CONTROL_PORT,
        iterate_interval: float = 0.001,
        max_queued: int = 1024,
    ) -> None:
        super().__init__(handler, iterate_interval=iterate_interval, max_queued=max_queued)
        self._host = host
        self._requested_port = port
        self._bound_port: int | None = None
        self._service = OccService(self)
        self._server: GrpcServer | None = None
        self._closed = False

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``); the requested one before :meth:`start`."""
        return self._bound_port if self._bound_port is not None else self._requested_port

    @property
    def address(self) -> str:
        return f"{self._host}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the control port and start serving; OccPortInUseError if the port is taken."""
        if self._server is not None:
            raise RuntimeError("OccTask already started")
        sock = self._bind()
        bind = getattr(self.handler, "bind", None)
        if callable(bind):
            bind(self)
        server = GrpcServer([self._service], codec=RequestCodec())
        try:
            await server.start(sock=sock)
        except BaseException:
            sock.close()
            raise
        self._server = server
        self._bound_port = sock.getsockname()[1]
        log.info("serving occ_pb.Occ on %s (pid %d), state %s", self.address, os.getpid(), self.state)

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Lets a restarted task reuse a port still in TIME_WAIT; a live listener still conflicts.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._requested_port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            where = f"{self._host}:{self._requested_port}"
            if exc.errno == errno.EADDRINUSE:
                raise OccPortInUseError(
                    f"OCC control port {where} is already in use (another task, or a leftover process "
                    f"from an earlier run?); choose another with --control-port or {CONTROL_PORT_ENV}"
                ) from exc
            raise OccError(f"cannot listen on OCC control address {where}: {exc.strerror or exc}") from exc
        return sock

    async def close(self, grace: float = 1.0) -> None:
        """Stop everything: running callbacks are cancelled, streams end cleanly, the port is released.

        ``grace`` bounds how long open streams get to flush what is queued before being cut.
        """
        if self._closed:
            return
        self._closed = True
        await self.halt()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._service.wait_streams_idle(), grace)
            self._server.close()  # connections too: a closed task is gone for its clients
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), grace)
        log.info("OCC server on %s closed, final state %s", self.address, self.state)

    async def serve(self) -> None:
        """Start (if needed), wait until finished, close: the whole life of a controlled process."""
        if self._server is None:
            await self.start()
        try:
            await self.wait_finished()
        finally:
            await self.close()

    async def __aenter__(self) -> OccTask:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = [
    "CALLBACK_NAMES",
    "CONTROL_PORT_ENV",
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_HOST",
    # Names this module has always offered, now defined next door (kept for existing imports):
    "ERROR_DETAIL_LIMIT",
    "ERROR_DETAIL_METADATA",
    "Broadcast",
    "OccHandler",
    "OccTask",
    "SubscriberOverflowError",
    "error_detail",
]
