"""The OpenAI Chat codec: requests, responses, streams and errors, to and from canonical."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from provider_proxy.dialects import AnthropicMessages, OpenAIChat
from provider_proxy.dialects import _anthropic_codec as anthropic
from provider_proxy.dialects.canonical import (
    CacheControl,
    Document,
    Fidelity,
    Finish,
    FinishReason,
    Image,
    Message,
    MessageStart,
    Reasoning,
    ReasoningConfig,
    Refusal,
    Request,
    Response,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    Unsupported,
    UntranslatableResponse,
    Usage,
    UsageReport,
)
from provider_proxy.dialects.openai_chat import OpenAIChatCodec
from provider_proxy.observe._sse import SSEParser

#: A fixed ``created`` time, so answers compare equal (the dialect's codec uses the clock).
CODEC = OpenAIChatCodec(created=0)
ANTHROPIC = AnthropicMessages.codec
assert CODEC is not None
assert ANTHROPIC is not None
GOLDEN = Path(__file__).parent / "golden" / "openai_parallel_tools.sse"
EVENTS = TypeAdapter(RawMessageStreamEvent)


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], **fields}


def decode(**fields: Any) -> Request:
    request, dropped = CODEC.decode_request(body(**fields))
    assert dropped == ()
    return request


# -- requests: each row both ways -----------------------------------------------------

ROWS: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    # (OpenAI fields, canonical fields, the Anthropic body's fields)
    ({"max_completion_tokens": 50}, {"max_tokens": 50}, {"max_tokens": 50}),
    ({"max_tokens": 60}, {"max_tokens": 60}, {"max_tokens": 60}),
    ({"temperature": 0.2, "top_p": 0.5}, {"temperature": 0.2, "top_p": 0.5}, {"temperature": 0.2}),
    ({"stop": "END"}, {"stop": ("END",)}, {"stop_sequences": ["END"]}),
    ({"stop": ["A", "B"]}, {"stop": ("A", "B")}, {"stop_sequences": ["A", "B"]}),
    ({"user": "u-7"}, {"user": "u-7"}, {"metadata": {"user_id": "u-7"}}),
    ({"safety_identifier": "s-1"}, {"user": "s-1"}, {"metadata": {"user_id": "s-1"}}),
    (
        {"stream": True, "stream_options": {"include_usage": True}},
        {"stream": True, "stream_usage": True},
        {"stream": True},
    ),
    (
        {"tool_choice": "auto"},
        {"tool_choice": ToolChoice("auto")},
        {"tool_choice": {"type": "auto"}},
    ),
    (
        {"tool_choice": "none"},
        {"tool_choice": ToolChoice("none")},
        {"tool_choice": {"type": "none"}},
    ),
    (
        {"tool_choice": "required"},
        {"tool_choice": ToolChoice("required")},
        {"tool_choice": {"type": "any"}},
    ),
    (
        {"tool_choice": {"type": "function", "function": {"name": "f"}}},
        {"tool_choice": ToolChoice("tool", "f")},
        {"tool_choice": {"type": "tool", "name": "f"}},
    ),
    (
        {"parallel_tool_calls": False, "tool_choice": "auto"},
        {"parallel_tool_calls": False},
        {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
    ),
    (
        {"reasoning_effort": "low"},
        {"reasoning": ReasoningConfig(effort="low")},
        {"thinking": {"type": "enabled", "budget_tokens": 4096}},
    ),
    (
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "d",
                        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                        "strict": True,
                    },
                }
            ]
        },
        {
            "tools": (
                Tool(
                    "get_weather",
                    "d",
                    {"type": "object", "properties": {"q": {"type": "string"}}},
                    strict=True,
                ),
            )
        },
        {
            "tools": [
                {
                    "name": "get_weather",
                    "description": "d",
                    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
                    "strict": True,
                }
            ]
        },
    ),
]


@pytest.mark.parametrize(("fields", "canonical", "anthropic_fields"), ROWS)
def test_request_rows_map_to_canonical_to_anthropic_and_back(
    fields: dict[str, Any], canonical: dict[str, Any], anthropic_fields: dict[str, Any]
) -> None:
    request = decode(**fields)
    for name, value in canonical.items():
        assert getattr(request, name) == value
    provider = ANTHROPIC.encode_request(request)
    for key, value in anthropic_fields.items():
        assert provider[key] == value
    # And back: the Anthropic body decodes to what encodes to the same OpenAI meaning.
    again, _ = ANTHROPIC.decode_request(provider)
    reencoded = CODEC.encode_request(again)
    for key in fields:
        if key in ("max_tokens", "safety_identifier"):
            continue  # written as max_completion_tokens, user
        if key == "reasoning_effort":
            assert reencoded[key] == "low"  # 4096 tokens is "low" again
        elif key == "stop" and isinstance(fields[key], str):
            assert reencoded[key] == [fields[key]]
        else:
            assert reencoded[key] == fields[key], key


def test_system_and_developer_messages_anywhere_become_the_system_prompt() -> None:
    request = decode(
        messages=[
            {"role": "system", "content": "one"},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "two"}]},
        ]
    )
    assert request.system == (Text("one"), Text("two"))
    assert request.messages == (Message("user", (Text("hi"),)),)
    assert ANTHROPIC.encode_request(request)["system"] == [
        {"type": "text", "text": "one"},
        {"type": "text", "text": "two"},
    ]


def test_cache_control_on_text_parts_reaches_anthropic() -> None:
    part = {"type": "text", "text": "big", "cache_control": {"type": "ephemeral"}}
    request = decode(messages=[{"role": "system", "content": [part]}])
    assert request.system == (Text("big", CacheControl()),)
    assert ANTHROPIC.encode_request(request)["system"][0]["cache_control"] == {"type": "ephemeral"}


def test_images_and_files_map_to_anthropic_sources() -> None:
    request = decode(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4A=="}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://x/y.png", "detail": "auto"},
                    },
                    {
                        "type": "file",
                        "file": {
                            "file_data": "data:application/pdf;base64,JVBE",
                            "filename": "a.pdf",
                        },
                    },
                ],
            }
        ]
    )
    assert request.messages[0].parts == (
        Text("see"),
        Image(data="/9j/4A==", media_type="image/jpeg"),
        Image(url="https://x/y.png"),
        Document(media_type="application/pdf", data="JVBE", title="a.pdf"),
    )
    blocks = ANTHROPIC.encode_request(request)["messages"][0]["content"]
    assert blocks[1]["source"] == {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4A=="}
    assert blocks[2]["source"] == {"type": "url", "url": "https://x/y.png"}
    assert blocks[3]["source"]["type"] == "base64"
    back = CODEC.encode_request(ANTHROPIC.decode_request(ANTHROPIC.encode_request(request))[0])
    assert back["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/jpeg;base64,/9j/4A=="},
    }


def test_a_tool_loop_maps_calls_and_merges_results_into_one_user_turn() -> None:
    request = decode(
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "thinking…",
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"c":"Paris"}'},
                    },
                    {
                        "id": "call.b",
                        "type": "function",
                        "function": {"name": "w", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {
                "role": "tool",
                "tool_call_id": "call.b",
                "content": [{"type": "text", "text": "rain"}],
            },
            {"role": "user", "content": "thanks"},
        ]
    )
    assert request.messages[1].parts == (
        Reasoning("thinking…"),
        ToolCall("call_a", "w", '{"c":"Paris"}'),
        ToolCall("call.b", "w", ""),
    )
    assert request.messages[2] == Message(
        "user", (ToolResult("call_a", (Text("sunny"),)), ToolResult("call.b", (Text("rain"),)))
    )
    provider = ANTHROPIC.encode_request(request)
    assistant, results = provider["messages"][1], provider["messages"][2]
    assert assistant["content"] == [  # unsigned reasoning is not replayed to Anthropic
        {"type": "tool_use", "id": "call_a", "name": "w", "input": {"c": "Paris"}},
        {"type": "tool_use", "id": anthropic.to_anthropic_id("call.b"), "name": "w", "input": {}},
    ]
    assert [b["tool_use_id"] for b in results["content"]] == [
        "call_a",
        anthropic.to_anthropic_id("call.b"),
    ]
    # The same ids every time, and back to the client's own.
    assert ANTHROPIC.encode_request(request) == provider
    back = CODEC.encode_request(ANTHROPIC.decode_request(provider)[0])
    assert [m.get("tool_call_id") for m in back["messages"] if m["role"] == "tool"] == [
        "call_a",
        "call.b",
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": 1}, "presence_penalty"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"response_format": {"type": "grammar"}}, "response_format.type"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"web_search_options": {"filters": {}}}, "web_search_options.filters"),
        ({"unheard_of": 1}, "unheard_of"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "messages[0].content[0].type",
        ),
        ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "assistant", "content": "x", "audio": {"id": "a"}}]},
            "messages[0].audio",
        ),
    ],
)
def test_fields_that_cannot_be_carried_are_refused_by_name(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(Unsupported) as caught:
        CODEC.decode_request(body(**fields))
    assert caught.value.field == field
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    "fields",
    [
        {"n": 1},
        {"logprobs": False},
        {"frequency_penalty": 0},
        {"presence_penalty": 0.0},
        {"modalities": ["text"]},
        {"response_format": {"type": "text"}},
        {"logit_bias": {}},
        {"n": None},
    ],
)
def test_refused_fields_at_their_defaults_are_accepted(fields: dict[str, Any]) -> None:
    assert CODEC.decode_request(body(**fields))[1] == ()


def test_fields_without_effect_are_dropped_and_named() -> None:
    _, dropped = CODEC.decode_request(
        body(
            seed=1,
            store=True,
            metadata={"k": "v"},
            messages=[
                {"role": "user", "name": "ann", "content": "hi"},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://x", "detail": "low"}}
                    ],
                },
            ],
        )
    )
    assert dropped == (
        "seed",
        "store",
        "metadata",
        "messages[].name",
        "messages[].content[].image_url.detail",
    )


def test_the_fidelity_table_says_what_the_decoder_does() -> None:
    samples: dict[str, Any] = {
        "model": "m",
        "messages": [],
        "max_tokens": 1,
        "max_completion_tokens": 1,
        "temperature": 1,
        "top_p": 1,
        "stop": "x",
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning_effort": "high",
        "user": "u",
        "safety_identifier": "s",
        "n": 3,
        "logprobs": True,
        "top_logprobs": 2,
        "logit_bias": {"1": 1},
        "frequency_penalty": 1,
        "presence_penalty": 1,
        "audio": {},
        "modalities": ["audio"],
        "response_format": {"type": "json_object"},
        "functions": [],
        "function_call": "auto",
        "verbosity": "low",
        "web_search_options": {},
        "seed": 1,
        "metadata": {},
        "store": False,
        "service_tier": "auto",
        "prediction": {},
        "prompt_cache_key": "k",
        "prompt_cache_retention": "24h",
    }
    assert set(samples) == set(CODEC.request_fields)
    for name, rule in CODEC.request_fields.items():
        fields = body(**{name: samples[name]})
        if rule.fate is Fidelity.REFUSED:
            with pytest.raises(Unsupported):
                CODEC.decode_request(fields)
        else:
            _, dropped = CODEC.decode_request(fields)
            assert (name in dropped) is (rule.fate is Fidelity.DROPPED), name


# -- round trips ------------------------------------------------------------------------

texts = st.text(min_size=1, max_size=20)
arguments = st.dictionaries(st.text(max_size=5), st.integers(-100, 100), max_size=3).map(json.dumps)
user_content = st.one_of(
    texts,
    st.lists(
        st.one_of(
            st.builds(lambda t: {"type": "text", "text": t}, texts),
            st.just({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}),
            st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}),
        ),
        min_size=2,
        max_size=3,
    ),
)
tool_calls = st.lists(
    st.builds(
        lambda i, n, a: {"id": i, "type": "function", "function": {"name": n, "arguments": a}},
        texts,
        texts,
        arguments,
    ),
    min_size=1,
    max_size=3,
)
assistant = st.one_of(
    st.builds(lambda c: {"role": "assistant", "content": c}, texts),
    st.builds(
        lambda c, t: {"role": "assistant", "content": c, "tool_calls": t},
        st.none() | texts,
        tool_calls,
    ),
)
tool_message = st.builds(
    lambda i, c: {"role": "tool", "tool_call_id": i, "content": c}, texts, texts
)
messages = st.lists(
    st.one_of(
        st.builds(lambda c: {"role": "user", "content": c}, user_content), assistant, tool_message
    ),
    min_size=1,
    max_size=5,
)
bodies = st.fixed_dictionaries(
    {"model": texts, "messages": messages},
    optional={
        "max_completion_tokens": st.integers(1, 10**5),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "stop": st.lists(texts, min_size=1, max_size=3),
        "user": texts,
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
        "parallel_tool_calls": st.booleans(),
        "reasoning_effort": st.sampled_from(["minimal", "low", "medium", "high"]),
        "tools": st.lists(
            st.builds(
                lambda n: {
                    "type": "function",
                    "function": {"name": n, "parameters": {"type": "object", "properties": {}}},
                },
                texts,
            ),
            min_size=1,
            max_size=2,
        ),
    },
)


@settings(max_examples=200, deadline=None)
@given(bodies)
def test_an_openai_body_round_trips_through_canonical(raw: dict[str, Any]) -> None:
    request, dropped = CODEC.decode_request(raw)
    assert dropped == ()
    encoded = CODEC.encode_request(request)
    assert CODEC.decode_request(encoded) == (request, ())
    assert len(encoded["messages"]) == len(raw["messages"])
    assert {k: v for k, v in encoded.items() if k != "messages"} == {
        k: v for k, v in raw.items() if k != "messages"
    }


@settings(max_examples=200, deadline=None)
@given(bodies)
def test_an_openai_body_through_anthropic_keeps_its_meaning(raw: dict[str, Any]) -> None:
    request, _ = CODEC.decode_request(raw)
    effort = request.reasoning.effort if request.reasoning is not None else None
    budget = anthropic.THINKING_BUDGETS.get(effort) if effort is not None else None
    if budget is not None and request.max_tokens is not None and request.max_tokens <= budget:
        # No room for an answer beside the effort's thinking budget: refused, not shrunk.
        with pytest.raises(Unsupported) as refused:
            ANTHROPIC.encode_request(request)
        assert refused.value.field == "max_tokens"
        return
    provider = json.loads(json.dumps(ANTHROPIC.encode_request(request)))
    decoded = ANTHROPIC.decode_request(provider)[0]
    assert decoded.messages == tuple(
        Message(m.role, tuple(p for p in m.parts if not isinstance(p, Reasoning)))
        for m in _normalise_arguments(request.messages)
    )


def _normalise_arguments(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    def fix(part: Any) -> Any:
        if isinstance(part, ToolCall):
            return ToolCall(
                part.id,
                part.name,
                json.dumps(
                    json.loads(part.arguments or "{}"), separators=(",", ":"), ensure_ascii=False
                ),
            )
        return part

    return tuple(Message(m.role, tuple(fix(p) for p in m.parts)) for m in messages)


# -- responses --------------------------------------------------------------------------

RESPONSE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4.1",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "hello",
                "reasoning_content": "because",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        }
    ],
    "usage": {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 7},
    },
}


def test_the_dialects_codec_writes_the_time_of_the_answer() -> None:
    codec = OpenAIChat.codec
    assert codec is not None
    before = int(time.time())
    created = codec.encode_response(CODEC.decode_response(RESPONSE))["created"]
    assert before <= created <= int(time.time())


def test_a_response_decodes_and_encodes_back_for_the_sdk() -> None:
    response = CODEC.decode_response(RESPONSE)
    assert response == Response(
        "chatcmpl-1",
        "gpt-4.1",
        (Reasoning("because"), Text("hello"), ToolCall("call_1", "f", "{}")),
        FinishReason.TOOL_CALLS,
        Usage(100, 20, 64, None, 7),
    )
    encoded = CODEC.encode_response(response)
    assert encoded == RESPONSE
    ChatCompletion.model_validate(encoded)


def test_an_anthropic_answer_as_a_chat_completion() -> None:
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "sig"},
            {"type": "text", "text": "no"},
        ],
        "stop_reason": "refusal",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 10},
    }
    completion = ChatCompletion.model_validate(
        CODEC.encode_response(ANTHROPIC.decode_response(answer))
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content == "no"  # reasoning is never answer text
    assert getattr(choice.message, "reasoning_content", None) == "hm"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 15
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 10


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("stop", FinishReason.STOP),
        ("length", FinishReason.LENGTH),
        ("tool_calls", FinishReason.TOOL_CALLS),
        ("content_filter", FinishReason.CONTENT_FILTER),
    ],
)
def test_finish_reasons_map_both_ways(reason: str, finish: FinishReason) -> None:
    raw = {**RESPONSE, "choices": [{**RESPONSE["choices"][0], "finish_reason": reason}]}  # type: ignore[dict-item]
    assert CODEC.decode_response(raw).finish is finish
    assert (
        CODEC.encode_response(Response("i", "m", (), finish))["choices"][0]["finish_reason"]
        == reason
    )


@pytest.mark.parametrize("reason", ["function_call", "weird", None])
def test_an_unknown_finish_reason_is_an_error_never_stop(reason: Any) -> None:
    raw = {**RESPONSE, "choices": [{**RESPONSE["choices"][0], "finish_reason": reason}]}  # type: ignore[dict-item]
    with pytest.raises(UntranslatableResponse):
        CODEC.decode_response(raw)


def test_refusals_decode() -> None:
    raw = {
        **RESPONSE,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": "no can do"},
                "finish_reason": "stop",
            }
        ],
    }
    assert CODEC.decode_response(raw).parts == (Refusal("no can do"),)


# -- streams ----------------------------------------------------------------------------

EXPECTED: list[StreamEvent] = [
    MessageStart("chatcmpl-Golden", "gpt-4.1-2025-04-14"),
    TextDelta("Checking — "),
    TextDelta("東京 too."),
    ToolCallStart(0, "call_8pXMvdzHsTc3f8mUvWL7Uq0J", "get_weather"),
    ToolCallDelta(0, '{"location": "Pa'),
    ToolCallDelta(0, 'ris"}'),
    ToolCallEnd(0),
    ToolCallStart(1, "call_Q2b.7:x", "get_weather"),
    ToolCallDelta(1, '{"location": "Tokyo"}'),
    ToolCallEnd(1),
    Finish(FinishReason.TOOL_CALLS),
    UsageReport(Usage(1200, 45, 1024, None, 0)),
]


def decode_stream(chunks: list[bytes]) -> list[StreamEvent]:
    parser, decoder = SSEParser(), CODEC.stream_decoder()
    events: list[StreamEvent] = []
    for chunk in chunks:
        for sse in parser.feed(chunk):
            events.extend(decoder.feed_text(sse.event, sse.data))
    return events + decoder.end()


def test_the_golden_stream_decodes_at_every_split() -> None:
    raw = GOLDEN.read_bytes()
    assert decode_stream([raw]) == EXPECTED
    for cut in range(1, len(raw)):
        assert decode_stream([raw[:cut], raw[cut:]]) == EXPECTED, cut
    assert decode_stream([raw[i : i + 1] for i in range(len(raw))]) == EXPECTED


def test_a_stream_without_done_or_finish_ends_in_an_error() -> None:
    raw = GOLDEN.read_bytes()
    events = decode_stream([raw[: raw.index(b'"finish_reason":"tool_calls"') - 200]])
    assert isinstance(events[-1], StreamError)


def test_an_error_chunk_becomes_a_canonical_error() -> None:
    decoder = CODEC.stream_decoder()
    events = decoder.feed("message", {"error": {"message": "boom", "type": "server_error"}})
    assert events == [StreamError(500, "server_error", "boom")]
    assert decoder.end() == []


def test_the_golden_stream_translated_to_anthropic_is_valid_for_the_anthropic_sdk() -> None:
    encoder = ANTHROPIC.stream_encoder(Request("m", (), stream=True))
    out = b"".join(encoder.feed(e) for e in EXPECTED) + encoder.close()
    parsed = SSEParser().feed(out)
    events = [EVENTS.validate_json(sse.data) for sse in parsed]
    assert [sse.event for sse in parsed] == [e.type for e in events]
    assert [e.type for e in events] == [
        "message_start",
        *(
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
        ),
        *(
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
        ),
        *("content_block_start", "content_block_delta", "content_block_stop"),
        "message_delta",
        "message_stop",
    ]
    tools = [e.content_block for e in events if e.type == "content_block_start"][1:]
    assert [(t.id, t.name) for t in tools] == [  # type: ignore[union-attr]
        ("call_8pXMvdzHsTc3f8mUvWL7Uq0J", "get_weather"),
        (anthropic.to_anthropic_id("call_Q2b.7:x"), "get_weather"),
    ]
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "tool_use"
    assert delta.usage.output_tokens == 45
    assert delta.usage.input_tokens == 1200 - 1024
    assert delta.usage.cache_read_input_tokens == 1024
    # Decoded again as Anthropic, the tool ids are the OpenAI provider's own.
    decoder = ANTHROPIC.stream_decoder()
    again = [e for sse in parsed for e in decoder.feed_text(sse.event, sse.data)]
    assert [e for e in again if isinstance(e, ToolCallStart)] == [EXPECTED[3], EXPECTED[7]]


def test_the_encoder_writes_chunks_the_sdk_reads() -> None:
    encoder = CODEC.stream_encoder(Request("m", (), stream=True, stream_usage=True))
    out = b"".join(encoder.feed(e) for e in EXPECTED) + encoder.close()
    parsed = SSEParser().feed(out)
    assert parsed[-1].data == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(sse.data) for sse in parsed[:-1]]
    assert {chunk.id for chunk in chunks} == {"chatcmpl-Golden"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 1200
    assert decode_stream([out]) == EXPECTED


def test_an_error_mid_stream_is_an_error_chunk_and_no_done() -> None:
    encoder = CODEC.stream_encoder(Request("m", (), stream=True))
    out = encoder.feed(MessageStart("i", "m")) + encoder.feed(
        StreamError(503, "overloaded", "busy")
    )
    out += encoder.close()
    parsed = SSEParser().feed(out)
    assert json.loads(parsed[-1].data)["error"]["message"] == "busy"
    assert b"[DONE]" not in out


# -- errors -----------------------------------------------------------------------------


def test_an_openai_error_becomes_an_anthropic_error() -> None:
    error = CODEC.decode_error(
        429, {"error": {"message": "Rate limit", "type": "rate_limit_error", "code": None}}
    )
    assert error == StreamError(429, "rate_limit", "Rate limit")
    assert ANTHROPIC.encode_error(error.status, error.kind, error.message) == (
        429,
        {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit"}},
    )


def test_the_proxy_error_format_is_openai_s() -> None:
    status, error_body = CODEC.encode_error(529, "overloaded", "busy")
    assert status == 503
    assert error_body["error"]["message"] == "busy"
