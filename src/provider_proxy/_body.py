"""The client's request body, read from ASGI ``receive`` within ``max_body_size``.

A body that arrived in one message (most JSON requests) is passed on as bytes;
a longer one streams to the upstream as it arrives and is only collected when a
transform must parse it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ._exceptions import BodyTooLarge, ClientDisconnected
from .types import Receive


class RequestBody:
    """Owns ``receive`` until the body is complete, then hands it over via :attr:`done`."""

    __slots__ = ("_first", "_limit", "_receive", "_size", "done", "error", "more")

    def __init__(self, receive: Receive, limit: int | None) -> None:
        self._receive = receive
        self._limit = limit
        self._size = 0
        self._first = b""
        self.more = True
        #: Set once the whole body has been read (or reading stopped).
        self.done = asyncio.Event()
        #: The error that stopped reading, so it wins over what the transport made of it.
        self.error: BaseException | None = None

    @property
    def size(self) -> int:
        """Bytes received so far."""
        return self._size

    async def start(self) -> bytes:
        """Read the first message; when :attr:`more` is false the body is complete."""
        self._first = await self._next()
        return self._first

    async def _next(self) -> bytes:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.more = False
            self.error = ClientDisconnected()
            self.done.set()
            raise self.error
        chunk: bytes = message.get("body", b"")
        self._size += len(chunk)
        if self._limit is not None and self._size > self._limit:
            self.more = False
            self.error = BodyTooLarge(
                f"The request body is over the proxy's limit of {self._limit} bytes."
            )
            self.done.set()
            raise self.error
        if not message.get("more_body", False):
            self.more = False
            self.done.set()
        return chunk

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


def declared_length(value: bytes | None) -> int | None:
    """The ``Content-Length`` as a number; ``None`` when absent or malformed."""
    if value is None or not value.isdigit():
        return None
    return int(value)
