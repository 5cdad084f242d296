"""The errors the proxy answers with itself.

Every :class:`ProxyError` carries the HTTP status it maps to and a short machine
readable ``kind``; the adapter of the route renders it in its provider's error
format, so an SDK raises its usual exception with the message below.

::

    ProxyError
    ├── BadRequest                 400  bad_request
    │   ├── PathRefused            400  path_refused
    │   └── InvalidJSON            400  invalid_json
    ├── ClientNotAuthorized        401  client_not_authorized
    ├── Forbidden                  403  forbidden
    │   ├── EndpointNotAllowed     403  endpoint_not_allowed
    │   └── ModelNotAllowed        403  model_not_allowed
    ├── ProviderNotFound           404  provider_not_found
    ├── MethodNotAllowed           405  method_not_allowed
    ├── WebSocketNotRelayed        426  websocket_not_supported
    ├── BodyTooLarge               413  body_too_large
    ├── RateLimited                429  rate_limited
    │   ├── QuotaExceeded          429  quota_exceeded
    │   └── TooManyConcurrent      429  too_many_concurrent
    ├── UpstreamUnreachable        502  upstream_unreachable
    ├── ProviderNotConfigured      503  provider_not_configured
    ├── PoolExhausted              503  pool_exhausted
    ├── Overloaded                 503  overloaded
    ├── StoreUnavailable           503  store_unavailable
    └── UpstreamTimeout            504  upstream_timeout

    UpstreamStreamError            the upstream failed after the response had started;
                                   raised to the server so it aborts the connection.
    ClientDisconnected             the client went away; nothing more can be answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ._scrub import scrub_secrets


class ProxyError(Exception):
    """An error answered by the proxy itself, with its status and kind.

    ``retryable`` tells the SDKs (through ``x-should-retry``) whether trying the
    same request again can help. Any configured credential in ``message`` is
    masked: the message goes to the client.
    """

    status_code: ClassVar[int] = 500
    kind: ClassVar[str] = "proxy_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        message = scrub_secrets(message)
        super().__init__(message)
        self.message = message
        #: Headers the answer carries (``Retry-After``, ``X-RateLimit-*``, ...).
        self.headers: Mapping[str, str] = headers or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class BadRequest(ProxyError):
    """The request cannot be forwarded as sent."""

    status_code = 400
    kind = "bad_request"


class PathRefused(BadRequest):
    """The path would leave the provider's base URL, or is malformed."""

    kind = "path_refused"


class InvalidJSON(BadRequest):
    """A body that must be read as JSON is not valid JSON."""

    kind = "invalid_json"


class ClientNotAuthorized(ProxyError):
    """Client authentication is configured and the request carried no accepted key."""

    status_code = 401
    kind = "client_not_authorized"


class Forbidden(ProxyError):
    """The request is refused by the operator's policy."""

    status_code = 403
    kind = "forbidden"


class EndpointNotAllowed(Forbidden):
    """The path is not one of the provider's allowed endpoints."""

    kind = "endpoint_not_allowed"


class ModelNotAllowed(Forbidden):
    """The model is not on the operator's allowlist."""

    kind = "model_not_allowed"


class ProviderNotFound(ProxyError):
    """No provider of that name is mounted."""

    status_code = 404
    kind = "provider_not_found"


class MethodNotAllowed(ProxyError):
    """A proxy endpoint was called with a method it does not answer."""

    status_code = 405
    kind = "method_not_allowed"


class WebSocketNotRelayed(ProxyError):
    """A WebSocket upgrade: the proxy relays HTTP only.

    426 rather than 403, so clients that try a WebSocket first (the Codex CLI)
    fall back to HTTP at once instead of retrying.
    """

    status_code = 426
    kind = "websocket_not_supported"


class BodyTooLarge(ProxyError):
    """The request body is over ``max_body_size``."""

    status_code = 413
    kind = "body_too_large"


class RateLimited(ProxyError):
    """A rate limit rule is exhausted for now; ``Retry-After`` says when to try again."""

    status_code = 429
    kind = "rate_limited"
    retryable = True


class QuotaExceeded(RateLimited):
    """A token budget (per day or month) is spent; ``Retry-After`` says when it resets."""

    kind = "quota_exceeded"
    retryable = False


class TooManyConcurrent(RateLimited):
    """The client has as many requests in flight as it may."""

    kind = "too_many_concurrent"


class UpstreamUnreachable(ProxyError):
    """The provider could not be reached, or broke the exchange before answering."""

    status_code = 502
    kind = "upstream_unreachable"
    retryable = True


class ProviderNotConfigured(ProxyError):
    """The provider is mounted but has no credentials (or is otherwise disabled)."""

    status_code = 503
    kind = "provider_not_configured"


class PoolExhausted(ProxyError):
    """Every upstream connection stayed busy for the whole pool timeout."""

    status_code = 503
    kind = "pool_exhausted"
    retryable = True


class Overloaded(ProxyError):
    """The proxy as a whole has as many requests in flight as it may."""

    status_code = 503
    kind = "overloaded"
    retryable = True


class StoreUnavailable(ProxyError):
    """The shared store (Redis) is unreachable and the guards are set to fail closed."""

    status_code = 503
    kind = "store_unavailable"
    retryable = True


class UpstreamTimeout(ProxyError):
    """The provider did not answer in time."""

    status_code = 504
    kind = "upstream_timeout"
    retryable = True


class UpstreamStreamError(Exception):
    """The upstream failed after the response started; the connection is to be aborted.

    Raised out of the ASGI app on purpose: a server then closes the connection
    without ending the body, so the client sees a truncated response as an error
    instead of a clean end that an SDK would take for success.
    """


class ClientDisconnected(Exception):
    """The client went away before the exchange finished."""


__all__ = [
    "BadRequest",
    "BodyTooLarge",
    "ClientDisconnected",
    "ClientNotAuthorized",
    "EndpointNotAllowed",
    "Forbidden",
    "InvalidJSON",
    "MethodNotAllowed",
    "ModelNotAllowed",
    "Overloaded",
    "PathRefused",
    "PoolExhausted",
    "ProviderNotConfigured",
    "ProviderNotFound",
    "ProxyError",
    "QuotaExceeded",
    "RateLimited",
    "StoreUnavailable",
    "TooManyConcurrent",
    "UpstreamStreamError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
]
