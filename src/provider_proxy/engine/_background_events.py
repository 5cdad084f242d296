"""The events of a streamed background response, kept so a client can resume them.

A background response created with ``stream: true`` streams to its client as
it runs, and its events (each with its ``sequence_number``) are kept in the
app's store in batches (a key per batch, written every
:attr:`~provider_proxy.engine._background.BackgroundRuns.poll` seconds and at
the end), so ``GET {mount}/v1/responses/{id}?stream=true&starting_after=N``
resumes them on any instance, following the run until it is over. Kept events
are bounded by ``max_bytes``: past it the stream still reaches the client
connected to the run, but the rest is not kept, and a resume that reaches the
bound ends with an ``error`` event saying so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from .._json import dumps, loads
from ..state import Store

#: The ``error`` event a resume ends with when the events it needs were not kept.
TRUNCATED = (
    b'event: error\ndata: {"type":"error","code":"events_not_kept","message":'
    b"\"The rest of this response's events were too long to keep: GET it without "
    b'stream for its output.","param":null,"sequence_number":-1}\n\n'
)


class EventLog:
    """One run's events on their way to the store, up to ``max_bytes`` of them."""

    def __init__(self, store: Store, key: str, ttl: float, max_bytes: int) -> None:
        self._store = store
        self._key = key
        self._ttl = ttl
        self._max_bytes = max_bytes
        self._pending: list[list[Any]] = []
        self._size = 0
        self._batches = 0
        self._truncated = False
        self._marked = False

    def add(self, sequence: int, data: bytes) -> None:
        if self._truncated:
            return
        if self._size + len(data) > self._max_bytes:
            self._truncated = True
            return
        self._size += len(data)
        self._pending.append([sequence, data.decode("utf-8")])

    async def flush(self) -> None:
        """Write the events not written yet as the next batch."""
        if self._pending:
            batch, self._pending = dumps(self._pending), []
            await self._store.set(f"{self._key}:{self._batches}", batch, self._ttl)
            self._batches += 1
            await self._store.set(f"{self._key}:count", str(self._batches).encode(), self._ttl)
        if self._truncated and not self._marked:
            await self._store.set(f"{self._key}:truncated", b"1", self._ttl)
            self._marked = True


async def follow(
    store: Store, key: str, after: int, over: Callable[[], Awaitable[bool]], poll: float
) -> AsyncIterator[bytes]:
    """The kept events of ``key`` after sequence number ``after``, read batch by batch as
    they are written, until ``over()`` says the run is over and every batch was read."""
    read = 0
    while True:
        finished = await over()  # asked before the count: the last batch is not missed
        raw = await store.get(f"{key}:count")
        count = int(raw) if raw else 0
        while read < count:
            batch: list[Any] = loads(await store.get(f"{key}:{read}") or b"[]")
            read += 1
            for sequence, data in batch:
                if sequence > after:
                    yield data.encode("utf-8")
        if finished:
            if await store.get(f"{key}:truncated"):
                yield TRUNCATED
            return
        await anyio.sleep(poll)
