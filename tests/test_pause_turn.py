"""A web search turn Anthropic pauses (``stop_reason: pause_turn``), continued by the gateway.

The fake provider pauses a search turn as often as a test asks
(``x-fake-pause``) and refuses a continuation that does not send the paused
content back unchanged. Through a real server: the openai SDK's Responses and
Chat clients and the google-genai SDK on Claude get one answer (whole: every
part's content joined; streamed: one start, one finish, the continuations'
events following on), with the usage of every call summed; an Anthropic client
on Claude gets ``pause_turn`` unchanged, and continues by itself; a turn paused
more often than the gateway continues one fails loudly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from provider_proxy import Guards, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter
from provider_proxy.dialects import AnthropicMessagesCodec
from provider_proxy.dialects.canonical import (
    Finish,
    FinishReason,
    Message,
    MessageStart,
    Paused,
    Request,
    Text,
    TextDelta,
    Usage,
    UsageReport,
    WebSearch,
)
from provider_proxy.engine._paused import MAX_CONTINUATIONS, PausedTurn, add_usage
from provider_proxy.observe import SSEParser
from provider_proxy.testing import FakeUpstream
from provider_proxy.testing import _fake_search as fake_search

from .conftest import ANTHROPIC_KEY
from .servers import ServerThread, serve, wait_until

CLAUDE = "anthropic/claude-sonnet-4-5"
QUESTION = "What is new in Paris?"
PAUSE = {"x-fake-pause": "2"}
ANSWER = fake_search.INTRO + "".join(fake_search.SENTENCES)


@pytest.fixture
def gateway(upstream: ServerThread) -> Iterator[ServerThread]:
    proxy = make_asgi_app(
        [AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY)],
        transport=httpx.AsyncHTTPTransport(),
        validate_credentials="off",
        guards=Guards(client_keys={"key-alice": "alice"}),
    )
    with serve(proxy) as server:
        yield server


@pytest.fixture
def client(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="key-alice", max_retries=0) as sdk:
        yield sdk


def _turn_sent(fake: FakeUpstream, before: int) -> list[Any]:
    """The Messages bodies the fake got since ``before``."""
    return [json.loads(r.body) for r in fake.requests[before:] if r.path == "/v1/messages"]


def _check_continued(sent: list[Any], pauses: int = 2) -> None:
    """The first call asked; each continuation sent the paused content back, unchanged."""
    assert len(sent) == pauses + 1
    assert sent[0]["messages"][-1]["role"] == "user"
    for n, body in enumerate(sent[1:], start=1):
        last = body["messages"][-1]
        assert last["role"] == "assistant"
        expected = [b for k in range(1, n + 1) for b in fake_search.paused_part(QUESTION, k)]
        assert last["content"] == expected
        assert body["messages"][:-1] == sent[0]["messages"]
        assert body["tools"] == sent[0]["tools"]


def _searches(response: Any) -> list[str]:
    return [item.id for item in response.output if item.type == "web_search_call"]


def test_a_responses_client_gets_one_whole_answer(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    before = len(fake.requests)
    response = client.responses.create(
        model=CLAUDE, input=QUESTION, tools=[{"type": "web_search"}], extra_headers=PAUSE
    )
    _check_continued(_turn_sent(fake, before))
    assert response.status == "completed"
    assert len(_searches(response)) == 2
    assert response.output_text == ANSWER
    assert response.usage is not None
    assert response.usage.input_tokens == 30  # three calls of 10 and 12 tokens each
    assert response.usage.output_tokens == 36
    # The kept answer is the whole of it: fetched again, and continued.
    fetched = client.responses.retrieve(response.id)
    assert [item.type for item in fetched.output] == [item.type for item in response.output]
    later = client.responses.create(
        model=CLAUDE,
        input="And tomorrow?",
        previous_response_id=response.id,
        tools=[{"type": "web_search"}],
    )
    assert later.output_text == ANSWER


def test_a_responses_client_gets_one_stream(client: openai.OpenAI, fake: FakeUpstream) -> None:
    before = len(fake.requests)
    with client.responses.stream(
        model=CLAUDE, input=QUESTION, tools=[{"type": "web_search"}], extra_headers=PAUSE
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    _check_continued(_turn_sent(fake, before))
    kinds = [event.type for event in events]
    assert kinds.count("response.created") == 1
    assert kinds.count("response.completed") == 1
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.web_search_call.completed") == 2
    sequence = [event.sequence_number for event in events]
    assert sequence == list(range(len(events)))
    assert len(_searches(final)) == 2
    assert len(set(_searches(final))) == 2
    assert final.output_text == ANSWER
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 36)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_a_chat_client_gets_one_completion(
    client: openai.OpenAI, fake: FakeUpstream, streamed: bool
) -> None:
    before = len(fake.requests)
    settings: Any = {
        "model": CLAUDE,
        "messages": [{"role": "user", "content": QUESTION}],
        "web_search_options": {},
        "extra_headers": PAUSE,
    }
    if streamed:
        chunks = list(
            client.chat.completions.create(
                **settings, stream=True, stream_options={"include_usage": True}
            )
        )
        assert len({chunk.id for chunk in chunks}) == 1
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert [f for f in finishes if f is not None] == ["stop"]
        usage = chunks[-1].usage
    else:
        completion = client.chat.completions.create(**settings)
        text = completion.choices[0].message.content or ""
        assert completion.choices[0].finish_reason == "stop"
        usage = completion.usage
    _check_continued(_turn_sent(fake, before))
    assert text == ANSWER
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (30, 36)


def test_a_gemini_client_gets_one_answer(gateway: ServerThread, fake: FakeUpstream) -> None:
    options = genai_types.HttpOptions(
        base_url=gateway.url,
        headers=PAUSE,
        retry_options=genai_types.HttpRetryOptions(attempts=1),
    )
    google = genai.Client(api_key="key-alice", http_options=options)
    config = genai_types.GenerateContentConfig(
        tools=[genai_types.Tool(google_search=genai_types.GoogleSearch())]
    )
    before = len(fake.requests)
    response = google.models.generate_content(model=CLAUDE, contents=QUESTION, config=config)
    _check_continued(_turn_sent(fake, before))
    assert response.text == ANSWER
    assert response.usage_metadata is not None
    assert response.usage_metadata.prompt_token_count == 30
    chunks = list(
        google.models.generate_content_stream(model=CLAUDE, contents=QUESTION, config=config)
    )
    assert "".join(chunk.text or "" for chunk in chunks) == ANSWER
    finishes = [
        c.candidates[0].finish_reason
        for c in chunks
        if c.candidates and c.candidates[0].finish_reason is not None
    ]
    assert finishes == [genai_types.FinishReason.STOP]


def test_an_anthropic_client_on_claude_gets_pause_turn_and_continues_itself(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    tools: Any = [{"type": "web_search_20250305", "name": "web_search"}]
    with anthropic.Anthropic(
        base_url=f"{gateway.url}/anthropic", api_key="key-alice", max_retries=0
    ) as sdk:
        messages: list[Any] = [{"role": "user", "content": QUESTION}]
        before = len(fake.requests)
        paused = sdk.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=500,
            messages=messages,
            tools=tools,
            extra_headers={"x-fake-pause": "1"},
        )
        assert len(fake.requests) == before + 1  # passed through: not continued
        assert paused.stop_reason == "pause_turn"
        content = [block.model_dump(mode="json", exclude_none=True) for block in paused.content]
        done = sdk.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=500,
            messages=[*messages, {"role": "assistant", "content": content}],
            tools=tools,
            extra_headers={"x-fake-pause": "1"},
        )
    assert done.stop_reason == "end_turn"
    assert "".join(b.text for b in done.content if b.type == "text") == ANSWER


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_a_turn_paused_too_often_fails_loudly(
    gateway: ServerThread, client: openai.OpenAI, fake: FakeUpstream, streamed: bool
) -> None:
    too_many = {"x-fake-pause": str(MAX_CONTINUATIONS + 1)}
    before = len(fake.requests)
    settings: Any = {
        "model": CLAUDE,
        "input": QUESTION,
        "tools": [{"type": "web_search"}],
        "extra_headers": too_many,
    }
    if streamed:
        body = {k: v for k, v in settings.items() if k != "extra_headers"}
        headers = {**too_many, "authorization": "Bearer key-alice"}
        with httpx.stream(
            "POST", f"{gateway.url}/v1/responses", json={**body, "stream": True}, headers=headers
        ) as answer:
            assert answer.status_code == 200  # begun before the turn paused too often
            raw = b"".join(answer.iter_bytes())
        events = SSEParser().feed(raw)
        kinds = [event.event for event in events]
        assert kinds[-2:] == ["error", "response.failed"]
        assert "response.completed" not in kinds
        assert "paused" in json.loads(events[-2].data)["message"]
    else:
        with pytest.raises(openai.APIStatusError) as failed:
            client.responses.create(**settings)
        assert failed.value.status_code == 502
        assert "paused" in failed.value.message
    assert len(_turn_sent(fake, before)) == MAX_CONTINUATIONS + 1


def test_the_fake_refuses_a_continuation_not_sent_back_unchanged(upstream: ServerThread) -> None:
    parts = fake_search.paused_part(QUESTION, 1)
    altered = json.loads(json.dumps(parts))
    altered[0]["input"]["query"] = "something else"
    tools = [{"type": "web_search_20250305", "name": "web_search"}]
    for content in (altered, parts[:1] + parts[:1], [{"type": "text", "text": "Hi"}]):
        body = {
            "model": "claude",
            "max_tokens": 10,
            "messages": [
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": content},
            ],
            "tools": tools,
        }
        answer = httpx.post(f"{upstream.url}/v1/messages", json=body, headers=PAUSE)
        assert answer.status_code == 400
        assert (
            "unchanged" in answer.json()["error"]["message"]
            or "server_tool_use" in (answer.json()["error"]["message"])
        )
    good = {
        "model": "claude",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": parts},
        ],
        "tools": tools,
    }
    answer = httpx.post(f"{upstream.url}/v1/messages", json=good, headers=PAUSE)
    assert answer.status_code == 200
    assert answer.json()["stop_reason"] == "pause_turn"  # the second of two pauses


# -- the codec and the turn, without a server ------------------------------------------------


def test_anthropic_pause_turn_decodes_as_paused_whole_and_streamed() -> None:
    codec = AnthropicMessagesCodec()
    whole = codec.decode_response(
        {
            "id": "msg_1",
            "model": "claude",
            "content": fake_search.paused_part(QUESTION, 1),
            "stop_reason": "pause_turn",
            "usage": {"input_tokens": 10, "output_tokens": 3},
        }
    )
    assert whole.paused
    assert whole.parts[0].id == "srvtoolu_pause1"  # type: ignore[union-attr]
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": fake_search.paused_part(QUESTION, 1),
        "stop_reason": "pause_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 3},
    }
    decoder, parser = codec.stream_decoder(), SSEParser()
    events = [
        canonical
        for chunk in fake_search.anthropic_events(message)
        for sse in parser.feed(chunk)
        for canonical in decoder.feed_text(sse.event, sse.data)
    ]
    assert Paused() in events
    assert not any(isinstance(event, Finish) for event in events)


def test_a_paused_stream_continues_in_one_answer_with_usage_summed() -> None:
    request = Request("claude", (Message("user", (Text("Q"),)),), web_search=WebSearch())
    turn = PausedTurn(request)
    first = [
        MessageStart("msg_1", "claude"),
        UsageReport(Usage(10, 1)),
        TextDelta("Part one. "),
        UsageReport(Usage(output_tokens=5)),
    ]
    assert [turn.feed(event) for event in first] == [
        MessageStart("msg_1", "claude"),
        UsageReport(Usage(10, 1)),
        TextDelta("Part one. "),
        UsageReport(Usage(10, 5)),
    ]
    assert turn.feed(Paused()) is None
    assert turn.continuation is None
    assert turn.feed(UsageReport(Usage(output_tokens=6))) == UsageReport(Usage(10, 6))
    assert turn.ended()
    assert turn.continuation is not None
    assert turn.continuation.messages[-1] == Message("assistant", (Text("Part one. "),))
    turn.continuation = None
    second = [
        MessageStart("msg_2", "claude"),
        UsageReport(Usage(10, 1)),
        TextDelta("Part two."),
        UsageReport(Usage(output_tokens=7)),
        Finish(FinishReason.STOP),
    ]
    assert [turn.feed(event) for event in second] == [
        None,
        UsageReport(Usage(20, 7)),
        TextDelta("Part two."),
        UsageReport(Usage(20, 13)),
        Finish(FinishReason.STOP),
    ]
    assert turn.continuation is None
    assert not turn.ended()


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_a_continued_turn_is_one_event_with_every_calls_usage(
    upstream: ServerThread, streamed: bool
) -> None:
    events: list[Any] = []
    proxy = make_asgi_app(
        [AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY)],
        transport=httpx.AsyncHTTPTransport(),
        validate_credentials="off",
        sinks=[events.append],
    )
    with (
        serve(proxy) as gateway,
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as sdk,
    ):
        settings: Any = {
            "model": CLAUDE,
            "input": QUESTION,
            "tools": [{"type": "web_search"}],
            "extra_headers": PAUSE,
        }
        if streamed:
            with sdk.responses.stream(**settings) as stream:
                stream.get_final_response()
        else:
            sdk.responses.create(**settings)
        assert wait_until(lambda: len(events) >= 1)
    (event,) = events
    assert event.translated is True
    assert event.usage is not None
    assert (event.usage.input_tokens, event.usage.output_tokens) == (30, 36)


def test_a_continued_turn_sums_every_count_its_calls_report() -> None:
    first = Usage(input_tokens=10, output_tokens=2, web_searches=1)
    second = Usage(input_tokens=14, output_tokens=5, reasoning_tokens=3, web_searches=1)
    summed = add_usage(first, second)
    assert summed == Usage(input_tokens=24, output_tokens=7, reasoning_tokens=3, web_searches=2)
    assert add_usage(Usage(), Usage()) == Usage()
