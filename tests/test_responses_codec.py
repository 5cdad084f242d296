"""The OpenAI Responses codec: requests, answers, streams and errors, both directions.

Table-driven decoding, refusals naming their field, hypothesis round trips,
the openai SDK's own models and stream accumulator as the judge of what the
encoders write, and a golden Responses stream decoded at every split.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseFunctionToolCall, ResponseStreamEvent
from pydantic import TypeAdapter

from provider_proxy._exceptions import BadRequest
from provider_proxy.dialects import AnthropicMessagesCodec, OpenAIChatCodec, OpenAIResponsesCodec
from provider_proxy.dialects import _responses_items as items
from provider_proxy.dialects.canonical import (
    Document,
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
    RedactedReasoningBlock,
    Refusal,
    RefusalDelta,
    Request,
    Response,
    StoredAnswers,
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
from provider_proxy.observe import SSEParser

from .test_codec_openai_chat import GOLDEN as CHAT_GOLDEN

CODEC = OpenAIResponsesCodec(created=1_700_000_000)
CHAT = OpenAIChatCodec(created=1_700_000_000)
ANTHROPIC = AnthropicMessagesCodec()
GOLDEN = CHAT_GOLDEN.parent / "openai_responses_reasoning_tools.sse"
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}


def _decode(**fields: Any) -> tuple[Request, tuple[str, ...]]:
    return CODEC.decode_request({"model": "m", "input": "Hi.", **fields})


# -- requests ---------------------------------------------------------------------------

DECODED: list[tuple[dict[str, Any], Request]] = [
    (
        {"model": "m", "input": "Hi."},
        Request("m", (Message("user", (Text("Hi."),)),), store=True),
    ),
    (
        {
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Metric units."},
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            ],
            "store": False,
            "max_output_tokens": 300,
            "temperature": 0.5,
            "top_p": 0.9,
            "user": "u-1",
            "parallel_tool_calls": False,
            "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "include": ["reasoning.encrypted_content"],
        },
        Request(
            "m",
            (Message("user", (Text("Weather?"),)),),
            system=(Text("Be brief."), Text("Metric units.")),
            transient_system=1,  # the instructions: not kept with the conversation
            max_tokens=300,
            temperature=0.5,
            top_p=0.9,
            user="u-1",
            parallel_tool_calls=False,
            reasoning=ReasoningConfig(effort="low"),
        ),
    ),
    (
        {
            "model": "m",
            "input": [
                {"type": "message", "role": "user", "content": "Weather in Paris?"},
                {
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": "Look it up."}],
                    "encrypted_content": "sig-1",
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
                },
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "Sunny."},
                {
                    "type": "function_call_output",
                    "call_id": "c2",
                    "output": [{"type": "input_text", "text": "Rain."}],
                },
                {"role": "user", "content": "Thanks."},
            ],
            "tools": [{"type": "function", "name": "w", "parameters": WEATHER, "strict": True}],
            "tool_choice": {"type": "function", "name": "w"},
            "previous_response_id": "resp_1",
            "stream": True,
        },
        Request(
            "m",
            (
                Message("user", (Text("Weather in Paris?"),)),
                Message(
                    "assistant",
                    (
                        Reasoning("Look it up.", "sig-1"),
                        Text("Checking."),
                        ToolCall("c1", "w", "{}"),
                        ToolCall("c2", "w", "{}"),
                    ),
                ),
                Message(
                    "user",
                    (ToolResult("c1", (Text("Sunny."),)), ToolResult("c2", (Text("Rain."),))),
                ),
                Message("user", (Text("Thanks."),)),
            ),
            tools=(Tool("w", None, WEATHER, True),),
            tool_choice=ToolChoice("tool", "w"),
            stream=True,
            stream_usage=True,
            store=True,
            continues="resp_1",
        ),
    ),
    (
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_image", "image_url": "data:image/png;base64,iVBO"},
                        {"type": "input_image", "image_url": "https://x.example/a.png"},
                        {
                            "type": "input_file",
                            "file_data": "data:application/pdf;base64,JVBE",
                            "filename": "a.pdf",
                        },
                    ],
                },
                {"type": "reasoning", "summary": [], "encrypted_content": "opaque"},
            ],
        },
        Request(
            "m",
            (
                Message(
                    "user",
                    (
                        Image(data="iVBO", media_type="image/png"),
                        Image(url="https://x.example/a.png"),
                        Document(media_type="application/pdf", data="JVBE", title="a.pdf"),
                    ),
                ),
                Message("assistant", (RedactedReasoning("opaque"),)),
            ),
            store=True,
        ),
    ),
]


@pytest.mark.parametrize(("body", "expected"), DECODED)
def test_requests_decode_to_canonical(body: dict[str, Any], expected: Request) -> None:
    assert CODEC.decode_request(body) == (expected, ())


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"tools": [{"type": "file_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "name": "f"}, {"type": "file_search"}]}, "tools[1].type"),
    ({"text": {"format": {"type": "grammar"}}}, "text.format.type"),
    ({"text": {"verbosity": "low"}}, "text.verbosity"),
    ({"include": ["message.output_text.logprobs"]}, "include[0]"),
    ({"tool_choice": {"type": "file_search"}}, "tool_choice.type"),
    ({"reasoning": {"effort": "huge"}}, "reasoning.effort"),
    ({"truncation": "auto"}, "truncation"),
    ({"background": True}, "background"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_audio", "data": "x"}]}]},
        "input[0].content[0].type",
    ),
    ({"frobnicate": 1}, "frobnicate"),
]


@pytest.mark.parametrize(("fields", "name"), REFUSED)
def test_what_cannot_be_carried_is_refused_by_name(fields: dict[str, Any], name: str) -> None:
    with pytest.raises(Unsupported) as refused:
        _decode(**fields)
    assert refused.value.field == name
    assert refused.value.status_code == 400


def test_a_built_in_tool_is_refused_saying_it_runs_at_the_provider() -> None:
    with pytest.raises(Unsupported) as refused:
        _decode(tools=[{"type": "code_interpreter"}])
    assert "'code_interpreter'" in refused.value.message
    assert "built-in" in refused.value.message


def test_fields_without_effect_are_dropped_and_named() -> None:
    _, dropped = _decode(
        metadata={"a": "b"},
        service_tier="flex",
        prompt_cache_key="k",
        input=[
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "user",
                "content": "Hi.",
            }
        ],
    )
    assert dropped == (
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "input[].id",
        "input[].status",
    )


def test_an_image_detail_and_an_answer_phase_are_dropped_and_named() -> None:
    image = {"type": "input_image", "image_url": "https://x.example/a.png", "detail": "high"}
    request, dropped = _decode(
        input=[
            {"role": "user", "content": [image]},
            {"role": "assistant", "phase": "final_answer", "content": "Done."},
            {"type": "function_call", "call_id": "c", "name": "look", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": [image]},
        ]
    )
    assert dropped == ("input[].content[].detail", "input[].phase")
    assert request.messages[0].parts == (Image(url="https://x.example/a.png"),)
    assert request.messages[2].parts == (ToolResult("c", (Image(url="https://x.example/a.png"),)),)


def test_store_is_on_unless_false_and_safety_identifier_is_the_user() -> None:
    assert _decode()[0].store is True
    assert _decode(store=False)[0].store is False
    assert _decode(safety_identifier="s-1")[0].user == "s-1"
    assert _decode(safety_identifier="s-1", user="u-1")[0].user == "u-1"


def test_an_empty_signed_thought_stays_signed_and_redacted_stays_redacted() -> None:
    parts = (Reasoning("", "sig"), RedactedReasoning("data"), Reasoning("Plan.", "sig2"))
    written = items.encode_output(parts, ids=False)
    request, _ = _decode(input=[{"role": "user", "content": "Hi."}, *written])
    assert request.messages[1].parts == parts


# -- requests to a Responses provider ---------------------------------------------------


def test_a_canonical_request_encodes_as_a_stateless_responses_body() -> None:
    request = Request(
        "gpt-5",
        (
            Message("user", (Text("Hi."), Image(url="https://x.example/a.png"))),
            Message(
                "assistant",
                (Reasoning("Unsigned."), Reasoning("Signed.", "enc"), ToolCall("c1", "w", "{}")),
            ),
            Message("user", (ToolResult("c1", (Text("Sunny."),), is_error=True),)),
        ),
        system=(Text("Be brief."),),
        tools=(Tool("w", "Weather", WEATHER),),
        tool_choice=ToolChoice("required"),
        max_tokens=100,
        reasoning=ReasoningConfig(budget_tokens=2000),
        stream=True,
    )
    body = CODEC.encode_request(request)
    assert body == {
        "model": "gpt-5",
        "input": [
            {
                "type": "message",
                "role": "system",
                "content": [{"type": "input_text", "text": "Be brief."}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Hi."},
                    {
                        "type": "input_image",
                        "image_url": "https://x.example/a.png",
                        "detail": "auto",
                    },
                ],
            },
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "Signed."}],
                "encrypted_content": "enc",
            },
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "w",
                "arguments": "{}",
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": "c1", "output": "Sunny."},
        ],
        "max_output_tokens": 100,
        "tools": [
            {"type": "function", "name": "w", "description": "Weather", "parameters": WEATHER}
        ],
        "tool_choice": "required",
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
        "stream": True,
    }
    assert CODEC.dropped_by_encoding(request) == (
        "reasoning without signature",
        "tool_result.is_error",
    )


def test_stop_sequences_are_refused_for_a_responses_provider() -> None:
    with pytest.raises(Unsupported) as refused:
        CODEC.encode_request(Request("m", (Message("user", (Text("Hi."),)),), stop=("END",)))
    assert refused.value.field == "stop"


texts = st.text(min_size=1, max_size=12)
arguments = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2).map(
    lambda d: json.dumps(d)
)
user_item = st.one_of(
    st.builds(
        lambda t: {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": t}],
        },
        texts,
    ),
    st.builds(
        lambda t: {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": t},
                {
                    "type": "input_image",
                    "image_url": "data:image/png;base64,iVBO",
                    "detail": "auto",
                },
            ],
        },
        texts,
    ),
)
assistant_items = st.lists(
    st.one_of(
        st.builds(
            lambda t: {
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": t, "annotations": []}],
            },
            texts,
        ),
        st.builds(
            lambda t, s: {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": t}],
                "encrypted_content": s,
            },
            texts,
            texts,
        ),
        st.builds(
            lambda i, n, a: {
                "type": "function_call",
                "call_id": i,
                "name": n,
                "arguments": a,
                "status": "completed",
            },
            texts,
            texts,
            arguments,
        ),
    ),
    min_size=1,
    max_size=3,
)
outputs = st.lists(
    st.builds(
        lambda i, o: {"type": "function_call_output", "call_id": i, "output": o}, texts, texts
    ),
    min_size=1,
    max_size=2,
)
conversations = st.lists(
    st.one_of(st.tuples(user_item), st.tuples(assistant_items, outputs)), min_size=1, max_size=3
).map(
    lambda turns: [
        item
        for turn in turns
        for group in turn
        for item in (group if isinstance(group, list) else [group])
    ]
)
bodies = st.fixed_dictionaries(
    {"model": texts, "input": conversations},
    optional={
        "max_output_tokens": st.integers(1, 10**5),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "user": texts,
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
        "parallel_tool_calls": st.booleans(),
        "reasoning": st.sampled_from(["minimal", "low", "medium", "high"]).map(
            lambda e: {"effort": e, "summary": "auto"}
        ),
        "tools": st.lists(
            st.builds(
                lambda n: {
                    "type": "function",
                    "name": n,
                    "parameters": {"type": "object", "properties": {}},
                },
                texts,
            ),
            min_size=1,
            max_size=2,
        ),
        "stream": st.booleans(),
    },
)


@settings(max_examples=200, deadline=None)
@given(bodies)
def test_a_responses_body_round_trips_through_canonical(raw: dict[str, Any]) -> None:
    request, dropped = CODEC.decode_request(raw)
    assert set(dropped) <= {"input[].status"}  # the answer's echo: no effect
    encoded = CODEC.encode_request(request)
    again, _ = CODEC.decode_request(encoded)
    assert again == Request(**{**_fields(request), "store": False})
    for key in ("max_output_tokens", "temperature", "top_p", "user", "tool_choice", "tools"):
        assert encoded.get(key) == raw.get(key)


@settings(max_examples=100, deadline=None)
@given(bodies)
def test_a_responses_body_through_chat_keeps_every_turn(raw: dict[str, Any]) -> None:
    request, _ = CODEC.decode_request(raw)
    back, _ = CHAT.decode_request(CHAT.encode_request(request))
    # Chat has no signatures: everything else (turns, calls, results, text) arrives.
    assert back.messages == tuple(
        Message(
            m.role,
            tuple(Reasoning(p.text) if isinstance(p, Reasoning) else p for p in m.parts),
        )
        for m in _chat_turns(request.messages)
    )


def _chat_turns(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """The turns as Chat writes them back: reasoning first, then text, then tool calls."""
    out = []
    for m in messages:
        if m.role != "assistant":
            out.append(m)
            continue
        reasoning = [p.text for p in m.parts if isinstance(p, Reasoning)]
        text = "".join(p.text for p in m.parts if isinstance(p, Text))
        parts: list[Any] = [Reasoning("".join(reasoning))] if reasoning else []
        parts += [Text(text)] if text else []
        parts += [p for p in m.parts if isinstance(p, ToolCall)]
        out.append(Message("assistant", tuple(parts)))
    return tuple(out)


def _fields(request: Request) -> dict[str, Any]:
    return {name: getattr(request, name) for name in Request.__slots__}  # type: ignore[attr-defined]


# -- whole answers ----------------------------------------------------------------------

ANSWER = Response(
    "resp_abc",
    "claude-sonnet-4-5",
    (
        Reasoning("Think.", "sig"),
        RedactedReasoning("opaque"),
        Text("Sunny"),
        Text(" today."),
        Refusal("No more."),
        ToolCall("toolu_1", "w", '{"city":"Paris"}'),
    ),
    FinishReason.TOOL_CALLS,
    Usage(30, 12, 10, 5, 3),
)


def test_an_answer_is_a_response_the_sdk_reads() -> None:
    body = CODEC.encode_response(ANSWER)
    parsed = SDKResponse.model_validate(body)
    assert parsed.id == "resp_abc"
    assert parsed.status == "completed"
    assert [item.type for item in parsed.output] == [
        "reasoning",
        "reasoning",
        "message",
        "function_call",
    ]
    assert parsed.output_text == "Sunny today."
    assert parsed.usage is not None
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (30, 12)
    assert parsed.usage.input_tokens_details.cached_tokens == 10
    assert parsed.usage.output_tokens_details.reasoning_tokens == 3
    assert len({item.id for item in parsed.output}) == 4
    assert parsed.usage.input_tokens_details.cache_write_tokens == 5
    again = CODEC.decode_response(body)
    assert again.parts == (
        Reasoning("Think.", "sig"),
        RedactedReasoning("opaque"),
        Text("Sunny"),
        Text(" today."),
        Refusal("No more."),
        ToolCall("toolu_1", "w", '{"city":"Paris"}'),
    )
    assert again.usage == Usage(30, 12, 10, 5, 3)
    assert again.finish is FinishReason.TOOL_CALLS


def test_an_empty_reasoning_item_sent_back_is_no_part() -> None:
    request, _ = _decode(
        input=[{"role": "user", "content": "Hi."}, {"type": "reasoning", "summary": []}]
    )
    assert request.messages == (Message("user", (Text("Hi."),)),)


def test_a_reasoning_item_with_nothing_in_it_is_no_part() -> None:
    body = CODEC.encode_response(Response("resp_1", "m", (Text("Hi."),), FinishReason.STOP))
    body["output"].insert(0, {"type": "reasoning", "id": "rs_1", "summary": []})
    assert CODEC.decode_response(body).parts == (Text("Hi."),)


@pytest.mark.parametrize(
    ("finish", "status", "reason"),
    [
        (FinishReason.STOP, "completed", None),
        (FinishReason.LENGTH, "incomplete", "max_output_tokens"),
        (FinishReason.CONTENT_FILTER, "incomplete", "content_filter"),
    ],
)
def test_finish_reasons_are_statuses_both_ways(
    finish: FinishReason, status: str, reason: str | None
) -> None:
    answer = Response("resp_1", "m", (Text("Hi."),), finish)
    body = CODEC.encode_response(answer)
    assert body["status"] == status
    assert (body["incomplete_details"] or {}).get("reason") == reason
    assert CODEC.decode_response(body).finish is finish


@pytest.mark.parametrize(
    "body",
    [
        {"status": "failed", "output": []},
        {"status": "incomplete", "incomplete_details": {"reason": "mystery"}, "output": []},
        {"status": "completed", "output": [{"type": "file_search_call", "id": "fs_1"}]},
    ],
)
def test_an_answer_the_client_cannot_read_is_an_error(body: dict[str, Any]) -> None:
    with pytest.raises(UntranslatableResponse):
        CODEC.decode_response(body)


def test_it_is_a_format_whose_answers_are_kept() -> None:
    assert isinstance(CODEC, StoredAnswers)
    assert not isinstance(CHAT, StoredAnswers)
    assert CODEC.issue_id("abc") == "resp_abc"
    assert CODEC.continued({"previous_response_id": "resp_1", "input": "Hi."}) == "resp_1"
    assert CODEC.continued({"input": "Hi."}) is None
    assert CODEC.continued([]) is None
    assert CODEC.deleted_body("resp_1") == {
        "id": "resp_1",
        "object": "response.deleted",
        "deleted": True,
    }


# -- streams ----------------------------------------------------------------------------

EXPECTED: list[StreamEvent] = [
    MessageStart("resp_68c1f0a2b3d4e5f60718293a4b5c6d7e", "gpt-5-2025-08-07"),
    ReasoningDelta("**Checking weather**\n\nThe user wants "),
    ReasoningDelta("Paris — and 東京."),
    ReasoningSignature("gAAAAABowfCkGolden-encrypted=="),
    TextDelta("Checking — "),
    TextDelta("東京 too."),
    ToolCallStart(0, "call_8pXMvdzHsTc3f8mUvWL7Uq0J", "get_weather"),
    ToolCallDelta(0, '{"location":'),
    ToolCallDelta(0, '"Paris"}'),
    ToolCallEnd(0),
    ToolCallStart(1, "call_Q2b.7:x", "get_weather"),
    ToolCallDelta(1, '{"location":"Tokyo"}'),
    ToolCallEnd(1),
    UsageReport(Usage(1200, 45, 1024, None, 20)),
    Finish(FinishReason.TOOL_CALLS),
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


def test_a_stream_without_its_end_is_an_error() -> None:
    raw = GOLDEN.read_bytes()
    events = decode_stream([raw[: raw.index(b"event: response.completed")]])
    assert isinstance(events[-1], StreamError)


@pytest.mark.parametrize(
    ("event", "data", "expected"),
    [
        ("error", {"type": "error", "code": "server_error", "message": "boom"}, 502),
        ("error", {"type": "error", "code": "rate_limit_exceeded", "message": "slow"}, 429),
        (
            "response.failed",
            {"type": "response.failed", "response": {"error": {"code": "x", "message": "boom"}}},
            502,
        ),
    ],
)
def test_a_failure_event_is_a_canonical_error(
    event: str, data: dict[str, Any], expected: int
) -> None:
    decoder = CODEC.stream_decoder()
    decoder.feed(
        "response.created", {"type": "response.created", "response": {"id": "r", "model": "m"}}
    )
    (error,) = decoder.feed(event, data)
    assert isinstance(error, StreamError)
    assert error.status == expected
    assert decoder.end() == []


def test_a_whole_item_without_deltas_still_says_its_content() -> None:
    decoder = CODEC.stream_decoder()
    item = {"type": "function_call", "call_id": "c", "name": "n", "arguments": ""}
    decoder.feed("", {"type": "response.output_item.added", "output_index": 0, "item": item})
    done = {**item, "arguments": '{"a":1}'}
    events = decoder.feed(
        "", {"type": "response.output_item.done", "output_index": 0, "item": done}
    )
    assert events == [ToolCallDelta(0, '{"a":1}'), ToolCallEnd(0)]
    reasoning = {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "T."}],
        "encrypted_content": "e",
    }
    events = decoder.feed(
        "", {"type": "response.output_item.done", "output_index": 1, "item": reasoning}
    )
    assert events == [ReasoningDelta("T."), ReasoningSignature("e")]


def _replay(out: bytes) -> tuple[list[Any], ResponseStreamState[Any]]:
    """The encoder's bytes as the openai SDK parses and accumulates them."""
    parsed = SSEParser().feed(out)
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    events = []
    for sse in parsed:
        event = EVENTS.validate_json(sse.data)
        assert sse.event == event.type
        state.handle_event(event)
        events.append(event)
    return events, state


def _encode(events: list[StreamEvent], request: Request | None = None) -> bytes:
    encoder = CODEC.stream_encoder(request or Request("m", (), stream=True))
    return b"".join(encoder.feed(e) for e in events) + encoder.close()


CHAT_STREAM: list[StreamEvent] = [
    MessageStart("resp_golden", "claude"),
    ReasoningDelta("Let me "),
    ReasoningDelta("think."),
    ReasoningSignature("sig-1"),
    RedactedReasoningBlock("opaque"),
    TextDelta("Checking — "),
    RefusalDelta("not that."),
    TextDelta("東京 too."),
    ToolCallStart(0, "toolu_1", "get_weather"),
    ToolCallDelta(0, '{"location": "Pa'),
    ToolCallDelta(0, 'ris"}'),
    ToolCallEnd(0),
    ToolCallStart(1, "toolu_2", "now"),
    ToolCallEnd(1),
    Finish(FinishReason.TOOL_CALLS),
    UsageReport(Usage(1200, 45, 1024, None, 20)),
]


def test_the_encoder_writes_the_event_sequence_the_sdk_accumulates() -> None:
    events, state = _replay(_encode(CHAT_STREAM))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    for name in (
        "response.reasoning_summary_text.delta",
        "response.content_part.added",
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ):
        assert name in kinds, name
    final = events[-1].response
    assert final.id == "resp_golden"
    assert final.usage.input_tokens == 1200
    assert final.usage.input_tokens_details.cached_tokens == 1024
    assert [item.type for item in final.output] == [
        "reasoning",
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    assert final.output[0].summary[0].text == "Let me think."
    assert final.output[0].encrypted_content == "sig-1"
    assert final.output[1].encrypted_content == "opaque"
    message = final.output[2]
    assert [p.type for p in message.content] == ["output_text", "refusal", "output_text"]
    assert final.output[3].arguments == '{"location": "Paris"}'
    assert final.output[4].arguments == "{}"
    # The SDK's own accumulation agrees with the final response.
    snapshot = state._completed_response
    assert snapshot is not None
    assert snapshot.output_text == "Checking — 東京 too."


def test_the_encoded_stream_decodes_back_to_the_same_content() -> None:
    again = decode_stream([_encode(CHAT_STREAM)])
    assert again[0] == CHAT_STREAM[0]
    content = [e for e in again if not isinstance(e, UsageReport | Finish | MessageStart)]
    expected = [e for e in CHAT_STREAM if not isinstance(e, UsageReport | Finish | MessageStart)]
    # Tool calls without arguments are written with "{}"; refusals stay refusals.
    expected.insert(expected.index(ToolCallEnd(1)), ToolCallDelta(1, "{}"))
    assert content == expected
    assert again[-1] == Finish(FinishReason.TOOL_CALLS)


def test_a_length_stop_is_response_incomplete() -> None:
    events, _ = _replay(
        _encode([MessageStart("resp_1", "m"), TextDelta("Hi"), Finish(FinishReason.LENGTH)])
    )
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_an_error_mid_stream_is_an_error_event_then_failed_and_never_completed() -> None:
    encoder = CODEC.stream_encoder(Request("m", (), stream=True))
    out = encoder.feed(MessageStart("resp_1", "m")) + encoder.feed(TextDelta("Hi"))
    out += encoder.feed(StreamError(503, "overloaded", "busy")) + encoder.close()
    kinds = [sse.event for sse in SSEParser().feed(out)]
    assert kinds[-2:] == ["error", "response.failed"]
    assert "response.completed" not in kinds
    events, _ = _replay(out)
    assert events[-2].message == "busy"
    assert events[-1].response.error.message == "busy"


def test_a_stream_that_ends_unfinished_ends_failed() -> None:
    encoder = CODEC.stream_encoder(Request("m", (), stream=True))
    out = (
        encoder.feed(MessageStart("resp_1", "m")) + encoder.feed(TextDelta("Hi")) + encoder.close()
    )
    assert [sse.event for sse in SSEParser().feed(out)][-2:] == ["error", "response.failed"]


def test_the_golden_stream_translated_to_chat_and_anthropic() -> None:
    events = decode_stream([GOLDEN.read_bytes()])
    chat = CHAT.stream_encoder(Request("m", (), stream=True, stream_usage=True))
    out = b"".join(chat.feed(e) for e in events) + chat.close()
    assert b'"reasoning_content":"**Checking weather**' in out
    assert out.endswith(b"data: [DONE]\n\n")
    anthropic = ANTHROPIC.stream_encoder(Request("m", (), stream=True))
    out = b"".join(anthropic.feed(e) for e in events) + anthropic.close()
    assert b'"signature":"gAAAAABowfCkGolden-encrypted=="' in out
    assert b'"stop_reason":"tool_use"' in out


# -- errors -----------------------------------------------------------------------------


def test_errors_are_openai_s() -> None:
    status, body = CODEC.encode_error(529, "overloaded", "busy")
    assert status == 503
    assert body["error"]["message"] == "busy"
    error = CODEC.decode_error(429, {"error": {"message": "slow", "type": "rate_limit_error"}})
    assert error == StreamError(429, "rate_limit", "slow")


# -- any canonical stream, as the SDK reads it ----------------------------------------------

words = st.text(st.characters(min_codepoint=32, max_codepoint=0x3000), min_size=1, max_size=6)


@st.composite
def canonical_streams(draw: st.DrawFn) -> list[StreamEvent]:
    """A well-formed canonical stream: a start, runs of content, tool calls, a finish."""
    events: list[StreamEvent] = [MessageStart("resp_prop", "m")]
    calls = 0
    for kind in draw(
        st.lists(
            st.sampled_from(["text", "refusal", "reasoning", "signed", "redacted", "call"]),
            max_size=6,
        )
    ):
        pieces = draw(st.lists(words, min_size=1, max_size=3))
        if kind == "text":
            events += [TextDelta(p) for p in pieces]
        elif kind == "refusal":
            events += [RefusalDelta(p) for p in pieces]
        elif kind in ("reasoning", "signed"):
            events += [ReasoningDelta(p) for p in pieces]
            if kind == "signed":
                events.append(ReasoningSignature(draw(words)))
        elif kind == "redacted":
            events.append(RedactedReasoningBlock(draw(words)))
        else:
            events.append(ToolCallStart(calls, f"call_{calls}", draw(words)))
            events += [ToolCallDelta(calls, p) for p in pieces]
            events.append(ToolCallEnd(calls))
            calls += 1
    # Responses says "tool calls" by having them: without any, the answer stopped otherwise.
    others = [FinishReason.STOP, FinishReason.LENGTH, FinishReason.CONTENT_FILTER]
    finish = FinishReason.TOOL_CALLS if calls else draw(st.sampled_from(others))
    return [*events, Finish(finish), UsageReport(Usage(draw(st.integers(0, 99)), 7))]


@settings(max_examples=150, deadline=None)
@given(canonical_streams())
def test_any_canonical_stream_is_one_the_sdk_accumulates(events: list[StreamEvent]) -> None:
    sdk_events, state = _replay(_encode(events))
    assert [e.sequence_number for e in sdk_events] == list(range(len(sdk_events)))
    final = sdk_events[-1]
    assert final.type in ("response.completed", "response.incomplete")
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert final.response.output_text == text
    calls = [item for item in final.response.output if item.type == "function_call"]
    assert [c.call_id for c in calls] == [e.id for e in events if isinstance(e, ToolCallStart)]
    # Decoded again, the stream says the same (a call without arguments gets "{}").
    again = decode_stream([_encode(events)])
    assert "".join(e.text for e in again if isinstance(e, TextDelta)) == text
    assert [e for e in again if isinstance(e, Finish)] == [
        e for e in events if isinstance(e, Finish)
    ]
    if final.type == "response.completed":
        assert state._completed_response is not None


# -- what the Codex CLI sends ---------------------------------------------------------------

CODEX_TURN = json.loads((GOLDEN.parent / "codex_tool_turn.json").read_text(encoding="utf-8"))


def test_a_codex_tool_turn_decodes_whole() -> None:
    """A second turn as the Codex CLI (0.169) sent it: developer messages, a namespace
    of tools, the reasoning item it was given with its encrypted_content, the call and
    its output, and its own metadata."""
    request, dropped = CODEC.decode_request(CODEX_TURN)
    assert set(dropped) == {
        "client_metadata",
        "prompt_cache_key",
        "input[].id",
        "input[].status",
    }
    assert request.store is False
    assert request.stream is True
    assert request.system[0].text.startswith("You are a coding agent running in the Codex CLI")
    assistant = next(m for m in request.messages if m.role == "assistant")
    reasoning, call = assistant.parts
    assert reasoning == Reasoning(
        "Let me think this through, one step at a time.",
        "ZmFrZV3vzl7bG2F+GMHaazOla/1KdmUB3jp7jaqgPo4VYbtj",
    )
    assert isinstance(call, ToolCall)
    assert (call.id, call.name) == ("call_fake3_0", "exec_command")
    (result,) = request.messages[-1].parts
    assert isinstance(result, ToolResult)
    assert result.call_id == "call_fake3_0"
    assert [tool.name for tool in request.tools] == [
        "exec_command",
        "view_image",
        "multi_agent_v1--close_agent",
        "multi_agent_v1--resume_agent",
    ]
    # The namespace's description leads each of its functions'.
    assert request.tools[2].description is not None
    assert request.tools[2].description.startswith("Tools for spawning and managing sub-agents.")
    # And Anthropic gets a body it accepts: signed thinking first in the tool turn.
    body = ANTHROPIC.encode_request(request)
    turn = next(m for m in body["messages"] if m["role"] == "assistant")
    assert [block["type"] for block in turn["content"]] == ["thinking", "tool_use"]
    assert turn["content"][0]["signature"] == reasoning.signature


NAMESPACED: Any = {
    "type": "namespace",
    "name": "crm",
    "description": "Customer records.",
    "tools": [{"type": "function", "name": "lookup", "parameters": WEATHER}],
}


def test_a_namespace_is_flat_tools_there_and_a_namespaced_call_back() -> None:
    request, _ = _decode(
        tools=[NAMESPACED], tool_choice={"type": "function", "name": "lookup", "namespace": "crm"}
    )
    assert request.tools == (Tool("crm--lookup", "Customer records.", WEATHER),)
    assert request.tool_choice == ToolChoice("tool", "crm--lookup")
    assert ANTHROPIC.encode_request(request)["tools"][0]["name"] == "crm--lookup"
    # The provider calls the flat name; the client sees its namespace's function.
    answer = Response(
        "resp_1", "m", (ToolCall("c1", "crm--lookup", "{}"),), FinishReason.TOOL_CALLS
    )
    (item,) = SDKResponse.model_validate(CODEC.encode_response(answer)).output
    assert isinstance(item, ResponseFunctionToolCall)
    assert (item.namespace, item.name) == ("crm", "lookup")
    events, _ = _replay(
        _encode(
            [
                MessageStart("resp_1", "m"),
                ToolCallStart(0, "c1", "crm--lookup"),
                ToolCallEnd(0),
                Finish(FinishReason.TOOL_CALLS),
            ]
        )
    )
    added = next(e for e in events if e.type == "response.output_item.added")
    assert (added.item.namespace, added.item.name) == ("crm", "lookup")
    # Sent back, the call is the flat name again.
    item_json = item.model_dump(exclude_none=True)
    again, _ = _decode(input=[{"role": "user", "content": "Hi."}, item_json], tools=[NAMESPACED])
    assert again.messages[1].parts == (ToolCall("c1", "crm--lookup", "{}"),)


@pytest.mark.parametrize(
    ("tools", "name"),
    [
        ([{"type": "function", "name": "a--b"}], "tools[0].name"),
        ([{**NAMESPACED, "name": "c--rm"}], "tools[0].name"),
        (
            [{**NAMESPACED, "tools": [{"type": "function", "name": "x--y"}]}],
            "tools[0].tools[0].name",
        ),
        (
            [{**NAMESPACED, "tools": [{"type": "custom", "name": "patch"}]}],
            "tools[0].tools[0].type",
        ),
    ],
)
def test_a_name_that_would_be_ambiguous_is_refused(tools: Any, name: str) -> None:
    with pytest.raises(Unsupported) as refused:
        _decode(tools=tools)
    assert refused.value.field == name


def test_input_items_are_paged_as_the_api_pages_them() -> None:
    turns = (
        Message("user", (Text("Hi."),)),
        Message("assistant", (ToolCall("c1", "look", "{}"),)),
        Message("user", (ToolResult("c1", (Text("Found."),)),)),
    )
    page = CODEC.input_items("resp_abc", (Text("Be brief."),), turns, "")
    assert [item["type"] for item in page["data"]] == [
        "function_call_output",
        "function_call",
        "message",
        "message",
    ]
    assert page["has_more"] is False
    assert (page["first_id"], page["last_id"]) == (page["data"][0]["id"], page["data"][-1]["id"])
    first = CODEC.input_items("resp_abc", (), turns, "order=asc&limit=2")
    assert [item["type"] for item in first["data"]] == ["message", "function_call"]
    assert first["has_more"] is True
    rest = CODEC.input_items("resp_abc", (), turns, f"order=asc&after={first['last_id']}")
    assert [item["type"] for item in rest["data"]] == ["function_call_output"]
    assert rest["has_more"] is False
    for query in ("order=sideways", "limit=0", "limit=101", "after=nope"):
        with pytest.raises(BadRequest):
            CODEC.input_items("resp_abc", (), turns, query)
