"""Token usage read from realistic response shapes of every provider and mode, as relayed.

Each sample goes through :class:`UsageTap` whole, split in two at every byte,
and compressed (gzip, zlib and raw deflate, br) and split in two at every byte
of the compressed form. The samples follow the shapes the providers document
and send (field order, ``null`` usage in chunks, named events, CRLF in
Gemini's stream, pings).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

import brotli
import pytest

from provider_proxy import Usage
from provider_proxy.dialects import AnthropicMessages, Gemini, OpenAIChat, OpenAIResponses
from provider_proxy.dialects.anthropic_messages import anthropic_usage
from provider_proxy.dialects.gemini import gemini_usage
from provider_proxy.dialects.openai_chat import USAGE_HINT, openai_usage
from provider_proxy.observe._usage_tap import UsageTap

JSON, SSE = "application/json", "text/event-stream; charset=utf-8"


def _sse(*events: Any, named: bool = False, crlf: bool = False) -> bytes:
    """Events as a provider writes them: ``event:`` lines when named, then ``data:``."""
    end = b"\r\n" if crlf else b"\n"
    out = b""
    for event in events:
        if isinstance(event, bytes):
            out += event
            continue
        if named:
            out += b"event: " + event["type"].encode() + end
        out += b"data: " + json.dumps(event).encode() + end + end
    return out


# -- OpenAI ---------------------------------------------------------------------------

OPENAI_CHAT = json.dumps(
    {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 20,
            "total_tokens": 1220,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035",
    },
    indent=2,  # pretty-printed, as OpenAI answers
).encode()

_CHUNK = {
    "id": "chatcmpl-123",
    "object": "chat.completion.chunk",
    "created": 1694268190,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_44709d6fcb",
}
OPENAI_CHAT_STREAM = _sse(
    {
        **_CHUNK,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
        "usage": None,
    },
    {**_CHUNK, "choices": [{"index": 0, "delta": {"content": "Hi"}}], "usage": None},
    {**_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
    {
        **_CHUNK,
        "choices": [],
        "usage": {
            "prompt_tokens": 50,
            "completion_tokens": 7,
            "total_tokens": 57,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    },
    b"data: [DONE]\n\n",
)

OPENAI_COMPLETION = json.dumps(
    {
        "id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7",
        "object": "text_completion",
        "created": 1589478378,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": "\n\nThis is a test", "index": 0, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
    }
).encode()

OPENAI_EMBEDDING = json.dumps(
    {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.0023, -0.0093, 0.0151]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
).encode()

DEEPSEEK_CHAT = json.dumps(
    {
        "id": "930c60df-bf64-41c9-a88e-3ec75f81e00e",
        "object": "chat.completion",
        "model": "deepseek-chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
        "usage": {
            "prompt_tokens": 16,
            "completion_tokens": 10,
            "total_tokens": 26,
            "prompt_cache_hit_tokens": 12,
            "prompt_cache_miss_tokens": 4,
        },
    }
).encode()

RESPONSES = json.dumps(
    {
        "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
        "object": "response",
        "created_at": 1741476777,
        "status": "completed",
        "model": "gpt-4.1-2025-04-14",
        "output": [
            {
                "type": "message",
                "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi", "annotations": []}],
            }
        ],
        "usage": {
            "input_tokens": 300,
            "input_tokens_details": {"cached_tokens": 256},
            "output_tokens": 40,
            "output_tokens_details": {"reasoning_tokens": 12},
            "total_tokens": 340,
        },
    }
).encode()

_RESPONSE = {
    "id": "resp_2",
    "object": "response",
    "created_at": 1741290958,
    "status": "in_progress",
    "model": "o4-mini-2025-04-16",
    "output": [],
    "usage": None,
}
_DONE_USAGE = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 30,
    "output_tokens_details": {"reasoning_tokens": 18},
    "total_tokens": 42,
}
RESPONSES_STREAM = _sse(
    {"type": "response.created", "sequence_number": 0, "response": _RESPONSE},
    {"type": "response.in_progress", "sequence_number": 1, "response": _RESPONSE},
    {
        "type": "response.output_text.delta",
        "sequence_number": 2,
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "Hel",
    },
    {
        "type": "response.completed",
        "sequence_number": 3,
        "response": {**_RESPONSE, "status": "completed", "usage": _DONE_USAGE},
    },
    named=True,
)
RESPONSES_INCOMPLETE_STREAM = _sse(
    {"type": "response.created", "sequence_number": 0, "response": _RESPONSE},
    {
        "type": "response.incomplete",
        "sequence_number": 1,
        "response": {
            **_RESPONSE,
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
            "usage": {**_DONE_USAGE, "output_tokens": 16, "total_tokens": 28},
        },
    },
    named=True,
)

# -- Anthropic ------------------------------------------------------------------------

ANTHROPIC_MESSAGE = json.dumps(
    {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "cache_creation_input_tokens": 2000,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 12,
            "service_tier": "standard",
        },
    }
).encode()


def _anthropic_stream(delta_usage: dict[str, Any]) -> bytes:
    return _sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
                "type": "message",
                "role": "assistant",
                "model": "claude-haiku-4-5-20251001",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
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
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": delta_usage,
        },
        {"type": "message_stop"},
        named=True,
    )


# message_delta with the output count only (the classic shape)
ANTHROPIC_STREAM = _anthropic_stream({"output_tokens": 15})
# message_delta with cumulative input counts too (they grew: a server tool ran)
ANTHROPIC_STREAM_CUMULATIVE = _anthropic_stream(
    {
        "input_tokens": 900,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 1800,
        "output_tokens": 150,
        "server_tool_use": {"web_search_requests": 1},
    }
)
# message_delta repeating the plain input count without the cache counts
ANTHROPIC_STREAM_PARTIAL = _anthropic_stream({"input_tokens": 25, "output_tokens": 15})

# -- Gemini ---------------------------------------------------------------------------

GEMINI = json.dumps(
    {
        "candidates": [
            {
                "content": {"parts": [{"text": "Hi"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 4000,
            "candidatesTokenCount": 50,
            "totalTokenCount": 4150,
            "cachedContentTokenCount": 3500,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 4000}],
            "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 3500}],
            "thoughtsTokenCount": 100,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "xU6EaJ2eLr2Lz7IPsNa3gQ0",
    }
).encode()

_GEMINI_CHUNKS = [
    {
        "candidates": [{"content": {"parts": [{"text": "H"}], "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        "modelVersion": "gemini-2.0-flash",
    },
    {
        "candidates": [{"content": {"parts": [{"text": "i"}], "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 1, "totalTokenCount": 10},
        "modelVersion": "gemini-2.0-flash",
    },
    {
        "candidates": [
            {
                "content": {"parts": [{"text": "!"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 1033,
            "candidatesTokenCount": 3,
            "totalTokenCount": 1036,
            "cachedContentTokenCount": 1024,
        },
        "modelVersion": "gemini-2.0-flash",
    },
]
# streamGenerateContent?alt=sse: one event per chunk, CRLF line ends
GEMINI_STREAM = _sse(*_GEMINI_CHUNKS, crlf=True)
# streamGenerateContent without alt=sse: one JSON array of the chunks
GEMINI_ARRAY = json.dumps(_GEMINI_CHUNKS).encode()


class Case(NamedTuple):
    extract_usage: Callable[[Any], Usage | None]
    extract_model: Callable[[Any], str | None]
    content_type: str
    body: bytes
    usage: Usage
    model: str


# The readers of the dialect the engine picks for each answer's path.
CHAT, RESPONSES_API = OpenAIChat(), OpenAIResponses()
ANTHROPIC, GEMINI_API = AnthropicMessages(), Gemini()
_O = (CHAT.usage_of, CHAT.model_of)
_R = (RESPONSES_API.usage_of, RESPONSES_API.model_of)
_A = (ANTHROPIC.usage_of, ANTHROPIC.model_of)
_G = (GEMINI_API.usage_of, GEMINI_API.model_of)

CASES = {
    "openai-chat": Case(
        *_O, JSON, OPENAI_CHAT, Usage(1200, 20, 1024, None, 0), "gpt-4o-2024-08-06"
    ),
    "openai-chat-stream": Case(
        *_O, SSE, OPENAI_CHAT_STREAM, Usage(50, 7, 0, None, 0), "gpt-4o-mini-2024-07-18"
    ),
    "openai-completion": Case(*_O, JSON, OPENAI_COMPLETION, Usage(5, 9), "gpt-3.5-turbo-instruct"),
    "openai-embedding": Case(*_O, JSON, OPENAI_EMBEDDING, Usage(8, 0), "text-embedding-3-small"),
    "deepseek-chat": Case(*_O, JSON, DEEPSEEK_CHAT, Usage(16, 10, 12), "deepseek-chat"),
    "openai-responses": Case(
        *_R, JSON, RESPONSES, Usage(300, 40, 256, None, 12), "gpt-4.1-2025-04-14"
    ),
    "openai-responses-stream": Case(
        *_R, SSE, RESPONSES_STREAM, Usage(12, 30, 0, None, 18), "o4-mini-2025-04-16"
    ),
    "openai-responses-incomplete": Case(
        *_R, SSE, RESPONSES_INCOMPLETE_STREAM, Usage(12, 16, 0, None, 18), "o4-mini-2025-04-16"
    ),
    "anthropic": Case(
        *_A, JSON, ANTHROPIC_MESSAGE, Usage(2020, 12, 0, 2000), "claude-sonnet-4-5-20250929"
    ),
    "anthropic-stream": Case(
        *_A, SSE, ANTHROPIC_STREAM, Usage(1825, 15, 1800, 0), "claude-haiku-4-5-20251001"
    ),
    "anthropic-stream-cumulative": Case(
        *_A,
        SSE,
        ANTHROPIC_STREAM_CUMULATIVE,
        Usage(3000, 150, 1800, 300, web_searches=1),  # the search the server tool ran
        "claude-haiku-4-5-20251001",
    ),
    "anthropic-stream-partial": Case(
        *_A, SSE, ANTHROPIC_STREAM_PARTIAL, Usage(1825, 15, 1800, 0), "claude-haiku-4-5-20251001"
    ),
    "gemini": Case(*_G, JSON, GEMINI, Usage(4000, 150, 3500, None, 100), "gemini-2.5-flash"),
    "gemini-stream": Case(*_G, SSE, GEMINI_STREAM, Usage(1033, 3, 1024), "gemini-2.0-flash"),
    "gemini-array": Case(*_G, JSON, GEMINI_ARRAY, Usage(1033, 3, 1024), "gemini-2.0-flash"),
}


def _run(case: Case, chunks: list[bytes], encoding: str | None = None) -> Any:
    tap = UsageTap(
        case.extract_usage,
        case.extract_model,
        content_type=case.content_type,
        content_encoding=encoding,
    )
    for chunk in chunks:
        tap.feed(chunk)
    assert tap.streamed == case.content_type.startswith("text/event-stream")
    return tap.result()


@pytest.mark.parametrize("name", sorted(CASES))
def test_whole_body(name: str) -> None:
    case = CASES[name]
    assert _run(case, [case.body]) == (case.usage, case.model)


@pytest.mark.parametrize("name", sorted(CASES))
def test_split_at_every_byte(name: str) -> None:
    case = CASES[name]
    for split in range(1, len(case.body)):
        result = _run(case, [case.body[:split], case.body[split:]])
        assert result == (case.usage, case.model), split


def _raw_deflate(data: bytes) -> bytes:
    encoder = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return encoder.compress(data) + encoder.flush()


COMPRESSIONS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", gzip.compress),
    "deflate": ("deflate", zlib.compress),  # zlib-wrapped, as RFC 9110 means it
    "raw-deflate": ("deflate", _raw_deflate),  # what some servers send instead
    "br": ("br", brotli.compress),
}


@pytest.mark.parametrize("compression", sorted(COMPRESSIONS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_compressed_and_split_at_every_byte(name: str, compression: str) -> None:
    case = CASES[name]
    header, compress = COMPRESSIONS[compression]
    body = compress(case.body)
    assert _run(case, [body], header) == (case.usage, case.model)
    for split in range(1, len(body)):
        result = _run(case, [body[:split], body[split:]], header)
        assert result == (case.usage, case.model), split


@pytest.mark.parametrize("name", sorted(CASES))
def test_hints_skip_parsing_but_not_results(name: str) -> None:
    # The built-in readers only look at keys containing USAGE_HINT ("usage") and
    # "model"; with those hints the tap parses fewer events and reads the same.
    case = CASES[name]
    parsed: list[Any] = []

    def counting(payload: Any) -> Usage | None:
        parsed.append(payload)
        return case.extract_usage(payload)

    tap = UsageTap(
        counting,
        case.extract_model,
        content_type=case.content_type,
        content_encoding=None,
        usage_hint=USAGE_HINT,
        model_hint="model",
    )
    for split in range(0, len(case.body), 97):
        tap.feed(case.body[split : split + 97])
    assert tap.result() == (case.usage, case.model)
    if name == "anthropic-stream":
        # message_start (model and usage) and message_delta (usage) only.
        assert [p["type"] for p in parsed] == ["message_start", "message_delta"]


# -- the readers on their own -----------------------------------------------------------


@pytest.mark.parametrize("reader", [openai_usage, anthropic_usage, gemini_usage])
@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "usage",
        42,
        {},
        {"usage": None},
        {"usage": "odd"},
        {"usage": []},
        {"usage": {}},
        {"usage": {"prompt_tokens": True, "input_tokens": "3"}},
        {"usage": {"prompt_tokens": -1, "completion_tokens": 1.5}},
        {"response": "x"},
        {"message": {"usage": 7}},
        {"usageMetadata": None},
        {"usageMetadata": {"promptTokenCount": None}},
        {"usageMetadata": {"promptTokenCount": False, "candidatesTokenCount": -4}},
    ],
)
def test_odd_payloads_give_none_and_never_raise(
    reader: Callable[[Any], Usage | None], payload: Any
) -> None:
    assert reader(payload) is None


def test_openai_chunks_without_usage_give_none() -> None:
    assert openai_usage({"object": "chat.completion.chunk", "usage": None}) is None
    assert openai_usage({"type": "response.created", "response": {"usage": None}}) is None


def test_anthropic_counts_are_normalised_to_the_whole_prompt() -> None:
    # input_tokens leaves out the cached tokens; Usage.input_tokens counts them.
    usage = anthropic_usage(
        {"usage": {"input_tokens": 3, "cache_read_input_tokens": 40, "output_tokens": 2}}
    )
    assert usage == Usage(43, 2, 40, None)
    # Without cache fields (an older answer), the input is the plain count.
    assert anthropic_usage({"usage": {"input_tokens": 3, "output_tokens": 2}}) == Usage(3, 2)
    # message_delta with only the output count leaves the input unknown (None), so a
    # merge keeps message_start's total rather than resetting it.
    delta = anthropic_usage({"type": "message_delta", "usage": {"output_tokens": 9}})
    assert delta == Usage(None, 9)
    assert Usage(1825, 1, 1800, 0).merge(delta) == Usage(1825, 9, 1800, 0)


def test_gemini_tool_prompts_count_as_input_and_thoughts_as_output() -> None:
    usage = gemini_usage(
        {
            "usageMetadata": {
                "promptTokenCount": 100,
                "toolUsePromptTokenCount": 40,
                "candidatesTokenCount": 10,
                "thoughtsTokenCount": 5,
                "totalTokenCount": 155,
            }
        }
    )
    assert usage == Usage(140, 15, None, None, 5)
    assert usage.total_tokens == 155
    # A first chunk with the prompt only: output not known yet.
    assert gemini_usage({"usageMetadata": {"promptTokenCount": 9}}) == Usage(9, None)


def test_merge_takes_later_values_and_keeps_earlier_ones_a_report_leaves_out() -> None:
    start = Usage(100, 1, 80, 0)
    assert start.merge(Usage(None, 40)) == Usage(100, 40, 80, 0)
    assert start.merge(Usage(None, 40)).total_tokens == 140
    assert start.merge(Usage(120, 40, 90, 10)) == Usage(120, 40, 90, 10)
