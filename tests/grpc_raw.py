"""A raw gRPC client over HTTP/2 (h2 on a blocking socket) for sending what no stub would send.

Hardening tests need requests a well-behaved client never makes: garbage bodies, a length prefix
announcing 4 GiB followed by a few bytes and then silence. The answer is the gRPC status the server
put in its trailers (or trailers-only headers), or None when it closed the stream or connection.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events


@dataclass
class Answer:
    status: int | None  # None: the server reset the stream or closed the connection
    message: str


def frame(body: bytes) -> bytes:
    """A gRPC message: uncompressed flag, big-endian length, body."""
    return struct.pack(">?I", False, len(body)) + body


class RawGrpc:
    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self._backlog: list[h2.events.Event] = []  # received while still sending

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawGrpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self, path: str, data: bytes, end: bool = True, headers: list[tuple[str, str]] | None = None
    ) -> Answer:
        """Send `data` (prefix included) as the request body of `path` and wait for the status."""
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "127.0.0.1"),
                ("content-type", "application/grpc+proto"),
                ("te", "trailers"),
                *(headers or []),
            ],
            end_stream=not data and end,
        )
        sent = 0
        while sent < len(data):
            window = min(self.conn.local_flow_control_window(stream), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.sock.sendall(self.conn.data_to_send())
                self._backlog += self._pump()  # wait for the server to open its window (or answer)
                if any(_ends(event, stream) for event in self._backlog):
                    break
                continue
            size = min(len(data) - sent, window)
            last = sent + size == len(data)
            self.conn.send_data(stream, data[sent : sent + size], end_stream=last and end)
            sent += size
        self.sock.sendall(self.conn.data_to_send())
        return self._answer(stream)

    def _pump(self) -> list[h2.events.Event]:
        """Read once from the socket; acknowledge data; the h2 events received."""
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        events = self.conn.receive_data(chunk)
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.sock.sendall(self.conn.data_to_send())
        return list(events)

    def _answer(self, stream: int) -> Answer:
        status: int | None = None
        message = ""
        while True:
            try:
                events, self._backlog = self._backlog or self._pump(), []
            except ConnectionError:
                return Answer(status, message or "connection closed")
            for event in events:
                headers = isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived))
                if headers and event.stream_id == stream:
                    for name, value in event.headers:
                        key = name.decode() if isinstance(name, bytes) else name
                        text = value.decode() if isinstance(value, bytes) else value
                        if key == "grpc-status":
                            status = int(text)
                        elif key == "grpc-message":
                            message = unquote(text)
                if isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    return Answer(status, message)
                if isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                    return Answer(status, message or "stream reset")
                if isinstance(event, h2.events.ConnectionTerminated):
                    return Answer(status, message or "connection terminated")


def _ends(event: h2.events.Event, stream: int) -> bool:
    ended = isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset))
    return (ended and event.stream_id == stream) or isinstance(event, h2.events.ConnectionTerminated)
