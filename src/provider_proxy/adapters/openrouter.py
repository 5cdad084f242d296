"""OpenRouter: many providers' models behind one OpenAI-compatible API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from typing_extensions import Unpack

from .._adapter import ModelInfo
from ._base import AdapterOptions, BaseAdapter


class OpenRouterAdapter(BaseAdapter):
    """OpenRouter (``https://openrouter.ai/api/v1``); the key comes from ``OPENROUTER_API_KEY``.

    ``referer`` and ``title`` set OpenRouter's optional app attribution headers,
    ``HTTP-Referer`` and ``X-Title``, as *default* headers: a client that sends
    its own (as OpenRouter's docs show SDK users doing) keeps them. To impose
    them whatever the client sends, pass ``headers={"HTTP-Referer": ...}``.

    The model list (public at OpenRouter) carries ``name``, ``context_length``
    and ``pricing`` (US dollars per token, as strings); the key is checked
    against ``GET /key``, which, unlike the model list, needs a valid key.
    """

    default_name = "openrouter"
    default_base_url = "https://openrouter.ai/api/v1"
    default_api_key_env = "OPENROUTER_API_KEY"
    endpoints = (
        "POST /chat/completions",
        "POST /completions",
        "POST /embeddings",
        "POST /responses",
        "GET /models",
        "GET /models/**",
    )

    def __init__(
        self,
        *,
        referer: str | None = None,
        title: str | None = None,
        **options: Unpack[AdapterOptions],
    ) -> None:
        attribution: dict[str, str] = {}
        if referer is not None:
            attribution["HTTP-Referer"] = referer
        if title is not None:
            attribution["X-Title"] = title
        options["default_headers"] = {**attribution, **(options.get("default_headers") or {})}
        super().__init__(**options)

    def credential_probe(self) -> httpx.Request:
        # GET /models answers without a key; GET /key describes the key it is sent.
        return httpx.Request("GET", self.join("/key"))

    def model_info(self, record: Mapping[str, Any]) -> ModelInfo:
        """``name``, ``context_length`` (else the top provider's) and ``pricing``."""
        top = record.get("top_provider")
        context = _count(record.get("context_length"))
        if context is None and isinstance(top, Mapping):
            context = _count(top.get("context_length"))
        pricing = record.get("pricing")
        name = record.get("name")
        raw = dict(record)
        if isinstance(top, Mapping):  # the catalog reads these at the top, as others give them
            for detail in ("is_moderated", "max_completion_tokens"):
                if raw.get(detail) is None and top.get(detail) is not None:
                    raw[detail] = top[detail]
        return ModelInfo(
            id=str(record["id"]),
            provider=self.name,
            display_name=name if isinstance(name, str) and name else None,
            context_length=context,
            pricing=pricing if isinstance(pricing, Mapping) else None,
            raw=raw,
        )


def _count(value: Any) -> int | None:
    """A whole, positive token count (JSON may spell it ``131072.0``), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value <= 0 or value != int(value):
        return None
    return int(value)
