"""An incremental parser for server-sent events (sans-I/O).

It follows "Interpreting an event stream" in the server-sent events section of
the WHATWG HTML standard: lines end in CRLF, LF or CR; a leading byte order
mark is ignored; lines starting with ``:`` are comments; a line without a
colon is a field with an empty value; one space after the colon is dropped;
the ``data`` lines of an event are joined with ``\\n``; a blank line
dispatches the event, unless it has no data. The last event id carries over
to later events, as the standard has it.

Chunks may split anything, a CRLF pair or a UTF-8 sequence included. Memory is
bounded: a line (or an event's data) longer than ``max_size`` bytes is dropped,
up to its end, and :attr:`SSEParser.overflowed` is set, rather than buffered
without end.
"""

from __future__ import annotations

from typing import NamedTuple

#: The longest line, and the most data of one event, kept by default (bytes).
DEFAULT_MAX_SIZE = 1024 * 1024

_BOM = b"\xef\xbb\xbf"


class SSEEvent(NamedTuple):
    """One dispatched event (a named tuple: immutable, and cheap to make per event)."""

    data: str
    #: The ``event`` field, ``"message"`` when the event named none.
    event: str = "message"
    #: The last ``id`` field seen in the stream so far, if any.
    id: str | None = None


class SSEParser:
    """Feed it bytes as they arrive; it returns the events each chunk completes.

    :param max_size: the longest line, and the most data of one event, in bytes.
    """

    __slots__ = (
        "_cr",
        "_data",
        "_data_size",
        "_discard_line",
        "_event",
        "_head",
        "_id",
        "_max_size",
        "_pending",
        "_pending_size",
        "_skip_event",
        "overflowed",
        "retry",
    )

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._max_size = max_size
        #: Bytes at the start that may still turn out to be a byte order mark.
        self._head: bytes | None = b""
        #: The previous chunk ended in CR, so a LF opening this one ends nothing.
        self._cr = False
        #: The start of a line whose end has not come yet.
        self._pending: list[bytes] = []
        self._pending_size = 0
        #: The rest of an over-long line is being skipped.
        self._discard_line = False
        self._data: list[bytes] = []
        self._data_size = 0
        #: The current event's data went over the bound; it will not be dispatched.
        self._skip_event = False
        self._event = ""
        self._id: str | None = None
        #: Set once a line or an event was dropped for being longer than ``max_size``.
        self.overflowed = False
        #: The last ``retry`` field (milliseconds), if the stream sent one.
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse the next bytes of the stream; the events they complete, in order."""
        if self._head is not None:
            chunk = self._head + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._head = chunk  # wait: this may be the start of a byte order mark
                return []
            self._head = None
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if not chunk:
            return []
        if self._cr:
            self._cr = False
            if chunk[0] == 0x0A:  # the LF of a CRLF split between chunks
                chunk = chunk[1:]
        if 0x0D in chunk:  # (an int is searched with memchr, much faster than b"\r")
            self._cr = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        rest = lines.pop()  # the unfinished last line (empty when the chunk ended one)
        events: list[SSEEvent] = []
        if lines:
            if self._discard_line:  # the end of an over-long line
                self._discard_line = False
                del lines[0]
            elif self._pending:
                lines[0] = b"".join((*self._pending, lines[0]))
                self._pending.clear()
                self._pending_size = 0
            max_size = self._max_size
            # The common lines inline (one method call per line costs more than parsing it).
            for line in lines:
                if not line:
                    event = self._dispatch()
                    if event is not None:
                        events.append(event)
                elif len(line) > max_size:
                    self.overflowed = True
                elif line.startswith(b"data:"):
                    value = line[6:] if line[5:6] == b" " else line[5:]
                    size = self._data_size + len(value) + 1
                    if size > max_size or self._skip_event:
                        self._add_data(value)  # over the bound, or the event is dropped
                    else:
                        self._data_size = size
                        self._data.append(value)
                elif line.startswith(b"event:"):
                    value = line[7:] if line[6:7] == b" " else line[6:]
                    self._event = value.decode("utf-8", "replace")
                else:
                    self._line(line)
        if rest and not self._discard_line:
            self._pending_size += len(rest)
            if self._pending_size > self._max_size:
                self.overflowed = True
                self._discard_line = True
                self._pending.clear()
                self._pending_size = 0
            else:
                self._pending.append(rest)
        return events

    def _line(self, raw: bytes) -> None:
        """A line that is not blank, ``data:`` or ``event:`` (those are parsed in :meth:`feed`)."""
        if raw[0] == 0x3A:  # ":" - a comment
            return
        name, colon, value = raw.decode("utf-8", "replace").partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":  # "data" without a colon
            self._add_data(b"")
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _add_data(self, value: bytes) -> None:
        if self._skip_event:
            return
        self._data_size += len(value) + 1
        if self._data_size > self._max_size:
            self.overflowed = True
            self._skip_event = True
            self._data.clear()
            return
        self._data.append(value)

    def _dispatch(self) -> SSEEvent | None:
        data = self._data
        name = self._event or "message"
        self._event = ""
        self._data_size = 0
        if self._skip_event:
            self._skip_event = False
            data.clear()
            return None
        if not data:
            return None
        joined = data[0] if len(data) == 1 else b"\n".join(data)
        data.clear()
        return SSEEvent(joined.decode("utf-8", "replace"), name, self._id)
