"""The Conversations API on translated models, through a real server and the openai SDK.

``conversations.create`` / ``retrieve`` / ``update`` / ``delete``, its
``items`` (list with paging, create, retrieve, delete), and
``responses.create(conversation=...)``: the conversation's items are the
history the provider is sent, and the turn's input and output are appended.
Checked at both ends: what the SDK got, and what the fake provider was sent.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import anyio
import httpx
import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from agents.memory import OpenAIConversationsSession

from provider_proxy import (
    BadRequest,
    Guards,
    MemoryStore,
    ProxyApp,
    RedisStore,
    StoredResponses,
    make_asgi_app,
)
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter, OpenAICompatibleAdapter
from provider_proxy.dialects import Dialect, OpenAIChat
from provider_proxy.engine._conversations import ConversationNotFound, Conversations
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY, OPENAI_KEY, TRANSPORTS
from .redis_server import RedisServer
from .servers import ServerThread, serve

CLAUDE = "anthropic/claude-sonnet-4-5"
LOCAL = "local/qwen3-8b"
GPT = "openai/gpt-5"
TEXT = "Hello from the fake upstream, streamed one piece at a time."
KEYS = {"key-alice": "alice", "key-bob": "bob"}
FIRST: Any = [{"type": "message", "role": "user", "content": "My name is Ada."}]


class ChatOnly(OpenAICompatibleAdapter):
    """An OpenAI-compatible server without the Responses API (vLLM's Chat, Ollama, ...)."""

    dialects: ClassVar[tuple[Dialect, ...]] = (OpenAIChat(),)


@pytest.fixture
def proxy(upstream: ServerThread, transport_kind: str) -> ProxyApp:
    return make_asgi_app(
        [
            OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
            ChatOnly(name="local", base_url=upstream.url + "/v1", api_key="local-key-0123456789"),
        ],
        transport=TRANSPORTS[transport_kind](),
        validate_credentials="off",
        guards=Guards(client_keys=KEYS),
        stored_responses=StoredResponses(per_client=3, max_bytes=64 * 1024),
    )


@pytest.fixture
def gateway(proxy: ProxyApp) -> Iterator[ServerThread]:
    with serve(proxy) as server:
        yield server


def _client(server: ServerThread, key: str = "key-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


@pytest.fixture
def client(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with _client(gateway) as sdk:
        yield sdk


def _sent(fake: FakeUpstream) -> Any:
    return json.loads(fake.last.body)


def _texts(item: Any) -> list[str]:
    return [part.text for part in item.content]


def test_a_conversation_is_made_read_changed_and_deleted(client: openai.OpenAI) -> None:
    made = client.conversations.create(items=FIRST, metadata={"topic": "names"})
    assert made.id.startswith("conv_")
    assert made.object == "conversation"
    assert made.metadata == {"topic": "names"}
    assert abs(made.created_at - time.time()) < 60
    assert client.conversations.retrieve(made.id).metadata == {"topic": "names"}
    changed = client.conversations.update(made.id, metadata={"topic": "other"})
    assert changed.metadata == {"topic": "other"}
    assert client.conversations.retrieve(made.id).metadata == {"topic": "other"}
    items = client.conversations.items.list(made.id).data
    assert [(i.type, _texts(i)) for i in items] == [("message", ["My name is Ada."])]
    deleted = client.conversations.delete(made.id)
    assert deleted.deleted is True
    assert deleted.id == made.id
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(made.id)


@pytest.mark.parametrize(
    ("model", "path"), [(CLAUDE, "/v1/messages"), (LOCAL, "/v1/chat/completions")]
)
def test_responses_in_a_conversation_send_its_history_and_add_to_it(
    client: openai.OpenAI, fake: FakeUpstream, model: str, path: str
) -> None:
    conversation = client.conversations.create(items=FIRST)
    first = client.responses.create(model=model, conversation=conversation.id, input="Hi.")
    assert first.output_text == TEXT
    assert fake.last.path == path
    second = client.responses.create(
        model=model, conversation={"id": conversation.id}, input="What is my name?"
    )
    assert second.output_text == TEXT
    sent = _sent(fake)["messages"]
    said = [(m["role"], m["content"] if isinstance(m["content"], str) else m["content"][0]["text"])
            for m in sent]  # fmt: skip
    assert said == [
        ("user", "My name is Ada."),
        ("user", "Hi."),
        ("assistant", TEXT),
        ("user", "What is my name?"),
    ]
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [(i.type, getattr(i, "role", None)) for i in items] == [
        ("message", "user"),
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
    ]
    assert _texts(items[1]) == ["Hi."]
    assert _texts(items[2]) == [TEXT]
    assert len({i.id for i in items}) == 5


def test_items_are_paged_added_read_and_deleted(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(items=FIRST)
    added = client.conversations.items.create(
        conversation.id,
        items=[
            {"type": "message", "role": "user", "content": "Two."},
            {"type": "message", "role": "assistant", "content": "Three."},
        ],
    )
    assert [_texts(i) for i in added.data] == [["Two."], ["Three."]]
    newest = client.conversations.items.list(conversation.id, limit=2)
    assert [_texts(i) for i in newest.data] == [["Three."], ["Two."]]
    assert newest.has_more is True
    rest = client.conversations.items.list(conversation.id, limit=2, after=newest.data[-1].id)
    assert [_texts(i) for i in rest.data] == [["My name is Ada."]]
    assert rest.has_more is False
    every = list(client.conversations.items.list(conversation.id, limit=1))  # the SDK pages
    assert len(every) == 3
    one = client.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    assert _texts(one) == ["Two."]
    after = client.conversations.items.delete(added.data[0].id, conversation_id=conversation.id)
    assert after.id == conversation.id
    left = client.conversations.items.list(conversation.id, order="asc").data
    assert [_texts(i) for i in left] == [["My name is Ada."], ["Three."]]
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)


def test_conversation_with_previous_response_id_is_openais_400(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    conversation = client.conversations.create()
    earlier = client.responses.create(model=CLAUDE, input="Hi.")
    seen = len(fake.requests)
    with pytest.raises(openai.BadRequestError, match="Mutually exclusive"):
        client.responses.create(
            model=CLAUDE,
            conversation=conversation.id,
            previous_response_id=earlier.id,
            input="Again.",
        )
    assert len(fake.requests) == seen


def test_one_client_never_sees_anothers_conversation(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    with _client(gateway, "key-alice") as alice, _client(gateway, "key-bob") as bob:
        mine = alice.conversations.create(items=FIRST)
        seen = len(fake.requests)
        with pytest.raises(openai.NotFoundError):
            bob.conversations.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.conversations.items.list(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.conversations.delete(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.create(model=CLAUDE, conversation=mine.id, input="Tell me.")
        assert len(fake.requests) == seen
        assert alice.conversations.retrieve(mine.id).id == mine.id
    with _client(gateway, "key-mallory") as mallory, pytest.raises(openai.AuthenticationError):
        mallory.conversations.create()


def test_a_kept_conversation_on_an_openai_model_is_translated(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    """OpenAI would not know the proxy's conversation: its items are sent instead."""
    conversation = client.conversations.create(items=FIRST)
    client.responses.create(model=GPT, conversation=conversation.id, input="Hi.")
    sent = _sent(fake)
    assert "conversation" not in sent
    assert "My name is Ada." in json.dumps(sent)
    # A conversation the proxy does not keep is OpenAI's own: passed on as it is.
    with pytest.raises(openai.NotFoundError, match="conv_openais"):
        client.responses.create(model=GPT, conversation="conv_openais", input="Hi.")
    assert _sent(fake)["conversation"] == "conv_openais"


def test_bad_items_and_metadata_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="items"):
        client.conversations.create(items=[{"type": "bogus_item"}])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError, match="metadata"):
        client.conversations.create(metadata={f"k{i}": "v" for i in range(17)})
    with pytest.raises(openai.BadRequestError, match="at most 20"):
        client.conversations.create(items=FIRST * 21)
    conversation = client.conversations.create()
    with pytest.raises(openai.BadRequestError, match="order"):
        client.conversations.items.list(conversation.id, order="sideways")  # type: ignore[arg-type]


def test_the_limits_of_kept_conversations(client: openai.OpenAI, fake: FakeUpstream) -> None:
    kept = [client.conversations.create() for _ in range(3)]
    with pytest.raises(openai.RateLimitError):
        client.conversations.create()
    client.conversations.delete(kept[0].id)
    client.conversations.create()  # a slot was freed
    big = [{"type": "message", "role": "user", "content": "x" * 20_000}]
    client.conversations.items.create(kept[1].id, items=big)
    client.conversations.items.create(kept[1].id, items=big)
    with pytest.raises(openai.APIStatusError) as refused:
        client.conversations.items.create(kept[1].id, items=big * 2)
    assert refused.value.status_code == 413
    assert len(client.conversations.items.list(kept[1].id).data) == 2  # nothing half-added


def test_a_background_response_in_a_conversation_adds_to_it(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(items=FIRST)
    begun = client.responses.create(
        model=CLAUDE, conversation=conversation.id, input="Hi.", background=True
    )
    for _ in range(300):
        if client.responses.retrieve(begun.id).status == "completed":
            break
        time.sleep(0.05)
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [_texts(i) for i in items] == [["My name is Ada."], ["Hi."], [TEXT]]


# -- shared by two instances on one Redis ---------------------------------------------------


def test_a_conversation_made_on_one_instance_goes_on_on_the_other(
    upstream: ServerThread, redis_server: RedisServer, fake: FakeUpstream
) -> None:
    prefix = f"t-{uuid.uuid4().hex}:"

    def instance() -> Any:
        return make_asgi_app(
            [AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY)],
            validate_credentials="off",
            guards=Guards(client_keys=KEYS),
            store=RedisStore.from_url(redis_server.url, prefix=prefix),
        )

    with serve(instance()) as first, serve(instance()) as second:
        with _client(first) as on_first, _client(second) as on_second:
            conversation = on_first.conversations.create(items=FIRST)
            on_second.responses.create(model=CLAUDE, conversation=conversation.id, input="Hi.")
            assert "My name is Ada." in json.dumps(_sent(fake))
            items = on_first.conversations.items.list(conversation.id, order="asc").data
            assert [_texts(i) for i in items] == [["My name is Ada."], ["Hi."], [TEXT]]
            with _client(second, "key-bob") as bob, pytest.raises(openai.NotFoundError):
                bob.conversations.retrieve(conversation.id)


def test_a_streamed_turn_in_a_conversation_adds_to_it(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(items=FIRST)
    with client.responses.stream(model=CLAUDE, conversation=conversation.id, input="Hi.") as stream:
        assert stream.get_final_response().output_text == TEXT
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [_texts(i) for i in items] == [["My name is Ada."], ["Hi."], [TEXT]]


def test_a_failed_turn_adds_nothing(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(items=FIRST)
    with pytest.raises(openai.InternalServerError):
        client.responses.create(
            model=CLAUDE,
            conversation=conversation.id,
            input="Hi.",
            extra_headers={"x-fake-status": "500"},
        )
    assert len(client.conversations.items.list(conversation.id).data) == 1


# -- the store side, on a clock the test moves -----------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _no_check(items: list[Any]) -> None:
    """Item checks are the codec's (tested through the server above)."""


@pytest.mark.anyio
async def test_a_conversation_lives_ttl_seconds_after_its_last_change() -> None:

    clock = _Clock()
    conversations = Conversations(MemoryStore(clock=clock), StoredResponses(ttl=10))
    made = await conversations.create("alice", FIRST, None, _no_check)
    clock.now += 8
    await conversations.add_items("alice", made["id"], FIRST, _no_check)  # a change
    clock.now += 8  # 16 s after it was made, 8 after its last change
    page = await conversations.list_items("alice", made["id"], "order=asc")
    assert [item["content"][0]["text"] for item in page["data"]] == ["My name is Ada."] * 2
    clock.now += 3
    with pytest.raises(ConversationNotFound):
        await conversations.get("alice", made["id"])


@pytest.mark.anyio
async def test_paging_refuses_what_the_api_refuses() -> None:

    conversations = Conversations(MemoryStore(), StoredResponses())
    made = await conversations.create(None, FIRST, {"a": "b"}, _no_check)
    for query in ("limit=0", "limit=101", "limit=x", "order=up", "after=msg_nope"):
        with pytest.raises(BadRequest):
            await conversations.list_items(None, made["id"], query)
    page = await conversations.list_items(None, made["id"], "limit=100")
    assert page["has_more"] is False
    assert page["first_id"] == page["last_id"] == page["data"][0]["id"]


# -- the OpenAI Agents SDK: conversation_id, and a conversations session ----------------------


async def _tools_until_answered(request: httpx.Request) -> None:
    """Ask the fake provider for a tool call until the tool's output is in the request."""
    if request.url.path.endswith("/responses") and b"function_call_output" not in request.content:
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


def _async_client(gateway: ServerThread, hook: bool = True) -> openai.AsyncOpenAI:
    hooks = {"request": [_tools_until_answered]} if hook else {}
    return openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1",
        api_key="key-alice",
        max_retries=0,
        http_client=httpx.AsyncClient(event_hooks=hooks),
    )


def test_the_agents_runner_keeps_a_tool_loop_in_a_conversation(
    gateway: ServerThread, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    conversation = client.conversations.create()
    asked: list[str] = []

    async def run() -> Any:
        async with _async_client(gateway) as sdk:
            agent = _agent(sdk, asked)
            first = await Runner.run(agent, "Weather in Paris?", conversation_id=conversation.id)
            return first.final_output

    assert anyio.run(run) == TEXT
    assert asked == ["fake-city"]
    sent = _sent(fake)["messages"]  # the turn that carried the tool's output
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][0]["type"] == "tool_use"
    assert sent[2]["content"][0]["tool_use_id"] == sent[1]["content"][0]["id"]
    kinds = [i.type for i in client.conversations.items.list(conversation.id, order="asc").data]
    assert kinds == ["message", "function_call", "function_call_output", "message"]


def test_an_agents_conversations_session_through_the_gateway(
    gateway: ServerThread, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    async def run() -> str:
        async with _async_client(gateway, hook=False) as sdk:
            set_tracing_disabled(True)
            agent = Agent(
                name="talker", model=OpenAIResponsesModel(model=CLAUDE, openai_client=sdk)
            )
            session = OpenAIConversationsSession(openai_client=sdk)
            await Runner.run(agent, "My name is Ada.", session=session)
            await Runner.run(agent, "What is my name?", session=session)
            return await session._get_session_id()

    conversation_id = anyio.run(run)
    assert conversation_id.startswith("conv_")
    said = json.dumps(_sent(fake)["messages"])
    assert said.index("My name is Ada.") < said.index(TEXT) < said.index("What is my name?")
    items = client.conversations.items.list(conversation_id, order="asc").data
    assert [(i.type, getattr(i, "role", None)) for i in items] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
    ]


def test_a_turn_that_would_make_a_conversation_too_large_is_refused_first(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    conversation = client.conversations.create()
    big = "y" * 40_000
    client.conversations.items.create(
        conversation.id, items=[{"type": "message", "role": "user", "content": big}]
    )
    seen = len(fake.requests)
    with pytest.raises(openai.APIStatusError) as refused:
        client.responses.create(model=CLAUDE, conversation=conversation.id, input=big)
    assert refused.value.status_code == 413
    assert len(fake.requests) == seen  # not sent, so not billed
