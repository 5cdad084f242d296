"""The Anthropic Messages codec: requests, responses, streams and errors, to and from canonical."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import Message as SDKMessage
from anthropic.types import RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk
from pydantic import TypeAdapter

from provider_proxy.dialects import AnthropicMessages, OpenAIChat
from provider_proxy.dialects import _anthropic_codec as codec
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
    ReasoningDelta,
    ReasoningSignature,
    RedactedReasoning,
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
from provider_proxy.observe._sse import SSEParser

CODEC = AnthropicMessages.codec
assert CODEC is not None
GOLDEN = Path(__file__).parent / "golden" / "anthropic_thinking_tools.sse"
EVENTS = TypeAdapter(RawMessageStreamEvent)
ERROR = TypeAdapter(ErrorResponse)


def body(**fields: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }


def decode(**fields: Any) -> Request:
    request, dropped = CODEC.decode_request(body(**fields))
    assert dropped == ()
    return request


# -- requests: each row both ways -----------------------------------------------------

ROWS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    # (Anthropic fields, the canonical fields they decode to)
    ({"system": "be brief"}, {"system": (Text("be brief"),)}),
    (
        {"system": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}]},
        {"system": (Text("a", CacheControl()),)},
    ),
    ({"temperature": 0.5, "top_p": 0.9}, {"temperature": 0.5, "top_p": 0.9}),
    ({"stop_sequences": ["END", "STOP"]}, {"stop": ("END", "STOP")}),
    ({"metadata": {"user_id": "u-1"}}, {"user": "u-1"}),
    ({"stream": True}, {"stream": True, "stream_usage": True}),
    ({"tool_choice": {"type": "auto"}}, {"tool_choice": ToolChoice("auto")}),
    ({"tool_choice": {"type": "none"}}, {"tool_choice": ToolChoice("none")}),
    ({"tool_choice": {"type": "any"}}, {"tool_choice": ToolChoice("required")}),
    (
        {"tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True}},
        {"tool_choice": ToolChoice("tool", "f"), "parallel_tool_calls": False},
    ),
    (
        {"thinking": {"type": "enabled", "budget_tokens": 2048}},
        {"reasoning": ReasoningConfig(budget_tokens=2048)},
    ),
    ({"thinking": {"type": "disabled"}}, {"reasoning": ReasoningConfig(budget_tokens=0)}),
    (
        {
            "tools": [
                {
                    "name": "f",
                    "description": "d",
                    "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}},
                    "cache_control": {"type": "ephemeral", "ttl": "1h"},
                }
            ]
        },
        {
            "tools": (
                Tool(
                    "f",
                    "d",
                    {"type": "object", "properties": {"x": {"type": "integer"}}},
                    cache_control=CacheControl("ephemeral", "1h"),
                ),
            )
        },
    ),
]


@pytest.mark.parametrize(("fields", "expected"), ROWS)
def test_request_rows_decode_and_encode_back(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    request = decode(**fields)
    for name, value in expected.items():
        assert getattr(request, name) == value
    encoded = CODEC.encode_request(request)
    for key, value in fields.items():
        if key == "system" and isinstance(value, str):
            value = [{"type": "text", "text": value}]
        assert encoded[key] == value


def test_max_tokens_has_a_default_when_absent() -> None:
    request = Request("m", (Message("user", (Text("hi"),)),))
    assert CODEC.encode_request(request)["max_tokens"] == codec.DEFAULT_MAX_TOKENS == 4096


@pytest.mark.parametrize(
    ("effort", "thinking"),
    [
        ("none", {"type": "disabled"}),
        ("minimal", {"type": "enabled", "budget_tokens": 1024}),
        ("low", {"type": "enabled", "budget_tokens": 4096}),
        ("medium", {"type": "enabled", "budget_tokens": 16384}),
        ("high", {"type": "enabled", "budget_tokens": 32768}),
    ],
)
def test_reasoning_effort_becomes_the_documented_budget(effort: Any, thinking: Any) -> None:
    request = Request("m", (), reasoning=ReasoningConfig(effort=effort))
    assert CODEC.encode_request(request)["thinking"] == thinking
    assert codec.THINKING_BUDGETS[effort] == thinking.get("budget_tokens")


def test_parallel_tool_calls_alone_sets_auto_with_the_flag() -> None:
    request = Request("m", (), parallel_tool_calls=False)
    assert CODEC.encode_request(request)["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }


def test_messages_with_every_block_kind_decode() -> None:
    request = decode(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBE",
                        },
                        "title": "t.pdf",
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
                    {"type": "redacted_thinking", "data": "ENCRYPTED"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "boom",
                        "is_error": True,
                    }
                ],
            },
        ]
    )
    user, assistant, results = request.messages
    assert user.parts == (
        Text("look", CacheControl()),
        Image(data="iVBO", media_type="image/png"),
        Image(url="https://x/y.png"),
        Document(media_type="application/pdf", data="JVBE", title="t.pdf"),
    )
    assert assistant.parts == (
        Reasoning("hmm", "sig=="),
        RedactedReasoning("ENCRYPTED"),
        Text("calling"),
        ToolCall("toolu_1", "f", '{"a":1}'),
    )
    assert results.parts == (ToolResult("toolu_1", (Text("boom"),), is_error=True),)
    again = CODEC.encode_request(request)
    assert again["messages"][1]["content"][:2] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
        {"type": "redacted_thinking", "data": "ENCRYPTED"},
    ]


def test_unsigned_reasoning_is_not_sent_to_anthropic() -> None:
    request = Request("m", (Message("assistant", (Reasoning("r"), Text("t"))),))
    content = CODEC.encode_request(request)["messages"][0]["content"]
    assert content == [{"type": "text", "text": "t"}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"top_k": 5}, "top_k"),
        ({"container": "c"}, "container"),
        ({"mcp_servers": []}, "mcp_servers"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"tools": [{"type": "code_execution_20250522", "name": "code"}]}, "tools[0].type"),
        ({"thinking": {"type": "adaptive"}}, "thinking.type"),
        ({"metadata": {"user_id": "u", "other": 1}}, "metadata.other"),
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result"}]}]},
            "messages[0].content[0].type",
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
    assert field in caught.value.message


def test_fields_without_effect_are_dropped_and_named() -> None:
    _, dropped = CODEC.decode_request(body(service_tier="auto", speed="fast"))
    assert dropped == ("service_tier", "speed")


def test_the_fidelity_table_says_what_the_decoder_does() -> None:
    samples = {
        "model": "m",
        "messages": [],
        "system": "s",
        "max_tokens": 5,
        "temperature": 1,
        "top_p": 1,
        "stop_sequences": ["x"],
        "stream": True,
        "tools": [],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u"},
        "top_k": 1,
        "container": "c",
        "mcp_servers": [{}],
        "context_management": {},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        "output_format": {"type": "json_schema", "schema": {"type": "object"}},
        "service_tier": "auto",
        "inference_geo": "us",
        "speed": "fast",
        "cache_control": {"type": "ephemeral"},
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


# -- tool-call ids ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canonical", "anthropic"),
    [
        ("toolu_01A09q90qw90lq917835lq9", "toolu_01A09q90qw90lq917835lq9"),
        ("call_abc123", "call_abc123"),
        ("call.1", "toolu_pp_Y2FsbC4x"),
        ("", "toolu_pp_"),
        ("toolu_pp_x", "toolu_pp_dG9vbHVfcHBfeA"),
    ],
)
def test_tool_call_ids_map_to_valid_anthropic_ids(canonical: str, anthropic: str) -> None:
    assert codec.to_anthropic_id(canonical) == anthropic
    assert codec.from_anthropic_id(anthropic) == canonical


@given(st.text())
def test_tool_call_id_mapping_is_a_valid_bijection(call_id: str) -> None:
    mapped = codec.to_anthropic_id(call_id)
    assert mapped
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in mapped)
    assert codec.from_anthropic_id(mapped) == call_id
    assert codec.to_anthropic_id(call_id) == mapped


# -- round trips ------------------------------------------------------------------------

texts = st.text(min_size=1, max_size=20)
ids = st.text(min_size=1, max_size=12)
controls = st.none() | st.just(CacheControl()) | st.just(CacheControl("ephemeral", "1h"))
arguments = st.dictionaries(
    st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5), max_size=3
).map(lambda d: json.dumps(d, separators=(",", ":"), ensure_ascii=False))
user_parts = st.one_of(
    st.builds(Text, texts, controls),
    st.builds(Image, url=st.just("https://example.com/i.png")),
    st.builds(Image, data=st.just("iVBORw0KGgo="), media_type=st.just("image/png")),
    st.builds(
        ToolResult,
        ids,
        st.lists(st.builds(Text, texts), max_size=2).map(tuple),
        st.booleans(),
    ),
)
assistant_parts = st.one_of(
    st.builds(Text, texts),
    st.builds(Reasoning, texts, texts),
    st.builds(RedactedReasoning, texts),
    st.builds(ToolCall, ids, texts, arguments),
)
messages = st.lists(
    st.one_of(
        st.builds(
            Message, st.just("user"), st.lists(user_parts, min_size=1, max_size=3).map(tuple)
        ),
        st.builds(
            Message,
            st.just("assistant"),
            st.lists(assistant_parts, min_size=1, max_size=3).map(tuple),
        ),
    ),
    max_size=4,
).map(tuple)
tools = st.builds(
    Tool,
    texts,
    st.none() | texts,
    st.just({"type": "object", "properties": {"q": {"type": "string"}}}),
    st.none() | st.booleans(),
    controls,
)
requests = st.builds(
    Request,
    model=texts,
    messages=messages,
    system=st.lists(st.builds(Text, texts, controls), max_size=2).map(tuple),
    tools=st.lists(tools, max_size=2).map(tuple),
    tool_choice=st.none()
    | st.builds(ToolChoice, st.sampled_from(["auto", "none", "required"]))
    | st.builds(ToolChoice, st.just("tool"), texts),
    max_tokens=st.integers(1, 10**5),
    temperature=st.none() | st.floats(0, 1),
    top_p=st.none() | st.floats(0, 1),
    stop=st.lists(texts, max_size=2).map(tuple),
    user=st.none() | texts,
    reasoning=st.none()
    | st.builds(ReasoningConfig, budget_tokens=st.just(0) | st.integers(1024, 10**5)),
)


@settings(max_examples=200, deadline=None)
@given(requests, st.booleans())
def test_canonical_to_anthropic_and_back_is_the_identity(request: Request, stream: bool) -> None:
    if stream:
        request = Request(**{**_fields(request), "stream": True, "stream_usage": True})
    body = json.loads(json.dumps(CODEC.encode_request(request)))
    decoded, dropped = CODEC.decode_request(body)
    assert dropped == ()
    assert decoded == request
    assert CODEC.encode_request(decoded) == body


def _fields(request: Request) -> dict[str, Any]:
    return {name: getattr(request, name) for name in Request.__dataclass_fields__}


# -- responses --------------------------------------------------------------------------

RESPONSE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "t", "signature": "s"},
        {"type": "text", "text": "hello"},
        {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
    },
}


def test_a_response_decodes_with_normalised_usage_and_encodes_back() -> None:
    response = CODEC.decode_response(RESPONSE)
    assert response == Response(
        "msg_1",
        "claude-sonnet-4-5",
        (Reasoning("t", "s"), Text("hello"), ToolCall("toolu_9", "f", "{}")),
        FinishReason.TOOL_CALLS,
        Usage(130, 5, 100, 20),
    )
    encoded = CODEC.encode_response(response)
    assert encoded == RESPONSE
    SDKMessage.model_validate(encoded)


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", FinishReason.STOP),
        ("stop_sequence", FinishReason.STOP),
        ("max_tokens", FinishReason.LENGTH),
        ("tool_use", FinishReason.TOOL_CALLS),
        ("refusal", FinishReason.CONTENT_FILTER),
    ],
)
def test_stop_reasons_map(stop: str, finish: FinishReason) -> None:
    assert CODEC.decode_response({**RESPONSE, "stop_reason": stop}).finish is finish
    if stop != "stop_sequence":
        response = Response("m", "x", (), finish)
        assert CODEC.encode_response(response)["stop_reason"] == stop


@pytest.mark.parametrize("stop", ["something_new", None])
def test_an_unknown_stop_reason_is_an_error_never_stop(stop: Any) -> None:
    with pytest.raises(UntranslatableResponse):
        CODEC.decode_response({**RESPONSE, "stop_reason": stop})


# -- streams ----------------------------------------------------------------------------

EXPECTED: list[StreamEvent] = [
    MessageStart("msg_01Golden", "claude-sonnet-4-5"),
    UsageReport(Usage(2620, 2, 2048, 100)),
    ReasoningDelta("The user wants the weather in "),
    ReasoningDelta("Paris and Tokyo; I will call the tool twice."),
    ReasoningSignature("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"),
    TextDelta("Let me check both cities — "),
    TextDelta("un instant. 東京も。"),
    ToolCallStart(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
    ToolCallDelta(0, '{"location": "Par'),
    ToolCallDelta(0, 'is", "unit": "celsius"}'),
    ToolCallEnd(0),
    ToolCallStart(1, "toolu_01VbnNq9CZ2LzqTrEWUHhzeY", "get_time"),
    ToolCallEnd(1),
    Finish(FinishReason.TOOL_CALLS),
    UsageReport(Usage(output_tokens=189)),
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


def test_a_stream_cut_short_ends_in_an_error() -> None:
    raw = GOLDEN.read_bytes()
    events = decode_stream([raw[: raw.index(b"event: message_delta")]])
    assert isinstance(events[-1], StreamError)
    assert events[-1].status == 502


def test_an_error_event_becomes_a_canonical_error() -> None:
    events = CODEC.stream_decoder().feed(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    assert events == [StreamError(503, "overloaded", "Overloaded")]


def test_an_unknown_stop_reason_in_a_stream_is_an_error() -> None:
    decoder = CODEC.stream_decoder()
    events = decoder.feed(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "something_new"},
            "usage": {"output_tokens": 1},
        },
    )
    assert [type(e) for e in events] == [StreamError]


def test_the_golden_stream_translated_to_openai_chat_is_valid_for_the_openai_sdk() -> None:
    target = OpenAIChat.codec
    assert target is not None
    request = Request("m", (), stream=True, stream_usage=True)
    encoder = target.stream_encoder(request)
    out = b"".join(encoder.feed(e) for e in EXPECTED) + encoder.close()
    events = SSEParser().feed(out)
    assert events[-1].data == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(e.data) for e in events[:-1]]
    assert {c.id for c in chunks} == {"msg_01Golden"}
    assert chunks[0].choices[0].delta.role == "assistant"
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices
    )
    assert reasoning.startswith("The user wants")
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "Let me check both cities — un instant. 東京も。"
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            assert call.function is not None
            if call.id:
                assert not entry["id"]
                entry["id"], entry["name"] = call.id, call.function.name or ""
            entry["arguments"] += call.function.arguments or ""
    assert calls == {
        0: {
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "arguments": '{"location": "Paris", "unit": "celsius"}',
        },
        1: {"id": "toolu_01VbnNq9CZ2LzqTrEWUHhzeY", "name": "get_time", "arguments": "{}"},
    }
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2620, 189, 2809)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 2048


def test_the_usage_chunk_is_sent_only_when_the_client_asked() -> None:
    target = OpenAIChat.codec
    assert target is not None
    encoder = target.stream_encoder(Request("m", (), stream=True))
    out = b"".join(encoder.feed(e) for e in EXPECTED) + encoder.close()
    assert b'"usage"' not in out
    assert out.endswith(b"data: [DONE]\n\n")


# -- the stream encoder -----------------------------------------------------------------


def encode_stream(events: list[StreamEvent]) -> list[Any]:
    encoder = CODEC.stream_encoder(Request("m", (), stream=True))
    out = b"".join(encoder.feed(e) for e in events) + encoder.close()
    parsed = SSEParser().feed(out)
    for sse in parsed:
        assert sse.event == json.loads(sse.data)["type"]
    return [(ERROR if sse.event == "error" else EVENTS).validate_json(sse.data) for sse in parsed]


def test_the_encoder_replays_the_golden_stream_as_the_sdk_reads_it() -> None:
    validated = encode_stream(EXPECTED)
    assert [e.type for e in validated] == [
        "message_start",
        *("content_block_start", "content_block_delta", "content_block_delta"),
        *("content_block_delta", "content_block_stop"),
        *("content_block_start", "content_block_delta", "content_block_delta"),
        "content_block_stop",
        *("content_block_start", "content_block_delta", "content_block_delta"),
        "content_block_stop",
        *("content_block_start", "content_block_stop"),
        "message_delta",
        "message_stop",
    ]
    starts = [e for e in validated if e.type == "content_block_start"]
    assert [e.index for e in starts] == [0, 1, 2, 3]
    assert [e.content_block.type for e in starts] == ["thinking", "text", "tool_use", "tool_use"]
    assert validated[0].message.usage.input_tokens == 472
    assert validated[0].message.usage.cache_read_input_tokens == 2048
    assert validated[-2].delta.stop_reason == "tool_use"
    assert validated[-2].usage.output_tokens == 189


def test_message_start_waits_for_the_usage_that_follows_it() -> None:
    encoder = CODEC.stream_encoder(Request("m", (), stream=True))
    assert encoder.feed(EXPECTED[0]) == b""
    assert encoder.feed(EXPECTED[1]) == b""
    assert b'"input_tokens":472' in encoder.feed(EXPECTED[2])


def test_encoded_then_decoded_gives_the_same_events() -> None:
    encoder = CODEC.stream_encoder(Request("m", (), stream=True))
    out = b"".join(encoder.feed(e) for e in EXPECTED) + encoder.close()
    again = decode_stream([out])
    assert again[0] == EXPECTED[0]
    # The encoder's message_delta carries every count, so the last report is complete.
    assert again[2:] == [*EXPECTED[2:-1], UsageReport(Usage(2620, 189, 2048, 100))]


def test_an_error_mid_stream_is_an_error_event_and_no_clean_end() -> None:
    validated = encode_stream(
        [MessageStart("m", "x"), TextDelta("a"), StreamError(503, "overloaded", "busy")]
    )
    assert validated[-1].type == "error"
    assert validated[-1].error.type == "overloaded_error"
    assert all(e.type != "message_stop" for e in validated)


def test_a_stream_without_a_finish_does_not_end_cleanly() -> None:
    validated = encode_stream([MessageStart("m", "x"), TextDelta("a")])
    assert validated[-1].type == "error"


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "canonical", "openai_status"),
    [
        (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
         StreamError(503, "overloaded", "Overloaded"), 503),
        (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
         StreamError(429, "rate_limit", "slow"), 429),
        (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}},
         StreamError(400, "invalid_request", "bad"), 400),
        (500, "not json", StreamError(500, "server_error", "The provider answered 500."), 500),
    ],
)  # fmt: skip
def test_errors_translate_to_openai_with_a_mapped_status(
    status: int, body: Any, canonical: StreamError, openai_status: int
) -> None:
    error = CODEC.decode_error(status, body)
    assert error == canonical
    target = OpenAIChat.codec
    assert target is not None
    new_status, new_body = target.encode_error(error.status, error.kind, error.message)
    assert new_status == openai_status
    assert new_body["error"]["message"] == canonical.message


def test_overloaded_is_529_for_anthropic_clients() -> None:
    status, error_body = CODEC.encode_error(503, "overloaded", "busy")
    assert status == 529
    assert error_body == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
