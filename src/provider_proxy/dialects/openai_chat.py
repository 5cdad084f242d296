"""OpenAI Chat Completions, with the legacy completions and embeddings endpoints.

The format most providers and gateways speak: OpenAI, Azure, OpenRouter, vLLM,
Ollama, DashScope, Copilot, Gemini's compatible API.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from .._adapter import JSON, Usage
from .._exceptions import ProxyError
from .._json import dumps
from . import _openai_chat_codec as _codec
from ._base import (
    BaseDialect,
    choice_reasons,
    first_count,
    get,
    int_count,
    openai_error,
    route,
    usage,
)
from ._openai_chat_stream import StreamDecoder, StreamEncoder
from .canonical import Codec, FidelityTable, Request, Response, StreamError

#: A substring of every key the OpenAI usage reader looks at.
USAGE_HINT = "usage"

_SUFFIXES = ("/chat/completions", "/completions", "/embeddings", "/moderations")

#: The events that end a turn on OpenAI's sockets.
_TURN_ENDS = ("response.done", "response.completed", "response.failed", "response.incomplete")


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
        reasoning = int_count(get(counts.get("completion_tokens_details"), "reasoning_tokens"))
        return usage(prompt, output, cached, None, reasoning)
    if "input_tokens" in counts or "output_tokens" in counts:
        return usage(
            int_count(counts.get("input_tokens")),
            int_count(counts.get("output_tokens")),
            int_count(get(counts.get("input_tokens_details"), "cached_tokens")),
            None,
            int_count(get(counts.get("output_tokens_details"), "reasoning_tokens")),
        )
    return None


class OpenAIChatCodec:
    """OpenAI Chat Completions ⇄ canonical (see :mod:`provider_proxy.dialects._openai_chat_codec`).

    :param created: the ``created`` time (Unix seconds) written in answers; by
        default the time of each answer.
    """

    request_fields: FidelityTable = _codec.REQUEST_FIELDS
    encode_fields: FidelityTable = _codec.ENCODE_FIELDS

    def __init__(self, created: int | None = None) -> None:
        self.created = created

    def _created(self) -> int:
        return int(time.time()) if self.created is None else self.created

    # The module's functions themselves: a method calling one would cost a call more.
    decode_request = staticmethod(_codec.decode_request)
    encode_request = staticmethod(_codec.encode_request)
    dropped_by_encoding = staticmethod(_codec.dropped_by_encoding)
    decode_response = staticmethod(_codec.decode_response)

    def encode_response(self, response: Response, request: Request | None = None) -> dict[str, Any]:
        return _codec.encode_response(response, self._created())

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder()

    def stream_encoder(self, request: Request) -> StreamEncoder:
        return StreamEncoder(include_usage=request.stream_usage, created=self._created())

    def encode_error(self, status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
        return _codec.encode_error(status, kind, message)

    def decode_error(self, status: int, body: Any) -> StreamError:
        return _codec.decode_error(status, body)


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
    #: Every chunk has ``"finish_reason":null`` until the one that says why it ended.
    finish_hint: ClassVar[str | None] = '"finish_reason":"'
    #: The gateway's translation to and from the canonical form.
    codec: ClassVar[Codec | None] = OpenAIChatCodec()
    cache_key_field: ClassVar[str | None] = "prompt_cache_key"
    operations: ClassVar[Mapping[str, str]] = {
        "generate": "/chat/completions",
        "embed": "/embeddings",
    }

    def recognizes(self, path: str) -> bool:
        return route(path).endswith(_SUFFIXES)

    def usage_of(self, payload: JSON) -> Usage | None:
        return openai_usage(payload)

    def output_limit_of(self, body: JSON) -> int | None:
        """``max_completion_tokens`` (which wins), ``max_tokens``, or the Responses
        API's ``max_output_tokens``."""
        return first_count(body, "max_completion_tokens", "max_tokens", "max_output_tokens")

    def finish_reasons_of(self, payload: JSON) -> tuple[str, ...]:
        """Each choice's ``finish_reason`` (a streamed chunk has them once, at the end)."""
        return choice_reasons(payload, "choices", "finish_reason")

    def error_body(self, error: ProxyError, request_id: str) -> bytes:
        return openai_error(error)

    #: The Realtime socket (``/realtime``) and the Responses socket: a turn starts
    #: with the client's ``response.create`` and ends with ``response.done``
    #: (Realtime) or ``response.completed``/``.failed``/``.incomplete`` (Responses).
    socket_hints: ClassVar[tuple[str, ...]] = ("response.create", *_TURN_ENDS)
    #: Browsers cannot set headers on a socket: OpenAI's take the key in this subprotocol.
    key_subprotocol: ClassVar[str | None] = "openai-insecure-api-key."

    def socket_turn(self, payload: JSON) -> Literal["start", "end"] | None:
        kind = get(payload, "type")
        if kind == "response.create":
            return "start"
        if kind in _TURN_ENDS:
            return "end"
        return None

    def socket_error(self, error: ProxyError) -> str | None:
        """The Realtime and Responses sockets' ``error`` event."""
        return dumps(
            {
                "type": "error",
                "status": error.status_code,
                "error": {
                    "type": error.kind,
                    "code": error.kind,
                    "message": error.message,
                    "param": None,
                },
            }
        ).decode("utf-8")
