"""Every response head the proxy sends: relayed answers, its own errors and JSON.

One place decides what the proxy adds to an answer: its request id (the
provider's own moved to ``x-upstream-request-id``), the guards' limit headers
(which replace the provider's, see :func:`~provider_proxy.policy.upstream_limits_renamed`),
``x-should-retry`` on its errors, and ``x-proxy-overhead-ms`` when asked.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._exceptions import ProxyError
from ..dialects import Dialect
from ..policy import (
    REQUEST_ID,
    UPSTREAM_REQUEST_ID,
    RawHeaders,
    header_value,
    upstream_limits_renamed,
)
from ..types import Send

#: The response header that reports the proxy's own time, when enabled.
OVERHEAD_HEADER = b"x-proxy-overhead-ms"

_JSON = b"application/json"


def as_raw(headers: dict[str, str] | None) -> RawHeaders:
    """``{"Retry-After": "3"}`` as lower-case byte pairs."""
    if not headers:
        return []
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]


def _added(request_id: bytes, limits: RawHeaders, overhead: float | None) -> RawHeaders:
    """What the proxy adds to any answer: its request id, limits, its overhead when asked."""
    headers: RawHeaders = [(REQUEST_ID, request_id), *limits]
    if overhead is not None:
        headers.append((OVERHEAD_HEADER, f"{overhead * 1000:.3f}".encode("ascii")))
    return headers


def relayed_head(
    upstream: RawHeaders, request_id: str, limits: RawHeaders, overhead: float | None
) -> RawHeaders:
    """The provider's headers (already filtered for the client) with the proxy's added."""
    own_id = request_id.encode("ascii")
    if limits:  # the proxy's limits replace the provider's
        upstream = upstream_limits_renamed(upstream)
    upstream_id = header_value(upstream, REQUEST_ID)
    if upstream_id is not None:
        upstream = [item for item in upstream if item[0] != REQUEST_ID]
        if upstream_id != own_id:
            upstream.append((UPSTREAM_REQUEST_ID, upstream_id))
    upstream.extend(_added(own_id, limits, overhead))
    return upstream


def error_head(
    error: ProxyError, length: int, request_id: str, limits: RawHeaders, overhead: float | None
) -> RawHeaders:
    """The head of the proxy's own error: JSON, ``x-should-retry``, the error's headers."""
    return [
        (b"content-type", _JSON),
        (b"content-length", str(length).encode("ascii")),
        # Read by the official SDKs to decide whether to retry.
        (b"x-should-retry", b"true" if error.retryable else b"false"),
        *_added(request_id.encode("ascii"), limits, overhead),
        *as_raw(dict(error.headers)),
    ]


def content_head(content_type: bytes, length: int, request_id: str) -> RawHeaders:
    """The head of one of the proxy's own answers (status pages, model lists, metrics)."""
    return [
        (b"content-type", content_type),
        (b"content-length", str(length).encode("ascii")),
        (REQUEST_ID, request_id.encode("ascii")),
    ]


async def send_error(
    send: Send,
    dialect: Dialect,
    error: ProxyError,
    request_id: str,
    limits: Sequence[tuple[bytes, bytes]] = (),
    overhead: float | None = None,
    message: str = "http.response",
) -> int:
    """Answer ``error`` in ``dialect``'s format; returns the body's size."""
    body = dialect.error_body(error, request_id)
    head = error_head(error, len(body), request_id, list(limits), overhead)
    await send_whole(send, error.status_code, head, body, message)
    return len(body)


async def send_whole(
    send: Send, status: int, headers: RawHeaders, body: bytes, message: str = "http.response"
) -> None:
    """Send a whole answer; ``message`` is ``websocket.http.response`` for a refused handshake."""
    await send({"type": f"{message}.start", "status": status, "headers": headers})
    await send({"type": f"{message}.body", "body": body, "more_body": False})
