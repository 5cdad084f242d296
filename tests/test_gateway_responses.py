"""``POST {mount}/v1/responses`` through a real server, as the openai SDK sees it.

On an Anthropic model and on an OpenAI-Chat-only gateway the request is
translated (and the proxy keeps the conversation, since those providers keep
none); on an OpenAI model it passes through with the model rewritten, and the
fake provider keeps state as OpenAI does. Each test checks both ends: what the
SDK got and what the fake provider was sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import anthropic
import httpx
import openai
import pytest
from examples.fastapi_app import create_app
from openai.types.responses import ResponseFunctionToolCall

from provider_proxy import Guards, ProxyApp, StoredResponses, make_asgi_app
from provider_proxy.adapters import (
    AnthropicAdapter,
    OllamaAdapter,
    OpenAIAdapter,
    OpenAICompatibleAdapter,
    OpenRouterAdapter,
    VLLMAdapter,
)
from provider_proxy.dialects import Dialect, OpenAIChat, OpenAIResponses
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY, OPENAI_KEY, TRANSPORTS, OwnUpstream
from .servers import ServerThread, serve, wait_until

CLAUDE = "anthropic/claude-sonnet-4-5"
LOCAL = "local/qwen3-8b"
GPT = "openai/gpt-5"
TEXT = "Hello from the fake upstream, streamed one piece at a time."
WEATHER: Any = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
TOOLS: Any = [{"type": "function", "name": "weather", "parameters": WEATHER}]
KEYS = {"key-alice": "alice", "key-bob": "bob"}


class ChatOnly(OpenAICompatibleAdapter):
    """An OpenAI-compatible server without the Responses API (vLLM's Chat, Ollama, ...)."""

    dialects: ClassVar[tuple[Dialect, ...]] = (OpenAIChat(),)


class ResponsesOnly(OpenAICompatibleAdapter):
    """A server that speaks only the Responses API."""

    dialects: ClassVar[tuple[Dialect, ...]] = (OpenAIResponses(),)


def _adapters(upstream: ServerThread) -> list[Any]:
    return [
        OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
        AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
        ChatOnly(name="local", base_url=upstream.url + "/v1", api_key="local-key-0123456789"),
        ResponsesOnly(name="resp", base_url=upstream.url + "/v1", api_key="resp-key-0123456789"),
    ]


@pytest.fixture
def proxy(upstream: ServerThread, transport_kind: str) -> ProxyApp:
    return make_asgi_app(
        _adapters(upstream),
        transport=TRANSPORTS[transport_kind](),
        validate_credentials="off",
        guards=Guards(client_keys=KEYS),
        stored_responses=StoredResponses(per_client=3),
    )


@pytest.fixture
def gateway(proxy: ProxyApp) -> Iterator[ServerThread]:
    with serve(proxy) as server:
        yield server


def _client(gateway: ServerThread, key: str = "key-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


@pytest.fixture
def client(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with _client(gateway) as sdk:
        yield sdk


def _sent(fake: FakeUpstream) -> Any:
    return json.loads(fake.last.body)


def _calls(response: Any) -> list[ResponseFunctionToolCall]:
    return [item for item in response.output if isinstance(item, ResponseFunctionToolCall)]


# -- translated: Anthropic and an OpenAI-Chat-only provider -------------------------------


@pytest.mark.parametrize(
    ("model", "path"), [(CLAUDE, "/v1/messages"), (LOCAL, "/v1/chat/completions")]
)
def test_create_on_a_translated_model(
    client: openai.OpenAI, fake: FakeUpstream, model: str, path: str
) -> None:
    response = client.responses.create(
        model=model, instructions="Be brief.", input="Hi.", max_output_tokens=200
    )
    assert fake.last.path == path
    sent = _sent(fake)
    assert sent["model"] == model.partition("/")[2]
    if path == "/v1/messages":
        assert sent["system"] == [{"type": "text", "text": "Be brief."}]
        assert sent["max_tokens"] == 200
    else:
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent["max_completion_tokens"] == 200
    assert response.status == "completed"
    assert response.output_text == TEXT
    assert response.id.startswith("resp_")
    assert response.usage is not None
    assert response.usage.input_tokens == 10
    assert response.usage.output_tokens == 11


@pytest.mark.parametrize("model", [CLAUDE, LOCAL])
def test_stream_assembles_reasoning_and_streamed_tool_arguments(
    client: openai.OpenAI, fake: FakeUpstream, model: str
) -> None:
    with client.responses.stream(
        model=model,
        input="Weather in Paris?",
        tools=TOOLS,
        reasoning={"effort": "low"},
        extra_headers={"x-fake-tools": "weather", "x-fake-thinking": "1"},
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.function_call_arguments.delta") >= 2
    assert "response.reasoning_summary_text.delta" in kinds
    (call,) = _calls(final)
    assert call.name == "weather"
    assert json.loads(call.arguments) == {"city": "fake-city"}
    reasoning = final.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "Let me think this through, one step at a time."
    if model == CLAUDE:  # Anthropic signs its thinking: the signature reaches the client
        assert reasoning.encrypted_content
        assert _sent(fake)["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    else:
        assert _sent(fake)["reasoning_effort"] == "low"
    assert final.usage is not None
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", [CLAUDE, LOCAL])
@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_loop_continues_by_previous_response_id(
    client: openai.OpenAI, fake: FakeUpstream, model: str, stream: bool
) -> None:
    """Only the tool's output is sent back: the proxy keeps the rest, thinking included
    (the fake Anthropic refuses a tool turn without its signed thinking)."""
    headers = {"x-fake-tools": "weather", "x-fake-thinking": "1"}
    if stream:
        with client.responses.stream(
            model=model, input="Weather in Paris?", tools=TOOLS, extra_headers=headers
        ) as events:
            first = events.get_final_response()
    else:
        first = client.responses.create(
            model=model, input="Weather in Paris?", tools=TOOLS, extra_headers=headers
        )
    (call,) = _calls(first)
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C."}],
        tools=TOOLS,
        extra_headers={"x-fake-thinking": "1"},
    )
    assert second.status == "completed", second
    assert second.output_text == TEXT
    sent = _sent(fake)["messages"]
    if model == CLAUDE:
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        assert sent[1]["content"][0]["type"] == "thinking"
        assert sent[1]["content"][0]["signature"]
        assert sent[1]["content"][-1]["id"] == call.call_id
        assert sent[2]["content"][0]["tool_use_id"] == call.call_id
    else:
        assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
        assert sent[1]["tool_calls"][0]["id"] == call.call_id
        assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "Sunny, 21 C."}
    # And a third turn continues the second.
    third = client.responses.create(model=model, previous_response_id=second.id, input="Thanks!")
    assert third.output_text == TEXT
    assert len(_sent(fake)["messages"]) == 5


def test_reasoning_items_sent_back_whole_keep_their_signature(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    """A stateless client (store false, the whole history each turn) carries the
    signature itself, in the reasoning item's encrypted_content."""
    headers = {"x-fake-tools": "weather", "x-fake-thinking": "1"}
    first = client.responses.create(
        model=CLAUDE,
        input="Weather in Paris?",
        tools=TOOLS,
        store=False,
        include=["reasoning.encrypted_content"],
        extra_headers=headers,
    )
    (call,) = _calls(first)
    history: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."})
    second = client.responses.create(
        model=CLAUDE,
        input=history,
        tools=TOOLS,
        store=False,
        extra_headers={"x-fake-thinking": "1"},
    )
    assert second.output_text == TEXT
    assert _sent(fake)["messages"][1]["content"][0]["type"] == "thinking"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)  # store false: nothing kept


def test_a_built_in_tool_is_refused_naming_it(client: openai.OpenAI, fake: FakeUpstream) -> None:
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model=CLAUDE, input="News?", tools=[{"type": "code_interpreter", "container": "c"}]
        )
    assert "tools[0].type" in refused.value.message
    assert "code_interpreter" in refused.value.message
    assert len(fake.requests) == before  # nothing was sent


def test_an_unknown_previous_response_is_a_404(client: openai.OpenAI, fake: FakeUpstream) -> None:
    before = len(fake.requests)
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model=CLAUDE, previous_response_id="resp_nope", input="Hi.")
    assert "resp_nope" in missing.value.message
    assert len(fake.requests) == before


def test_a_provider_error_reaches_the_sdk_typed(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model=CLAUDE, input="Hi.", extra_headers={"x-fake-status": "429"})


# -- stored responses: fetch, delete, isolation, the per-client cap -----------------------


def test_a_kept_response_is_fetched_and_deleted(client: openai.OpenAI) -> None:
    created = client.responses.create(model=CLAUDE, input="Hi.")
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id
    assert fetched.output_text == TEXT
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=CLAUDE, previous_response_id=created.id, input="Again?")


def test_one_client_cannot_see_continue_or_delete_anothers(gateway: ServerThread) -> None:
    with _client(gateway, "key-alice") as alice, _client(gateway, "key-bob") as bob:
        mine = alice.responses.create(model=CLAUDE, input="My secret plan.")
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.create(model=CLAUDE, previous_response_id=mine.id, input="Tell me.")
        with pytest.raises(openai.NotFoundError):
            bob.responses.delete(mine.id)
        assert alice.responses.retrieve(mine.id).output_text == TEXT
    with _client(gateway, "key-nobody") as stranger, pytest.raises(openai.AuthenticationError):
        stranger.responses.retrieve(mine.id)


def test_the_per_client_cap_refuses_before_sending_and_frees_on_delete(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    with _client(gateway, "key-bob") as bob, _client(gateway, "key-alice") as alice:
        kept = [bob.responses.create(model=CLAUDE, input="Hi.") for _ in range(3)]
        bob.responses.create(model=CLAUDE, input="Hi.", store=False)  # not counted
        before = len(fake.requests)
        with pytest.raises(openai.RateLimitError) as refused:
            bob.responses.create(model=CLAUDE, input="Hi.")
        assert "store" in refused.value.message
        assert len(fake.requests) == before
        alice.responses.create(model=CLAUDE, input="Hi.")  # another client's cap
        bob.responses.delete(kept[0].id)
        assert bob.responses.create(model=CLAUDE, input="Hi.").status == "completed"


def test_a_failed_answer_is_not_kept_and_frees_its_slot(gateway: ServerThread) -> None:
    with _client(gateway, "key-bob") as bob:
        for _ in range(4):
            with pytest.raises(openai.InternalServerError):
                bob.responses.create(
                    model=CLAUDE, input="Hi.", extra_headers={"x-fake-status": "500"}
                )
        assert bob.responses.create(model=CLAUDE, input="Hi.").status == "completed"


def test_stored_response_routes_refuse_what_they_do_not_serve(gateway: ServerThread) -> None:
    headers = {"authorization": "Bearer key-alice"}
    with httpx.Client(base_url=gateway.url, headers=headers) as http:
        assert http.post("/v1/responses/resp_1").status_code == 405
        assert http.post("/v1/responses/resp_1/input_items").status_code == 405
        missing = http.post("/v1/responses/resp_1/compact")
        assert missing.status_code == 404
        assert "input_items" in missing.json()["error"]["message"]
        assert http.get("/v1/responses/resp_1/cancel").status_code == 405
        assert http.post("/v1/responses/resp_nope/cancel").status_code == 404
        assert http.get("/v1/responses/resp_nope/input_items").status_code == 404


# -- passthrough: an OpenAI model -------------------------------------------------------


def test_an_openai_model_passes_through_with_its_own_state(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    first = client.responses.create(model=GPT, input="Hi.", tools=[{"type": "web_search"}])
    assert fake.last.path == "/v1/responses"
    assert _sent(fake) == {"model": "gpt-5", "input": "Hi.", "tools": [{"type": "web_search"}]}
    assert first.id == f"resp_{first.id.removeprefix('resp_')}"
    assert first.id in fake.responses  # the provider keeps it, as OpenAI does
    with client.responses.stream(model=GPT, previous_response_id=first.id, input="More.") as events:
        final = events.get_final_response()
    assert _sent(fake)["previous_response_id"] == first.id
    assert final.output_text == TEXT


def test_a_response_kept_by_the_proxy_continues_on_an_openai_model(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    """Claude first, then GPT: the provider does not know the proxy's id, so the kept
    turns are sent instead (translated, stateless)."""
    first = client.responses.create(model=CLAUDE, input="Hi.")
    second = client.responses.create(model=GPT, previous_response_id=first.id, input="And you?")
    sent = _sent(fake)
    assert fake.last.path == "/v1/responses"
    assert "previous_response_id" not in sent
    assert sent["store"] is False
    assert [item.get("role") for item in sent["input"]] == ["user", "assistant", "user"]
    assert second.output_text == TEXT
    assert client.responses.retrieve(second.id).id == second.id


# -- the other way: Chat and Anthropic clients on a Responses-only provider ---------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_client_reaches_a_responses_only_provider(
    client: openai.OpenAI, fake: FakeUpstream, stream: bool
) -> None:
    messages: Any = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    tools: Any = [{"type": "function", "function": {"name": "weather", "parameters": WEATHER}}]
    headers = {"x-fake-tools": "weather"}
    if stream:
        with client.chat.completions.stream(
            model="resp/gpt-5", messages=messages, tools=tools, extra_headers=headers
        ) as events:
            completion = events.get_final_completion()
    else:
        completion = client.chat.completions.create(
            model="resp/gpt-5", messages=messages, tools=tools, extra_headers=headers
        )
    assert fake.last.path == "/v1/responses"
    sent = _sent(fake)
    assert sent["store"] is False  # the provider keeps nothing: Chat clients send it all
    assert sent["input"][0] == {
        "type": "message",
        "role": "system",
        "content": [{"type": "input_text", "text": "Be brief."}],
    }
    assert sent["tools"] == [{"type": "function", "name": "weather", "parameters": WEATHER}]
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert json.loads(call.function.arguments) == {"city": "fake-city"}


# -- the rest of the request's path: disconnects, dropped fields, events ------------------


def test_dropped_fields_are_named_and_strict_translation_refuses_them(
    upstream: ServerThread, transport_kind: str
) -> None:
    body = {"model": CLAUDE, "input": "Hi.", "metadata": {"a": "b"}, "prompt_cache_key": "k"}
    for strict in (False, True):
        proxy = make_asgi_app(
            _adapters(upstream),
            transport=TRANSPORTS[transport_kind](),
            validate_credentials="off",
            strict_translation=strict,
        )
        with serve(proxy) as gateway:
            answer = httpx.post(gateway.url + "/v1/responses", json=body)
        if strict:
            assert answer.status_code == 400
            assert "metadata" in answer.json()["error"]["message"]
        else:
            assert answer.status_code == 200
            assert answer.headers["x-proxy-dropped-fields"] == "metadata, prompt_cache_key"


def test_the_event_says_which_formats_met_and_the_usage(
    upstream: ServerThread, transport_kind: str
) -> None:
    events: list[Any] = []
    proxy = make_asgi_app(
        _adapters(upstream),
        transport=TRANSPORTS[transport_kind](),
        validate_credentials="off",
        sinks=[events.append],
    )
    with serve(proxy) as gateway, _client(gateway) as client:
        with client.responses.stream(model=CLAUDE, input="Hi.") as stream:
            stream.get_final_response()
        assert wait_until(lambda: len(events) == 1)
    (event,) = events
    assert event.client_dialect == "openai-responses"
    assert event.dialect == "anthropic-messages"
    assert event.translated is True
    assert event.provider == "anthropic"
    assert event.usage is not None
    assert event.usage.input_tokens == 10


def test_stored_responses_below_a_fastapi_mount(
    upstream: ServerThread, transport_kind: str
) -> None:
    host = create_app(_adapters(upstream), transport=TRANSPORTS[transport_kind]())
    with (
        serve(host) as server,
        openai.OpenAI(base_url=f"{server.url}/llm/v1", api_key="unused", max_retries=0) as client,
    ):
        created = client.responses.create(model=CLAUDE, input="Hi.")
        assert client.responses.retrieve(created.id).output_text == TEXT
        client.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(created.id)


def test_a_stored_response_fetch_is_one_event(upstream: ServerThread, transport_kind: str) -> None:
    events: list[Any] = []
    proxy = make_asgi_app(
        _adapters(upstream),
        transport=TRANSPORTS[transport_kind](),
        validate_credentials="off",
        sinks=[events.append],
    )
    with serve(proxy) as gateway, _client(gateway) as client:
        created = client.responses.create(model=CLAUDE, input="Hi.")
        client.responses.retrieve(created.id)
        assert wait_until(lambda: len(events) == 2)
    fetched = events[1]
    assert fetched.path == f"/v1/responses/{created.id}"
    assert fetched.status == 200
    assert fetched.client_dialect == "openai-responses"
    assert fetched.provider is None


@pytest.mark.parametrize("model", [CLAUDE, LOCAL])
def test_a_stream_the_provider_cuts_never_looks_complete(client: openai.OpenAI, model: str) -> None:
    kinds: list[str] = []
    # The connection is aborted: the SDK cannot take it for a finished answer.
    with pytest.raises(openai.APIConnectionError):
        with client.responses.stream(
            model=model, input="Talk.", extra_headers={"x-fake-fail-after": "3"}
        ) as stream:
            kinds.extend(event.type for event in stream)
            stream.get_final_response()
    assert "response.output_text.delta" in kinds
    assert "response.completed" not in kinds


def test_an_anthropic_client_on_a_responses_only_provider_keeps_its_thinking(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    tools: Any = [{"name": "weather", "input_schema": WEATHER}]
    question: Any = {"role": "user", "content": "Weather in Paris?"}
    headers = {"x-fake-tools": "weather", "x-fake-thinking": "1"}
    with anthropic.Anthropic(base_url=gateway.url, api_key="key-alice", max_retries=0) as sdk:
        with sdk.messages.stream(
            model="resp/gpt-5",
            max_tokens=2048,
            messages=[question],
            tools=tools,
            thinking={"type": "enabled", "budget_tokens": 1024},
            extra_headers=headers,
        ) as stream:
            first = stream.get_final_message()
        assert fake.last.path == "/v1/responses"
        assert _sent(fake)["reasoning"] == {"effort": "minimal", "summary": "auto"}
        thinking, call = first.content
        assert thinking.type == "thinking"
        assert thinking.signature  # the provider's encrypted_content
        assert call.type == "tool_use"
        assert first.stop_reason == "tool_use"
        second = sdk.messages.create(
            model="resp/gpt-5",
            max_tokens=2048,
            messages=[
                question,
                {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny."}
                    ],
                },
            ],
            tools=tools,
        )
    assert second.content[0].type == "text"
    sent = _sent(fake)["input"]
    reasoning = next(item for item in sent if item["type"] == "reasoning")
    assert reasoning["encrypted_content"] == thinking.signature
    assert sent[-1] == {"type": "function_call_output", "call_id": call.id, "output": "Sunny."}


def test_a_continuation_keeps_developer_messages_but_not_instructions(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    first = client.responses.create(
        model=CLAUDE,
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Hi."},
        ],
    )
    client.responses.create(model=CLAUDE, previous_response_id=first.id, input="And then?")
    assert _sent(fake)["system"] == [{"type": "text", "text": "Answer in French."}]
    client.responses.create(
        model=CLAUDE, previous_response_id=first.id, instructions="Be kind.", input="Again?"
    )
    assert _sent(fake)["system"] == [
        {"type": "text", "text": "Be kind."},
        {"type": "text", "text": "Answer in French."},
    ]


def test_a_kept_responses_input_items_are_listed_and_paged(gateway: ServerThread) -> None:
    with _client(gateway, "key-alice") as alice, _client(gateway, "key-bob") as bob:
        headers = {"x-fake-tools": "weather"}
        first = alice.responses.create(
            model=CLAUDE,
            input=[
                {"role": "developer", "content": "Metric units."},
                {"role": "user", "content": "Weather in Paris?"},
            ],
            tools=TOOLS,
            extra_headers=headers,
        )
        (call,) = _calls(first)
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "21 C."}
        second = alice.responses.create(
            model=CLAUDE, previous_response_id=first.id, input=[output], tools=TOOLS
        )
        newest_first = list(alice.responses.input_items.list(second.id))
        assert [item.type for item in newest_first] == [
            "function_call_output",
            "function_call",
            "message",
            "message",
        ]
        assert newest_first[0].call_id == call.call_id
        assert newest_first[-1].role == "developer"
        assert len({item.id for item in newest_first}) == 4
        # Page by page (the SDK follows ``after``), oldest first.
        paged = list(alice.responses.input_items.list(second.id, limit=1, order="asc"))
        assert [item.id for item in paged] == [item.id for item in reversed(newest_first)]
        with pytest.raises(openai.NotFoundError):
            bob.responses.input_items.list(second.id)
        with pytest.raises(openai.BadRequestError):
            alice.responses.input_items.list(second.id, limit=500)


# -- the built-in OpenAI-compatible presets speak Chat to the gateway --------------------


@pytest.mark.parametrize(
    "preset",
    [
        lambda url: VLLMAdapter(base_url=url + "/v1"),
        lambda url: OllamaAdapter(base_url=url + "/v1"),
        lambda url: OpenRouterAdapter(base_url=url + "/v1", api_key="or-key-0123456789"),
        lambda url: OpenAICompatibleAdapter("corp", base_url=url + "/v1", api_key="c-0123456789"),
    ],
    ids=["vllm", "ollama", "openrouter", "compatible"],
)
def test_a_preset_is_sent_chat_for_a_responses_client(
    upstream: ServerThread, fake: FakeUpstream, preset: Any
) -> None:
    adapter = preset(upstream.url)
    proxy = make_asgi_app([adapter], validate_credentials="off")
    with (
        serve(proxy) as server,
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client,
    ):
        answer = client.responses.create(model=f"{adapter.name}/qwen3-8b", input="Hi.")
        assert fake.last.path == "/v1/chat/completions"  # translated, not /responses
        assert _sent(fake)["messages"] == [{"role": "user", "content": "Hi."}]
        assert answer.output_text == TEXT
        # Its own Responses endpoint still passes through as it is.
        passed = httpx.post(
            f"{server.url}/{adapter.name}/responses", json={"model": "qwen3-8b", "input": "Hi."}
        )
        assert passed.status_code == 200
        assert fake.last.path == "/v1/responses"


class TestOnItsOwnUpstream(OwnUpstream):
    """Tests that count the fake's streams, each on a fake of its own."""

    def test_a_client_leaving_a_translated_stream_frees_the_upstream_and_its_slot(
        self, upstream: ServerThread, fake: FakeUpstream, transport_kind: str
    ) -> None:
        proxy = make_asgi_app(
            _adapters(upstream),
            transport=TRANSPORTS[transport_kind](),
            validate_credentials="off",
            stored_responses=StoredResponses(per_client=1),
        )
        closed = fake.closed_streams
        slow = {"x-fake-chunks": "2000", "x-fake-gap": "0.02"}
        body = {"model": CLAUDE, "input": "Talk.", "stream": True}
        with serve(proxy) as gateway:
            with httpx.stream(
                "POST", gateway.url + "/v1/responses", json=body, headers=slow, timeout=10
            ) as response:
                assert response.status_code == 200
                received = b""
                for chunk in response.iter_raw():
                    received += chunk
                    if received.count(b"response.output_text.delta") >= 3:
                        break
            assert wait_until(lambda: fake.closed_streams == closed + 1, timeout=5)
            # The unfinished answer was not kept, so its slot is free for the next one.
            with _client(gateway) as client:
                assert client.responses.create(model=CLAUDE, input="Hi.").status == "completed"
