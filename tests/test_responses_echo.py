"""A translated Responses answer echoes its request's settings, as OpenAI's does:
whole, streamed, fetched again (``responses.retrieve``), as the ``queued`` object
of a background response, and with ``conversation`` when made in one.

Through a real server and the openai SDK, against the fake provider; plus the
kept record itself (the settings are kept with the answer, within its caps).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import openai
import pytest

from provider_proxy import Guards, MemoryStore, ProxyApp, StoredResponses, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAICompatibleAdapter
from provider_proxy.dialects import Dialect, OpenAIChat, OpenAIResponses
from provider_proxy.dialects.canonical import (
    FinishReason,
    Message,
    OutputFormat,
    Request,
    Response,
    Text,
    Tool,
    ToolChoice,
    Usage,
)
from provider_proxy.engine._responses_state import AnswerStore, from_plain, to_plain

from .conftest import ANTHROPIC_KEY, TRANSPORTS
from .servers import ServerThread, serve, wait_until

CLAUDE = "anthropic/claude-sonnet-4-5"
LOCAL = "local/qwen3-8b"
KEYS = {"key-alice": "alice"}
WEATHER: Any = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS: Any = [{"type": "function", "name": "weather", "parameters": WEATHER, "strict": True}]
ANSWER: Any = {
    "type": "json_schema",
    "name": "answer",
    "schema": {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    },
    "strict": True,
}
#: The settings of the response object that a translated answer echoes.
ECHOED = (
    "instructions",
    "max_output_tokens",
    "metadata",
    "previous_response_id",
    "reasoning",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "conversation",
)


class ChatOnly(OpenAICompatibleAdapter):
    """An OpenAI-compatible server without the Responses API."""

    dialects: ClassVar[tuple[Dialect, ...]] = (OpenAIChat(),)


@pytest.fixture
def gateway(upstream: ServerThread, transport_kind: str) -> Iterator[ServerThread]:
    proxy: ProxyApp = make_asgi_app(
        [
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
            ChatOnly(name="local", base_url=upstream.url + "/v1", api_key="local-key-0123456789"),
        ],
        transport=TRANSPORTS[transport_kind](),
        validate_credentials="off",
        guards=Guards(client_keys=KEYS),
    )
    with serve(proxy) as server:
        yield server


@pytest.fixture
def client(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="key-alice", max_retries=0) as sdk:
        yield sdk


def _settings(response: Any) -> dict[str, Any]:
    dumped = response.model_dump(mode="json")
    return {key: dumped.get(key) for key in ECHOED}


def _formatted(client: openai.OpenAI, model: str, streamed: bool) -> Any:
    """An answer in a JSON schema, with instructions, metadata and limits."""
    settings: Any = {
        "model": model,
        "instructions": "Answer in one word.",
        "input": "Capital of France?",
        "text": {"format": ANSWER},
        "max_output_tokens": 5000,
        "reasoning": {"effort": "low"},
        "metadata": {"run": "7", "team": "search"},
    }
    if not streamed:
        return client.responses.create(**settings)
    with client.responses.stream(**settings) as stream:
        kinds = [event.type for event in stream]
        assert kinds[-1] == "response.completed"
        return stream.get_final_response()


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", [CLAUDE, LOCAL])
def test_a_fetched_answer_echoes_its_requests_settings(
    client: openai.OpenAI, model: str, streamed: bool
) -> None:
    made = _formatted(client, model, streamed)
    assert made.instructions == "Answer in one word."
    assert made.metadata == {"run": "7", "team": "search"}
    assert made.text is not None
    assert made.text.format is not None
    assert made.text.format.type == "json_schema"
    fetched = client.responses.retrieve(made.id)
    assert fetched.text is not None
    assert fetched.text.format is not None
    assert fetched.model_dump(mode="json", by_alias=True)["text"]["format"] == {
        **ANSWER,
        "description": None,
    }
    assert fetched.instructions == "Answer in one word."
    assert fetched.max_output_tokens == 5000
    assert fetched.reasoning is not None
    assert fetched.reasoning.effort == "low"
    assert fetched.metadata == {"run": "7", "team": "search"}
    assert fetched.conversation is None
    assert _settings(fetched) == _settings(made)
    assert fetched.output_text == made.output_text


@pytest.mark.parametrize("model", [CLAUDE, LOCAL])
def test_a_continued_tool_turn_echoes_its_tools_choice_and_previous_id(
    client: openai.OpenAI, model: str
) -> None:
    first = client.responses.create(
        model=model,
        input="Weather in Paris?",
        tools=TOOLS,
        tool_choice={"type": "function", "name": "weather"},
        max_output_tokens=4000,
        extra_headers={"x-fake-tools": "weather"},
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}],
        tools=TOOLS,
        tool_choice="none",
    )
    fetched_first = client.responses.retrieve(first.id)
    fetched_second = client.responses.retrieve(second.id)
    assert fetched_first.tool_choice.model_dump(mode="json", exclude_none=True) == {
        "type": "function",
        "name": "weather",
    }
    assert [t.model_dump(mode="json", exclude_none=True)["name"] for t in fetched_first.tools] == [
        "weather"
    ]
    assert fetched_first.tools[0].parameters == WEATHER
    assert fetched_first.previous_response_id is None
    assert fetched_second.previous_response_id == first.id
    assert fetched_second.tool_choice == "none"
    assert _settings(fetched_first) == _settings(first)
    assert _settings(fetched_second) == _settings(second)


def test_a_queued_background_response_echoes_its_settings(client: openai.OpenAI) -> None:
    queued = client.responses.create(
        model=CLAUDE,
        background=True,
        instructions="Answer in one word.",
        input="Capital of France?",
        text={"format": ANSWER},
        max_output_tokens=3000,
        metadata={"run": "8"},
    )
    assert queued.status == "queued"
    assert queued.instructions == "Answer in one word."
    assert queued.metadata == {"run": "8"}
    assert queued.max_output_tokens == 3000
    assert queued.text is not None
    assert queued.text.format is not None
    assert queued.text.format.type == "json_schema"
    done: list[Any] = []

    def settled() -> bool:
        done[:] = [client.responses.retrieve(queued.id)]
        return done[0].status == "completed"

    assert wait_until(settled, timeout=15)
    assert _settings(done[0]) == _settings(queued)


@pytest.mark.parametrize("model", [CLAUDE, LOCAL])
def test_an_answer_made_in_a_conversation_names_it(client: openai.OpenAI, model: str) -> None:
    conversation = client.conversations.create()
    whole = client.responses.create(model=model, conversation=conversation.id, input="Hi.")
    assert whole.conversation is not None
    assert whole.conversation.id == conversation.id
    with client.responses.stream(
        model=model, conversation={"id": conversation.id}, input="Again."
    ) as stream:
        events = list(stream)
        streamed = stream.get_final_response()
    created = next(e for e in events if e.type == "response.created")
    assert created.response.conversation is not None
    assert created.response.conversation.id == conversation.id
    assert streamed.conversation is not None
    assert streamed.conversation.id == conversation.id
    for answer in (whole, streamed):
        fetched = client.responses.retrieve(answer.id)
        assert fetched.conversation is not None
        assert fetched.conversation.id == conversation.id
    queued = client.responses.create(
        model=model, conversation=conversation.id, input="Once more.", background=True
    )
    assert queued.conversation is not None
    assert queued.conversation.id == conversation.id
    plain = client.responses.create(model=model, input="Hi.")
    assert plain.conversation is None


def test_bad_metadata_is_a_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model=CLAUDE, input="Hi.", metadata={f"k{i}": "v" for i in range(17)}
        )
    assert "metadata" in caught.value.message


# -- the kept record ------------------------------------------------------------------------


def _request(**settings: Any) -> Request:
    return Request(
        model="claude",
        messages=(Message("user", (Text("Hi."),)),),
        system=(Text("Be brief."), Text("Kept system.")),
        transient_system=1,
        store=True,
        **settings,
    )


def test_settings_survive_the_store_as_json() -> None:
    # A schema of the client's may hold the key that tags canonical values.
    odd: Any = {"type": "object", "properties": {"~": {"type": "string"}}, "required": ["~"]}
    request = _request(
        tools=(Tool("weather", "The weather.", WEATHER, strict=True),),
        tool_choice=ToolChoice("tool", "weather"),
        output_format=OutputFormat("json_schema", "odd", odd, True, source="text.format"),
        metadata={"run": "7"},
        conversation="conv_1",
    )
    back = from_plain(to_plain(request))
    assert back == request
    assert back.output_format.schema["properties"]["~"] == {"type": "string"}


@pytest.mark.anyio
async def test_the_kept_record_holds_the_settings_without_the_conversation() -> None:
    answers = AnswerStore(MemoryStore(), StoredResponses())
    codec = OpenAIResponses().codec
    assert codec is not None
    request = _request(metadata={"run": "7"}, max_tokens=50)
    _, keeping = await answers.begin("alice", request, codec)  # type: ignore[arg-type]
    keeping.whole(Response("x", "claude", (Text("Hello."),), FinishReason.STOP, Usage()))
    await keeping.end()
    response, created, settings = await answers.fetch_dated("alice", keeping.answer_id)
    assert created is not None
    assert response.parts == (Text("Hello."),)
    assert settings is not None
    assert settings.messages == ()
    assert settings.system == (Text("Be brief."),)  # the instructions, not the kept system
    assert settings.metadata == {"run": "7"}
    assert settings.max_tokens == 50


@pytest.mark.anyio
async def test_settings_count_towards_the_size_of_a_kept_answer() -> None:
    answers = AnswerStore(MemoryStore(), StoredResponses(max_bytes=2000))
    codec = OpenAIResponses().codec
    assert codec is not None
    big: Any = {"type": "object", "description": "x" * 3000}
    request = _request(tools=(Tool("weather", None, big),))
    _, keeping = await answers.begin("alice", request, codec)  # type: ignore[arg-type]
    keeping.whole(Response("x", "claude", (Text("Hello."),), FinishReason.STOP, Usage()))
    await keeping.end()
    assert not await answers.has("alice", keeping.answer_id)
