"""RecordIO framing of the Mesos v1 HTTP event streams (apache/mesos docs/recordio.md).

A stream is a sequence of records, each its length in bytes as ASCII decimal digits, a line feed, then
exactly that many bytes::

    20\\n{"type":"HEARTBEAT"}

Proxies may re-chunk the stream at any byte, so the decoder is incremental: feed it whatever chunks the
HTTP body delivers and it returns the records completed so far. The length prefix comes from the network,
so both it and the record are bounded: a peer announcing a 10 GB record gets a clear error before any of
it is buffered, instead of exhausting memory. After an error the decoder refuses further input, because
the position of the next header is unknown (as Mesos's own decoder does).
"""

from __future__ import annotations

from typing import NoReturn

# Mesos events are small (an OFFERS event with a few hundred offers is well under a megabyte); 16 MiB
# leaves room for large UPDATE data payloads while keeping a hostile stream's cost bounded.
DEFAULT_MAX_RECORD_SIZE = 16 * 1024 * 1024

# A uint64 has at most 20 decimal digits; a longer header is garbage, not a big record.
_MAX_HEADER_DIGITS = 20


class RecordIOError(ValueError):
    """The stream is not valid RecordIO (bad length header, record over the size bound, truncated)."""


def encode(record: bytes) -> bytes:
    """One record framed for a RecordIO stream: its decimal length, a line feed, the bytes."""
    return b"%d\n" % len(record) + record


class Decoder:
    """Turns chunks of a RecordIO stream into complete records, keeping partial data between calls.

    `source` names the stream in error messages (for example the URL it comes from).
    """

    def __init__(
        self, max_record_size: int = DEFAULT_MAX_RECORD_SIZE, source: str = "RecordIO stream"
    ) -> None:
        if max_record_size < 0:
            raise ValueError(f"max_record_size must be >= 0, got {max_record_size}")
        self.max_record_size = max_record_size
        self.source = source
        self._buffer = bytearray()
        self._length: int | None = None  # None while reading a header
        self._failed: str | None = None
        self._offset = 0  # bytes consumed so far, for error messages

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add a chunk; return the records it completes (possibly none), in stream order.

        Raises RecordIOError on a malformed header or an oversized record, and on every call after one.
        """
        if self._failed is not None:
            raise RecordIOError(f"{self.source}: decoder already failed: {self._failed}")
        records: list[bytes] = []
        self._buffer += chunk
        while True:
            if self._length is None:
                newline = self._buffer.find(b"\n")
                if newline < 0:
                    if len(self._buffer) > _MAX_HEADER_DIGITS:
                        self._fail(f"length header longer than {_MAX_HEADER_DIGITS} digits")
                    break
                self._length = self._parse_header(bytes(self._buffer[:newline]))
                del self._buffer[: newline + 1]
                self._offset += newline + 1
            if len(self._buffer) < self._length:
                break
            records.append(bytes(self._buffer[: self._length]))
            del self._buffer[: self._length]
            self._offset += self._length
            self._length = None
        return records

    def close(self) -> None:
        """Signal the end of the stream: raises RecordIOError if it stops inside a record or header."""
        if self._failed is not None:
            raise RecordIOError(f"{self.source}: decoder already failed: {self._failed}")
        if self._length is not None:
            raise RecordIOError(
                f"{self.source}: stream ended inside a record at byte {self._offset} "
                f"({len(self._buffer)} of {self._length} bytes received)"
            )
        if self._buffer:
            raise RecordIOError(
                f"{self.source}: stream ended inside a length header at byte {self._offset} "
                f"({bytes(self._buffer[:_MAX_HEADER_DIGITS])!r})"
            )

    @property
    def pending(self) -> int:
        """Bytes buffered for a record or header not yet complete."""
        return len(self._buffer)

    def _parse_header(self, header: bytes) -> int:
        if not header or not header.isdigit():
            self._fail(f"invalid length header {header[:_MAX_HEADER_DIGITS]!r} (expected decimal digits)")
        if len(header) > _MAX_HEADER_DIGITS:
            self._fail(f"length header longer than {_MAX_HEADER_DIGITS} digits")
        length = int(header)
        if length > self.max_record_size:
            self._fail(f"record of {length} bytes exceeds the limit of {self.max_record_size} bytes")
        return length

    def _fail(self, reason: str) -> NoReturn:
        self._failed = f"{reason} at byte {self._offset}"
        raise RecordIOError(f"{self.source}: {self._failed}")
