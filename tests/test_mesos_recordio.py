"""RecordIO framing (apache/mesos docs/recordio.md): encoding, re-chunked decoding, bounds, bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aliecs.mesos.recordio import Decoder, RecordIOError, encode


def test_encode_matches_the_mesos_example() -> None:
    assert encode(b'{"type":"HEARTBEAT"}') == b'20\n{"type":"HEARTBEAT"}'
    assert encode(b"") == b"0\n"


def test_decoder_returns_records_completed_by_each_chunk() -> None:
    decoder = Decoder()
    assert decoder.feed(b"5\nhel") == []
    assert decoder.pending == 3
    assert decoder.feed(b"lo6\nworld!0\n1") == [b"hello", b"world!", b""]
    assert decoder.feed(b"\nx") == [b"x"]
    decoder.close()


def test_record_bodies_may_contain_newlines_and_digits() -> None:
    body = b"12\n34\n"
    assert Decoder().feed(encode(body) + encode(b"\n")) == [body, b"\n"]


@given(
    records=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_any_rechunking_yields_the_same_records(records: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode(r) for r in records)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    decoder = Decoder()
    decoded = [record for chunk in chunks for record in decoder.feed(chunk)]
    assert decoded == records
    decoder.close()


def test_oversized_record_is_refused_before_its_body_arrives() -> None:
    decoder = Decoder(max_record_size=10, source="master http://m:5050")
    with pytest.raises(
        RecordIOError, match=r"master http://m:5050: record of 11 bytes exceeds the limit of 10"
    ):
        decoder.feed(b"11\n")
    with pytest.raises(RecordIOError, match="already failed"):
        decoder.feed(b"0\n")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"abc\n", r"invalid length header b'abc'"),
        (b"\n", r"invalid length header b''"),
        (b"-1\n", r"invalid length header b'-1'"),
        (b" 5\n", r"invalid length header b' 5'"),
        (b"1" * 21, r"longer than 20 digits"),
        (b"2\nok" + b"x\n", r"invalid length header b'x' \(expected decimal digits\) at byte 4"),
    ],
)
def test_malformed_headers_are_refused_with_the_position(data: bytes, message: str) -> None:
    with pytest.raises(RecordIOError, match=message):
        Decoder().feed(data)


def test_close_reports_a_truncated_stream() -> None:
    inside_record = Decoder()
    inside_record.feed(b"10\nabc")
    with pytest.raises(RecordIOError, match=r"ended inside a record at byte 3 \(3 of 10 bytes"):
        inside_record.close()
    inside_header = Decoder()
    inside_header.feed(b"1")
    with pytest.raises(RecordIOError, match="ended inside a length header"):
        inside_header.close()


def test_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_record_size"):
        Decoder(max_record_size=-1)
