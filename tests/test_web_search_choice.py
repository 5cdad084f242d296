"""A tool choice that forces the provider's web search, in each direction it maps.

A Responses ``tool_choice`` naming the web search tool is Anthropic's
``{"type": "tool", "name": "web_search"}``; an Anthropic client's choice of its
web search tool is a Responses ``{"type": "web_search"}``; Gemini cannot be
made to search, so there the choice is refused naming ``tool_choice``. Codec
tables, then the openai and anthropic SDKs through a real server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import anthropic
import httpx
import openai
import pytest

from provider_proxy import Guards, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, GeminiAdapter, OpenAICompatibleAdapter
from provider_proxy.dialects import (
    AnthropicMessagesCodec,
    Dialect,
    GeminiCodec,
    OpenAIChatCodec,
    OpenAIResponses,
    OpenAIResponsesCodec,
)
from provider_proxy.dialects.canonical import (
    Message,
    Request,
    Text,
    ToolChoice,
    Unsupported,
    WebSearch,
)
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY
from .servers import ServerThread, serve

CLAUDE = "anthropic/claude-sonnet-4-5"
FLASH = "gemini/gemini-2.5-flash"
QUESTION = "What is new in Paris?"
GEMINI_KEY = "gemini-test-key-0123456789"
ANTHROPIC_SEARCH = {"type": "web_search_20250305", "name": "web_search"}
WEATHER: Any = {"type": "object", "properties": {"city": {"type": "string"}}}


def _responses(**body: Any) -> Request:
    request, _ = OpenAIResponsesCodec().decode_request({"model": "m", "input": "Q", **body})
    return request


def _anthropic(**body: Any) -> Request:
    request, _ = AnthropicMessagesCodec().decode_request(
        {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "Q"}], **body}
    )
    return request


@pytest.mark.parametrize(
    "kind", ["web_search", "web_search_preview", "web_search_preview_2025_03_11"]
)
def test_a_responses_choice_of_the_search_forces_claudes_search(kind: str) -> None:
    request = _responses(tools=[{"type": kind}], tool_choice={"type": kind})
    assert request.tool_choice == ToolChoice("web_search", kind)
    body = AnthropicMessagesCodec().encode_request(request)
    assert body["tool_choice"] == {"type": "tool", "name": "web_search"}
    assert body["tools"] == [ANTHROPIC_SEARCH]


def test_an_anthropic_choice_of_its_search_tool_is_the_search() -> None:
    request = _anthropic(
        tools=[ANTHROPIC_SEARCH], tool_choice={"type": "tool", "name": "web_search"}
    )
    assert request.tool_choice is not None
    assert request.tool_choice.kind == "web_search"
    body = OpenAIResponsesCodec().encode_request(request)
    assert body["tool_choice"] == {"type": "web_search"}
    assert {"type": "web_search"} in body["tools"]
    # Back to Anthropic it is the same choice it came as.
    assert AnthropicMessagesCodec().encode_request(request)["tool_choice"] == {
        "type": "tool",
        "name": "web_search",
    }


def test_a_function_named_web_search_is_still_a_function() -> None:
    tools = [{"name": "web_search", "input_schema": WEATHER}]
    request = _anthropic(tools=tools, tool_choice={"type": "tool", "name": "web_search"})
    assert request.tool_choice == ToolChoice("tool", "web_search")
    assert request.web_search is None


@pytest.mark.parametrize(
    ("codec", "field"),
    [(GeminiCodec(), "tool_choice"), (OpenAIChatCodec(), "web_search")],
    ids=["gemini", "chat"],
)
def test_a_target_that_cannot_force_a_search_refuses_naming_it(codec: Any, field: str) -> None:
    """Gemini searches but cannot be made to; Chat Completions cannot search at all."""
    request = Request(
        "m",
        (Message("user", (Text("Q"),)),),
        web_search=WebSearch(),
        tool_choice=ToolChoice("web_search", "web_search"),
    )
    with pytest.raises(Unsupported) as refused:
        codec.encode_request(request)
    assert refused.value.field == field


def test_forcing_a_search_not_offered_is_refused() -> None:
    with pytest.raises(Unsupported) as refused:
        _responses(tool_choice={"type": "web_search"})
    assert refused.value.field == "tool_choice"
    with pytest.raises(Unsupported) as refused:
        _responses(tools=[{"type": "web_search"}], tool_choice={"type": "web_search", "x": 1})
    assert refused.value.field.startswith("tool_choice")


# -- through a real server ------------------------------------------------------------------


class ResponsesOnly(OpenAICompatibleAdapter):
    """A server that speaks only the Responses API (OpenAI's web search with it)."""

    dialects: ClassVar[tuple[Dialect, ...]] = (OpenAIResponses(),)


@pytest.fixture
def gateway(upstream: ServerThread) -> Iterator[ServerThread]:
    proxy = make_asgi_app(
        [
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
            GeminiAdapter(base_url=upstream.url, api_key=GEMINI_KEY),
            ResponsesOnly(
                name="resp", base_url=upstream.url + "/v1", api_key="resp-key-0123456789"
            ),
        ],
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


def _sent(fake: FakeUpstream) -> Any:
    return json.loads(fake.last.body)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_the_openai_sdk_forces_claudes_search(
    client: openai.OpenAI, fake: FakeUpstream, streamed: bool
) -> None:
    settings: Any = {
        "model": CLAUDE,
        "input": QUESTION,
        "tools": [{"type": "web_search_preview"}],
        "tool_choice": {"type": "web_search_preview"},
    }
    if streamed:
        with client.responses.stream(**settings) as stream:
            response = stream.get_final_response()
    else:
        response = client.responses.create(**settings)
    sent = _sent(fake)
    assert sent["tool_choice"] == {"type": "tool", "name": "web_search"}
    assert sent["tools"] == [ANTHROPIC_SEARCH]
    assert any(item.type == "web_search_call" for item in response.output)
    for answer in (response, client.responses.retrieve(response.id)):
        assert answer.model_dump(mode="json")["tool_choice"] == {"type": "web_search_preview"}


def test_forcing_geminis_search_is_a_400_naming_tool_choice(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model=FLASH,
            input=QUESTION,
            tools=[{"type": "web_search"}],
            tool_choice={"type": "web_search"},
        )
    assert "tool_choice" in refused.value.message
    assert len(fake.requests) == before  # nothing was sent


def test_the_anthropic_sdk_forces_a_responses_providers_search(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    with anthropic.Anthropic(base_url=gateway.url, api_key="key-alice", max_retries=0) as sdk:
        message = sdk.messages.create(
            model="resp/gpt-5",
            max_tokens=300,
            messages=[{"role": "user", "content": QUESTION}],
            tools=[ANTHROPIC_SEARCH],  # type: ignore[list-item]
            tool_choice={"type": "tool", "name": "web_search"},
        )
    sent = _sent(fake)
    assert sent["tool_choice"] == {"type": "web_search"}
    assert {"type": "web_search"} in sent["tools"]
    assert [block.type for block in message.content][:2] == [
        "server_tool_use",
        "web_search_tool_result",
    ]
