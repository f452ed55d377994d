"""Frames to lines: partial lines wait for the rest, streams stay apart, timestamps are read."""

from __future__ import annotations

import io
import struct
from datetime import UTC, datetime

import pytest

from botfleet.runtime.log_stream import (
    MAX_LINE_BYTES,
    LineSplitter,
    LogQuery,
    lines_of,
    parse_timestamp,
    read_frames,
    to_line,
)

STAMP = "2026-12-06T03:23:21.123456789Z"
AT = datetime(2026, 12, 6, 3, 23, 21, 123456, tzinfo=UTC)


def frame(kind: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", kind, len(data)) + data


def test_a_line_split_across_frames_comes_out_whole_and_streams_stay_apart() -> None:
    splitter = LineSplitter()
    assert splitter.feed("stdout", f"{STAMP} hel".encode()) == []
    assert splitter.feed("stderr", f"{STAMP} oops\n".encode())[0].text == "oops"
    out = splitter.feed("stdout", f"lo\n{STAMP} two\n{STAMP} thr".encode())
    assert [(x.stream, x.text, x.at) for x in out] == [
        ("stdout", "hello", AT),
        ("stdout", "two", AT),
    ]
    assert [x.text for x in splitter.flush()] == ["thr"]
    assert splitter.flush() == []


def test_an_endless_line_is_cut_rather_than_buffered_without_bound() -> None:
    splitter = LineSplitter()
    out = splitter.feed("stdout", b"x" * (MAX_LINE_BYTES * 2 + 5))
    assert [len(x.text) for x in out] == [MAX_LINE_BYTES, MAX_LINE_BYTES]
    assert [len(x.text) for x in splitter.flush()] == [5]


@pytest.mark.parametrize(
    ("raw", "at", "text"),
    [
        (f"{STAMP} hello world\r\n", AT, "hello world"),
        (f"{STAMP} ", AT, ""),
        ("no stamp here", None, "no stamp here"),
        ("", None, ""),
        ("2026-13-99T00:00:00Z bad month", None, "2026-13-99T00:00:00Z bad month"),
    ],
)
def test_to_line(raw: str, at: datetime | None, text: str) -> None:
    line = to_line("stdout", raw.encode())
    assert (line.at, line.text) == (at, text)


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert to_line("stdout", f"{STAMP} a\xff".encode("latin-1")).text == "a\ufffd"


def test_parse_timestamp_with_an_offset() -> None:
    assert parse_timestamp("2026-12-06T04:23:21.5+01:00") == datetime(
        2026, 12, 6, 3, 23, 21, 500000, tzinfo=UTC
    )


def test_read_frames_multiplexed_and_tty() -> None:
    body = frame(1, f"{STAMP} out\n".encode()) + frame(0, b"") + frame(2, f"{STAMP} err\n".encode())
    lines = list(lines_of(read_frames(io.BytesIO(body), tty=False)))
    assert [(x.stream, x.text) for x in lines] == [("stdout", "out"), ("stderr", "err")]
    tty = list(lines_of(read_frames(io.BytesIO(f"{STAMP} a\n{STAMP} b".encode()), tty=True)))
    assert [(x.stream, x.text) for x in tty] == [("stdout", "a"), ("stdout", "b")]
    # A header cut short by the engine closing: the stream ends, no error.
    assert list(read_frames(io.BytesIO(body[:-3] + b""), tty=False))[-1][0] == "stderr"
    assert list(read_frames(io.BytesIO(b"\x01\x00"), tty=False)) == []


def test_query_params() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    params = LogQuery(tail=5, since=since, follow=True).params()
    assert params["tail"] == "5" and params["follow"] == 1 and params["timestamps"] == 1
    assert params["since"] == f"{since.timestamp():.9f}"
    assert LogQuery(tail=None).params()["tail"] == "all"
    assert LogQuery(since=datetime(1900, 1, 1, tzinfo=UTC)).params()["since"] == "0.000000000"
