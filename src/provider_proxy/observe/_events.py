"""`ProxyEvent`: what one request did, handed to sinks after its response is done."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._adapter import Usage


@dataclass(frozen=True, slots=True)
class ProxyEvent:
    """One request through the proxy. Times are seconds; never holds a body or a secret."""

    request_id: str
    #: The adapter name, or ``None`` for the proxy's own endpoints and unknown providers.
    provider: str | None
    method: str
    #: The path below the provider's name (``/chat/completions``), without the query.
    path: str
    #: The model from the request body when it was read, else from the response.
    model: str | None
    #: The client's identity when client authentication is configured.
    identity: str | None
    #: The status the client got.
    status: int
    #: The provider's status, ``None`` when the proxy answered itself.
    upstream_status: int | None
    #: The :attr:`ProxyError.kind` of the proxy's own error answer, ``"client_disconnected"``
    #: or ``"upstream_stream_error"``; ``None`` when the exchange completed.
    error_kind: str | None
    #: Whether the response was a stream of server-sent events.
    streamed: bool
    #: Wall-clock time the request arrived (seconds since the epoch).
    started_at: float
    #: From arrival to the provider's status line (``None`` without an upstream answer).
    time_to_headers: float | None
    #: From arrival to the first response body byte relayed.
    time_to_first_byte: float | None
    #: From arrival to the last byte sent.
    duration: float
    #: The proxy's own share of ``time_to_headers``: everything before the upstream
    #: request was sent (routing, guards, reading and transforming the body).
    overhead: float
    request_bytes: int
    response_bytes: int
    usage: Usage | None


#: Receives each event after its response is done; may be a coroutine function.
EventSink = Callable[[ProxyEvent], "Awaitable[None] | None"]


class RequestRecord:
    """What the engine learns about one request as it goes; :meth:`event` freezes it.

    Times are :func:`time.perf_counter` readings, turned into durations from
    ``start`` when the event is made.
    """

    __slots__ = (
        "admission",
        "error_kind",
        "first_byte_at",
        "headers_at",
        "identity",
        "method",
        "model",
        "path",
        "provider",
        "request_bytes",
        "request_id",
        "response_bytes",
        "response_headers",
        "sent_at",
        "start",
        "started_at",
        "status",
        "streamed",
        "upstream_status",
        "usage",
    )

    def __init__(self, request_id: str, method: str, path: str) -> None:
        self.start = time.perf_counter()
        self.started_at = time.time()
        self.request_id = request_id
        self.method = method
        self.path = path
        self.provider: str | None = None
        self.model: str | None = None
        self.identity: str | None = None
        self.status = 500
        self.upstream_status: int | None = None
        self.error_kind: str | None = None
        self.streamed = False
        #: When the upstream request was handed to the transport.
        self.sent_at: float | None = None
        self.headers_at: float | None = None
        self.first_byte_at: float | None = None
        self.request_bytes = 0
        self.response_bytes = 0
        self.usage: Usage | None = None
        #: The guards' admission, finished when the request is done.
        self.admission: Any = None
        #: Headers every answer to this request carries (``X-RateLimit-*``).
        self.response_headers: Mapping[str, str] = {}

    def overhead(self, now: float) -> float:
        """The proxy's own time: all of it before the upstream request went out."""
        return (self.sent_at if self.sent_at is not None else now) - self.start

    def event(self) -> ProxyEvent:
        now = time.perf_counter()
        start = self.start

        def since(moment: float | None) -> float | None:
            return None if moment is None else moment - start

        return ProxyEvent(
            request_id=self.request_id,
            provider=self.provider,
            method=self.method,
            path=self.path,
            model=self.model,
            identity=self.identity,
            status=self.status,
            upstream_status=self.upstream_status,
            error_kind=self.error_kind,
            streamed=self.streamed,
            started_at=self.started_at,
            time_to_headers=since(self.headers_at),
            time_to_first_byte=since(self.first_byte_at),
            duration=now - start,
            overhead=self.overhead(now),
            request_bytes=self.request_bytes,
            response_bytes=self.response_bytes,
            usage=self.usage,
        )
