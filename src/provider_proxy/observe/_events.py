"""`ProxyEvent`: what one request did, handed to sinks after its response is done."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .._adapter import Usage
from ..spend import Cost


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
    #: The name of the API format (dialect) of the provider's path, when it was routed.
    dialect: str | None = None
    #: At the gateway, the format the client spoke; ``None`` for other requests.
    client_dialect: str | None = None
    #: Whether the gateway translated the request and its answer between formats.
    translated: bool = False
    #: On a WebSocket: ``"connection"`` for the socket's own event at its end,
    #: ``"turn"`` for one billed turn on it (``response.create`` to ``response.done``).
    websocket: str | None = None
    #: On a socket's connection event: the frames relayed (both ways), and the close code.
    frames: int = 0
    close_code: int | None = None
    #: What the exchange cost in USD, from its usage and the model's price; ``None``
    #: when that is not known, and then ``cost_unknown`` says why.
    cost: Cost | None = None
    #: Why ``cost`` is ``None`` (no usage reported, a model without a price), else ``None``.
    cost_unknown: str | None = None
    #: At the gateway, the route the client named (``model="smart"``), if any.
    route: str | None = None
    #: The deployments tried, ``"{adapter}/{model}"``, the one that answered last.
    deployments: tuple[str, ...] = ()
    #: Why a retry policy could not retry this request had it failed (its body was
    #: over ``max_retry_body``, so it was not kept), else ``None``.
    not_retried: str | None = None
    #: The name (never the value) of the key the answer's deployment was sent with,
    #: when its adapter holds a pool of keys.
    key: str | None = None

    @property
    def web_searches(self) -> int:
        """The web searches the provider ran and bills for this answer (0 when none
        were reported): :attr:`Usage.web_searches <provider_proxy.Usage.web_searches>`."""
        return 0 if self.usage is None else self.usage.web_searches or 0

    @property
    def attempts(self) -> int:
        """How many times the request was sent: 1 unless a route retried or fell back."""
        return max(1, len(self.deployments))


#: Receives each event after its response is done; may be a coroutine function.
EventSink = Callable[[ProxyEvent], "Awaitable[None] | None"]
