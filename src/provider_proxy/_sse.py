"""An incremental parser for server-sent events (sans-I/O).

Follows the WHATWG HTML "event stream" interpretation: lines end in CRLF, LF
or CR; ``data`` lines of one event are joined with ``\\n``; lines starting with
``:`` are comments; a blank line ends an event. Chunks may split anything,
including a CRLF pair.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A line longer than this without an end is dropped (and the parser marks it).
DEFAULT_MAX_LINE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Feed it bytes as they arrive; it returns the events completed by each chunk."""

    __slots__ = (
        "_buffer",
        "_data",
        "_event",
        "_id",
        "_max_line",
        "_skip_lf",
        "_started",
        "overflowed",
    )

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._max_line = max_line
        self._skip_lf = False
        self._started = False
        #: Set when an over-long line was dropped.
        self.overflowed = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        if self._skip_lf and chunk:
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
            self._skip_lf = False
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started and buffer:
            if len(buffer) < 3 and b"\xef\xbb\xbf".startswith(buffer):
                self._buffer = buffer
                return events
            if buffer.startswith(b"\xef\xbb\xbf"):
                buffer = buffer[3:]
            self._started = True
        start = 0
        size = len(buffer)
        while start < size:
            cr = buffer.find(b"\r", start)
            lf = buffer.find(b"\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, after = lf, lf + 1
            elif cr + 1 < size:
                end, after = cr, cr + 2 if buffer[cr + 1 : cr + 2] == b"\n" else cr + 1
            else:  # a CR at the end of the chunk: its LF may come next
                end, after = cr, cr + 1
                self._skip_lf = True
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = after
        rest = buffer[start:]
        if len(rest) > self._max_line:
            self.overflowed = True
            rest = b""
        self._buffer = rest
        return events

    def _line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent("\n".join(self._data), self._event or "message", self._id)
            self._data = []
            self._event = ""
            return event
        if raw[:1] == b":":
            return None
        line = raw.decode("utf-8", "replace")
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None
