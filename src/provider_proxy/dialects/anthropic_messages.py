"""Anthropic's Messages API (``/v1/messages``, token counting, legacy completions)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .._adapter import JSON, Usage
from .._exceptions import ProxyError
from .._json import dumps
from . import _anthropic_codec as _codec
from ._anthropic_stream import StreamDecoder, StreamEncoder
from ._base import BaseDialect, first_count, get, int_count, route, top_level_model, usage
from .canonical import Codec, FidelityTable, Request, Response, StreamError

# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


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
    be normalised and the earlier total stays. The web searches a server tool
    ran are ``server_tool_use.web_search_requests`` (cumulative too).
    """
    counts = get(payload, "usage")
    if counts is None:
        counts = get(get(payload, "message"), "usage")
    if not isinstance(counts, dict):
        return None
    plain = int_count(counts.get("input_tokens"))
    read = int_count(counts.get("cache_read_input_tokens"))
    written = int_count(counts.get("cache_creation_input_tokens"))
    partial = get(payload, "type") == "message_delta" and (read is None or written is None)
    total_input = None if plain is None or partial else plain + (read or 0) + (written or 0)
    searches = int_count(get(counts.get("server_tool_use"), "web_search_requests")) or None
    output = int_count(counts.get("output_tokens"))
    return usage(total_input, output, read, written, web_searches=searches)


class AnthropicMessagesCodec:
    """Anthropic Messages ⇄ canonical (see :mod:`provider_proxy.dialects._anthropic_codec`)."""

    request_fields: FidelityTable = _codec.REQUEST_FIELDS
    encode_fields: FidelityTable = _codec.ENCODE_FIELDS

    # The module's functions themselves: a method calling one would cost a call more.
    decode_request = staticmethod(_codec.decode_request)
    encode_request = staticmethod(_codec.encode_request)
    dropped_by_encoding = staticmethod(_codec.dropped_by_encoding)
    decode_response = staticmethod(_codec.decode_response)

    def encode_response(self, response: Response, request: Request | None = None) -> dict[str, Any]:
        return _codec.encode_response(response)

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder()

    def stream_encoder(self, request: Request) -> StreamEncoder:
        return StreamEncoder()

    def encode_error(self, status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
        return _codec.encode_error(status, kind, message)

    def decode_error(self, status: int, body: Any) -> StreamError:
        return _codec.decode_error(status, body)


class AnthropicMessages(BaseDialect):
    """Anthropic Messages: ``x-api-key`` (or a bearer token), ``{"type": "error", ...}`` errors."""

    name: ClassVar[str] = "anthropic-messages"
    credential_headers: ClassVar[frozenset[bytes]] = frozenset({b"x-api-key", b"authorization"})
    client_headers: ClassVar[tuple[str, ...]] = ("anthropic-version", "anthropic-beta")
    usage_hints: ClassVar[tuple[str, str] | None] = ("usage", "model")
    finish_hint: ClassVar[str | None] = '"stop_reason":"'
    #: The gateway's translation to and from the canonical form.
    codec: ClassVar[Codec | None] = AnthropicMessagesCodec()
    client_marker: ClassVar[bytes | None] = b"anthropic-version"
    operations: ClassVar[Mapping[str, str]] = {
        "generate": "/v1/messages",
        "count_tokens": "/v1/messages/count_tokens",
    }

    def recognizes(self, path: str) -> bool:
        """``/v1/messages`` and everything below it, and ``/v1/complete``."""
        decoded = route(path.partition("?")[0])
        return decoded.endswith(("/v1/messages", "/v1/complete")) or "/v1/messages/" in decoded

    def model_of(self, payload: JSON) -> str | None:
        message = get(payload, "message")  # message_start
        if isinstance(message, dict):
            payload = message
        return top_level_model(payload)

    def usage_of(self, payload: JSON) -> Usage | None:
        return anthropic_usage(payload)

    def output_limit_of(self, body: JSON) -> int | None:
        """``max_tokens`` (``max_tokens_to_sample`` on ``/v1/complete``)."""
        return first_count(body, "max_tokens", "max_tokens_to_sample")

    def finish_reasons_of(self, payload: JSON) -> tuple[str, ...]:
        """A message's ``stop_reason`` (streamed in ``message_delta``'s ``delta``)."""
        for holder in (payload, get(payload, "delta")):
            reason = get(holder, "stop_reason")
            if isinstance(reason, str):
                return (reason,)
        return ()

    def model_list(self, models: Sequence[Mapping[str, Any]], has_more: bool) -> dict[str, Any]:
        """``{"data", "has_more", "first_id", "last_id"}``, as the Models API pages them."""
        data = [self.model_entry(model) for model in models]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def model_entry(self, model: Mapping[str, Any]) -> dict[str, Any]:
        """``{"type": "model", "id", "display_name", "created_at"}`` (RFC 3339), and
        ``max_input_tokens`` and ``max_tokens`` where the catalog knows them."""
        created = model.get("created")
        stamp = datetime.datetime.fromtimestamp(
            created if isinstance(created, (int, float)) else 0, datetime.timezone.utc
        )
        entry: dict[str, Any] = {
            "type": "model",
            "id": model["id"],
            "display_name": model.get("name") or model["id"],
            "created_at": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        # The Models API's limits, where the catalog knows them.
        for field, key in (
            ("max_input_tokens", "context_length"),
            ("max_tokens", "max_completion_tokens"),
        ):
            if isinstance(model.get(key), int):
                entry[field] = model[key]
        return entry

    def error_body(self, error: ProxyError, request_id: str) -> bytes:
        """``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
        error_type = ERROR_TYPES.get(error.status_code, "api_error")
        return dumps(
            {
                "type": "error",
                "error": {"type": error_type, "message": error.message},
                "request_id": request_id,
            }
        )
