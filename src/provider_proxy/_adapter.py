"""The contract between the engine and a provider: :class:`ProviderAdapter`.

Everything the engine knows about a provider comes through this protocol:
where requests go, which credentials they carry, how the proxy's own errors
look in that provider's format, and which request bodies must be read (only
those get parsed; all others stream through untouched).
:class:`provider_proxy.adapters.BaseAdapter` implements it with defaults.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx

from ._exceptions import ProxyError

#: A parsed JSON request body.
JSON = Any


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a transform or an adapter may know about the request being forwarded."""

    adapter: str
    method: str
    #: The path below the provider's name, still percent-encoded (``/chat/completions``).
    path: str
    #: The query string as sent, without ``?``.
    query: bytes
    #: The client's headers (lower-case names), as received.
    headers: Sequence[tuple[bytes, bytes]]
    request_id: str


#: Rewrites a parsed request body; returns the new body, or ``None`` for "unchanged".
BodyTransform = Callable[[JSON, RequestContext], JSON | None]


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether an adapter can serve requests, and if not, why (never a secret)."""

    enabled: bool
    reason: str | None = None


class CredentialState(str, enum.Enum):
    """The outcome of a credential probe."""

    VALID = "valid"
    AUTH_REJECTED = "auth_rejected"
    INCONCLUSIVE = "inconclusive"
    NETWORK_ERROR = "network_error"
    NOT_CONFIGURED = "not_configured"


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    """The result of :meth:`ProviderAdapter.validate_credentials`; holds no key."""

    state: CredentialState
    status_code: int | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model as a provider lists it, normalised."""

    id: str
    provider: str
    display_name: str | None = None
    context_length: int | None = None
    #: Prices as the provider states them (units vary by provider).
    pricing: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@runtime_checkable
class ProviderAdapter(Protocol):
    """What the engine needs from a provider.

    ``{mount}/{name}/X`` is forwarded to ``{base_url}/X``.
    """

    @property
    def name(self) -> str:
        """The URL segment the provider is mounted under."""
        ...

    @property
    def base_url(self) -> httpx.URL:
        """Where requests go; the client's path is appended and confined below it."""
        ...

    def availability(self) -> Availability:
        """Whether requests can be served now (credentials present), and why not."""
        ...

    def auth_headers(
        self, context: RequestContext
    ) -> Mapping[str, str] | Awaitable[Mapping[str, str]]:
        """The provider credentials for one request; they replace same-named client headers.

        May be a coroutine, so an adapter can refresh a short-lived token.
        """
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Headers always set on upstream requests (for example a ``User-Agent``)."""
        ...

    @property
    def default_headers(self) -> Mapping[str, str]:
        """Headers set only when the client sent none of that name (an API version)."""
        ...

    def rewrite_url(self, url: httpx.URL, context: RequestContext) -> httpx.URL:
        """A last change to the upstream URL (a query parameter to add or remove)."""
        ...

    def body_transform(self, context: RequestContext) -> BodyTransform | None:
        """The transform for this request's body, or ``None`` to stream it untouched."""
        ...

    def error_body(self, error: ProxyError, request_id: str) -> bytes:
        """The proxy's own error in this provider's JSON error format."""
        ...

    async def validate_credentials(self, client: httpx.AsyncClient) -> CredentialCheck:
        """Probe the provider cheaply to tell whether the credentials are accepted."""
        ...

    async def fetch_models(self, client: httpx.AsyncClient) -> list[ModelInfo]:
        """The provider's models, normalised."""
        ...
