"""Conversation sessions: the store (idle TTL, identities, failures, Redis), the history hash,
and a stateful upstream behind the proxy through real servers."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from examples.stateful_provider import MemoAdapter, MemoChat

from provider_proxy import Guards, MemoryStore, RedisStore, Store, make_asgi_app
from provider_proxy.adapters import StaleConversation, Turn, UpstreamRefused, conversation_hash
from provider_proxy.dialects.canonical import Request
from provider_proxy.state import SESSION_TTL, SessionStore
from provider_proxy.transforms import XmlToolCalls

from .redis_server import RedisServer
from .servers import ServerThread, serve
from .test_xml_tools import ROO_TOOLS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the store --------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    redis = RedisStore.from_url(redis_server.url, prefix=f"t-{uuid.uuid4().hex}:")
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.mark.anyio
async def test_a_kept_session_is_found_per_adapter_and_identity(store: Store) -> None:
    sessions = SessionStore(store)
    await sessions.keep("memo", "alice", "h1", {"conversation": "c1", "parent": "m2"})
    assert await sessions.find("memo", "alice", "h1") == {"conversation": "c1", "parent": "m2"}
    assert await sessions.find("memo", "bob", "h1") is None
    assert await sessions.find("other", "alice", "h1") is None
    assert await sessions.find("memo", "alice", "h2") is None
    # Another proxy instance on the same store finds it too.
    assert await SessionStore(store).find("memo", "alice", "h1") is not None
    # One the upstream lost is forgotten.
    await sessions.keep("memo", "alice", "lost", {"parent": "gone"})
    await sessions.restarted("memo", "alice", "lost")
    assert await sessions.find("memo", "alice", "lost") is None
    status = sessions.status()
    assert status["hits"] == 1
    assert status["misses"] == 4
    assert status["saved"] == 2
    assert status["restarted"] == 1
    assert status["active"] == 1
    assert status["ttl_seconds"] == SESSION_TTL == 1800


@pytest.mark.anyio
async def test_sessions_live_for_an_idle_ttl_that_each_use_renews() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    sessions = SessionStore(store, ttl=10, clock=clock)
    await sessions.keep("memo", None, "h", {"parent": "m1"})
    clock.now += 8
    assert await sessions.find("memo", None, "h") is not None  # renewed: lives to +18
    clock.now += 9
    assert await sessions.find("memo", None, "h") is not None
    assert sessions.status()["active"] == 1
    clock.now += 11
    assert await sessions.find("memo", None, "h") is None
    assert sessions.status()["active"] == 0
    store.sweep()
    assert len(store) == 0  # cleaned up, not just hidden


@pytest.mark.anyio
async def test_a_store_that_fails_is_a_miss_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MemoryStore):
        async def get(self, key: str) -> bytes | None:
            raise ConnectionError("down")

        async def set(self, key: str, value: bytes, ttl: float) -> None:
            raise ConnectionError("down")

    sessions = SessionStore(Broken())
    await sessions.keep("memo", "alice", "h", {"parent": "x"})
    assert await sessions.find("memo", "alice", "h") is None
    assert sessions.status()["saved"] == 0
    assert "could not keep a conversation session" in caplog.text


def test_the_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="session_ttl"):
        SessionStore(MemoryStore(), ttl=0)


def test_the_identity_is_not_in_the_key() -> None:
    key = SessionStore.key("memo", "sk-client-secret-key", "h")
    assert "sk-client-secret-key" not in key
    assert key != SessionStore.key("memo", "another", "h")


# -- the conversation ---------------------------------------------------------------------------


def test_the_hash_ignores_whitespace_and_how_a_turn_is_split() -> None:
    base = conversation_hash("Be brief.", [("user", "hi there"), ("assistant", "Hello!\n")])
    assert (
        conversation_hash(" Be brief. ", [("user", "hi  there"), ("assistant", "Hello!")]) == base
    )
    split = conversation_hash(
        "Be brief.", [("user", "hi"), ("user", "there"), ("assistant", "Hello!")]
    )
    assert split == base
    assert conversation_hash("Be brief.", [("user", "hi there"), ("assistant", "Hi!")]) != base
    assert conversation_hash("", [("user", "hi there"), ("assistant", "Hello!")]) != base
    assert conversation_hash("Be brief.", [("assistant", "hi there"), ("user", "Hello!")]) != base


def test_a_fresh_turn_replays_the_conversation() -> None:
    request = Request(model="m", messages=())
    history = (("user", "hi"), ("assistant", "hello"))
    fresh = Turn("m", "Be brief.", history, "and now?", True, request)
    assert fresh.text == (
        "Be brief.\n\nThe conversation so far:\n\nUser: hi\n\nAssistant: hello\n\nUser: and now?"
    )
    assert Turn("m", "Be brief.", history, "and now?", False, request).text == "and now?"
    assert Turn("m", "Be brief.", (), "hi", True, request).text == "Be brief.\n\nhi"
    assert Turn("m", "", (), "hi", True, request).text == "hi"


# -- through real servers ---------------------------------------------------------------------

CLIENT_A, CLIENT_B = "client-a-key-0123456789", "client-b-key-0123456789"


@pytest.fixture
def memo() -> Iterator[tuple[MemoChat, ServerThread]]:
    chat = MemoChat()
    with serve(chat, lifespan="off") as server:
        yield chat, server


def _proxy(memo: tuple[MemoChat, ServerThread], **options: Any) -> Any:
    adapter = MemoAdapter(
        base_url=memo[1].url + "/memo-api", transforms=options.pop("transforms", ())
    )
    return make_asgi_app([adapter], validate_credentials="off", metrics=True, **options)


@pytest.fixture
def proxy(memo: tuple[MemoChat, ServerThread]) -> Iterator[ServerThread]:
    guards = Guards(client_keys={CLIENT_A: "a", CLIENT_B: "b"})
    with serve(_proxy(memo, guards=guards)) as server:
        yield server


def _client(server: ServerThread, key: str = CLIENT_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/memo/v1", api_key=key, max_retries=0)


def _ask(client: openai.OpenAI, messages: list[Any], stream: bool = False) -> str:
    if stream:
        chunks = client.chat.completions.create(model="memo-1", messages=messages, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    completion = client.chat.completions.create(model="memo-1", messages=messages)
    assert completion.choices[0].finish_reason == "stop"
    return completion.choices[0].message.content or ""


def _status(server: ServerThread, key: str = CLIENT_A) -> Any:
    response = httpx.get(f"{server.url}/status", headers={"authorization": f"Bearer {key}"})
    return response.json()["sessions"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_conversation_continues_upstream_with_only_the_new_turn(
    memo: tuple[MemoChat, ServerThread], proxy: ServerThread, stream: bool
) -> None:
    chat = memo[0]
    with _client(proxy) as client:
        messages: list[Any] = [{"role": "system", "content": "Be brief."}]
        messages.append({"role": "user", "content": "hi"})
        first = _ask(client, messages, stream)
        assert first.strip() == "Message 1 of conv-1: hi"
        assert chat.received[-1] == {
            "conversation": "conv-1",
            "parent": None,
            "text": "Be brief.\n\nhi",
        }
        for number, question in enumerate(["and two?", "and three?"]):
            messages += [
                {"role": "assistant", "content": first.strip()},
                {"role": "user", "content": question},
            ]
            first = _ask(client, messages, stream)
            assert first.strip() == f"Message {3 + 2 * number} of conv-1: {question}"
            sent = chat.received[-1]
            assert sent["conversation"] == "conv-1"
            assert sent["text"] == question  # only the new turn
            assert sent["parent"] in chat.conversations["conv-1"]
    assert len(chat.conversations) == 1
    status = _status(proxy)
    assert (status["hits"], status["saved"], status["active"]) == (2, 3, 3)


def test_an_edited_history_starts_a_fresh_conversation_and_replays_it(
    memo: tuple[MemoChat, ServerThread], proxy: ServerThread
) -> None:
    chat = memo[0]
    with _client(proxy) as client:
        first = _ask(client, [{"role": "user", "content": "hi"}])
        edited = [
            {"role": "user", "content": "hello"},  # not what was sent
            {"role": "assistant", "content": first},
            {"role": "user", "content": "next"},
        ]
        assert _ask(client, edited).startswith("Message 1 of conv-2: User: next")
    assert chat.received[-1]["parent"] is None
    assert chat.received[-1]["text"] == (
        f"The conversation so far:\n\nUser: hello\n\nAssistant: {first}\n\nUser: next"
    )
    assert _status(proxy)["misses"] == 1


def test_a_lost_upstream_conversation_is_reopened_and_retried_once_transparently(
    memo: tuple[MemoChat, ServerThread], proxy: ServerThread
) -> None:
    chat = memo[0]
    with _client(proxy) as client:
        first = _ask(client, [{"role": "user", "content": "hi"}])
        chat.forget()  # the service dropped it: the stored parent id is no longer valid
        answer = _ask(
            client,
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": first},
                {"role": "user", "content": "still there?"},
            ],
            stream=True,
        )
    assert answer.strip() == "Message 1 of conv-2: User: still there?"
    assert chat.received[-1]["parent"] is None
    assert "User: hi" in chat.received[-1]["text"]
    status = _status(proxy)
    assert (status["hits"], status["restarted"]) == (1, 1)
    metrics = httpx.get(
        f"{proxy.url}/metrics", headers={"authorization": f"Bearer {CLIENT_A}"}
    ).text
    assert 'provider_proxy_sessions_total{outcome="restarted"} 1.0' in metrics
    assert "provider_proxy_sessions_active 1.0" in metrics  # the lost one is forgotten


def test_one_client_never_continues_another_clients_conversation(
    memo: tuple[MemoChat, ServerThread], proxy: ServerThread
) -> None:
    chat = memo[0]
    with _client(proxy, CLIENT_A) as a, _client(proxy, CLIENT_B) as b:
        first = _ask(a, [{"role": "user", "content": "hi"}])
        history = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "more"},
        ]
        _ask(b, history)
        assert chat.received[-1]["parent"] is None  # b's is a fresh one
        _ask(a, history)
        assert chat.received[-1]["parent"] is not None
        assert chat.received[-1]["conversation"] == "conv-1"


def test_what_the_upstream_cannot_take_is_refused_or_named(
    memo: tuple[MemoChat, ServerThread], proxy: ServerThread
) -> None:
    chat = memo[0]
    with _client(proxy) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(
                model="memo-1", messages=[{"role": "user", "content": "hi"}], tools=ROO_TOOLS
            )
        assert "'tools'" in str(raised.value)
        assert "XmlToolCalls" in str(raised.value)
        assert chat.received == []
        with pytest.raises(openai.BadRequestError, match="last message must be the user"):
            client.chat.completions.create(
                model="memo-1", messages=[{"role": "assistant", "content": "hi"}]
            )
        response = client.chat.completions.with_raw_response.create(
            model="memo-1", messages=[{"role": "user", "content": "hi"}], temperature=0.2
        )
    assert response.headers["x-proxy-dropped-fields"] == "temperature"


def test_xml_tool_calls_keep_hitting_the_session_through_a_tool_loop(
    memo: tuple[MemoChat, ServerThread],
) -> None:
    chat = memo[0]
    app = _proxy(memo, transforms=[XmlToolCalls()])
    call = "<read_file><path>a.py</path></read_file>"
    with serve(app) as server, _client(server) as client:
        first = client.chat.completions.create(
            model="memo-1", messages=[{"role": "user", "content": call}], tools=ROO_TOOLS
        )
        message = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls"
        assert message.tool_calls is not None
        assert json.loads(message.tool_calls[0].function.arguments) == {"path": "a.py"}  # type: ignore[union-attr]
        assert "TOOL USE" in chat.received[-1]["text"]  # the tools taught in the first turn
        second = client.chat.completions.create(
            model="memo-1",
            messages=[
                {"role": "user", "content": call},
                message.model_dump(exclude_none=True),  # type: ignore[misc]
                {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "print(1)"},
            ],
            tools=ROO_TOOLS,
        )
        assert second.choices[0].message.content is not None
    sent = chat.received[-1]
    assert sent["conversation"] == "conv-1"  # the same upstream conversation
    assert sent["text"] == "[read_file] Result:\nprint(1)"
    assert sent["parent"] is not None


class AlwaysStale(MemoAdapter):
    """An upstream that never knows the conversation it is sent into."""

    async def send_turn(self, upstream: Any, ids: Any, turn: Turn) -> httpx.Response:
        raise StaleConversation


def test_an_upstream_that_loses_a_fresh_conversation_is_a_502_in_openai_format(
    memo: tuple[MemoChat, ServerThread],
) -> None:
    adapter = AlwaysStale(base_url=memo[1].url + "/memo-api")
    with serve(make_asgi_app([adapter], validate_credentials="off")) as server:
        response = httpx.post(
            f"{server.url}/memo/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 502
    assert "did not know a conversation it had just opened" in response.json()["error"]["message"]


def test_two_proxies_on_one_redis_continue_one_conversation(
    memo: tuple[MemoChat, ServerThread], redis_server: RedisServer
) -> None:
    chat = memo[0]
    prefix = f"t-{uuid.uuid4().hex}:"
    first_app = _proxy(memo, store=RedisStore.from_url(redis_server.url, prefix=prefix))
    second_app = _proxy(memo, store=RedisStore.from_url(redis_server.url, prefix=prefix))
    with serve(first_app) as one, serve(second_app) as two:
        with _client(one) as client:
            answer = _ask(client, [{"role": "user", "content": "hi"}])
        with _client(two) as client:
            _ask(
                client,
                [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": "on the other instance"},
                ],
            )
    assert chat.received[-1]["conversation"] == "conv-1"
    assert chat.received[-1]["text"] == "on the other instance"
    assert len(chat.conversations) == 1


class BreaksMidAnswer(MemoAdapter):
    """An upstream whose answer fails after its words, before it is complete."""

    def answer_reader(self, ids: Any, turn: Turn) -> Any:
        reader = super().answer_reader(ids, turn)

        def failing() -> list[Any]:
            raise UpstreamRefused("MemoChat broke off the answer.")

        reader.end = failing  # type: ignore[method-assign]
        return reader


def test_a_failure_mid_answer_is_a_streamed_error_and_keeps_no_session(
    memo: tuple[MemoChat, ServerThread],
) -> None:
    adapter = BreaksMidAnswer(base_url=memo[1].url + "/memo-api")
    app = make_asgi_app([adapter], validate_credentials="off")
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with serve(app) as server:
        raw = httpx.post(f"{server.url}/memo/v1/chat/completions", json=body).content
        status = httpx.get(f"{server.url}/status").json()["sessions"]
    events = [json.loads(e[6:]) for e in raw.split(b"\n\n") if e.startswith(b"data: {")]
    assert events[-1]["error"]["message"] == "MemoChat broke off the answer."
    assert status["saved"] == 0
