"""Token-count requests between formats: Anthropic's ``count_tokens``, Gemini's ``countTokens``.

A client's count request is read as a canonical request (what it would send
to generate); a provider that counts is asked in its own format, and its
count comes back in the client's shape. A provider that cannot count is
estimated by the gateway (:mod:`provider_proxy.dialects._token_estimate`),
answered in the same shape. Only the input is counted: fields that shape the
answer (``max_tokens``, sampling) have no effect on a count and are not sent
where the count endpoint refuses them (Anthropic's).
"""

from __future__ import annotations

from typing import Any, Protocol

from . import _anthropic_codec, _gemini_codec
from . import _codec_util as u
from ._gemini_codec import camel
from .canonical import Request, UntranslatableResponse

#: The fields Anthropic's ``/v1/messages/count_tokens`` takes of a Messages body.
ANTHROPIC_COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")


class TokenCounting(Protocol):
    """One format's token-count request and answer, both ways."""

    def decode_request(self, body: Any) -> Request:
        """A client's count request (with the model it names) as canonical."""
        ...

    def encode_answer(self, tokens: int) -> dict[str, Any]:
        """A count as this format answers one."""
        ...

    def encode_request(self, request: Request) -> dict[str, Any]:
        """A canonical request as this format's count request body."""
        ...

    def decode_answer(self, body: Any) -> int:
        """The input tokens this format's count answer says."""
        ...


class AnthropicCounting:
    """``POST /v1/messages/count_tokens``: a Messages body without ``max_tokens``;
    ``{"input_tokens"}``."""

    def decode_request(self, body: Any) -> Request:
        return _anthropic_codec.decode_request(body)[0]

    def encode_answer(self, tokens: int) -> dict[str, Any]:
        return {"input_tokens": tokens}

    def encode_request(self, request: Request) -> dict[str, Any]:
        body = _anthropic_codec.encode_request(request)
        return {key: body[key] for key in ANTHROPIC_COUNT_FIELDS if key in body}

    def decode_answer(self, body: Any) -> int:
        return _count(body, "input_tokens")


class GeminiCounting:
    """``POST /v1beta/models/{model}:countTokens``: ``contents``, or a whole
    ``generateContentRequest``; ``{"totalTokens"}``."""

    def decode_request(self, body: Any) -> Request:
        body = camel(u.obj(body, "body"))
        model = body.get("model")
        whole = body.get("generateContentRequest")
        if whole is not None:
            u.only(body, ("model", "generateContentRequest"), "body")
            inner = camel(u.obj(whole, "generateContentRequest"))
            return _gemini_codec.decode_request(dict(inner, model=model))[0]
        u.only(body, ("model", "contents"), "body")
        contents = body.get("contents") or []
        return _gemini_codec.decode_request({"model": model, "contents": contents})[0]

    def encode_answer(self, tokens: int) -> dict[str, Any]:
        return {"totalTokens": tokens}

    def encode_request(self, request: Request) -> dict[str, Any]:
        inner = _gemini_codec.encode_request(request)
        return {"generateContentRequest": {"model": f"models/{request.model}", **inner}}

    def decode_answer(self, body: Any) -> int:
        return _count(body, "totalTokens")


def _count(body: Any, name: str) -> int:
    count = body.get(name) if isinstance(body, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise UntranslatableResponse(f"The provider's token count has no {name}.")
    return count
