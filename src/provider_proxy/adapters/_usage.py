"""Token usage as each provider reports it, normalised to :class:`~provider_proxy.Usage`.

Pure functions over one parsed JSON payload (a whole response body, or the
``data`` of one streamed event); ``None`` when the payload carries no usage.
They never raise on unexpected shapes: a count that is not a non-negative
integer is treated as absent.

A stream reports usage in pieces; the tap merges them with
:meth:`Usage.merge <provider_proxy.Usage.merge>` (a later count wins where it
has one), so each function leaves out (``None``) what one event does not say
rather than reporting it as zero.

Every key these functions read contains :data:`USAGE_HINT`, so an event
whose text lacks it carries no usage for them (the tap uses this to skip
parsing such events).
"""

from __future__ import annotations

from typing import Any

from .._adapter import Usage

#: A substring of every key the readers here look at (``usage``, ``usageMetadata``).
USAGE_HINT = "usage"


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


def _usage(
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read: int | None = None,
    cache_write: int | None = None,
) -> Usage | None:
    if input_tokens is output_tokens is cache_read is cache_write is None:
        return None
    return Usage(input_tokens, output_tokens, cache_read, cache_write)


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
    usage = _get(payload, "usage")
    if usage is None:
        usage = _get(_get(payload, "response"), "usage")
    if not isinstance(usage, dict):
        return None
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        prompt = _int(usage.get("prompt_tokens"))
        output = _int(usage.get("completion_tokens"))
        if output is None and prompt is not None and _int(usage.get("total_tokens")) == prompt:
            output = 0  # embeddings: every token was input
        cached = _int(_get(usage.get("prompt_tokens_details"), "cached_tokens"))
        if cached is None:
            cached = _int(usage.get("prompt_cache_hit_tokens"))
        return _usage(prompt, output, cached)
    if "input_tokens" in usage or "output_tokens" in usage:
        return _usage(
            _int(usage.get("input_tokens")),
            _int(usage.get("output_tokens")),
            _int(_get(usage.get("input_tokens_details"), "cached_tokens")),
        )
    return None


def anthropic_usage(payload: Any) -> Usage | None:
    """Anthropic Messages usage: message bodies, ``message_start`` and ``message_delta``.

    Anthropic's ``input_tokens`` leaves out the prompt tokens read from the
    cache (``cache_read_input_tokens``) and written to it
    (``cache_creation_input_tokens``). They are added here, so
    ``Usage.input_tokens`` counts the whole prompt as for every other
    provider, with ``cache_read_tokens`` and ``cache_write_tokens`` saying how
    much of it was cached.

    A stream reports the input counts in ``message_start`` and the output
    count in ``message_delta`` (cumulative). ``message_delta`` may repeat the
    input counts (they grow when server tools ran); its input total is used
    only when it carries both cache counts too, since without them it cannot
    be normalised and the earlier total stays.
    """
    usage = _get(payload, "usage")
    if usage is None:
        usage = _get(_get(payload, "message"), "usage")
    if not isinstance(usage, dict):
        return None
    plain = _int(usage.get("input_tokens"))
    read = _int(usage.get("cache_read_input_tokens"))
    written = _int(usage.get("cache_creation_input_tokens"))
    partial = _get(payload, "type") == "message_delta" and (read is None or written is None)
    total_input = None if plain is None or partial else plain + (read or 0) + (written or 0)
    return _usage(total_input, _int(usage.get("output_tokens")), read, written)


def gemini_usage(payload: Any) -> Usage | None:
    """Gemini ``usageMetadata`` (``generateContent`` and each streamed chunk).

    ``promptTokenCount`` already includes the cached tokens
    (``cachedContentTokenCount``); tokens of tool-use prompts
    (``toolUsePromptTokenCount``) are added to the input and thinking tokens
    (``thoughtsTokenCount``) to the output, so the total matches Gemini's
    ``totalTokenCount``. Streamed chunks repeat the counts so far; the last
    one holds the final counts.
    """
    usage = _get(payload, "usageMetadata")
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("promptTokenCount"))
    tools = _int(usage.get("toolUsePromptTokenCount"))
    candidates = _int(usage.get("candidatesTokenCount"))
    thoughts = _int(usage.get("thoughtsTokenCount"))
    return _usage(
        None if prompt is None else prompt + (tools or 0),
        None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0),
        _int(usage.get("cachedContentTokenCount")),
    )
