"""The fake provider's token counts, single embeddings and Gemini's model list,
validated as the real APIs do.

Anthropic's ``POST /v1/messages/count_tokens`` takes a Messages body without
the fields that shape an answer (``max_tokens``, ``stream``, sampling: "Extra
inputs are not permitted") and answers ``{"input_tokens"}``. Gemini's
``countTokens`` takes ``contents`` or a ``generateContentRequest`` (with its
``model``), not both and nothing else, and answers ``{"totalTokens",
"promptTokensDetails"}``; its ``embedContent`` answers ``{"embedding": {"values"}}``.
A count is the words of every text in the request, plus one per message.
"""

from __future__ import annotations

from typing import Any

#: The fields Anthropic's count endpoint takes.
ANTHROPIC_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"}
)
#: Gemini's ``GET /v1beta/models`` (one page).
GEMINI_MODELS: dict[str, Any] = {
    "models": [
        {
            "name": "models/gemini-fake-1",
            "displayName": "Gemini Fake 1",
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
        },
        {
            "name": "models/gemini-embedding-fake",
            "displayName": "Gemini Embedding Fake",
            "inputTokenLimit": 2048,
            "outputTokenLimit": 1,
            "supportedGenerationMethods": ["embedContent"],
        },
    ]
}
#: Keys whose strings are names, not text: not counted.
_NOT_TEXT = frozenset({"model", "role", "type", "id", "tool_use_id", "mimeType", "media_type"})


def words(value: Any) -> int:
    """The words of every text string in a JSON value."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(words(item) for item in value)
    if isinstance(value, dict):
        return sum(words(item) for key, item in value.items() if key not in _NOT_TEXT)
    return 0


def anthropic_count(payload: Any) -> tuple[int, dict[str, Any]]:
    """Anthropic's answer to a ``count_tokens`` body: ``(status, body)``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
        return _anthropic_error("messages: Field required")
    if not isinstance(payload.get("model"), str):
        return _anthropic_error("model: Field required")
    extra = sorted(set(payload) - ANTHROPIC_FIELDS)
    if extra:
        return _anthropic_error(f"{extra[0]}: Extra inputs are not permitted")
    messages = payload["messages"]
    count = words(messages) + words(payload.get("system")) + words(payload.get("tools"))
    return 200, {"input_tokens": count + len(messages)}


def gemini_count(payload: Any) -> tuple[int, dict[str, Any]]:
    """Gemini's answer to a ``countTokens`` body: ``(status, body)``."""
    if not isinstance(payload, dict):
        return gemini_error(400, "Invalid JSON payload received.")
    extra = sorted(set(payload) - {"contents", "generateContentRequest"})
    if extra:
        return gemini_error(400, f'Invalid JSON payload received. Unknown name "{extra[0]}".')
    whole = payload.get("generateContentRequest")
    if whole is not None and payload.get("contents") is not None:
        return gemini_error(400, "contents and generateContentRequest are mutually exclusive.")
    if whole is not None:
        if not isinstance(whole, dict) or not str(whole.get("model", "")).startswith("models/"):
            return gemini_error(400, "GenerateContentRequest.model: unexpected model name format")
        contents = whole.get("contents") or []
        count = words(contents) + words(whole.get("systemInstruction")) + words(whole.get("tools"))
    else:
        contents = payload.get("contents") or []
        count = words(contents)
    total = count + len(contents)
    details = [{"modality": "TEXT", "tokenCount": total}]
    return 200, {"totalTokens": total, "promptTokensDetails": details}


def gemini_embed(payload: Any, vector: Any) -> tuple[int, dict[str, Any]]:
    """Gemini's ``embedContent`` answer, the vector made by ``vector(text, size)``."""
    content = payload.get("content") if isinstance(payload, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        return gemini_error(400, "* EmbedContentRequest.content: contents is not specified")
    text = "".join(p.get("text", "") for p in parts if isinstance(p, dict))
    size = int(payload.get("outputDimensionality") or 4)
    return 200, {"embedding": {"values": vector(text, size)}}


def gemini_error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    name = "INVALID_ARGUMENT" if status == 400 else "INTERNAL"
    return status, {"error": {"code": status, "message": message, "status": name}}


def _anthropic_error(message: str) -> tuple[int, dict[str, Any]]:
    error = {"type": "invalid_request_error", "message": message}
    return 400, {"type": "error", "error": error}
