"""What the gRPC plugins share: the endpoint, one grpclib channel, the connection state, and the
translation of every way a request can fail into one line an operator can act on.

grpclib connects lazily and has no connectivity API, so the state is what we last saw: a TCP probe
at start (and every `PROBE_INTERVAL` seconds while the service is away), then the outcome of each
request. A refused or dropped connection makes the plugin TRANSIENT_FAILURE; any answer makes it
READY again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Awaitable, Iterator
from typing import ClassVar, TypeVar

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from aliecs.integrations.base import (
    CONNECTING,
    READY,
    SHUTDOWN,
    TRANSIENT_FAILURE,
    IntegrationError,
    ServicePlugin,
)

T = TypeVar("T")

DIAL_TIMEOUT = 2.0
PROBE_INTERVAL = 2.0
MAX_MESSAGE = 200  # characters of a service's own message kept in errors
_ENDPOINT = re.compile(r"(?:[a-z]+://+)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})/?")


def parse_endpoint(plugin: str, endpoint: str) -> tuple[str, int]:
    """`host:port` (also `dns:///host:port`, `grpc://host:port`, `[::1]:port`) -> (host, port)."""
    match = _ENDPOINT.fullmatch(endpoint.strip())
    port = int(match.group("port")) if match else 0
    if match is None or not 0 < port < 65536:
        raise ValueError(f"endpoint {endpoint[:80]!r} is not HOST:PORT")
    return match.group("host").strip("[]"), port


def clip(text: str) -> str:
    """A service's own words, bounded, on one line."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


class GrpcPlugin(ServicePlugin):
    #: Seconds a call may take when its role gives no timeout (the original's per-call defaults).
    default_timeout: ClassVar[float] = 30.0
    #: Probe the service while it is away; False for plugins whose own stream tells (DCS's Subscribe).
    probe_while_away: ClassVar[bool] = True

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.host, self.port = parse_endpoint(self.name, endpoint)
        self.channel: Channel | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.set_state(CONNECTING)
        self.channel = Channel(self.host, self.port)
        await self.probe()
        if self.probe_while_away:
            self._watch = asyncio.create_task(self._watch_loop(), name=f"aliecs-plugin-{self.name}")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        self.set_state(SHUTDOWN)

    async def probe(self) -> bool:
        """Can a TCP connection to the service be opened now? Updates the state either way."""
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), DIAL_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            self.set_state(TRANSIENT_FAILURE, f"cannot connect to {self.endpoint}: {_why(exc)}")
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        self.set_state(READY)
        return True

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)  # poll: grpclib gives no connectivity notifications
            if self.connection_state != READY:
                await self.probe()

    def _channel(self, what: str) -> Channel:
        if self.channel is None:
            raise IntegrationError(f"{what}: the {self.pretty_name} plugin is not started")
        return self.channel

    @contextlib.contextmanager
    def failures(self, what: str, timeout: float) -> Iterator[None]:
        """Around one request (unary or streamed): any failure becomes an IntegrationError that says
        what and why; success marks the service READY."""
        try:
            yield
        except GRPCError as exc:
            status, message = exc.status, clip(exc.message or "")
            if status == Status.DEADLINE_EXCEEDED:
                raise IntegrationError(
                    f"{what}: no answer from {self.pretty_name} within {timeout:g}s"
                ) from exc
            if status == Status.UNAVAILABLE:
                self.set_state(TRANSIENT_FAILURE, f"{status.name}: {message}")
            raise IntegrationError(f"{what}: {self.pretty_name} answered {status.name}: {message}") from exc
        except TimeoutError as exc:
            raise IntegrationError(f"{what}: no answer from {self.pretty_name} within {timeout:g}s") from exc
        except (StreamTerminatedError, ProtocolError) as exc:
            self.set_state(TRANSIENT_FAILURE, f"connection dropped: {exc}")
            raise IntegrationError(
                f"{what}: the connection to {self.pretty_name} at {self.endpoint} was dropped"
            ) from exc
        except OSError as exc:
            self.set_state(TRANSIENT_FAILURE, f"cannot connect to {self.endpoint}: {_why(exc)}")
            raise IntegrationError(
                f"{what}: cannot reach {self.pretty_name} at {self.endpoint}: {_why(exc)}"
            ) from exc
        self.set_state(READY)

    async def request(self, what: str, answer: Awaitable[T], timeout: float) -> T:
        """Await one unary request under `failures`."""
        with self.failures(what, timeout):
            return await answer
        raise AssertionError("unreachable")  # pragma: no cover - `failures` re-raises


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no connection within {DIAL_TIMEOUT:g}s"
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:  # (name resolution errors are < 0)
        return os.strerror(exc.errno)  # "Connection refused" rather than asyncio's "Connect call failed"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
