"""Token usage as each provider reports it, normalised to :class:`~provider_proxy.Usage`.

Pure functions over one parsed JSON payload (a whole response body, or the
``data`` of one streamed event); ``None`` when the payload carries no usage.
"""

from __future__ import annotations

from typing import Any

from .._adapter import Usage


def openai_usage(payload: Any) -> Usage | None:
    """OpenAI chat, completions, embeddings and Responses API usage."""
    return None  # filled in with the usage accounting


def anthropic_usage(payload: Any) -> Usage | None:
    """Anthropic Messages usage: bodies, ``message_start`` and ``message_delta``."""
    return None  # filled in with the usage accounting


def gemini_usage(payload: Any) -> Usage | None:
    """Gemini ``usageMetadata``."""
    return None  # filled in with the usage accounting
