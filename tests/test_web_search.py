"""Built-in web search through the gateway (provider_proxy.dialects._web_search).

Codec tables per direction (a client's search tool in, the provider's tool
out, the answer's search call and citations back), refusals named, golden
streams of Anthropic's and Gemini's searches decoded at every split and
written for each client format, and real SDKs through a real server against
the fake provider, which runs the search as the real APIs do: the ``openai``
SDK's Responses API (whole and streamed, and continued by
``previous_response_id``) on Claude and Gemini, the OpenAI Agents SDK's
``WebSearchTool``, the ``anthropic`` SDK's web search tool on Gemini, and a
Chat client's ``web_search_options`` on Claude.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import anthropic
import anyio
import httpx
import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, WebSearchTool, set_tracing_disabled
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent
from google import genai
from google.genai import types as genai_types
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.chat import ChatCompletion
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from provider_proxy import Guards, make_asgi_app
from provider_proxy.adapters import (
    AnthropicAdapter,
    GeminiAdapter,
    OpenAIAdapter,
    OpenAICompatibleAdapter,
)
from provider_proxy.dialects import (
    AnthropicMessagesCodec,
    Dialect,
    GeminiCodec,
    OpenAIChatCodec,
    OpenAIResponses,
    OpenAIResponsesCodec,
)
from provider_proxy.dialects import _web_search as ws
from provider_proxy.dialects.canonical import (
    Citation,
    Cited,
    Finish,
    FinishReason,
    Message,
    MessageStart,
    Request,
    Response,
    SearchResult,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    Unsupported,
    Usage,
    UsageReport,
    UserLocation,
    WebSearch,
    WebSearchCall,
    WebSearchDone,
)
from provider_proxy.observe import SSEParser
from provider_proxy.testing import FakeUpstream
from provider_proxy.testing import _fake_search as fake_search

from .conftest import ANTHROPIC_KEY, OPENAI_KEY
from .servers import ServerThread, serve

GOLDEN = Path(__file__).parent / "golden"
RESPONSES, ANTHROPIC = OpenAIResponsesCodec(), AnthropicMessagesCodec()
GEMINI, CHAT = GeminiCodec(), OpenAIChatCodec()
CLAUDE, FLASH, LOCAL = "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "local/qwen3"
GEMINI_KEY = "gemini-test-key-0123456789"
QUESTION = "What is the weather in Paris?"
EVENTS: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
ANTHROPIC_EVENTS: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)


def _responses(**fields: Any) -> Request:
    request, _ = RESPONSES.decode_request({"model": "m", "input": "Hi.", **fields})
    return request


def _anthropic(**fields: Any) -> Request:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi."}]}
    request, _ = ANTHROPIC.decode_request({**body, **fields})
    return request


# -- the tool, client side ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ({"type": "web_search"}, WebSearch()),
        ({"type": "web_search_preview"}, WebSearch()),
        ({"type": "web_search_2025_08_26", "search_context_size": "medium"}, WebSearch()),
        (
            {
                "type": "web_search",
                "filters": {"allowed_domains": ["example.com"]},
                "search_context_size": "high",
                "user_location": {"type": "approximate", "city": "Paris", "country": "FR"},
            },
            WebSearch(
                allowed_domains=("example.com",),
                user_location=UserLocation(city="Paris", country="FR"),
                context_size="high",
            ),
        ),
    ],
)
def test_a_responses_web_search_tool_is_canonical_web_search(
    tool: dict[str, Any], expected: WebSearch
) -> None:
    request = _responses(tools=[tool, {"type": "function", "name": "f"}])
    assert request.web_search == expected
    assert [t.name for t in request.tools] == ["f"]


def test_an_anthropic_web_search_tool_is_canonical_web_search() -> None:
    tool = {
        "type": "web_search_20250305",
        "name": "web_search",
        "max_uses": 3,
        "blocked_domains": ["spam.example"],
        "user_location": {"type": "approximate", "timezone": "Europe/Paris"},
    }
    request = _anthropic(tools=[tool])
    assert request.web_search == WebSearch(
        max_uses=3,
        blocked_domains=("spam.example",),
        user_location=UserLocation(timezone="Europe/Paris"),
    )
    assert request.tools == ()


def test_chat_web_search_options_and_gemini_google_search_are_canonical_web_search() -> None:
    options = {
        "search_context_size": "low",
        "user_location": {"type": "approximate", "approximate": {"city": "Lyon"}},
    }
    request, _ = CHAT.decode_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Hi."}],
            "web_search_options": options,
        }
    )
    assert request.web_search == WebSearch(
        user_location=UserLocation(city="Lyon"), context_size="low"
    )
    for key in ("googleSearch", "google_search"):
        body = {"model": "m", "contents": [{"role": "user", "parts": [{"text": "Hi."}]}]}
        request, _ = GEMINI.decode_request({**body, "tools": [{key: {}}]})
        assert request.web_search == WebSearch(), key


@pytest.mark.parametrize(
    ("decode", "fields", "field"),
    [
        (_responses, {"tools": [{"type": "file_search"}]}, "tools[0].type"),
        (_responses, {"tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
        (_responses, {"tools": [{"type": "computer_use_preview"}]}, "tools[0].type"),
        (_responses, {"tools": [{"type": "image_generation"}]}, "tools[0].type"),
        (_responses, {"tools": [{"type": "mcp"}]}, "tools[0].type"),
        (
            _responses,
            {"tools": [{"type": "web_search"}, {"type": "web_search_preview"}]},
            "tools[1].type",
        ),
        (
            _responses,
            {"tools": [{"type": "web_search", "external_web_access": False}]},
            "tools[0].external_web_access",
        ),
        (
            _responses,
            {"tools": [{"type": "web_search", "user_location": {"type": "exact"}}]},
            "tools[0].user_location.type",
        ),
        (
            _responses,
            {"tools": [{"type": "web_search", "search_context_size": "huge"}]},
            "tools[0].search_context_size",
        ),
        (
            _anthropic,
            {"tools": [{"type": "web_search_20250305", "name": "search"}]},
            "tools[0].name",
        ),
        (
            _anthropic,
            {"tools": [{"type": "code_execution_20250522", "name": "code_execution"}]},
            "tools[0].type",
        ),
    ],
)
def test_what_does_not_translate_is_refused_naming_it(
    decode: Any, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(Unsupported) as refused:
        decode(**fields)
    assert refused.value.field == field


# -- the tool, provider side -------------------------------------------------------------

FULL = WebSearch(
    max_uses=2,
    allowed_domains=("example.com",),
    user_location=UserLocation(city="Paris", country="FR"),
    context_size="high",
)


def test_each_provider_gets_its_own_search_tool() -> None:
    request = Request("m", (Message("user", (Text("Hi."),)),), web_search=FULL)
    assert ANTHROPIC.encode_request(request)["tools"] == [
        {
            "type": "web_search_20250305",
            "name": "web_search",
            "max_uses": 2,
            "allowed_domains": ["example.com"],
            "user_location": {"type": "approximate", "city": "Paris", "country": "FR"},
        }
    ]
    assert ANTHROPIC.dropped_by_encoding(request) == ("web_search.search_context_size",)
    plain = Request("m", request.messages, web_search=WebSearch(context_size="low"))
    assert GEMINI.encode_request(plain)["tools"] == [{"googleSearch": {}}]
    assert GEMINI.dropped_by_encoding(plain) == ("web_search.search_context_size",)
    for_responses = Request("m", request.messages, web_search=WebSearch(
        allowed_domains=("example.com",), user_location=UserLocation(region="IDF"),
        context_size="low",
    ))  # fmt: skip
    assert RESPONSES.encode_request(for_responses)["tools"] == [
        {
            "type": "web_search",
            "filters": {"allowed_domains": ["example.com"]},
            "user_location": {"type": "approximate", "region": "IDF"},
            "search_context_size": "low",
        }
    ]
    assert RESPONSES.dropped_by_encoding(for_responses) == ()


@pytest.mark.parametrize(
    ("codec", "search", "field"),
    [
        (GEMINI, WebSearch(max_uses=1), "web_search.max_uses"),
        (GEMINI, WebSearch(allowed_domains=("a.example",)), "web_search.allowed_domains"),
        (GEMINI, WebSearch(blocked_domains=("a.example",)), "web_search.blocked_domains"),
        (GEMINI, WebSearch(user_location=UserLocation(city="Paris")), "web_search.user_location"),
        (RESPONSES, WebSearch(max_uses=1), "web_search.max_uses"),
        (RESPONSES, WebSearch(blocked_domains=("a.example",)), "web_search.blocked_domains"),
        (CHAT, WebSearch(), "web_search"),
    ],
)
def test_an_option_the_provider_cannot_honour_is_refused_naming_it(
    codec: Any, search: WebSearch, field: str
) -> None:
    request = Request("m", (Message("user", (Text("Hi."),)),), web_search=search)
    with pytest.raises(Unsupported) as refused:
        codec.encode_request(request)
    assert refused.value.field == field


def test_the_option_table_covers_every_option_at_every_target() -> None:
    options = {"max_uses", "allowed_domains", "blocked_domains", "user_location"}
    for target, rules in ws.OPTION_RULES.items():
        assert set(rules) == {*options, "search_context_size"}, target


# -- answers -----------------------------------------------------------------------------

FAKE_CONTENT = fake_search.anthropic_content("srvtoolu_fake1", "paris weather")


def _anthropic_answer(content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": fake_search.anthropic_usage(12),
    }


def test_an_anthropic_search_is_one_canonical_call_and_cited_texts() -> None:
    response = ANTHROPIC.decode_response(_anthropic_answer(FAKE_CONTENT))
    call, intro, first, second = response.parts
    assert isinstance(call, WebSearchCall)
    assert call.id == "srvtoolu_fake1"
    assert call.queries == ("paris weather",)
    assert [r.url for r in call.results] == [r["url"] for r in fake_search.results("paris weather")]
    assert all(r.opaque for r in call.results)
    assert isinstance(intro, Text)
    assert intro.citations == ()
    assert isinstance(first, Text)
    assert first.citations[0].url == call.results[0].url
    assert first.citations[0].opaque is not None
    assert isinstance(second, Text)
    assert second.citations[0].url == call.results[1].url


def test_a_responses_client_sees_a_web_search_call_and_url_citations() -> None:
    response = ANTHROPIC.decode_response(_anthropic_answer(FAKE_CONTENT))
    body = RESPONSES.encode_response(response)
    sdk = SDKResponse.model_validate(body)
    search, message = sdk.output
    assert search.type == "web_search_call"
    assert search.status == "completed"
    assert search.action.type == "search"
    assert search.action.query == "paris weather"
    assert [s.url for s in search.action.sources or ()] == [
        r["url"] for r in fake_search.results("paris weather")
    ]
    assert message.type == "message"
    texts = [part for part in message.content if part.type == "output_text"]
    assert [t.text for t in texts] == [fake_search.INTRO, *fake_search.SENTENCES]
    cited = texts[1].annotations[0]
    assert cited.type == "url_citation"
    assert (cited.start_index, cited.end_index) == (0, len(fake_search.SENTENCES[0]))
    assert cited.url == search.action.sources[0].url  # type: ignore[index]


def test_the_kept_search_goes_back_to_anthropic_exactly_as_it_came() -> None:
    response = ANTHROPIC.decode_response(_anthropic_answer(FAKE_CONTENT))
    turn = Message("assistant", response.parts)
    request = Request("m", (Message("user", (Text("Q"),)), turn, Message("user", (Text("And?"),))))
    body = ANTHROPIC.encode_request(request)
    assert body["messages"][1]["content"] == FAKE_CONTENT
    assert (
        fake_search.anthropic_refusal(
            0, {"type": "web_search_20250305", "name": "web_search"}, body["messages"]
        )
        is None
    )
    assert ANTHROPIC.dropped_by_encoding(request) == ()


def test_a_search_without_anthropics_data_is_left_out_and_named() -> None:
    items = RESPONSES.encode_response(ANTHROPIC.decode_response(_anthropic_answer(FAKE_CONTENT)))
    request, _ = RESPONSES.decode_request(
        {"model": "m", "input": [{"role": "user", "content": "Q"}, *items["output"]]}
    )
    call = request.messages[1].parts[0]
    assert isinstance(call, WebSearchCall)
    assert call.queries == ("paris weather",)
    body = ANTHROPIC.encode_request(request)
    content = body["messages"][1]["content"]
    assert [block["type"] for block in content] == ["text", "text", "text"]
    assert "citations" not in json.dumps(content)  # no encrypted_index to send back
    assert ANTHROPIC.dropped_by_encoding(request) == ("web_search_call",)


def test_gemini_grounding_is_a_call_and_citations_at_character_offsets() -> None:
    pieces, metadata = fake_search.gemini_answer("tokyo")
    body = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "".join(pieces)}]},
                "finishReason": "STOP",
                "groundingMetadata": metadata,
            }
        ],
        "responseId": "r1",
        "modelVersion": "gemini-2.5-flash",
    }
    response = GEMINI.decode_response(body)
    call, text = response.parts
    assert isinstance(call, WebSearchCall)
    assert call.queries == ("tokyo",)
    assert isinstance(text, Text)
    assert [text.text[c.start or 0 : c.end] for c in text.citations] == list(fake_search.SENTENCES)
    assert response.finish is FinishReason.STOP
    again = GEMINI.decode_response(body)
    assert again.parts[0] == call  # a stable id for the same answer


def test_a_chat_client_gets_url_citation_annotations_on_the_message() -> None:
    response = ANTHROPIC.decode_response(_anthropic_answer(FAKE_CONTENT))
    sdk = ChatCompletion.model_validate(CHAT.encode_response(response))
    message = sdk.choices[0].message
    assert message.content == fake_search.INTRO + "".join(fake_search.SENTENCES)
    spans = [
        message.content[a.url_citation.start_index : a.url_citation.end_index]
        for a in message.annotations or ()
    ]
    assert spans == list(fake_search.SENTENCES)


def test_an_anthropic_client_gets_server_tool_blocks_from_gemini() -> None:
    pieces, metadata = fake_search.gemini_answer("tokyo")
    candidate = {
        "content": {"role": "model", "parts": [{"text": "".join(pieces)}]},
        "finishReason": "STOP",
        "groundingMetadata": metadata,
    }
    response = GEMINI.decode_response({"candidates": [candidate], "responseId": "r1"})
    message = AnthropicMessage.model_validate(ANTHROPIC.encode_response(response))
    use, result, text = message.content
    assert use.type == "server_tool_use"
    assert use.input == {"query": "tokyo"}
    assert result.type == "web_search_tool_result"
    assert result.tool_use_id == use.id
    assert isinstance(result.content, list)
    assert [r.url for r in result.content] == [r["url"] for r in fake_search.results("tokyo")]
    assert text.type == "text"
    assert [c.cited_text for c in text.citations or ()] == list(fake_search.SENTENCES)


def test_a_gemini_client_gets_grounding_metadata_at_byte_offsets() -> None:
    response = ANTHROPIC.decode_response(_anthropic_answer(FAKE_CONTENT))
    body = GEMINI.encode_response(response)
    metadata = body["candidates"][0]["groundingMetadata"]
    text = "".join(p["text"] for p in body["candidates"][0]["content"]["parts"])
    assert metadata["webSearchQueries"] == ["paris weather"]
    raw = text.encode()
    spans = [
        raw[s["segment"]["startIndex"] : s["segment"]["endIndex"]].decode()
        for s in metadata["groundingSupports"]
    ]
    assert spans == list(fake_search.SENTENCES)
    again = GEMINI.decode_response(body)
    assert isinstance(again.parts[0], WebSearchCall)


# -- golden streams ----------------------------------------------------------------------

NYC = "https://www.timeanddate.com/weather/usa/new-york/historic"
ANTHROPIC_EXPECTED: list[StreamEvent] = [
    MessageStart("msg_01W8uGolden", "claude-sonnet-4-5-20250929"),
    UsageReport(Usage(2209, 3, 0, 0)),
    TextDelta("I'll search — "),
    WebSearchDone(
        WebSearchCall(
            "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
            ("weather NYC today",),
            (
                SearchResult(
                    NYC,
                    "Weather in New York City in May 2025",
                    "1 week ago",
                    "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3Y2MSDGolden1",
                ),
                SearchResult(
                    "https://weather.example/tokyo", "東京 forecast", None, "EpMgCioGolden2"
                ),
            ),
        )
    ),
    TextDelta("Right now: "),
    TextDelta("it is partly cloudy, "),
    TextDelta("72°F."),
    Cited(
        Citation(
            NYC,
            "Weather in New York City in May 2025",
            "Partly cloudy, 72°F",
            11,
            37,
            "Eo8BCioIAhgBIiQyYjQGolden",
        )
    ),
    Finish(FinishReason.STOP),
    UsageReport(Usage(10682, 510, 0, 0, web_searches=1)),
]

REDIRECT = "https://vertexaisearch.cloud.google.com/grounding-api-redirect/AUZIYQGolden"
GEMINI_CALL = WebSearchCall(
    ws.gemini_call_id("Gm9FaNGoldenSearch"),
    ("Tokyo weather now",),
    (SearchResult(REDIRECT + "1", "weather.com"), SearchResult(REDIRECT + "2", "jma.go.jp")),
)
GEMINI_EXPECTED: list[StreamEvent] = [
    MessageStart("Gm9FaNGoldenSearch", "gemini-2.5-flash"),
    TextDelta("Tokyo — "),
    UsageReport(Usage(9, 3)),
    TextDelta("it is 18°C and clear. "),
    UsageReport(Usage(9, 4)),
    TextDelta("Rain is due later."),
    Cited(Citation(REDIRECT + "1", "weather.com", "it is 18°C and clear.", 8, 29)),
    Cited(Citation(REDIRECT + "2", "jma.go.jp", "it is 18°C and clear.", 8, 29)),
    Cited(Citation(REDIRECT + "2", "jma.go.jp", "Rain is due later.", 30, 48)),
    WebSearchDone(GEMINI_CALL),
    Finish(FinishReason.STOP),
    UsageReport(Usage(129, 14, web_searches=1)),  # a grounded answer
]


BBC = "https://www.bbc.com/weather/2988507"
RESPONSES_EXPECTED: list[StreamEvent] = [
    MessageStart("resp_68d0a1b2c3d4e5f60718293a4b5c6d7e8f", "gpt-5-2025-08-07"),
    WebSearchDone(
        WebSearchCall(
            "ws_68d0a1b3e4f5a6b7c8d9e0f1a2b3c4d5",
            ("Paris weather today",),
            (SearchResult(BBC), SearchResult("https://météo.example/paris")),
        )
    ),
    TextDelta("Paris: 21°C — sunny ("),
    TextDelta(f"[bbc.com]({BBC}))."),
    Cited(Citation(BBC, "Paris - BBC Weather", f"([bbc.com]({BBC}))", 20, 68)),
    UsageReport(Usage(8470, 212, 0, None, 128, web_searches=1)),
    Finish(FinishReason.STOP),
]


def _decode(codec: Any, chunks: list[bytes]) -> list[StreamEvent]:
    parser, decoder = SSEParser(), codec.stream_decoder()
    events: list[StreamEvent] = []
    for chunk in chunks:
        for sse in parser.feed(chunk):
            events.extend(decoder.feed_text(sse.event, sse.data))
    return events + decoder.end()


@pytest.mark.parametrize(
    ("codec", "name", "expected"),
    [
        (ANTHROPIC, "anthropic_web_search.sse", ANTHROPIC_EXPECTED),
        (GEMINI, "gemini_grounding.sse", GEMINI_EXPECTED),
        (RESPONSES, "openai_responses_web_search.sse", RESPONSES_EXPECTED),
    ],
)
def test_a_golden_search_stream_decodes_at_every_split(
    codec: Any, name: str, expected: list[StreamEvent]
) -> None:
    raw = (GOLDEN / name).read_bytes()
    assert _decode(codec, [raw]) == expected
    for cut in range(1, len(raw)):
        assert _decode(codec, [raw[:cut], raw[cut:]]) == expected, cut


def _responses_replay(out: bytes) -> tuple[list[Any], SDKResponse]:
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    events = []
    for sse in SSEParser().feed(out):
        event = EVENTS.validate_json(sse.data)
        assert sse.event == event.type
        state.handle_event(event)
        events.append(event)
    return events, events[-1].response


def _encoded(codec: Any, events: list[StreamEvent], request: Request | None = None) -> bytes:
    encoder = codec.stream_encoder(request or Request("m", (), stream=True))
    return b"".join(encoder.feed(e) for e in events) + encoder.close()


def test_a_responses_client_streams_the_search_call_and_its_annotations() -> None:
    events, final = _responses_replay(_encoded(RESPONSES, ANTHROPIC_EXPECTED))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    for stage in ("in_progress", "searching", "completed"):
        assert f"response.web_search_call.{stage}" in kinds
    assert kinds.count("response.output_text.annotation.added") == 1
    assert [item.type for item in final.output] == ["message", "web_search_call", "message"]
    search = final.output[1]
    assert search.action.query == "weather NYC today"
    assert [s.url for s in search.action.sources] == [NYC, "https://weather.example/tokyo"]
    text = final.output[2].content[0]
    assert text.text == "Right now: it is partly cloudy, 72°F."
    (cited,) = text.annotations
    assert text.text[cited.start_index : cited.end_index] == "it is partly cloudy, 72°F."
    assert cited.url == NYC


def test_a_responses_stream_from_gemini_puts_the_citations_on_the_text() -> None:
    _, final = _responses_replay(_encoded(RESPONSES, GEMINI_EXPECTED))
    assert [item.type for item in final.output] == ["message", "web_search_call"]
    text = final.output[0].content[0]
    spans = [text.text[a.start_index : a.end_index] for a in text.annotations]
    assert spans == ["it is 18°C and clear.", "it is 18°C and clear.", "Rain is due later."]
    assert final.output[1].action.query == "Tokyo weather now"


def test_a_responses_provider_stream_decodes_back_to_the_same_search() -> None:
    out = _encoded(RESPONSES, ANTHROPIC_EXPECTED)
    decoded = _decode(RESPONSES, [out])
    calls = [e.call for e in decoded if isinstance(e, WebSearchDone)]
    assert [c.queries for c in calls] == [("weather NYC today",)]
    cites = [e.citation for e in decoded if isinstance(e, Cited)]
    assert [(c.url, c.start, c.end) for c in cites] == [(NYC, 11, 37)]


def test_an_anthropic_client_streams_server_tool_blocks_with_citations() -> None:
    out = _encoded(ANTHROPIC, GEMINI_EXPECTED)
    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for sse in SSEParser().feed(out):
        snapshot = accumulate_event(
            event=ANTHROPIC_EVENTS.validate_json(sse.data),
            current_snapshot=snapshot,
            json_bufs=buffers,
        )
    assert snapshot is not None
    kinds = [block.type for block in snapshot.content]
    assert kinds == ["text", "server_tool_use", "web_search_tool_result"]
    assert snapshot.content[0].text == "Tokyo — it is 18°C and clear. Rain is due later."
    assert [c.url for c in snapshot.content[0].citations] == [
        REDIRECT + "1",
        REDIRECT + "2",
        REDIRECT + "2",
    ]
    assert snapshot.content[1].input == {"query": "Tokyo weather now"}
    assert [r.url for r in snapshot.content[2].content] == [REDIRECT + "1", REDIRECT + "2"]
    assert _decode(ANTHROPIC, [out])[-3:-1] == [  # read back: the search, whole
        WebSearchDone(
            WebSearchCall(
                GEMINI_CALL.id,
                GEMINI_CALL.queries,
                tuple(SearchResult(r.url, r.title, None, None) for r in GEMINI_CALL.results),
            )
        ),
        Finish(FinishReason.STOP),
    ]


def test_a_chat_stream_carries_the_annotations_at_content_offsets() -> None:
    encoder = CHAT.stream_encoder(Request("m", (), stream=True))
    out = b"".join(encoder.feed(e) for e in ANTHROPIC_EXPECTED) + encoder.close()
    content, annotations = "", []
    for sse in SSEParser().feed(out):
        if sse.data == "[DONE]":
            continue
        for choice in json.loads(sse.data)["choices"]:
            content += choice["delta"].get("content") or ""
            annotations += choice["delta"].get("annotations") or []
    (cited,) = annotations
    span = content[cited["url_citation"]["start_index"] : cited["url_citation"]["end_index"]]
    assert span == "it is partly cloudy, 72°F."


# -- the fake provider -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        ({"name": "search"}, "name: Input should be 'web_search'"),
        ({"max_uses": 0}, "max_uses: Input should be greater than 0"),
        ({"frobnicate": 1}, "frobnicate: Extra inputs are not permitted"),
        (
            {"allowed_domains": ["a.example"], "blocked_domains": ["b.example"]},
            "Cannot specify both allowed_domains and blocked_domains",
        ),
        ({"user_location": {"type": "exact"}}, "user_location.type"),
    ],
)
def test_the_fake_refuses_a_malformed_anthropic_search_tool(
    upstream: ServerThread, tool: dict[str, Any], message: str
) -> None:
    body = {
        "model": "claude",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "Hi."}],
        "tools": [{"type": "web_search_20250305", "name": "web_search", **tool}],
    }
    answer = httpx.post(f"{upstream.url}/v1/messages", json=body)
    assert answer.status_code == 400
    error = answer.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


def test_the_fake_refuses_a_search_sent_back_altered(upstream: ServerThread) -> None:
    tampered = json.loads(json.dumps(FAKE_CONTENT))
    tampered[1]["content"][0]["encrypted_content"] = "bm90IHRoZSBmYWtlJ3M="
    alone = [FAKE_CONTENT[0], *FAKE_CONTENT[2:]]
    for content, why in ((tampered, "encrypted_content"), (alone, "web_search_tool_result")):
        body = {
            "model": "claude",
            "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": content},
                {"role": "user", "content": "And?"},
            ],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        }
        answer = httpx.post(f"{upstream.url}/v1/messages", json=body)
        assert answer.status_code == 400, why
        assert why in answer.json()["error"]["message"]


def test_the_fake_refuses_a_malformed_google_search_tool(upstream: ServerThread) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Hi."}]}],
        "tools": [{"google_search": {"dynamicRetrievalConfig": {}}}],
    }
    answer = httpx.post(f"{upstream.url}/v1beta/models/gemini-2.5-flash:generateContent", json=body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert 'Unknown name "dynamicRetrievalConfig"' in error["message"]


# -- real SDKs through a real server -----------------------------------------------------


class ChatOnly(OpenAICompatibleAdapter):
    """A local OpenAI-compatible server: no built-in tools."""


class ResponsesOnly(OpenAICompatibleAdapter):
    """A server that speaks only the Responses API (OpenAI's web search with it)."""

    dialects: ClassVar[tuple[Dialect, ...]] = (OpenAIResponses(),)


@pytest.fixture
def gateway(upstream: ServerThread) -> Iterator[ServerThread]:
    proxy = make_asgi_app(
        [
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
            GeminiAdapter(base_url=upstream.url, api_key=GEMINI_KEY),
            ChatOnly(name="local", base_url=upstream.url + "/v1", api_key="local-key-0123456789"),
            ResponsesOnly(
                name="resp", base_url=upstream.url + "/v1", api_key="resp-key-0123456789"
            ),
            OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
        ],
        transport=httpx.AsyncHTTPTransport(),
        validate_credentials="off",
        guards=Guards(client_keys={"key-alice": "alice", "key-bob": "bob"}),
    )
    with serve(proxy) as server:
        yield server


@pytest.fixture
def client(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="key-alice", max_retries=0) as sdk:
        yield sdk


def _sent(fake: FakeUpstream) -> Any:
    return json.loads(fake.last.body)


def _check_searched(response: Any, query: str) -> None:
    """A Responses answer that searched: its call, then text citing what it found."""
    kinds = [item.type for item in response.output]
    assert "web_search_call" in kinds
    assert "message" in kinds
    search = next(item for item in response.output if item.type == "web_search_call")
    assert search.status == "completed"
    assert search.action.query == query
    found = [r["url"] for r in fake_search.results(query)]
    assert [s.url for s in search.action.sources] == found
    texts = [
        part
        for item in response.output
        if item.type == "message"
        for part in item.content
        if part.type == "output_text"
    ]
    assert "".join(t.text for t in texts) == fake_search.INTRO + "".join(fake_search.SENTENCES)
    spans = [(t.text[a.start_index : a.end_index], a.url) for t in texts for a in t.annotations]
    assert spans == list(zip(fake_search.SENTENCES, found, strict=True))


@pytest.mark.parametrize(
    ("model", "path", "tool"),
    [
        (CLAUDE, "/v1/messages", {"type": "web_search_20250305", "name": "web_search"}),
        (FLASH, "/v1beta/models/gemini-2.5-flash:generateContent", {"googleSearch": {}}),
    ],
)
def test_openai_responses_search_on_claude_and_gemini(
    client: openai.OpenAI, fake: FakeUpstream, model: str, path: str, tool: dict[str, Any]
) -> None:
    response = client.responses.create(
        model=model, input=QUESTION, tools=[{"type": "web_search"}], max_output_tokens=300
    )
    assert fake.last.path == path
    assert _sent(fake)["tools"] == [tool]
    _check_searched(response, QUESTION)


@pytest.mark.parametrize("model", [CLAUDE, FLASH])
def test_openai_responses_search_streamed(
    client: openai.OpenAI, fake: FakeUpstream, model: str
) -> None:
    with client.responses.stream(
        model=model, input=QUESTION, tools=[{"type": "web_search_preview"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "streamGenerateContent" in fake.last.path or _sent(fake)["stream"] is True
    assert "response.web_search_call.completed" in kinds
    assert kinds.count("response.output_text.annotation.added") == 2
    _check_searched(final, QUESTION)


def test_a_search_on_claude_continues_by_previous_response_id(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    first = client.responses.create(model=CLAUDE, input=QUESTION, tools=[{"type": "web_search"}])
    with client.responses.stream(
        model=CLAUDE,
        input="And tomorrow?",
        previous_response_id=first.id,
        tools=[{"type": "web_search"}],
    ) as stream:
        second = stream.get_final_response()
    # The fake refuses a search sent back without its result or with altered data.
    sent = _sent(fake)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == fake_search.anthropic_content(
        sent[1]["content"][0]["id"], QUESTION
    )
    _check_searched(second, "And tomorrow?")
    third = client.responses.create(
        model=CLAUDE,
        input="Thanks.",
        previous_response_id=second.id,
        tools=[{"type": "web_search"}],
    )
    assert [m["role"] for m in _sent(fake)["messages"]] == ["user", "assistant"] * 2 + ["user"]
    _check_searched(third, "Thanks.")


def _history_after_a_search(client: openai.OpenAI, *, streamed: bool = False) -> list[Any]:
    """A Responses client's whole history after a search on Claude (``store: false``)."""
    asked: Any = {"model": CLAUDE, "input": QUESTION, "tools": [{"type": "web_search"}]}
    if streamed:
        with client.responses.stream(**asked, store=False) as stream:
            first = stream.get_final_response()
    else:
        first = client.responses.create(**asked, store=False)
    history: list[Any] = [{"role": "user", "content": QUESTION}]
    history += [item.model_dump(exclude_none=True) for item in first.output]
    return [*history, {"role": "user", "content": "And tomorrow?"}]


@pytest.mark.parametrize("streamed", [False, True])
def test_a_search_sent_back_as_items_goes_back_to_claude_whole(
    client: openai.OpenAI, fake: FakeUpstream, streamed: bool
) -> None:
    history = _history_after_a_search(client, streamed=streamed)
    raw = client.responses.with_raw_response.create(
        model=CLAUDE, input=history, tools=[{"type": "web_search"}], store=False
    )
    assert "web_search_call" not in raw.headers.get("x-proxy-dropped-fields", "")
    sent = _sent(fake)["messages"][1]["content"]
    # The fake refuses results it did not issue: these are its own, restored.
    whole = fake_search.anthropic_content(sent[0]["id"], QUESTION)
    assert sent[:2] == whole[:2]
    assert "".join(block["text"] for block in sent[2:]) == "".join(b["text"] for b in whole[2:])
    _check_searched(raw.parse(), "And tomorrow?")


def test_another_clients_search_is_not_restored(
    gateway: ServerThread, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    history = _history_after_a_search(client)
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="key-bob", max_retries=0) as bob:
        raw = bob.responses.with_raw_response.create(
            model=CLAUDE, input=history, tools=[{"type": "web_search"}], store=False
        )
    assert "web_search_call" in raw.headers["x-proxy-dropped-fields"]
    sent = _sent(fake)["messages"][1]["content"]
    assert all(block["type"] == "text" for block in sent)
    _check_searched(raw.parse(), "And tomorrow?")


@pytest.mark.parametrize("streamed", [False, True])
def test_the_agents_sdk_web_search_tool_on_claude(
    gateway: ServerThread, fake: FakeUpstream, streamed: bool
) -> None:
    set_tracing_disabled(True)  # no traces exported anywhere

    async def run() -> Any:
        async with openai.AsyncOpenAI(
            base_url=f"{gateway.url}/v1", api_key="key-alice", max_retries=0
        ) as client:
            agent = Agent(
                name="researcher",
                instructions="Search, then answer.",
                tools=[WebSearchTool(search_context_size="medium")],
                model=OpenAIResponsesModel(model=CLAUDE, openai_client=client),
            )
            if not streamed:
                return await Runner.run(agent, QUESTION)
            result = Runner.run_streamed(agent, QUESTION)
            async for _ in result.stream_events():
                pass
            return result

    result = anyio.run(run)
    assert result.final_output == fake_search.INTRO + "".join(fake_search.SENTENCES)
    sent = _sent(fake)
    assert sent["tools"] == [{"type": "web_search_20250305", "name": "web_search"}]
    assert sent.get("stream", False) is streamed
    kinds = [item.type for item in result.new_items]
    assert "tool_call_item" in kinds  # the web_search_call, as the SDK lists it
    assert kinds[-1] == "message_output_item"


def test_the_anthropic_sdk_web_search_tool_on_gemini(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    with anthropic.Anthropic(base_url=gateway.url, api_key="key-alice", max_retries=0) as sdk:
        _anthropic_sdk_search(sdk, fake)


def _anthropic_sdk_search(sdk: anthropic.Anthropic, fake: FakeUpstream) -> None:
    tool: Any = {"type": "web_search_20250305", "name": "web_search"}
    message = sdk.messages.create(
        model=FLASH,
        max_tokens=300,
        messages=[{"role": "user", "content": QUESTION}],
        tools=[tool],
    )
    assert _sent(fake)["tools"] == [{"googleSearch": {}}]
    kinds = [block.type for block in message.content]
    assert kinds == ["server_tool_use", "web_search_tool_result", "text"]
    assert message.content[0].input == {"query": QUESTION}  # type: ignore[union-attr]
    text = message.content[2]
    assert text.type == "text"
    assert [c.url for c in text.citations or ()] == [
        r["url"] for r in fake_search.results(QUESTION)
    ]
    with sdk.messages.stream(
        model=FLASH, max_tokens=300, messages=[{"role": "user", "content": QUESTION}], tools=[tool]
    ) as stream:
        final = stream.get_final_message()
    assert "streamGenerateContent" in fake.last.path
    assert [block.type for block in final.content] == [
        "text",
        "server_tool_use",
        "web_search_tool_result",
    ]
    assert len(final.content[0].citations or ()) == 2  # type: ignore[union-attr]


def test_a_chat_client_web_search_options_on_claude(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    completion = client.chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "user", "content": QUESTION}],
        web_search_options={
            "user_location": {"type": "approximate", "approximate": {"city": "Paris"}}
        },
    )
    tool = _sent(fake)["tools"][0]
    assert tool["type"] == "web_search_20250305"
    assert tool["user_location"] == {"type": "approximate", "city": "Paris"}
    message = completion.choices[0].message
    assert message.content is not None
    spans = [
        message.content[a.url_citation.start_index : a.url_citation.end_index]
        for a in message.annotations or ()
    ]
    assert spans == list(fake_search.SENTENCES)


@pytest.mark.parametrize(
    ("model", "tools", "field"),
    [
        (LOCAL, [{"type": "web_search"}], "web_search"),
        (CLAUDE, [{"type": "file_search", "vector_store_ids": ["vs_1"]}], "tools[0].type"),
        (
            FLASH,
            [{"type": "web_search", "filters": {"allowed_domains": ["example.com"]}}],
            "web_search.allowed_domains",
        ),
    ],
)
def test_a_search_the_provider_cannot_run_is_a_400_naming_it(
    client: openai.OpenAI, fake: FakeUpstream, model: str, tools: Any, field: str
) -> None:
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=model, input=QUESTION, tools=tools)
    assert field in refused.value.message
    assert len(fake.requests) == before  # nothing was sent


def test_the_gateway_page_states_each_options_fate_as_the_code_does() -> None:
    page = (Path(__file__).parents[1] / "docs" / "gateway.rst").read_text()
    table = page.split(":name: web-search-options", 1)[1].split("\n\n", 2)[1]
    rows = [row.split("\n     - ") for row in table.split("   * - ")[1:]]
    targets = [cell.strip() for cell in rows[0][1:]]
    assert targets == ["Anthropic", "Gemini", "Responses"]
    fates = {row[0].strip(): [cell.split()[0] for cell in row[1:]] for row in rows[1:]}
    for index, target in enumerate(("anthropic", "gemini", "responses")):
        for option, rule in ws.OPTION_RULES[target].items():
            assert fates[option][index] == rule.fate.value.split()[0], (option, target)


def _check_grounding(candidate: Any, text: str) -> None:
    """A google-genai candidate grounded by Claude's search: queries, chunks, supports."""
    metadata = candidate.grounding_metadata
    assert metadata.web_search_queries == [QUESTION]
    found = [r["url"] for r in fake_search.results(QUESTION)]
    assert [chunk.web.uri for chunk in metadata.grounding_chunks] == found
    raw = text.encode()
    spans = [
        (raw[s.segment.start_index : s.segment.end_index].decode(), s.grounding_chunk_indices)
        for s in metadata.grounding_supports
    ]
    assert spans == [(fake_search.SENTENCES[0], [0]), (fake_search.SENTENCES[1], [1])]


def test_google_genai_google_search_on_claude(gateway: ServerThread, fake: FakeUpstream) -> None:
    options = genai_types.HttpOptions(
        base_url=gateway.url, retry_options=genai_types.HttpRetryOptions(attempts=1)
    )
    google = genai.Client(api_key="key-alice", http_options=options)
    config = genai_types.GenerateContentConfig(
        tools=[genai_types.Tool(google_search=genai_types.GoogleSearch())]
    )
    response = google.models.generate_content(model=CLAUDE, contents=QUESTION, config=config)
    assert _sent(fake)["tools"] == [{"type": "web_search_20250305", "name": "web_search"}]
    assert response.text == fake_search.INTRO + "".join(fake_search.SENTENCES)
    assert response.candidates is not None
    _check_grounding(response.candidates[0], response.text)
    chunks = list(
        google.models.generate_content_stream(model=CLAUDE, contents=QUESTION, config=config)
    )
    text = "".join(chunk.text or "" for chunk in chunks)
    assert text == fake_search.INTRO + "".join(fake_search.SENTENCES)
    last = chunks[-1].candidates
    assert last is not None
    _check_grounding(last[0], text)


def test_an_anthropic_client_on_a_responses_provider_gets_its_search() -> None:
    text = "Paris is sunny today."
    body = {
        "id": "resp_1",
        "object": "response",
        "created_at": 0,
        "status": "completed",
        "model": "gpt-5",
        "output": [
            {
                "type": "web_search_call",
                "id": "ws_1",
                "status": "completed",
                "action": {
                    "type": "search",
                    "query": "paris weather",
                    "sources": [{"type": "url", "url": "https://meteo.example/paris"}],
                },
            },
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {
                        "type": "output_text",
                        "text": text,
                        "annotations": [
                            {
                                "type": "url_citation",
                                "start_index": 9,
                                "end_index": 20,
                                "url": "https://meteo.example/paris",
                                "title": "Météo Paris",
                            }
                        ],
                    }
                ],
            },
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    SDKResponse.model_validate(body)  # the shape OpenAI answers with
    response = RESPONSES.decode_response(body)
    message = AnthropicMessage.model_validate(ANTHROPIC.encode_response(response))
    use, result, cited = message.content
    assert use.type == "server_tool_use"
    assert use.input == {"query": "paris weather"}
    assert result.type == "web_search_tool_result"
    assert isinstance(result.content, list)
    assert [r.url for r in result.content] == ["https://meteo.example/paris"]
    assert cited.type == "text"
    assert cited.text == text
    (citation,) = cited.citations or ()
    assert citation.type == "web_search_result_location"
    assert citation.cited_text == "sunny today"
    assert citation.title == "Météo Paris"


def test_a_chat_stream_on_claude_carries_the_annotations(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    stream = client.chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "user", "content": QUESTION}],
        web_search_options={},
        stream=True,
    )
    content, annotations = "", []
    with stream:
        for chunk in stream:
            for choice in chunk.choices:
                content += choice.delta.content or ""
                annotations += (choice.delta.model_extra or {}).get("annotations") or []
    assert _sent(fake)["stream"] is True
    assert content == fake_search.INTRO + "".join(fake_search.SENTENCES)
    spans = [
        content[a["url_citation"]["start_index"] : a["url_citation"]["end_index"]]
        for a in annotations
    ]
    assert spans == list(fake_search.SENTENCES)


def test_an_anthropic_client_streams_an_openai_search() -> None:
    out = _encoded(ANTHROPIC, RESPONSES_EXPECTED)
    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for sse in SSEParser().feed(out):
        snapshot = accumulate_event(
            event=ANTHROPIC_EVENTS.validate_json(sse.data),
            current_snapshot=snapshot,
            json_bufs=buffers,
        )
    assert snapshot is not None
    assert [block.type for block in snapshot.content] == [
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    assert snapshot.content[0].input == {"query": "Paris weather today"}
    text = snapshot.content[2]
    assert text.text == f"Paris: 21°C — sunny ([bbc.com]({BBC}))."
    (citation,) = text.citations
    assert citation.url == BBC
    assert citation.title == "Paris - BBC Weather"


def test_a_search_items_id_and_status_are_read_not_dropped() -> None:
    item = {
        "type": "web_search_call",
        "id": "srvtoolu_1",
        "status": "failed",
        "action": {"type": "search", "query": "q"},
    }
    request, dropped = RESPONSES.decode_request(
        {"model": "m", "input": [{"role": "user", "content": "Q"}, item]}
    )
    assert dropped == ()
    assert request.messages[1].parts == (WebSearchCall("srvtoolu_1", ("q",), error="unavailable"),)
    body = ANTHROPIC.encode_request(request)
    assert body["messages"][1]["content"][1]["content"] == {
        "type": "web_search_tool_result_error",
        "error_code": "unavailable",
    }


# -- round trips ---------------------------------------------------------------------------

words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
urls = st.builds(lambda n: f"https://site{n}.example/page", st.integers(0, 99))


@st.composite
def searched_answers(draw: st.DrawFn) -> Response:
    """An answer that searched: its call, then texts citing what it found (Anthropic's way)."""
    results = tuple(
        SearchResult(url, draw(words), None, f"enc-{i}")
        for i, url in enumerate(draw(st.lists(urls, min_size=1, max_size=3, unique=True)))
    )
    call = WebSearchCall("srvtoolu_" + str(draw(st.integers(0, 999))), (draw(words),), results)
    texts = []
    for text in draw(st.lists(words, min_size=1, max_size=3)):
        cited = draw(st.lists(st.sampled_from(results), max_size=2, unique=True))
        texts.append(
            Text(text, citations=tuple(Citation(r.url, r.title, text, opaque="idx") for r in cited))
        )
    return Response("msg_1", "m", (call, *texts), FinishReason.STOP, Usage(1, 1))


@given(searched_answers())
@settings(max_examples=60, deadline=None)
def test_an_anthropic_answer_round_trips(response: Response) -> None:
    assert ANTHROPIC.decode_response(ANTHROPIC.encode_response(response)).parts == response.parts


@given(searched_answers())
@settings(max_examples=60, deadline=None)
def test_a_responses_answer_keeps_the_search_and_what_each_text_cites(response: Response) -> None:
    back = RESPONSES.decode_response(RESPONSES.encode_response(response))
    call, *texts = back.parts
    assert isinstance(call, WebSearchCall)
    original = response.parts[0]
    assert isinstance(original, WebSearchCall)
    assert call.queries == original.queries
    assert [r.url for r in call.results] == [r.url for r in original.results]
    for got, sent in zip(texts, response.parts[1:], strict=True):
        assert isinstance(got, Text)
        assert isinstance(sent, Text)
        assert got.text == sent.text
        assert [(c.url, got.text[c.start or 0 : c.end]) for c in got.citations] == [
            (c.url, sent.text) for c in sent.citations
        ]


@given(searched_answers())
@settings(max_examples=60, deadline=None)
def test_a_gemini_answer_keeps_each_cited_span(response: Response) -> None:
    back = GEMINI.decode_response(GEMINI.encode_response(response))
    texts = [p for p in back.parts if isinstance(p, Text)]
    sent = [p for p in response.parts if isinstance(p, Text)]
    assert "".join(t.text for t in texts) == "".join(t.text for t in sent)
    whole = "".join(t.text for t in texts)
    spans = [(c.url, c.cited_text) for t in texts for c in t.citations]
    assert spans == [(c.url, t.text) for t in sent for c in t.citations]
    assert all(cited in whole for _, cited in spans)


@pytest.mark.parametrize(
    ("model", "streamed"), [("resp/gpt-5", False), ("resp/gpt-5", True), ("openai/gpt-5", False)]
)
def test_the_anthropic_sdk_web_search_tool_on_a_responses_provider(
    gateway: ServerThread, fake: FakeUpstream, model: str, streamed: bool
) -> None:
    """On a provider speaking only Responses, and on OpenAI, whose Chat API the gateway
    speaks to Anthropic clients otherwise: a search goes to its Responses API."""
    tool: Any = {
        "type": "web_search_20250305",
        "name": "web_search",
        "allowed_domains": ["x.example"],
    }
    asked: Any = {
        "model": model,
        "max_tokens": 300,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [tool],
    }
    with anthropic.Anthropic(base_url=gateway.url, api_key="key-alice", max_retries=0) as sdk:
        if streamed:
            with sdk.messages.stream(**asked) as stream:
                message = stream.get_final_message()
        else:
            message = sdk.messages.create(**asked)
    assert fake.last.path == "/v1/responses"
    assert _sent(fake)["tools"] == [
        {"type": "web_search", "filters": {"allowed_domains": ["x.example"]}}
    ]
    kinds = [block.type for block in message.content]
    assert kinds == ["server_tool_use", "web_search_tool_result", "text"]
    assert message.content[0].input == {"query": QUESTION}  # type: ignore[union-attr]
    text = message.content[2]
    assert text.type == "text"
    assert text.text == fake_search.INTRO + "".join(fake_search.SENTENCES)
    found = [r["url"] for r in fake_search.results(QUESTION)]
    assert [c.url for c in text.citations or ()] == found
    assert [c.cited_text for c in text.citations or ()] == [  # type: ignore[union-attr]
        s.strip() for s in fake_search.SENTENCES
    ]


def test_the_fake_refuses_a_malformed_responses_search_tool(upstream: ServerThread) -> None:
    body = {"model": "gpt-5", "input": "Hi.", "tools": [{"type": "web_search", "colour": "red"}]}
    answer = httpx.post(f"{upstream.url}/v1/responses", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "Unknown parameter: 'tools[0].colour'."


def test_a_search_result_of_no_search_call_is_a_stream_error() -> None:
    decoder = ANTHROPIC.stream_decoder()
    decoder.feed("message_start", {"type": "message_start", "message": {"id": "m", "model": "c"}})
    block = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_x", "content": []}
    (error,) = decoder.feed(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )
    assert isinstance(error, StreamError)
    assert "no search call" in error.message


def test_a_search_stream_cut_short_is_an_error_for_every_client() -> None:
    raw = (GOLDEN / "anthropic_web_search.sse").read_bytes()
    events = _decode(ANTHROPIC, [raw[: raw.index(b"event: message_delta")]])
    assert isinstance(events[-1], StreamError)
    for codec in (RESPONSES, CHAT, GEMINI, ANTHROPIC):
        out = _encoded(codec, events)
        assert b"error" in out, codec
        assert b"response.completed" not in out


def test_a_search_item_without_sources_is_not_sent_as_an_empty_result() -> None:
    item = {"type": "web_search_call", "id": "ws_1", "action": {"type": "search", "query": "q"}}
    request, _ = RESPONSES.decode_request(
        {
            "model": "m",
            "input": [{"role": "user", "content": "Q"}, item, {"role": "user", "content": "And?"}],
        }
    )
    body = ANTHROPIC.encode_request(request)
    assert "web_search_tool_result" not in json.dumps(body)
    assert [m["role"] for m in body["messages"]] == ["user", "user"]  # no empty turn
    assert ANTHROPIC.dropped_by_encoding(request) == ("web_search_call",)
