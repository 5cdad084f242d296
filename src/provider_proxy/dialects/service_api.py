"""The REST service API some clients were written against (``/api/v1``): its JSON shapes.

A small service in front of OpenRouter that this project grew from. Its
inference answers are OpenAI Chat's; what is its own is here, pure: the
error body, the model entries and their pages. The engine's
:mod:`~provider_proxy.engine._inference_api` serves them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

#: The ``type`` of an error: what kind of failure, as that service names them.
ErrorType = Literal["validation", "rate_limit", "openrouter", "internal"]

#: The type of an upstream provider's error (the service had one upstream).
UPSTREAM: ErrorType = "openrouter"


def error_type(status: int, *, upstream: bool) -> ErrorType:
    """The error ``type`` for an answer of ``status``; ``upstream`` when a provider gave it."""
    if status == 429:
        return "rate_limit"
    if upstream or status in (502, 503, 504):
        return UPSTREAM
    if 400 <= status < 500:
        return "validation"
    return "internal"


def error_body(
    status: int, message: str, kind: ErrorType, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``{"error": {"code", "message", "type", "details"}}``."""
    error: dict[str, Any] = {"code": status, "message": message, "type": kind}
    if details is not None:
        error["details"] = dict(details)
    return {"error": error}


def upstream_message(payload: Any, status: int) -> tuple[str, Any]:
    """The message of a provider's error body (any format), and the body as details."""
    if isinstance(payload, Mapping):
        error = payload.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return error["message"], error
        if isinstance(payload.get("message"), str):
            return payload["message"], payload
    return f"The provider answered HTTP {status}.", None


#: The keys of a full model entry, in that service's order.
ENTRY_KEYS = (
    "id",
    "name",
    "description",
    "context_length",
    "pricing",
    "supported_parameters",
    "is_moderated",
    "max_completion_tokens",
)


def model_entry(model: Mapping[str, Any], model_id: str) -> dict[str, Any]:
    """A catalog model as that service lists it, under the id its inference takes."""
    entry = {key: model.get(key) for key in ENTRY_KEYS}
    entry["id"] = model_id
    return entry


def vendor(model_id: str) -> str:
    """The model's vendor: the part before ``/`` (``openai`` of ``openai/gpt-4o``)."""
    return model_id.partition("/")[0] if "/" in model_id else ""


def page(entries: list[dict[str, Any]], total: int, limit: int, offset: int) -> dict[str, Any]:
    """``{"data", "pagination": {"total", "limit", "offset", "hasMore"}}``."""
    return {
        "data": entries,
        "pagination": {
            "total": total,
            "limit": limit,
            "offset": offset,
            "hasMore": offset + len(entries) < total,
        },
    }


def brief(entry: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """Only ``keys`` of an entry (the short lists: top, search, by provider)."""
    return {key: entry.get(key) for key in keys}
