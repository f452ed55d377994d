"""A workload's stdout and stderr as lines with timestamps, read from an engine's log endpoint
(``/containers/{id}/logs`` on a plain engine, ``/services/{id}/logs`` on a swarm).

The engine frames a container's output (8-byte headers naming the stream, then the bytes the
process wrote); a frame is whatever one ``write`` produced, so it may hold several lines or half
of one. :class:`LineSplitter` (pure) turns frames back into lines, per stream, and reads the
RFC 3339 timestamp the engine puts in front of each line when asked (``timestamps=1``).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

STDOUT, STDERR = "stdout", "stderr"
_STREAMS = {0: STDOUT, 1: STDOUT, 2: STDERR}
_HEADER = 8
# A line longer than this is cut (its rest follows as further lines): one bot printing a huge
# blob must not grow a reader's buffer without bound.
MAX_LINE_BYTES = 64 * 1024


@dataclass(frozen=True)
class LogQuery:
    """Which lines: the last ``tail`` (None: all) since ``since`` (None: the start), and whether
    to keep reading new ones as the workload prints them (``follow``)."""

    tail: int | None = 100
    since: datetime | None = None
    follow: bool = False

    def params(self) -> dict[str, Any]:
        """The engine API's query parameters (the same for containers and services)."""
        params: dict[str, Any] = {
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
            "follow": 1 if self.follow else 0,
            "tail": "all" if self.tail is None else str(self.tail),
        }
        if self.since is not None:
            # Seconds with nanoseconds, as the engine reads it (not before the epoch).
            params["since"] = f"{max(self.since.timestamp(), 0.0):.9f}"
        return params


@dataclass(frozen=True)
class LogLine:
    """One line a workload printed: when (as the engine stamped it), on which stream, what."""

    at: datetime | None
    stream: str
    text: str


class LogStream(Protocol):
    """A blocking iterator of lines; ``close()`` from another thread ends it."""

    def __iter__(self) -> Iterator[LogLine]: ...

    def close(self) -> None: ...


def parse_timestamp(value: str) -> datetime | None:
    """``2026-01-02T03:04:05.123456789Z`` (nanoseconds, as engines write it) as a UTC datetime;
    None if ``value`` is no timestamp."""
    text, offset = value, ""
    if text.endswith("Z"):
        text, offset = text[:-1], "+00:00"
    elif len(text) > 19 and text[-6] in "+-" and text[-3] == ":":
        text, offset = text[:-6], text[-6:]
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    try:
        parsed = datetime.fromisoformat(text + offset)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def to_line(stream: str, raw: bytes) -> LogLine:
    """A line as the engine sent it (``<timestamp> <text>``) without its end of line."""
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    stamp, sep, rest = text.partition(" ")
    at = parse_timestamp(stamp) if sep or stamp else None
    if at is None:
        return LogLine(None, stream, text)
    return LogLine(at, stream, rest)


class LineSplitter:
    """Frames in, whole lines out; a stream's unfinished line waits for its next frame."""

    def __init__(self) -> None:
        self._pending: dict[str, bytes] = {}

    def feed(self, stream: str, data: bytes) -> list[LogLine]:
        buffer = self._pending.pop(stream, b"") + data
        *whole, rest = buffer.split(b"\n")
        lines = [to_line(stream, raw) for raw in whole]
        while len(rest) > MAX_LINE_BYTES:
            lines.append(to_line(stream, rest[:MAX_LINE_BYTES]))
            rest = rest[MAX_LINE_BYTES:]
        if rest:
            self._pending[stream] = rest
        return lines

    def flush(self) -> list[LogLine]:
        """What is left once the engine closed the stream (a last line with no newline)."""
        pending, self._pending = self._pending, {}
        return [to_line(stream, raw) for stream, raw in pending.items() if raw]


def lines_of(frames: Iterable[tuple[str, bytes]]) -> Iterator[LogLine]:
    splitter = LineSplitter()
    for stream, data in frames:
        yield from splitter.feed(stream, data)
    yield from splitter.flush()


def read_frames(raw: Any, tty: bool) -> Iterator[tuple[str, bytes]]:
    """(stream, bytes) from a urllib3 response body: multiplexed frames, or a TTY's raw bytes
    (all stdout). Ends when the engine closes the response or the reader is closed."""
    if tty:
        while True:
            data = raw.read(4096)
            if not data:
                return
            yield STDOUT, data
    while True:
        header = raw.read(_HEADER)
        if not header or len(header) < _HEADER:
            return
        kind, length = struct.unpack(">BxxxL", header)
        if not length:
            continue
        data = raw.read(length)
        if not data:
            return
        yield _STREAMS.get(kind, STDOUT), data


class EngineLogStream:
    """An engine's log response read as lines; ``close()`` (from any thread) shuts its socket,
    which ends a follow that waits for the workload's next line.

    Its connection never goes back to the client's pool: ``close()`` shuts the socket under
    the connection, and a stream the engine had just ended has already handed that connection
    back — the next call on the engine then got a dead socket (a 500 from ``ValueError: file
    descriptor cannot be a negative integer``, found by the fuzzer). A log request opens a
    connection of its own instead."""

    def __init__(self, response: Any, tty: bool) -> None:
        from docker.types.daemon import CancellableStream

        response.raw._pool = None  # urllib3: release_conn() then keeps the connection
        self._response = response
        self._frames = CancellableStream(read_frames(response.raw, tty), response)

    def __iter__(self) -> Iterator[LogLine]:
        return lines_of(self._frames)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # already closed by the engine
            self._frames.close()
        with contextlib.suppress(Exception):  # its connection, with it (it is in no pool)
            self._response.close()


def open_engine_logs(api: Any, path: str, query: LogQuery, tty: bool) -> Any:
    """GET ``path`` (``/containers/{id}/logs`` or ``/services/{id}/logs``) through a docker-py
    ``APIClient``, streamed; the response, for the caller to check its status. A follow waits
    for lines as long as it takes: no read timeout on its socket."""
    response = api._get(api._url(path), params=query.params(), stream=True)
    if query.follow and response.status_code < 400:
        api._disable_socket_timeout(api._get_raw_response_socket(response))
    return response
