"""OpenAI's Responses API (``/responses`` and its sub-resources)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from .._adapter import JSON, Usage
from . import _responses_codec as _codec
from . import _responses_items as _items
from ._base import get, route, top_level_model
from ._responses_stream import StreamDecoder, StreamEncoder
from .canonical import Codec, FidelityTable, Message, Request, Response, StreamError, Text
from .openai_chat import OpenAIChat, openai_usage


class OpenAIResponsesCodec:
    """OpenAI Responses ⇄ canonical (see :mod:`provider_proxy.dialects._responses_codec`
    and :mod:`provider_proxy.dialects._responses_items`).

    Its answers can be kept by the gateway, fetched and deleted by id
    (:class:`~provider_proxy.dialects.canonical.StoredAnswers`).

    :param created: the ``created_at`` time (Unix seconds) written in answers; by
        default the time of each answer.
    """

    request_fields: FidelityTable = _codec.REQUEST_FIELDS
    encode_fields: FidelityTable = _codec.ENCODE_FIELDS

    def __init__(self, created: int | None = None) -> None:
        self.created = created

    def _created(self) -> int:
        return int(time.time()) if self.created is None else self.created

    def decode_request(self, body: Any) -> tuple[Request, tuple[str, ...]]:
        return _codec.decode_request(body)

    def encode_request(self, request: Request) -> dict[str, Any]:
        return _codec.encode_request(request)

    def dropped_by_encoding(self, request: Request) -> tuple[str, ...]:
        return _codec.dropped_by_encoding(request)

    def decode_response(self, body: Any) -> Response:
        return _items.decode_response(body)

    def encode_response(self, response: Response, request: Request | None = None) -> dict[str, Any]:
        return _items.encode_response(response, self._created(), request)

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder()

    def stream_encoder(self, request: Request) -> StreamEncoder:
        return StreamEncoder(request, created=self._created())

    def encode_error(self, status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
        return _items.encode_error(status, kind, message)

    def decode_error(self, status: int, body: Any) -> StreamError:
        return _items.decode_error(status, body)

    def continued(self, body: Any) -> str | None:
        """The body's ``previous_response_id``."""
        previous = get(body, "previous_response_id")
        return previous if isinstance(previous, str) else None

    def dated(self, created: int) -> OpenAIResponsesCodec:
        return OpenAIResponsesCodec(created)

    def issue_id(self, token: str) -> str:
        """``resp_{token}``, as OpenAI's response ids look."""
        return f"resp_{token}"

    def input_items(
        self,
        response_id: str,
        system: tuple[Text, ...],
        turns: tuple[Message, ...],
        query: str,
    ) -> dict[str, Any]:
        """``{"object": "list", "data", "first_id", "last_id", "has_more"}``, newest first
        unless ``order=asc``, ``limit`` (1 to 100, 20) items after the ``after`` id."""
        return _items.input_items_page(response_id, system, turns, query)

    def deleted_body(self, response_id: str) -> dict[str, Any]:
        """``{"id", "object": "response.deleted", "deleted": true}``."""
        return {"id": response_id, "object": "response.deleted", "deleted": True}


class OpenAIResponses(OpenAIChat):
    """The Responses API: OpenAI Chat's credentials, usage reader and error format.

    Streamed events carry the model and the final usage inside ``response``
    (``response.created``, ``response.completed``).
    """

    name: ClassVar[str] = "openai-responses"
    #: The final status comes with the usage, in ``response.completed`` (or
    #: ``.incomplete``, ``.failed``): no other event needs reading for it.
    finish_hint: ClassVar[str | None] = None
    #: The gateway's translation to and from the canonical form.
    codec: ClassVar[Codec | None] = OpenAIResponsesCodec()
    operations: ClassVar[Mapping[str, str]] = {"generate": "/responses"}

    def recognizes(self, path: str) -> bool:
        segments = route(path).split("/")
        return "responses" in segments

    def usage_of(self, payload: JSON) -> Usage | None:
        """The token counts, and the ``web_search_call`` items of a finished response
        (each one billed search)."""
        counts = openai_usage(payload)
        if counts is None:
            return None
        response = get(payload, "response")
        output = get(response if isinstance(response, dict) else payload, "output")
        if not isinstance(output, list):
            return counts
        searches = sum(1 for item in output if get(item, "type") == "web_search_call")
        return dataclasses.replace(counts, web_searches=searches) if searches else counts

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
