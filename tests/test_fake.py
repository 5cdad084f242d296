"""The fake provider's richer turns, read by the official SDKs straight from it.

Tool calls (parallel, streamed arguments, empty ones), thinking and reasoning,
cached usage and images, in OpenAI Chat's and Anthropic Messages' formats,
whole and streamed: each SDK's own stream helpers must assemble what the fake
streams, as they assemble the real APIs' streams.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import anyio
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from provider_proxy.testing import FakeUpstream

from .conftest import OwnUpstream
from .servers import ServerThread, wait_until

WEATHER: Any = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}
WEATHER_ARGUMENTS = {"city": "fake-city", "days": 1, "unit": "celsius"}
OPENAI_TOOLS: Any = [
    {"type": "function", "function": {"name": "weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}},
]
ANTHROPIC_TOOLS: Any = [
    {"name": "weather", "input_schema": WEATHER},
    {"name": "now", "input_schema": {"type": "object", "properties": {}}},
]
MESSAGES: Any = [{"role": "user", "content": "Weather and time?"}]


@pytest.fixture
def openai_client(upstream: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=upstream.url + "/v1", api_key="k", max_retries=0) as client:
        yield client


@pytest.fixture
def anthropic_client(upstream: ServerThread) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=upstream.url, api_key="k", max_retries=0) as client:
        yield client


def _sse_data(raw: bytes) -> list[Any]:
    return [
        json.loads(line[6:])
        for line in raw.decode().splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def test_openai_parallel_tool_calls_streamed_in_pieces(
    openai_client: openai.OpenAI, upstream: ServerThread
) -> None:
    with openai_client.chat.completions.stream(
        model="gpt-x",
        messages=MESSAGES,
        tools=OPENAI_TOOLS,
        extra_headers={"x-fake-tools": "weather,now"},
    ) as stream:
        pieces = [
            event.arguments_delta
            for event in stream
            if event.type == "tool_calls.function.arguments.delta"
        ]
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["weather", "now"]
    assert json.loads(calls[0].function.arguments) == WEATHER_ARGUMENTS
    assert calls[1].function.arguments == "{}"
    assert len({c.id for c in calls}) == 2
    assert len(pieces) >= 4  # the weather call's arguments came in several pieces
    # As OpenAI streams them: each call's first delta has its id and name, by index.
    raw = httpx.post(
        upstream.url + "/v1/chat/completions",
        json={"model": "m", "messages": MESSAGES, "tools": OPENAI_TOOLS, "stream": True},
        headers={"x-fake-tools": "weather,now"},
    ).content
    heads = [
        call
        for chunk in _sse_data(raw)
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls", ())
        if "id" in call
    ]
    assert [(h["index"], h["function"]["name"]) for h in heads] == [(0, "weather"), (1, "now")]


def test_openai_whole_answer_with_tools_reasoning_and_cached_usage(
    openai_client: openai.OpenAI,
) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-x",
        messages=MESSAGES,
        tools=OPENAI_TOOLS,
        extra_headers={"x-fake-tools": "weather", "x-fake-thinking": "1", "x-fake-cached": "30"},
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    (call,) = message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert json.loads(call.function.arguments) == WEATHER_ARGUMENTS
    assert (message.model_extra or {})["reasoning_content"].startswith("Let me think")
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 40  # ten uncached and the thirty cached
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 30


def test_openai_streams_reasoning_content_before_the_text(upstream: ServerThread) -> None:
    raw = httpx.post(
        upstream.url + "/v1/chat/completions",
        json={"model": "m", "messages": MESSAGES, "stream": True},
        headers={"x-fake-thinking": "1"},
    ).content
    deltas = [c["choices"][0]["delta"] for c in _sse_data(raw) if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    kinds = ["reasoning" if d.get("reasoning_content") else "text" for d in deltas if d]
    assert kinds == sorted(kinds)  # every reasoning delta before any text
    assert "".join(d.get("reasoning_content") or "" for d in deltas).startswith("Let me think")
    assert "".join(d.get("content") or "" for d in deltas).startswith("Hello from")


def test_anthropic_thinking_and_parallel_tool_use_streamed(
    anthropic_client: anthropic.Anthropic,
) -> None:
    with anthropic_client.messages.stream(
        model="claude-x",
        max_tokens=100,
        messages=MESSAGES,
        tools=ANTHROPIC_TOOLS,
        extra_headers={"x-fake-tools": "weather,now", "x-fake-thinking": "1"},
    ) as stream:
        kinds = [event.delta.type for event in stream if event.type == "content_block_delta"]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    thinking, weather, now = final.content
    assert thinking.type == "thinking"
    assert thinking.thinking.startswith("Let me think")
    assert thinking.signature
    assert weather.type == "tool_use"
    assert now.type == "tool_use"
    assert (weather.name, weather.input) == ("weather", WEATHER_ARGUMENTS)
    assert (now.name, now.input) == ("now", {})
    assert weather.id != now.id
    assert kinds.count("signature_delta") == 1
    assert kinds.count("thinking_delta") > 3
    assert kinds.count("input_json_delta") >= 3


def test_anthropic_whole_answer_with_cached_usage(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model="claude-x",
        max_tokens=100,
        messages=MESSAGES,
        tools=ANTHROPIC_TOOLS,
        extra_headers={"x-fake-tools": "now", "x-fake-cached": "30"},
    )
    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["tool_use"]
    assert message.usage.input_tokens == 10  # the cached tokens are not in it
    assert message.usage.cache_read_input_tokens == 30


def _turn_two(answer: anthropic.types.Message) -> Any:
    calls = [block for block in answer.content if block.type == "tool_use"]
    results = [{"type": "tool_result", "tool_use_id": c.id, "content": "ok"} for c in calls]
    return [
        *MESSAGES,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in answer.content]},
        {"role": "user", "content": results},
    ]


def test_anthropic_thinking_refuses_a_tool_turn_that_lost_its_thinking(
    anthropic_client: anthropic.Anthropic,
) -> None:
    headers = {"x-fake-tools": "weather", "x-fake-thinking": "1"}
    first = anthropic_client.messages.create(
        model="claude-x",
        max_tokens=100,
        messages=MESSAGES,
        tools=ANTHROPIC_TOOLS,
        extra_headers=headers,
    )
    kept = _turn_two(first)
    second = anthropic_client.messages.create(
        model="claude-x",
        max_tokens=100,
        messages=kept,
        tools=ANTHROPIC_TOOLS,
        extra_headers={"x-fake-thinking": "1"},
    )
    assert second.stop_reason == "end_turn"
    lost = json.loads(json.dumps(kept))
    lost[1]["content"] = lost[1]["content"][1:]  # the thinking block dropped
    with pytest.raises(anthropic.BadRequestError) as refused:
        anthropic_client.messages.create(
            model="claude-x", max_tokens=100, messages=lost, extra_headers=headers
        )
    assert "thinking" in refused.value.message
    forged = json.loads(json.dumps(kept))
    forged[1]["content"][0]["signature"] = "forged"
    with pytest.raises(anthropic.BadRequestError) as invalid:
        anthropic_client.messages.create(
            model="claude-x", max_tokens=100, messages=forged, extra_headers=headers
        )
    assert "signature" in invalid.value.message
    # Without the knob, or once a new user turn began, nothing is checked.
    anthropic_client.messages.create(model="claude-x", max_tokens=100, messages=lost)
    later = [*lost, {"role": "assistant", "content": "Done."}, *MESSAGES]
    anthropic_client.messages.create(
        model="claude-x", max_tokens=100, messages=later, extra_headers=headers
    )


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
@pytest.mark.parametrize("stream", [False, True])
def test_images_are_named_in_the_answer(upstream: ServerThread, path: str, stream: bool) -> None:
    if path.endswith("/messages"):
        content: Any = [
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/gif", "data": "R0"},
            },
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        ]
    else:
        content = [
            {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        ]
    body = {
        "model": "m",
        "max_tokens": 5,
        "stream": stream,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, *content]}
        ],
    }
    response = httpx.post(upstream.url + path, json=body)
    if not stream:
        answer = response.json()
        text = (
            answer["content"][0]["text"]
            if "content" in answer
            else answer["choices"][0]["message"]["content"]
        )
    else:
        events = _sse_data(response.content)
        text = "".join(
            e["delta"].get("text", "")
            if "delta" in e and "index" in e
            else "".join(c["delta"].get("content") or "" for c in e.get("choices", ()))
            for e in events
        )
    assert text == "Images: image/gif, https://example.com/a.png."


def test_a_tool_the_request_does_not_define_is_not_called(
    openai_client: openai.OpenAI,
) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-x",
        messages=MESSAGES,
        tools=OPENAI_TOOLS[:1],
        extra_headers={"x-fake-tools": "now"},
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None


def test_constructor_keywords_set_the_new_knobs() -> None:
    fake = FakeUpstream(tools="now", thinking=True, cached=5)
    transport = httpx.ASGITransport(app=fake)

    async def call() -> Any:
        async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
            body = {"model": "m", "max_tokens": 5, "messages": MESSAGES, "tools": ANTHROPIC_TOOLS}
            return (await client.post("/v1/messages", json=body)).json()

    answer = anyio.run(call)
    assert [b["type"] for b in answer["content"]] == ["thinking", "tool_use"]
    assert answer["usage"]["cache_read_input_tokens"] == 5


class TestOnItsOwnUpstream(OwnUpstream):
    """Tests that count the fake's streams, each on a fake of its own."""

    def test_a_chat_stream_the_client_leaves_is_closed(
        self, upstream: ServerThread, fake: FakeUpstream
    ) -> None:
        closed = fake.closed_streams
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        headers = {"x-fake-chunks": "1000", "x-fake-gap": "0.05"}
        with httpx.stream(
            "POST", upstream.url + "/v1/chat/completions", json=body, headers=headers
        ) as r:
            assert r.status_code == 200
            next(r.iter_raw())
            assert fake.open_streams == 1
        assert wait_until(lambda: fake.closed_streams == closed + 1, timeout=5)
        assert fake.open_streams == 0

    def test_a_client_leaving_during_the_delay_gets_no_answer_and_is_counted(
        self, upstream: ServerThread, fake: FakeUpstream
    ) -> None:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                upstream.url + "/v1/chat/completions",
                json=body,
                headers={"x-fake-delay": "3"},
                timeout=0.3,
            )
        assert wait_until(lambda: fake.left_while_waiting == 1, timeout=2)
        assert fake.closed_streams == 0  # it never started the stream
        # A client that waits gets its answer.
        answer = httpx.post(
            upstream.url + "/v1/chat/completions",
            json={"model": "m", "messages": MESSAGES},
            headers={"x-fake-delay": "0.2"},
            timeout=5,
        )
        assert answer.status_code == 200
        assert fake.left_while_waiting == 1
