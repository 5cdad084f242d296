"""The contract between the engine and a provider: :class:`ProviderAdapter`.

Everything the engine knows about a provider comes through this protocol:
where requests go, which credentials they carry, which API format
(:class:`~provider_proxy.dialects.Dialect`) each of its paths speaks, which
endpoints are open and which request bodies must be read (only those get
parsed; all others stream through untouched). Everything about a format (its
errors, usage, model and stream flag) is the dialect's.
:class:`~provider_proxy.adapters.BaseAdapter` implements it with defaults.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Protocol, runtime_checkable

import httpx

from .._adapter import Availability, BodyTransform, CredentialCheck, ModelInfo, RequestContext
from ..dialects import Dialect
from ..policy import HeaderPolicy


@runtime_checkable
class Provider(Protocol):
    """What the app mounts under a name: one adapter, or a group that picks one.

    For each request the engine asks :meth:`serving` for the
    :class:`ProviderAdapter` that serves it, and talks to that one only.
    """

    @property
    def name(self) -> str:
        """The URL segment the provider is mounted under."""
        ...

    def availability(self) -> Availability:
        """Whether requests can be served now (credentials present), and why not.

        Cheap: a key callable is not asked (see :meth:`current_availability`).
        """
        ...

    def current_availability(self) -> Availability:
        """:meth:`availability`, asking a key callable too (for choosing among adapters)."""
        ...

    def serving(self) -> ProviderAdapter:
        """The adapter that serves the next request: an adapter itself, a group one of its own."""
        ...

    async def validate_credentials(self, client: httpx.AsyncClient) -> CredentialCheck:
        """Probe the provider cheaply to tell whether the credentials are accepted."""
        ...

    async def fetch_models(self, client: httpx.AsyncClient) -> list[ModelInfo]:
        """The provider's models, normalised."""
        ...

    async def aclose(self) -> None:
        """Release what the provider holds (a client for a token exchange); the app calls it."""
        ...


@runtime_checkable
class ProviderAdapter(Provider, Protocol):
    """What the engine needs from the adapter serving a request.

    ``{mount}/{name}/X`` is forwarded to ``{base_url}/X``.
    """

    @property
    def base_url(self) -> httpx.URL:
        """Where requests go; the client's path is appended and confined below it."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Headers always set on upstream requests (for example a ``User-Agent``)."""
        ...

    @property
    def default_headers(self) -> Mapping[str, str]:
        """Headers set only when the client sent none of that name (an API version)."""
        ...

    @property
    def header_policy(self) -> HeaderPolicy:
        """Which of the client's headers never go upstream, beyond the fixed rules."""
        ...

    @property
    def dialects(self) -> tuple[Dialect, ...]:
        """The API formats the provider speaks, its default first."""
        ...

    def dialect_for(self, path: str) -> Dialect:
        """The API format that ``path`` (below the base URL, percent-encoded) speaks."""
        ...

    def gateway_path(self, dialect: Dialect, operation: str) -> str | None:
        """The path (below the base URL) where the provider serves ``operation``
        (``"generate"``, ``"count_tokens"``) in ``dialect``'s format, or ``None``."""
        ...

    def endpoint_allowed(self, method: str, path: str) -> bool:
        """Whether ``method path`` (below the base URL) may be forwarded.

        Secure by default: inference endpoints only, unless the operator allows more.
        """
        ...

    def body_transform(self, context: RequestContext) -> BodyTransform | None:
        """The transform for this request's body, or ``None`` to stream it untouched."""
        ...

    def auth_headers(
        self, context: RequestContext
    ) -> Mapping[str, str] | Awaitable[Mapping[str, str]]:
        """The provider credentials for one request; they replace same-named client headers.

        May be a coroutine, so an adapter can refresh a short-lived token.
        """
        ...

    def rewrite_url(self, url: httpx.URL, context: RequestContext) -> httpx.URL:
        """A last change to the upstream URL (a query parameter to add or remove)."""
        ...

    def opens_socket(self, path: str) -> bool:
        """Whether ``path`` (below the base URL) is a WebSocket of the provider's that the
        proxy relays (``/realtime``); every other socket is refused."""
        ...

    def socket_auth(
        self, auth: Mapping[str, str], url: httpx.URL
    ) -> tuple[Mapping[str, str], httpx.URL]:
        """The credentials for a socket's handshake: as headers, or moved into ``url``."""
        ...
