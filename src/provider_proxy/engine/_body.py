"""The client's request body, read from ASGI ``receive`` within ``max_body_size``.

A body that arrived in one message (most JSON requests) is passed on as bytes;
a longer one streams to the upstream as it arrives and is only collected when a
transform must parse it.

While a streamed body is being sent upstream, the disconnect watch reads it
ahead of the upload (:meth:`RequestBody.read_ahead`): ASGI reports a client
leaving only to whoever calls ``receive``, and an upload blocked on a write to a
provider that stopped reading calls nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable

from .._exceptions import BodyTooLarge, ClientDisconnected
from ..types import Message, Receive

#: How far the watch reads ahead of an upload that is moving: about what
#: servers buffer themselves, so a flowing upload keeps its backpressure.
READ_AHEAD_WINDOW = 1024 * 1024

#: An upload that took nothing for this long is blocked on a write; the watch then
#: reads on (within the limit) to notice the client leaving.
STALL_AFTER = 1.0

#: The most the watch holds for a stalled upload, whatever ``max_body_size`` is.
READ_AHEAD_CAP = 32 * 1024 * 1024


class _ReadAhead:
    """The chunks the watch received that the upload has not taken yet."""

    __slots__ = ("arrived", "chunks", "reading", "size", "taken")

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0
        #: Whether the watch still reads; once not, the stream reads on itself.
        self.reading = True
        self.arrived = asyncio.Event()
        self.taken = asyncio.Event()


class RequestBody:
    """Owns ``receive`` until the body is complete, or until the watch reads it ahead."""

    __slots__ = ("_ahead", "_complete", "_first", "_limit", "_receive", "_size", "error", "more")

    def __init__(self, receive: Receive, limit: int | None) -> None:
        self._receive = receive
        self._limit = limit
        self._size = 0
        self._first = b""
        #: Whether there is more body to take (to read, or waiting in the read-ahead).
        self.more = True
        # Whether the last message was received (or reading stopped).
        self._complete = False
        #: The error that stopped reading, so it wins over what the transport made of it.
        self.error: BaseException | None = None
        self._ahead: _ReadAhead | None = None  # only streamed bodies read ahead

    @classmethod
    def of(cls, content: bytes, receive: Receive) -> RequestBody:
        """A body read already (the gateway's, rewritten): ``receive`` then only tells
        of the client leaving."""
        body = cls(receive, None)
        body._first = content
        body._size = len(content)
        body.more = False
        body._complete = True
        return body

    @property
    def size(self) -> int:
        """Bytes received so far."""
        return self._size

    async def start(self, declared: int | None = None) -> bytes:
        """Read the first message; when :attr:`more` is false the body is complete.

        A server may pass the whole declared body in one message and its end in
        another, empty one (granian does): with ``declared`` (the
        ``Content-Length``) all in, that end is awaited here, so a complete body
        is sent whole rather than streamed.
        """
        if self._complete:  # (a body read already)
            return self._first
        first = await self._next()
        while self.more and declared is not None and self._size >= declared:
            first += await self._next()
        self._first = first
        return first

    async def _next(self) -> bytes:
        ahead = self._ahead
        # Once the watch has read the end (or an error), what is left is in the
        # read-ahead: ``receive`` would only wait for the client to leave.
        if ahead is not None and (
            ahead.chunks or ahead.reading or self._complete or self.error is not None
        ):
            return await self._take_ahead(ahead)
        chunk = self._accept(await self._receive())
        self.more = not self._complete
        return chunk

    def _accept(self, message: Message) -> bytes:
        """One message's body, counted; a disconnect or a body over the limit fails."""
        if message["type"] == "http.disconnect":
            raise self._fail(ClientDisconnected())
        chunk: bytes = message.get("body", b"")
        self._size += len(chunk)
        if self._limit is not None and self._size > self._limit:
            raise self._fail(
                BodyTooLarge(f"The request body is over the proxy's limit of {self._limit} bytes.")
            )
        if not message.get("more_body", False):
            self._complete = True
        return chunk

    def _fail(self, error: BaseException) -> BaseException:
        self.error = error
        self._complete = True
        if self._ahead is None:
            self.more = False
        # else the stream must still ask, and be told: it must not end the body cleanly.
        return error

    async def read_all(self) -> bytes:
        """The rest of the body, collected (only for bodies a transform must read)."""
        parts = [self._first]
        while self.more:
            parts.append(await self._next())
        return b"".join(parts)

    async def stream(self) -> AsyncIterator[bytes]:
        """The body as it arrives, starting with the first message."""
        if self._first:
            yield self._first
        while self.more:
            chunk = await self._next()
            if chunk:
                yield chunk

    # -- reading ahead (the disconnect watch) -------------------------------------------

    def hand_over(self) -> None:
        """From now on only :meth:`read_ahead` calls ``receive``; the stream takes from it."""
        self._ahead = _ReadAhead()

    def take_back(self) -> None:
        """Reading ahead is over: the stream takes what is left, then reads on itself."""
        ahead = self._ahead
        if ahead is not None:
            ahead.reading = False
            ahead.arrived.set()

    async def read_ahead(self) -> None:
        """Receive the rest of the body ahead of the upload, until it is complete.

        Up to :data:`READ_AHEAD_WINDOW` bytes wait while the upload moves; once it
        took nothing for :data:`STALL_AFTER` seconds, reading goes on up to
        :data:`READ_AHEAD_CAP`, so that a client leaving (or a body over the limit)
        is still seen. Raises :class:`ClientDisconnected` or :class:`BodyTooLarge`.
        """
        ahead = self._ahead
        if ahead is None:
            raise RuntimeError("read_ahead() needs hand_over() first")
        stalled = False
        try:
            while not self._complete:
                if ahead.taken.is_set():
                    ahead.taken.clear()
                    stalled = False
                if ahead.size >= READ_AHEAD_CAP:
                    await ahead.taken.wait()
                elif not stalled and ahead.size >= READ_AHEAD_WINDOW:
                    stalled = not await _set_within(ahead.taken, STALL_AFTER)
                else:
                    chunk = self._accept(await self._receive())
                    if chunk:
                        ahead.chunks.append(chunk)
                        ahead.size += len(chunk)
                    ahead.arrived.set()
        finally:
            self.take_back()

    async def _take_ahead(self, ahead: _ReadAhead) -> bytes:
        while not ahead.chunks:
            if self.error is not None:
                raise self.error
            if self._complete or not ahead.reading:
                self.more = not self._complete
                return b""
            ahead.arrived.clear()
            await ahead.arrived.wait()
        if self.error is not None:  # the exchange is ending: the rest need not be sent
            raise self.error
        chunk = ahead.chunks.popleft()
        ahead.size -= len(chunk)
        self.more = bool(ahead.chunks) or not self._complete
        ahead.taken.set()
        return chunk


class Replay:
    """``receive`` for a body rewritten before it is read: it first, then the client's own
    ``receive`` (its disconnect)."""

    __slots__ = ("_body", "_receive")

    def __init__(self, body: bytes, receive: Receive) -> None:
        self._body: bytes | None = body
        self._receive = receive

    async def __call__(self) -> Message:
        body, self._body = self._body, None
        if body is None:
            return await self._receive()
        return {"type": "http.request", "body": body, "more_body": False}


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether ``event`` is set within ``seconds``."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


def declared_length(value: bytes | None) -> int | None:
    """The ``Content-Length`` as a number; ``None`` when absent or malformed."""
    if value is None or not value.isdigit():
        return None
    return int(value)


def declared_body_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The length the client declared, ignored beside ``Transfer-Encoding`` (RFC 9112 6.3).

    A server that passes both on (h11 does) reads the chunked framing; sending the
    ``Content-Length`` on would frame the same body twice.
    """
    length: bytes | None = None
    for name, value in headers:  # one pass: this runs for every request
        if name == b"transfer-encoding":
            return None
        if name == b"content-length" and length is None:
            length = value
    return declared_length(length)
