"""Reading task output files: bounded chunks by byte offset, tails that start on a line."""

from __future__ import annotations

from pathlib import Path

from aliecs.tasklog import MAX_CHUNK, last_lines, read_chunk


def test_chunks_resume_where_they_stopped(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_text("one\ntwo\n")
    first = read_chunk(log, 0, 4)
    assert (first.data, first.next_offset) == ("one\n", 4)
    second = read_chunk(log, first.next_offset)
    assert (second.data, second.next_offset, second.size) == ("two\n", 8, 8)
    with log.open("a") as handle:
        handle.write("three\n")
    assert read_chunk(log, second.next_offset).data == "three\n"
    assert read_chunk(log, 10_000).data == ""  # past the end: nothing, not an error


def test_tail_starts_on_a_whole_line_and_reads_are_bounded(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_text("alpha\nbeta\ngamma\n")
    tail = read_chunk(log, -8)
    assert tail.data == "gamma\n" and tail.offset == len("alpha\nbeta\n")
    assert last_lines(log, 2) == ["beta", "gamma"]
    big = tmp_path / "big.log"
    big.write_bytes(b"x" * (MAX_CHUNK + 10))
    assert len(read_chunk(big, 0, 10 * MAX_CHUNK).data) == MAX_CHUNK
    assert read_chunk(tmp_path / "missing.log").data == ""


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_bytes(b"ok \xff\n")
    assert read_chunk(log).data == "ok \ufffd\n"
