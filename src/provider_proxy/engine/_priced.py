"""Relaying a whole (not streamed) answer with its cost in ``x-proxy-cost-usd``.

The cost is known only once the answer's usage has been read, which is after
its body; so with ``cost_header=True`` a whole answer is read first (up to
:data:`MAX_PRICED_BYTES`), priced, and sent with the header. A longer answer
is relayed as it comes, without the header; a stream never waits, and carries
its cost in its event only.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, cast

import httpx

from .._adapter import Usage
from .._exceptions import UpstreamStreamError
from ..transports import RawResponse
from ..types import Send
from ._relay import Progress, relay_response

if TYPE_CHECKING:
    from ..observe import UsageTap

#: The response header with the answer's cost in USD (an exact decimal).
COST_HEADER = b"x-proxy-cost-usd"
#: The largest whole answer read before its head to put its cost in it.
MAX_PRICED_BYTES = 4 * 1024 * 1024

#: The cost (as the header's value) of usage of a model, or ``None`` when not known.
CostHeader = Callable[[Usage | None, str | None], bytes | None]


async def relay_priced(
    response: RawResponse,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    *,
    provider: str,
    request_id: str,
    progress: Progress,
    tap: UsageTap,
    price: CostHeader,
    max_bytes: int | None = None,
) -> None:
    """Read the whole answer, then send it with ``x-proxy-cost-usd`` when its cost is known.

    :param max_bytes: the most to hold (by default :data:`MAX_PRICED_BYTES`).
    """
    if max_bytes is None:
        max_bytes = MAX_PRICED_BYTES
    stream = response.__aiter__()
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in stream:  # the iterator goes on in _Resumed
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
                tap.feed(chunk)
                if size > max_bytes:
                    break
    except httpx.TransportError as exc:
        raise UpstreamStreamError(
            f"The {provider} answer broke off (request {request_id}): {type(exc).__name__}"
        ) from None
    if size > max_bytes:  # too long to hold: relayed as it comes, unpriced
        await relay_response(
            _Resumed(response.status_code, chunks, stream),
            send,
            headers,
            provider=provider,
            request_id=request_id,
            progress=progress,
            tap=cast("UsageTap", _Fed(tap, len(chunks))),  # it only feeds the tap
        )
        return
    usage, model = tap.result()
    cost = price(usage, model)
    if cost is not None:
        headers = [*headers, (COST_HEADER, cost)]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    body = b"".join(chunks)
    if body:
        progress.first_byte_at = time.perf_counter()
        progress.response_bytes = len(body)
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _Resumed(RawResponse):
    """The chunks read already, then the rest of the upstream stream (the caller closes it)."""

    def __init__(self, status: int, read: list[bytes], rest: AsyncIterator[bytes]) -> None:
        self.status_code = status
        self.raw_headers = ()
        self._read, self._rest = read, rest

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._read:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        """Nothing: the exchange closes the upstream response."""


class _Fed:
    """A usage tap that skips the first ``skip`` chunks, which it was fed already."""

    def __init__(self, tap: UsageTap, skip: int) -> None:
        self._tap, self._skip = tap, skip

    def feed(self, chunk: bytes) -> None:
        if self._skip:
            self._skip -= 1
        else:
            self._tap.feed(chunk)
