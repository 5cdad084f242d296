"""`FirstAvailableAdapter`: one URL segment served by the first of several adapters that can."""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Awaitable, Mapping, Sequence

import httpx

from .._adapter import (
    Availability,
    BodyTransform,
    CredentialCheck,
    CredentialState,
    ModelInfo,
    RequestContext,
)
from .._exceptions import ProviderNotConfigured
from ..dialects import Dialect
from ..policy import HeaderPolicy
from ._base import _NAME_RE
from ._protocol import ProviderAdapter


class FirstAvailableAdapter:
    """Serves ``{mount}/{name}/...`` with the first of ``adapters`` that is available.

    ``FirstAvailableAdapter("llm", [OpenAIAdapter(), OllamaAdapter()])`` sends
    requests to OpenAI while it has a key and to the local Ollama otherwise;
    the adapters are tried in order, for every request, with their
    ``current_availability()`` (so a key callable that returns no key right
    now passes the request on to the next adapter). Every other method is the
    chosen adapter's: base URL, headers, credentials, URL rewrite, endpoint
    policy, body transforms and the dialect of each path. The
    members share one URL, so they should speak the same API.

    **One request, one adapter.** The engine asks :meth:`availability` first
    for each request; that call makes the choice and pins it in a context
    variable, which the rest of the request (running in the same task) reads.
    A key that appears or vanishes mid-request therefore changes nothing for
    that request, and no request can carry one adapter's credentials to
    another's base URL. Outside a request (where nothing was pinned) each
    method chooses afresh; :meth:`validate_credentials` and
    :meth:`fetch_models` always do.

    :param name: the URL segment.
    :param adapters: the adapters, in order of preference (their own names are
        not mounted; they only label the reasons and checks).
    """

    def __init__(self, name: str, adapters: Sequence[ProviderAdapter]) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"Adapter name {name!r} must be 1-64 of lower-case letters, digits, '.', '_' "
                "or '-', starting with a letter or digit: it is a URL segment."
            )
        members = tuple(adapters)
        if not members:
            raise ValueError("FirstAvailableAdapter needs at least one adapter.")
        for member in members:
            if not isinstance(member, ProviderAdapter):
                raise TypeError(f"{member!r} does not implement ProviderAdapter.")
        self._name = name
        self._adapters = members
        # One variable per instance (they live as long as the app), so nested
        # or several FirstAvailableAdapters keep their own choice.
        self._pinned: contextvars.ContextVar[ProviderAdapter | None] = contextvars.ContextVar(
            f"provider_proxy.first_available.{name}", default=None
        )

    def __repr__(self) -> str:
        names = ", ".join(adapter.name for adapter in self._adapters)
        return f"FirstAvailableAdapter(name={self._name!r}, adapters=[{names}])"

    @property
    def name(self) -> str:
        return self._name

    @property
    def adapters(self) -> tuple[ProviderAdapter, ...]:
        """The adapters, in order of preference."""
        return self._adapters

    # -- the choice ---------------------------------------------------------------

    def choose(self) -> ProviderAdapter | None:
        """The first available adapter right now, or ``None`` (nothing is pinned)."""
        for adapter in self._adapters:
            if adapter.current_availability().enabled:
                return adapter
        return None

    @property
    def current(self) -> ProviderAdapter:
        """The adapter serving the current request: the one pinned by :meth:`availability`
        in this context, else the first available, else the first."""
        pinned = self._pinned.get()
        if pinned is not None:
            return pinned
        chosen = self.choose()
        return chosen if chosen is not None else self._adapters[0]

    def availability(self) -> Availability:
        """Enabled when any adapter is; chooses and pins the adapter for this request."""
        reasons: list[str] = []
        for adapter in self._adapters:
            availability = adapter.current_availability()
            if availability.enabled:
                self._pinned.set(adapter)
                return Availability(True)
            reasons.append(f"{adapter.name}: {availability.reason or 'not available'}")
        self._pinned.set(None)
        return Availability(
            False, "none of its providers is available (" + "; ".join(reasons) + ")"
        )

    def current_availability(self) -> Availability:
        """The same as :meth:`availability` (for nesting in another one)."""
        return self.availability()

    # -- the protocol, delegated ----------------------------------------------------

    @property
    def base_url(self) -> httpx.URL:
        return self.current.base_url

    @property
    def headers(self) -> Mapping[str, str]:
        return self.current.headers

    @property
    def default_headers(self) -> Mapping[str, str]:
        return self.current.default_headers

    def auth_headers(
        self, context: RequestContext
    ) -> Mapping[str, str] | Awaitable[Mapping[str, str]]:
        return self.current.auth_headers(context)

    def rewrite_url(self, url: httpx.URL, context: RequestContext) -> httpx.URL:
        return self.current.rewrite_url(url, context)

    def body_transform(self, context: RequestContext) -> BodyTransform | None:
        return self.current.body_transform(context)

    def endpoint_allowed(self, method: str, path: str) -> bool:
        return self.current.endpoint_allowed(method, path)

    @property
    def dialects(self) -> tuple[Dialect, ...]:
        return self.current.dialects

    def dialect_for(self, path: str) -> Dialect:
        return self.current.dialect_for(path)

    def gateway_path(self, dialect: Dialect, operation: str) -> str | None:
        return self.current.gateway_path(dialect, operation)

    @property
    def header_policy(self) -> HeaderPolicy:
        return self.current.header_policy

    async def validate_credentials(self, client: httpx.AsyncClient) -> CredentialCheck:
        """The check of the adapter available now; its name is in ``detail``."""
        adapter = self.choose()
        if adapter is None:
            return CredentialCheck(CredentialState.NOT_CONFIGURED)
        check = await adapter.validate_credentials(client)
        detail = adapter.name if not check.detail else f"{adapter.name}: {check.detail}"
        return dataclasses.replace(check, detail=detail)

    async def fetch_models(self, client: httpx.AsyncClient) -> list[ModelInfo]:
        """The models of the adapter available now, listed under this adapter's name."""
        adapter = self.choose()
        if adapter is None:
            raise ProviderNotConfigured(
                f"The provider {self._name!r} is not configured: {self.availability().reason}"
            )
        models = await adapter.fetch_models(client)
        return [dataclasses.replace(model, provider=self._name) for model in models]

    async def aclose(self) -> None:
        """Close the adapters that have an ``aclose()`` (the app closes this one only).

        Each is closed even if another fails; the first failure is raised after.
        """
        failure: Exception | None = None
        for adapter in self._adapters:
            try:
                await adapter.aclose()
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
