"""OpenAI Chat Completions, with the legacy completions and embeddings endpoints.

The format most providers and gateways speak: OpenAI, Azure, OpenRouter, vLLM,
Ollama, DashScope, Copilot, Gemini's compatible API.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .._adapter import JSON, Usage
from .._exceptions import ProxyError
from ._base import (
    BaseDialect,
    get,
    int_count,
    openai_error,
    route,
    usage,
)

#: A substring of every key the OpenAI usage reader looks at.
USAGE_HINT = "usage"

_SUFFIXES = ("/chat/completions", "/completions", "/embeddings", "/moderations")


def openai_usage(payload: Any) -> Usage | None:
    """OpenAI chat, completions, embeddings and Responses API usage.

    Chat and completions name the counts ``prompt_tokens``/``completion_tokens``
    (cached ones under ``prompt_tokens_details.cached_tokens``, or DeepSeek's
    ``prompt_cache_hit_tokens``); streamed chat reports them in a last chunk
    when the request asked for ``stream_options.include_usage``. Embeddings
    have no ``completion_tokens``: their output is 0. The Responses API says
    ``input_tokens``/``output_tokens`` (``input_tokens_details.cached_tokens``),
    streamed as ``response.usage`` of ``response.completed`` (also
    ``response.incomplete`` and ``response.failed``). In both APIs the prompt
    count already includes the cached tokens, and the output count the
    reasoning tokens.
    """
    counts = get(payload, "usage")
    if counts is None:
        counts = get(get(payload, "response"), "usage")
    if not isinstance(counts, dict):
        return None
    if "prompt_tokens" in counts or "completion_tokens" in counts:
        prompt = int_count(counts.get("prompt_tokens"))
        output = int_count(counts.get("completion_tokens"))
        total = int_count(counts.get("total_tokens"))
        if output is None and prompt is not None and total == prompt:
            output = 0  # embeddings: every token was input
        cached = int_count(get(counts.get("prompt_tokens_details"), "cached_tokens"))
        if cached is None:
            cached = int_count(counts.get("prompt_cache_hit_tokens"))
        return usage(prompt, output, cached)
    if "input_tokens" in counts or "output_tokens" in counts:
        return usage(
            int_count(counts.get("input_tokens")),
            int_count(counts.get("output_tokens")),
            int_count(get(counts.get("input_tokens_details"), "cached_tokens")),
        )
    return None


class OpenAIChat(BaseDialect):
    """OpenAI Chat Completions (``/chat/completions``), completions and embeddings.

    Clients send the key as ``Authorization: Bearer`` (Azure's SDK as
    ``api-key``); the model is the body's ``model``; ``"stream": true`` asks
    for server-sent events; errors are ``{"error": {"message", "type", ...}}``.
    """

    name: ClassVar[str] = "openai-chat"
    credential_headers: ClassVar[frozenset[bytes]] = frozenset({b"authorization", b"api-key"})
    account_headers: ClassVar[frozenset[bytes]] = frozenset(
        {b"openai-organization", b"openai-project"}
    )
    client_headers: ClassVar[tuple[str, ...]] = ("x-stainless-*",)
    usage_hints: ClassVar[tuple[str, str] | None] = (USAGE_HINT, "model")

    def recognizes(self, path: str) -> bool:
        return route(path).endswith(_SUFFIXES)

    def usage_of(self, payload: JSON) -> Usage | None:
        return openai_usage(payload)

    def error_body(self, error: ProxyError, request_id: str) -> bytes:
        return openai_error(error)
