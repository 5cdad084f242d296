"""Relaying the upstream response: status and headers, then each chunk as it comes.

Chunks are raw bytes (never decoded or re-encoded) and are sent on as soon as
the transport yields them, so server-sent events reach the client at once.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import httpx

from .._exceptions import UpstreamStreamError
from ..transports import RawResponse
from ..types import Send

if TYPE_CHECKING:
    from ..observe import UsageTap

logger = logging.getLogger("provider_proxy")


class Progress:
    """How far the relay got: when its first body byte went out, and how many bytes."""

    __slots__ = ("first_byte_at", "response_bytes")

    def __init__(self) -> None:
        self.first_byte_at: float | None = None
        self.response_bytes = 0


async def relay_response(
    response: RawResponse,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    *,
    provider: str,
    request_id: str,
    progress: Progress | None = None,
    tap: UsageTap | None = None,
) -> None:
    """Relay ``response`` to the client; the caller closes ``response``.

    (An :class:`httpx.Response` is relayed as :class:`~provider_proxy.transports.HttpxResponse`.)

    ``progress`` gets the time of the first body byte and the byte count; ``tap``
    reads a copy of each chunk after it was sent, so it never holds one back.

    A transport failure after the status line went out cannot become an error
    status any more: it is logged and :class:`UpstreamStreamError` is raised so
    the server aborts the connection instead of ending the body cleanly.
    """
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    try:
        async for chunk in response:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if progress is not None:
                    if progress.first_byte_at is None:
                        progress.first_byte_at = time.perf_counter()
                    progress.response_bytes += len(chunk)
                if tap is not None:
                    tap.feed(chunk)
    except httpx.TransportError as exc:
        logger.warning(
            "upstream stream of %s broke mid-response (request %s): %s: %s; aborting the "
            "client connection",
            provider,
            request_id,
            type(exc).__name__,
            exc,
        )
        # The cause is in the line above; the server logs this exception again.
        raise UpstreamStreamError(
            f"The {provider} stream broke mid-response (request {request_id}): {type(exc).__name__}"
        ) from None
    await send({"type": "http.response.body", "body": b"", "more_body": False})
