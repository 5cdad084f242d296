"""Token usage as each provider reports it, normalised to :class:`~provider_proxy.Usage`.

Pure functions over one parsed JSON payload (a whole response body, or the
``data`` of one streamed event); ``None`` when the payload carries no usage.
They never raise on unexpected shapes.
"""

from __future__ import annotations

from typing import Any

from .._adapter import Usage


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


def openai_usage(payload: Any) -> Usage | None:
    """OpenAI chat, completions, embeddings and Responses API usage.

    Chat and completions name the counts ``prompt_tokens``/``completion_tokens``
    (cached ones under ``prompt_tokens_details.cached_tokens``); the Responses
    API ``input_tokens``/``output_tokens`` (``input_tokens_details``), streamed
    in ``response.completed`` as ``response.usage``.
    """
    usage = _get(payload, "usage")
    if usage is None:
        usage = _get(_get(payload, "response"), "usage")
    if not isinstance(usage, dict):
        return None
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        details = _get(usage, "prompt_tokens_details")
        prompt = _int(usage.get("prompt_tokens"))
        output = _int(usage.get("completion_tokens"))
        if output is None and prompt is not None and _int(usage.get("total_tokens")) == prompt:
            output = 0  # embeddings: every token was input
        return Usage(
            input_tokens=prompt,
            output_tokens=output,
            cache_read_tokens=_int(_get(details, "cached_tokens")),
        )
    if "input_tokens" in usage or "output_tokens" in usage:
        details = _get(usage, "input_tokens_details")
        return Usage(
            input_tokens=_int(usage.get("input_tokens")),
            output_tokens=_int(usage.get("output_tokens")),
            cache_read_tokens=_int(_get(details, "cached_tokens")),
        )
    return None


def anthropic_usage(payload: Any) -> Usage | None:
    """Anthropic Messages usage: bodies, ``message_start`` and ``message_delta``.

    Anthropic's ``input_tokens`` leaves out tokens read from or written to the
    cache; they are added here, so ``input_tokens`` counts the whole prompt as
    for every other provider.
    """
    usage = _get(payload, "usage")
    if usage is None:
        usage = _get(_get(payload, "message"), "usage")
    if not isinstance(usage, dict):
        return None
    plain = _int(usage.get("input_tokens"))
    read = _int(usage.get("cache_read_input_tokens"))
    written = _int(usage.get("cache_creation_input_tokens"))
    total_input = None if plain is None else plain + (read or 0) + (written or 0)
    return Usage(
        input_tokens=total_input,
        output_tokens=_int(usage.get("output_tokens")),
        cache_read_tokens=read,
        cache_write_tokens=written,
    )


def gemini_usage(payload: Any) -> Usage | None:
    """Gemini ``usageMetadata``; thinking tokens count as output."""
    usage = _get(payload, "usageMetadata")
    if not isinstance(usage, dict):
        return None
    candidates = _int(usage.get("candidatesTokenCount"))
    thoughts = _int(usage.get("thoughtsTokenCount"))
    output = (
        None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    )
    return Usage(
        input_tokens=_int(usage.get("promptTokenCount")),
        output_tokens=output,
        cache_read_tokens=_int(usage.get("cachedContentTokenCount")),
    )
