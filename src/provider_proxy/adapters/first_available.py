"""`FirstAvailableAdapter`: one URL segment served by the first of several adapters that can."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import httpx

from .._adapter import (
    Availability,
    CredentialCheck,
    CredentialState,
    ModelInfo,
)
from .._exceptions import ProviderNotConfigured
from ._base import _NAME_RE
from ._protocol import Provider, ProviderAdapter


class FirstAvailableAdapter:
    """Serves ``{mount}/{name}/...`` with the first of ``adapters`` that is available.

    ``FirstAvailableAdapter("llm", [OpenAIAdapter(), OllamaAdapter()])`` sends
    requests to OpenAI while it has a key and to the local Ollama otherwise;
    the adapters are tried in order, for every request, with their
    ``current_availability()`` (so a key callable that returns no key right
    now passes the request on to the next adapter). The members share one
    URL, so they should speak the same API.

    **One request, one adapter, by composition.** The engine asks a mounted
    provider for the adapter that serves each request (:meth:`serving`) and
    then talks to that adapter only: its base URL, credentials, endpoint
    policy, transforms and dialects. A key that appears or vanishes mid-request
    changes nothing for that request, and no request can carry one adapter's
    credentials to another's base URL. :meth:`validate_credentials` and
    :meth:`fetch_models` ask the adapter available at the time.

    :param name: the URL segment.
    :param adapters: the providers, in order of preference (adapters, or other
        groups; their own names are not mounted, they only label reasons and checks).
    """

    def __init__(self, name: str, adapters: Sequence[Provider]) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"Adapter name {name!r} must be 1-64 of lower-case letters, digits, '.', '_' "
                "or '-', starting with a letter or digit: it is a URL segment."
            )
        members = tuple(adapters)
        if not members:
            raise ValueError("FirstAvailableAdapter needs at least one adapter.")
        for member in members:
            if not isinstance(member, Provider):
                raise TypeError(f"{member!r} does not implement ProviderAdapter.")
        self._name = name
        self._adapters = members

    def __repr__(self) -> str:
        names = ", ".join(adapter.name for adapter in self._adapters)
        return f"FirstAvailableAdapter(name={self._name!r}, adapters=[{names}])"

    @property
    def name(self) -> str:
        return self._name

    @property
    def adapters(self) -> tuple[Provider, ...]:
        """The providers, in order of preference."""
        return self._adapters

    def choose(self) -> Provider | None:
        """The first provider available right now, or ``None``."""
        for adapter in self._adapters:
            if adapter.current_availability().enabled:
                return adapter
        return None

    def serving(self) -> ProviderAdapter:
        """The adapter for the next request: the first available (a group's own choice),
        else the first, whose refusal then names what it lacks."""
        chosen = self.choose()
        return (chosen if chosen is not None else self._adapters[0]).serving()

    def availability(self) -> Availability:
        """Enabled when any of its providers is; else why each is not."""
        reasons: list[str] = []
        for adapter in self._adapters:
            availability = adapter.current_availability()
            if availability.enabled:
                return Availability(True)
            reasons.append(f"{adapter.name}: {availability.reason or 'not available'}")
        return Availability(
            False, "none of its providers is available (" + "; ".join(reasons) + ")"
        )

    def current_availability(self) -> Availability:
        """The same as :meth:`availability`: every member's key callable is asked."""
        return self.availability()

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
