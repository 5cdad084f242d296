"""More real clients of ``{mount}/v1/responses``: the OpenAI Agents SDK's ``Runner``
with a function tool, and kept responses on a real Redis shared by two app
instances (a client continues on one what it began on the other)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

from provider_proxy import Guards, RedisStore, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY
from .redis_server import RedisServer
from .servers import ServerThread, serve

CLAUDE = "anthropic/claude-sonnet-4-5"
TEXT = "Hello from the fake upstream, streamed one piece at a time."
KEYS = {"key-alice": "alice", "key-bob": "bob"}


@pytest.fixture
def gateway(upstream: ServerThread) -> Iterator[ServerThread]:
    proxy = make_asgi_app(
        [AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY)],
        validate_credentials="off",
    )
    with serve(proxy) as server:
        yield server


# -- the OpenAI Agents SDK ----------------------------------------------------------------


async def _tools_until_answered(request: httpx.Request) -> None:
    """Ask the fake provider for a tool call until the tool's output is in the request."""
    if b"function_call_output" not in request.content:
        request.headers["x-fake-tools"] = "weather"


def _agent(client: openai.AsyncOpenAI, asked: list[str]) -> Agent[Any]:
    set_tracing_disabled(True)  # no traces exported anywhere

    @function_tool
    def weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"Sunny in {city}."

    return Agent(
        name="forecaster",
        instructions="Answer with the weather.",
        tools=[weather],
        model=OpenAIResponsesModel(model=CLAUDE, openai_client=client),
    )


def _async_client(gateway: ServerThread) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1",
        api_key="unused",
        max_retries=0,
        http_client=httpx.AsyncClient(event_hooks={"request": [_tools_until_answered]}),
    )


def _tool_turn(fake: FakeUpstream) -> Any:
    """The body of the turn that carried the tool's result to the provider."""
    return json.loads(fake.last.body)


def test_the_agents_runner_calls_a_function_tool_through_the_gateway(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    asked: list[str] = []

    async def run() -> Any:
        async with _async_client(gateway) as client:
            return (await Runner.run(_agent(client, asked), "Weather in Paris?")).final_output

    assert anyio.run(run) == TEXT
    assert asked == ["fake-city"]
    sent = _tool_turn(fake)
    assert fake.last.path == "/v1/messages"
    assert sent["system"] == [{"type": "text", "text": "Answer with the weather."}]
    assert sent["tools"][0]["name"] == "weather"
    call, output = sent["messages"][1]["content"][0], sent["messages"][2]["content"][0]
    assert call["type"] == "tool_use"
    assert call["input"] == {"city": "fake-city"}
    assert output["tool_use_id"] == call["id"]
    assert output["content"] == [{"type": "text", "text": "Sunny in fake-city."}]


def test_the_agents_runner_streamed(gateway: ServerThread, fake: FakeUpstream) -> None:
    asked: list[str] = []

    async def run() -> tuple[Any, list[str]]:
        async with _async_client(gateway) as client:
            result = Runner.run_streamed(_agent(client, asked), "Weather in Paris?")
            kinds = [event.type async for event in result.stream_events()]
            return result.final_output, kinds

    final, kinds = anyio.run(run)
    assert asked == ["fake-city"]
    assert final == TEXT
    assert "raw_response_event" in kinds
    assert "run_item_stream_event" in kinds
    assert _tool_turn(fake)["stream"] is True


# -- kept responses on Redis, shared by two instances ---------------------------------------


@pytest.fixture
def two_instances(
    upstream: ServerThread, redis_server: RedisServer
) -> Iterator[tuple[ServerThread, ServerThread]]:
    prefix = f"t-{uuid.uuid4().hex}:"

    def instance() -> Any:
        return make_asgi_app(
            [AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY)],
            validate_credentials="off",
            guards=Guards(client_keys=KEYS),
            store=RedisStore.from_url(redis_server.url, prefix=prefix),
        )

    with serve(instance()) as first, serve(instance()) as second:
        yield first, second


def _client(server: ServerThread, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def test_a_response_kept_on_one_instance_continues_on_the_other(
    two_instances: tuple[ServerThread, ServerThread], fake: FakeUpstream
) -> None:
    first, second = two_instances
    with _client(first, "key-alice") as on_first, _client(second, "key-alice") as on_second:
        begun = on_first.responses.create(model=CLAUDE, input="Remember: blue.")
        continued = on_second.responses.create(
            model=CLAUDE, previous_response_id=begun.id, input="What did I say?"
        )
        sent = json.loads(fake.last.body)["messages"]
        assert sent[0] == {"role": "user", "content": [{"type": "text", "text": "Remember: blue."}]}
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        assert on_first.responses.retrieve(continued.id).output_text == TEXT
        on_second.responses.delete(begun.id)
        with pytest.raises(openai.NotFoundError):
            on_first.responses.retrieve(begun.id)


def test_isolation_holds_across_instances(
    two_instances: tuple[ServerThread, ServerThread],
) -> None:
    first, second = two_instances
    with _client(first, "key-alice") as alice, _client(second, "key-bob") as bob:
        mine = alice.responses.create(model=CLAUDE, input="Secret.")
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.create(model=CLAUDE, previous_response_id=mine.id, input="Tell me.")
