"""The contract between the engine and a provider: :class:`ProviderAdapter`.

Everything the engine knows about a provider comes through this protocol:
where requests go, which credentials they carry, how the proxy's own errors
look in that provider's format, and which request bodies must be read (only
those get parsed; all others stream through untouched).
:class:`provider_proxy.adapters.BaseAdapter` implements it with defaults.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx

from ._exceptions import ProxyError

#: A parsed JSON request body.
JSON = Any


#: The model ids of a provider, by provider name (from the app's cached catalog).
ModelLookup = Callable[[str], Awaitable[Sequence[str]]]


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
    #: The client's identity when client authentication is configured.
    identity: str | None = None
    #: Headers a transform adds to the upstream request (name -> value); they
    #: replace same-named client headers, so a transform that merges a list
    #: (``anthropic-beta``) reads the client's value from ``headers`` first.
    upstream_headers: dict[str, str] = field(default_factory=dict)
    #: The model ids a provider lists (by provider name), from the app's model
    #: catalog; ``None`` when the request is not served by an app with one.
    models: ModelLookup | None = None


#: Rewrites a parsed request body; returns the new body, or ``None`` for "unchanged".
#: May be a coroutine function. A transform object may also have an
#: ``applies_to(context) -> bool`` method: when every configured transform says
#: no, the body is never read and streams through untouched.
BodyTransform = Callable[[JSON, RequestContext], "JSON | Awaitable[JSON | None] | None"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one exchange, normalised across providers.

    ``input_tokens`` counts every prompt token, cached or not, so
    ``input_tokens + output_tokens`` is the total; ``cache_read_tokens`` and
    ``cache_write_tokens`` say how many of the input tokens were read from or
    written to a prompt cache. ``None`` means the provider did not say.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (0 for what is unknown)."""
        return (self.input_tokens or 0) + (self.output_tokens or 0)

    def merge(self, later: Usage) -> Usage:
        """These counts updated by a later report: the later value wins where it has one."""
        return Usage(
            later.input_tokens if later.input_tokens is not None else self.input_tokens,
            later.output_tokens if later.output_tokens is not None else self.output_tokens,
            later.cache_read_tokens
            if later.cache_read_tokens is not None
            else self.cache_read_tokens,
            later.cache_write_tokens
            if later.cache_write_tokens is not None
            else self.cache_write_tokens,
        )


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

    def endpoint_allowed(self, method: str, path: str) -> bool:
        """Whether ``method path`` (below the base URL) may be forwarded.

        Secure by default: inference endpoints only, unless the operator allows more.
        """
        ...

    def error_body(self, error: ProxyError, request_id: str) -> bytes:
        """The proxy's own error in this provider's JSON error format."""
        ...

    def extract_usage(self, payload: JSON) -> Usage | None:
        """Token usage in one parsed response body or one streamed event, if any."""
        ...

    def extract_model(self, payload: JSON) -> str | None:
        """The model named by a parsed request body, response body or streamed event."""
        ...

    async def validate_credentials(self, client: httpx.AsyncClient) -> CredentialCheck:
        """Probe the provider cheaply to tell whether the credentials are accepted."""
        ...

    async def fetch_models(self, client: httpx.AsyncClient) -> list[ModelInfo]:
        """The provider's models, normalised."""
        ...


@runtime_checkable
class PathErrorFormat(Protocol):
    """An adapter serving several API formats, whose errors follow the path's format.

    Optional, beside :class:`ProviderAdapter`: an adapter with
    ``error_body_for`` answers the proxy's errors through it, with the path
    below the provider's name, so a client of each API gets the error its SDK
    reads (Copilot answers Anthropic's format on ``/v1/messages``, OpenAI's
    elsewhere). Others answer through ``error_body``.
    """

    def error_body_for(self, error: ProxyError, request_id: str, path: str) -> bytes:
        """The proxy's own error in the JSON error format of the API at ``path``."""
        ...


def adapter_error_body(
    adapter: ProviderAdapter, error: ProxyError, request_id: str, path: str
) -> bytes:
    """The proxy's error for a request to ``path`` below ``adapter``, in that API's format."""
    if isinstance(adapter, PathErrorFormat):
        return adapter.error_body_for(error, request_id, path)
    return adapter.error_body(error, request_id)


async def close_adapter(adapter: object) -> None:
    """Call the adapter's ``aclose()``, sync or async, when it has one.

    It is optional: only adapters holding resources of their own (a client for
    a token exchange) need it.
    """
    close = getattr(adapter, "aclose", None)
    if close is not None:
        closing = close()
        if inspect.isawaitable(closing):
            await closing
