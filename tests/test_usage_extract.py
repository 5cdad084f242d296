"""Token usage read from realistic response shapes of every provider, as relayed.

Each sample goes through :class:`UsageTap` whole, split at every byte boundary,
and compressed (gzip, deflate, br) and split.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import brotli
import pytest

from provider_proxy import Usage
from provider_proxy._usage_tap import UsageTap
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.adapters._usage import anthropic_usage, gemini_usage, openai_usage


def _sse(*events: Any, named: bool = False) -> bytes:
    out = b""
    for event in events:
        if isinstance(event, bytes):
            out += event
            continue
        if named:
            out += f"event: {event['type']}\r\n".encode()
        out += b"data: " + json.dumps(event).encode() + (b"\r\n\r\n" if named else b"\n\n")
    return out


OPENAI_CHAT = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 20,
            "total_tokens": 1220,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
).encode()

_CHUNK = {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
OPENAI_CHAT_STREAM = _sse(
    {**_CHUNK, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]},
    {**_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
    {
        **_CHUNK,
        "choices": [],
        "usage": {
            "prompt_tokens": 50,
            "completion_tokens": 7,
            "total_tokens": 57,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    },
    b"data: [DONE]\n\n",
)

OPENAI_COMPLETION = json.dumps(
    {
        "object": "text_completion",
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": "x", "index": 0}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
    }
).encode()

OPENAI_EMBEDDING = json.dumps(
    {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
).encode()

RESPONSES = json.dumps(
    {
        "id": "resp_1",
        "object": "response",
        "model": "gpt-4.1",
        "output": [],
        "usage": {
            "input_tokens": 300,
            "input_tokens_details": {"cached_tokens": 256},
            "output_tokens": 40,
            "output_tokens_details": {"reasoning_tokens": 12},
            "total_tokens": 340,
        },
    }
).encode()

_RESPONSE = {"id": "resp_2", "object": "response", "model": "o4-mini", "usage": None}
RESPONSES_STREAM = _sse(
    {"type": "response.created", "sequence_number": 0, "response": _RESPONSE},
    {"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hel"},
    {
        "type": "response.completed",
        "sequence_number": 2,
        "response": {
            **_RESPONSE,
            "status": "completed",
            "usage": {
                "input_tokens": 12,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 30,
                "total_tokens": 42,
            },
        },
    },
    named=True,
)

ANTHROPIC_MESSAGE = json.dumps(
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hi"}],
        "usage": {
            "input_tokens": 20,
            "cache_creation_input_tokens": 2000,
            "cache_read_input_tokens": 0,
            "output_tokens": 12,
        },
    }
).encode()

ANTHROPIC_STREAM = _sse(
    {
        "type": "message_start",
        "message": {
            "id": "msg_2",
            "type": "message",
            "model": "claude-haiku-4-5",
            "content": [],
            "usage": {
                "input_tokens": 25,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 1800,
                "output_tokens": 1,
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}},
    {"type": "message_stop"},
    named=True,
)

GEMINI = json.dumps(
    {
        "candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}}],
        "usageMetadata": {
            "promptTokenCount": 4000,
            "candidatesTokenCount": 50,
            "thoughtsTokenCount": 100,
            "cachedContentTokenCount": 3500,
            "totalTokenCount": 4150,
        },
        "modelVersion": "gemini-2.5-flash",
    }
).encode()

GEMINI_STREAM = _sse(
    {
        "candidates": [{"content": {"parts": [{"text": "H"}], "role": "model"}}],
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        "modelVersion": "gemini-2.0-flash",
    },
    {
        "candidates": [{"content": {"parts": [{"text": "i"}], "role": "model"}}],
        "usageMetadata": {
            "promptTokenCount": 9,
            "candidatesTokenCount": 3,
            "totalTokenCount": 12,
        },
        "modelVersion": "gemini-2.0-flash",
    },
)


class _Gemini(OpenAIAdapter):
    """Gemini's usage reader on an adapter, for the tap."""

    def extract_usage(self, payload: Any) -> Usage | None:
        return gemini_usage(payload)

    def extract_model(self, payload: Any) -> str | None:
        return payload.get("modelVersion") if isinstance(payload, dict) else None


OPENAI, ANTHROPIC, GEMINI_ADAPTER = (
    OpenAIAdapter(api_key="k"),
    AnthropicAdapter(api_key="k"),
    _Gemini(api_key="k"),
)
JSON, SSE = "application/json", "text/event-stream; charset=utf-8"

CASES = {
    "openai-chat": (OPENAI, JSON, OPENAI_CHAT, Usage(1200, 20, 1024, None), "gpt-4o-2024-08-06"),
    "openai-chat-stream": (OPENAI, SSE, OPENAI_CHAT_STREAM, Usage(50, 7, 0, None), "gpt-4o-mini"),
    "openai-completion": (OPENAI, JSON, OPENAI_COMPLETION, Usage(5, 9), "gpt-3.5-turbo-instruct"),
    "openai-embedding": (OPENAI, JSON, OPENAI_EMBEDDING, Usage(8, 0), "text-embedding-3-small"),
    "openai-responses": (OPENAI, JSON, RESPONSES, Usage(300, 40, 256), "gpt-4.1"),
    "openai-responses-stream": (OPENAI, SSE, RESPONSES_STREAM, Usage(12, 30, 0), "o4-mini"),
    "anthropic": (
        ANTHROPIC,
        JSON,
        ANTHROPIC_MESSAGE,
        Usage(2020, 12, 0, 2000),
        "claude-sonnet-4-5-20250929",
    ),
    "anthropic-stream": (
        ANTHROPIC,
        SSE,
        ANTHROPIC_STREAM,
        Usage(1825, 15, 1800, 0),
        "claude-haiku-4-5",
    ),
    "gemini": (GEMINI_ADAPTER, JSON, GEMINI, Usage(4000, 150, 3500), "gemini-2.5-flash"),
    "gemini-stream": (GEMINI_ADAPTER, SSE, GEMINI_STREAM, Usage(9, 3, None), "gemini-2.0-flash"),
}


def _tap(adapter: Any, content_type: str, encoding: str | None = None) -> UsageTap:
    return UsageTap(
        adapter.extract_usage,
        adapter.extract_model,
        content_type=content_type,
        content_encoding=encoding,
    )


def _run(tap: UsageTap, chunks: list[bytes]) -> tuple[Usage | None, str | None]:
    for chunk in chunks:
        tap.feed(chunk)
    return tap.result()


@pytest.mark.parametrize("case", sorted(CASES))
def test_whole_body(case: str) -> None:
    adapter, content_type, body, usage, model = CASES[case]
    assert _run(_tap(adapter, content_type), [body]) == (usage, model)


@pytest.mark.parametrize("case", sorted(CASES))
def test_split_at_every_byte_boundary(case: str) -> None:
    adapter, content_type, body, usage, model = CASES[case]
    for split in range(1, len(body)):
        result = _run(_tap(adapter, content_type), [body[:split], body[split:]])
        assert result == (usage, model), split


COMPRESSORS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,  # zlib-wrapped, as RFC 9110 means it
    "br": brotli.compress,
}


def _raw_deflate(data: bytes) -> bytes:
    encoder = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return encoder.compress(data) + encoder.flush()


@pytest.mark.parametrize("encoding", [*sorted(COMPRESSORS), "raw-deflate"])
@pytest.mark.parametrize(
    "case", ["openai-chat", "openai-chat-stream", "anthropic-stream", "gemini"]
)
def test_compressed_and_split(case: str, encoding: str) -> None:
    adapter, content_type, body, usage, model = CASES[case]
    if encoding == "raw-deflate":
        compressed, header = _raw_deflate(body), "deflate"
    else:
        compressed, header = COMPRESSORS[encoding](body), encoding
    for split in range(1, len(compressed), 7):
        chunks = [compressed[:split], compressed[split:]]
        assert _run(_tap(adapter, content_type, header), chunks) == (usage, model), split


def test_decompression_bomb_stops_the_tap_not_the_relay() -> None:
    bomb = gzip.compress(b'{"usage": {"prompt_tokens": 1}, "pad": "' + b"x" * 5_000_000 + b'"}')
    tap = UsageTap(
        openai_usage,
        lambda payload: None,
        content_type=JSON,
        content_encoding="gzip",
        max_bytes=100_000,
    )
    tap.feed(bomb)  # never raises
    assert not tap.active
    assert tap.result() == (None, None)


def test_unknown_encoding_and_non_json_are_left_alone() -> None:
    assert not _tap(OPENAI, JSON, "zstd-unknown").active
    tap = _tap(OPENAI, "text/plain")
    tap.feed(b"not json")
    assert tap.result() == (None, None)


def test_garbage_json_turns_the_tap_off_without_raising() -> None:
    tap = _tap(OPENAI, SSE)
    tap.feed(b"data: {not json\n\n")
    assert not tap.active
    assert tap.result() == (None, None)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (None, None),
        ([], None),
        ({"usage": "odd"}, None),
        ({"usage": {"prompt_tokens": True}}, Usage(None, None)),
    ],
)
def test_odd_payloads_never_raise(payload: Any, expected: Usage | None) -> None:
    assert openai_usage(payload) == expected
    assert anthropic_usage(payload) == (None if expected is None else Usage())
    assert gemini_usage(payload) is None


def test_merge_keeps_earlier_values_a_later_report_leaves_out() -> None:
    start = Usage(100, 1, 80, 0)
    assert start.merge(Usage(None, 40)) == Usage(100, 40, 80, 0)
    assert start.merge(Usage(None, 40)).total_tokens == 140
