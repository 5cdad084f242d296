"""OpenAI's Responses API (``/responses`` and its sub-resources)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .._adapter import JSON
from ._base import get, route, top_level_model
from .canonical import Codec
from .openai_chat import OpenAIChat


class OpenAIResponses(OpenAIChat):
    """The Responses API: OpenAI Chat's credentials, usage reader and error format.

    Streamed events carry the model and the final usage inside ``response``
    (``response.created``, ``response.completed``).
    """

    name: ClassVar[str] = "openai-responses"
    #: The final status comes with the usage, in ``response.completed`` (or
    #: ``.incomplete``, ``.failed``): no other event needs reading for it.
    finish_hint: ClassVar[str | None] = None
    #: No translation yet: Chat's codec does not speak this format.
    codec: ClassVar[Codec | None] = None
    operations: ClassVar[Mapping[str, str]] = {"generate": "/responses"}

    def recognizes(self, path: str) -> bool:
        segments = route(path).split("/")
        return "responses" in segments

    def model_of(self, payload: JSON) -> str | None:
        model = top_level_model(payload)
        if model is not None:
            return model
        return top_level_model(get(payload, "response"))

    def finish_reasons_of(self, payload: JSON) -> tuple[str, ...]:
        """A finished response's ``status``, or why it is ``incomplete``."""
        response = get(payload, "response")
        if not isinstance(response, dict):
            response = payload
        status = get(response, "status")
        if status == "incomplete":
            reason = get(get(response, "incomplete_details"), "reason")
            return (reason,) if isinstance(reason, str) else (status,)
        return (status,) if status in ("completed", "failed", "cancelled") else ()
