"""Google's Gemini API (``generativelanguage.googleapis.com``): native and OpenAI-compatible."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from .._adapter import CredentialState, ModelInfo, RequestContext
from ..dialects import Dialect, Gemini, OpenAIChat
from ..dialects.gemini import CREDENTIAL_PARAMS, GATEWAY_METHODS
from ..policy import without_params
from ._base import BaseAdapter

_OPENAI = OpenAIChat()


_MODEL_METHODS = (
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
)
# ``*`` matches within one path segment, and ``gemini-2.0-flash:generateContent``
# is one segment: ``/models/*:generateContent`` matches it.
_ENDPOINTS = (
    *(
        f"POST /{version}/models/*:{method}"
        for version in ("v1beta", "v1")
        for method in _MODEL_METHODS
    ),
    "GET /v1beta/models",
    "GET /v1beta/models/*",
    "GET /v1/models",
    "GET /v1/models/*",
    # The OpenAI-compatible API (model ids there may be "models/..."; hence **).
    "POST /v1beta/openai/chat/completions",
    "POST /v1beta/openai/embeddings",
    "GET /v1beta/openai/models",
    "GET /v1beta/openai/models/**",
)


#: Operations a model serves whenever it serves the first: Gemini lists neither
#: ``streamGenerateContent`` nor ``batchEmbedContents`` for the models that take them.
_IMPLIED = {"generate": "stream", "embed_content": "embed", "embed": "embed_content"}

#: Gemini's largest model-list page.
_PAGE_SIZE = 1000
#: A bound on model-list pages followed, against a server that never ends them.
_MAX_PAGES = 50


class GeminiAdapter(BaseAdapter):
    """Gemini (``https://generativelanguage.googleapis.com``) with an AI Studio key.

    The key comes from ``GOOGLE_API_KEY`` or else ``GEMINI_API_KEY`` (the
    google-genai SDK's order: when both are set, ``GOOGLE_API_KEY`` wins) and
    is sent in ``x-goog-api-key``. The query parameters in
    :data:`~provider_proxy.dialects.gemini.CREDENTIAL_PARAMS` are removed from
    every forwarded URL, every occurrence of them. The proxy's own errors come
    in Google's format, ``{"error": {"code", "message", "status"}}``.

    Forwarded by default: ``generateContent``, ``streamGenerateContent``,
    ``countTokens``, ``embedContent`` and ``batchEmbedContents`` of
    ``/v1beta/models/{model}`` and ``/v1/models/{model}``, the model lists of
    both versions, and the OpenAI-compatible ``/v1beta/openai/chat/completions``,
    ``/v1beta/openai/embeddings`` and ``/v1beta/openai/models``.
    """

    default_name = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com"
    default_api_key_env = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    auth_header = "x-goog-api-key"
    auth_scheme = ""
    dialects = (Gemini(), OpenAIChat())
    endpoints = _ENDPOINTS
    #: Gemini Live (``v1beta`` or ``v1alpha``; ``...Constrained`` for ephemeral tokens).
    socket_endpoints = (
        "GET /ws/google.ai.generativelanguage.*.GenerativeService.BidiGenerateContent",
        "GET /ws/google.ai.generativelanguage.*.GenerativeService.BidiGenerateContentConstrained",
    )

    def dialect_for(self, path: str) -> Dialect:
        """Gemini's own format, but OpenAI's under the compatible API (``/v1beta/openai/``)."""
        if path.startswith("/v1beta/openai/"):
            return _OPENAI
        return super().dialect_for(path)

    def gateway_path(self, dialect: Dialect, operation: str) -> str | None:
        """The gateway speaks Gemini's own API (``generateContent``), for every client format:
        the compatible API cannot carry thought signatures back."""
        if dialect == _OPENAI:
            return None
        return super().gateway_path(dialect, operation)

    def rewrite_url(self, url: httpx.URL, context: RequestContext) -> httpx.URL:
        """Drop every query parameter named in :data:`CREDENTIAL_PARAMS`."""
        return without_params(url, CREDENTIAL_PARAMS)

    def socket_auth(
        self, auth: Mapping[str, str], url: httpx.URL
    ) -> tuple[Mapping[str, str], httpx.URL]:
        """Gemini Live takes the key as ``?key=``, as its own SDKs send it."""
        key = auth.get(self.auth_header)
        if not key:
            return auth, url
        rest = {name: value for name, value in auth.items() if name != self.auth_header}
        return rest, url.copy_merge_params({"key": key})

    # -- credentials and models -------------------------------------------------

    def credential_probe(self) -> httpx.Request:
        return httpx.Request("GET", self.join("/v1beta/models"), params={"pageSize": "1"})

    def probe_state(self, response: httpx.Response) -> CredentialState:
        """Google answers a key it does not know with 400 ``API_KEY_INVALID``."""
        if response.status_code == 400 and "API_KEY_INVALID" in response.text:
            return CredentialState.AUTH_REJECTED
        return super().probe_state(response)

    def models_request(self, page_token: str | None = None) -> httpx.Request:
        """One page of ``GET /v1beta/models``."""
        params = {"pageSize": str(_PAGE_SIZE)}
        if page_token:
            params["pageToken"] = page_token
        return httpx.Request("GET", self.join("/v1beta/models"), params=params)

    async def fetch_models(self, client: httpx.AsyncClient) -> list[ModelInfo]:
        """Every page of the model list, following ``nextPageToken``."""
        models: list[ModelInfo] = []
        token: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            response = await self.send_own(client, self.models_request(token))
            response.raise_for_status()
            payload = response.json()
            records = payload.get("models") or []
            models.extend(self.model_info(r) for r in records if isinstance(r, Mapping))
            next_token = payload.get("nextPageToken")
            if not isinstance(next_token, str) or not next_token or next_token in seen:
                break
            seen.add(next_token)
            token = next_token
        return models

    def model_info(self, record: Mapping[str, Any]) -> ModelInfo:
        """``models/gemini-2.0-flash`` becomes the id ``gemini-2.0-flash``; its
        ``displayName``, ``inputTokenLimit`` (the context length), ``outputTokenLimit``
        (the catalog's ``max_completion_tokens``) and ``supportedGenerationMethods``
        (the catalog's ``operations``: those the gateway serves) are kept."""
        name = str(record["name"])
        display = record.get("displayName")
        raw = dict(record)
        output = _count(record.get("outputTokenLimit"))
        if output is not None:
            raw["max_completion_tokens"] = output
        methods = record.get("supportedGenerationMethods")
        if isinstance(methods, list):
            raw["operations"] = _operations(methods)
        return ModelInfo(
            id=name.removeprefix("models/"),
            provider=self.name,
            display_name=display if isinstance(display, str) and display else None,
            context_length=_count(record.get("inputTokenLimit")),
            raw=raw,
        )


def _count(value: Any) -> int | None:
    """A token limit as Gemini states it: a positive whole number, else unknown."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _operations(methods: list[Any]) -> list[str]:
    """The gateway operations of a model's ``supportedGenerationMethods``, in the
    gateway's order (a model of none of them is one the gateway cannot call)."""
    named = {GATEWAY_METHODS[m] for m in methods if isinstance(m, str) and m in GATEWAY_METHODS}
    named |= {_IMPLIED[op] for op in named if op in _IMPLIED}
    return [op for op in GATEWAY_METHODS.values() if op in named]
