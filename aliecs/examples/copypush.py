"""`aliecs-copypush sampler|sink`: the two devices of the copypush workflow, moving real data.

Both are ordinary OCC tasks. At CONFIGURE they receive their channel from the control system as the
FairMQ-style keys `chans.data.0.address` / `.method` / `.type`; the sampler binds a ZeroMQ PUSH
socket there, each sink connects a PULL socket. While RUNNING the sampler pushes messages at the
configured rate and the sinks count what arrives; at STOP each prints its count for the run, which is
what the demo reports.

A bind address with the wildcard host (`tcp://*:PORT`, as FairMQ channels are written) is bound on
the node's own address (`--bind-host`, default 127.0.0.1, the address of every simulated node of
the local cluster), never on all interfaces: the data channel is reachable by the peers the control
system wired to it, not by every machine that can route to this one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

import zmq
import zmq.asyncio

from aliecs.occ import run

_SOCKET_TYPES = {"push": zmq.PUSH, "pull": zmq.PULL, "pub": zmq.PUB, "sub": zmq.SUB}


DEFAULT_BIND_HOST = "127.0.0.1"


def node_bind_address(address: str, host: str) -> str:
    """`tcp://*:PORT` (or `tcp://0.0.0.0:PORT`) -> `tcp://HOST:PORT`; other addresses unchanged."""
    for wildcard in ("tcp://*:", "tcp://0.0.0.0:"):
        if address.startswith(wildcard):
            return f"tcp://{host}:{address[len(wildcard) :]}"
    return address


def _log(text: str) -> None:
    print(text, flush=True)


class _Device:
    """Common channel handling: open the `data` channel as told at CONFIGURE, close it at RESET."""

    def __init__(self, device_id: str, bind_host: str = DEFAULT_BIND_HOST) -> None:
        self.device_id = device_id
        self.bind_host = bind_host
        self.context = zmq.asyncio.Context()
        self.socket: zmq.asyncio.Socket | None = None
        self.run_number = "0"

    def open_channel(self, args: dict[str, str]) -> None:
        try:
            address = args["chans.data.0.address"]
            method = args["chans.data.0.method"]
            kind = args["chans.data.0.type"]
        except KeyError as missing:
            raise ValueError(f"CONFIGURE arguments lack {missing}: the data channel was not given") from None
        if kind not in _SOCKET_TYPES:
            raise ValueError(f"unsupported channel type {kind!r}")
        socket = self.context.socket(_SOCKET_TYPES[kind])
        socket.setsockopt(zmq.LINGER, 0)
        if kind == "sub":
            socket.setsockopt(zmq.SUBSCRIBE, b"")
        if method == "bind":
            address = node_bind_address(address, self.bind_host)
            socket.bind(address)
        else:
            socket.connect(address)
        self.socket = socket
        _log(f"{self.device_id}: {method} {kind} channel 'data' at {address}")

    def close_channel(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    async def on_configure(self, args: dict[str, str]) -> None:
        self.open_channel(args)

    async def on_reset(self, args: dict[str, str]) -> None:
        self.close_channel()

    async def on_exit(self, args: dict[str, str]) -> None:
        self.close_channel()
        self.context.term()


class Sampler(_Device):
    def __init__(
        self, device_id: str, msg_size: int, rate: float, bind_host: str = DEFAULT_BIND_HOST
    ) -> None:
        super().__init__(device_id, bind_host)
        self.payload = b"x" * msg_size
        self.rate = rate
        self.sent = 0
        self.pusher: asyncio.Task[None] | None = None

    async def _push(self) -> None:
        assert self.socket is not None
        loop = asyncio.get_running_loop()
        tick = 0.01
        per_tick = max(1, round(self.rate * tick))
        next_time = loop.time()
        while True:
            for _ in range(per_tick):
                try:
                    await self.socket.send(self.payload, flags=zmq.NOBLOCK)
                    self.sent += 1
                except zmq.Again:
                    break  # no sink connected yet, or all queues full: drop, as a sampler would
            next_time += tick
            await asyncio.sleep(max(0.0, next_time - loop.time()))  # pacing of the data flow

    async def on_start(self, args: dict[str, str]) -> None:
        self.run_number = args.get("runNumber", "0")
        self.sent = 0
        self.pusher = asyncio.ensure_future(self._push())

    async def on_stop(self, args: dict[str, str]) -> None:
        if self.pusher is not None:
            self.pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pusher
            self.pusher = None
        _log(f"{self.device_id}: run {self.run_number}: sent {self.sent} messages")


class Sink(_Device):
    def __init__(self, device_id: str, bind_host: str = DEFAULT_BIND_HOST) -> None:
        super().__init__(device_id, bind_host)
        self.received = 0
        self.bytes = 0
        self.counting = False
        self.puller: asyncio.Task[None] | None = None

    async def _pull(self) -> None:
        assert self.socket is not None
        while True:
            message = await self.socket.recv()
            if self.counting:
                self.received += 1
                self.bytes += len(message)
                if self.received == 1:
                    _log(f"{self.device_id}: run {self.run_number}: first message received")

    async def on_configure(self, args: dict[str, str]) -> None:
        await super().on_configure(args)
        self.puller = asyncio.ensure_future(self._pull())

    async def on_start(self, args: dict[str, str]) -> None:
        self.run_number = args.get("runNumber", "0")
        self.received = self.bytes = 0
        self.counting = True

    async def on_stop(self, args: dict[str, str]) -> None:
        self.counting = False
        _log(
            f"{self.device_id}: run {self.run_number}: received {self.received} messages ({self.bytes} bytes)"
        )

    async def on_reset(self, args: dict[str, str]) -> None:
        if self.puller is not None:
            self.puller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.puller
            self.puller = None
        await super().on_reset(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aliecs-copypush", description=__doc__.splitlines()[0])
    parser.add_argument("device", choices=["sampler", "sink"])
    parser.add_argument("--id", default="copypush", help="device id used in log lines")
    parser.add_argument("--msg-size", type=int, default=1024, help="sampler: bytes per message")
    parser.add_argument("--rate", type=float, default=500.0, help="sampler: messages per second")
    parser.add_argument(
        "--control-port", type=int, default=None, help="OCC port (default: $OCC_CONTROL_PORT)"
    )
    parser.add_argument(
        "--bind-host",
        default=DEFAULT_BIND_HOST,
        help="address a wildcard (tcp://*:PORT) channel binds on: this node's address",
    )
    args = parser.parse_args(argv)
    handler: Any = (
        Sampler(args.id, args.msg_size, args.rate, args.bind_host)
        if args.device == "sampler"
        else Sink(args.id, args.bind_host)
    )
    return run(handler, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
