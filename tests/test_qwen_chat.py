"""QwenChatAdapter against FakeQwenChat (the documented protocol) through real servers:
multi-turn through the session store, streaming, thinking, the gateway, and every
credential failure as a clear error that never shows the token."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from provider_proxy import make_asgi_app
from provider_proxy.adapters import QwenChatAdapter
from provider_proxy.adapters._environment import from_environment
from provider_proxy.adapters.qwen_chat import QwenAnswerReader
from provider_proxy.dialects.canonical import (
    Finish,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    Usage,
    UsageReport,
)
from provider_proxy.testing import FakeQwenChat
from provider_proxy.transforms import XmlToolCalls

from .servers import ServerThread, serve, wait_until
from .test_xml_tools import ROO_TOOLS

TOKEN = "fake-umid-token-0123456789"
COOKIES = "ssxmod_itna=abc; token=fake-session-0123456789; other=1"


@pytest.fixture
def fake() -> Iterator[tuple[FakeQwenChat, ServerThread]]:
    qwen = FakeQwenChat(token=TOKEN, cookie="token=fake-session-0123456789")
    with serve(qwen, lifespan="off") as server:
        yield qwen, server


def _adapter(fake: tuple[FakeQwenChat, ServerThread], **options: Any) -> QwenChatAdapter:
    options.setdefault("api_key", TOKEN)
    options.setdefault("cookies", COOKIES)
    return QwenChatAdapter(base_url=fake[1].url, **options)


@pytest.fixture
def proxy(fake: tuple[FakeQwenChat, ServerThread]) -> Iterator[ServerThread]:
    with serve(make_asgi_app([_adapter(fake)], validate_credentials="off")) as server:
        yield server


def _client(server: ServerThread, base: str = "/qwen-chat/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + base, api_key="unused", max_retries=0)


def _completions(qwen: FakeQwenChat) -> list[Any]:
    return [body for path, body in qwen.requests if path == "/api/v2/chat/completions"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("base", "model"), [("/qwen-chat/v1", "qwen3-max"), ("/v1", "qwen-chat/qwen3-max")]
)
def test_a_multi_turn_conversation_is_one_chat_upstream(
    fake: tuple[FakeQwenChat, ServerThread],
    proxy: ServerThread,
    stream: bool,
    base: str,
    model: str,
) -> None:
    qwen = fake[0]
    messages: list[Any] = [{"role": "user", "content": "hello"}]
    with _client(proxy, base) as client:
        for turn in range(3):
            if stream:
                chunks = client.chat.completions.create(model=model, messages=messages, stream=True)
                answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            else:
                completion = client.chat.completions.create(model=model, messages=messages)
                answer = completion.choices[0].message.content or ""
            assert answer == f"Turn {turn + 1} of chat-1: {messages[-1]['content']}"
            messages += [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": f"question {turn + 2}"},
            ]
    new_chats = [body for path, body in qwen.requests if path == "/api/v2/chats/new"]
    assert len(new_chats) == 1
    assert new_chats[0]["models"] == ["qwen3-max"]
    sent = _completions(qwen)
    assert [body["parent_id"] for body in sent] == [None, "parent-2", "parent-3"]
    assert [body["messages"][0]["content"] for body in sent] == [
        "hello",
        "question 2",
        "question 3",
    ]
    assert all(body["messages"][0]["parentId"] == body["parent_id"] for body in sent)


def test_the_fake_refuses_a_parent_that_is_not_an_answers_parent_id(
    fake: tuple[FakeQwenChat, ServerThread],
) -> None:
    server = fake[1]
    headers = {
        "bx-umidtoken": TOKEN,
        "cookie": COOKIES,
        "user-agent": "Mozilla/5.0 test",
    }
    with httpx.Client(base_url=server.url, headers=headers) as client:
        chat = client.post(
            "/api/v2/chats/new",
            json={
                "title": "t",
                "models": ["qwen3-max"],
                "chat_mode": "guest",
                "chat_type": "t2t",
                "timestamp": 1,
            },
        ).json()["data"]["id"]

        def send(parent: str | None) -> Any:
            message = {
                "fid": "f",
                "parentId": parent,
                "childrenIds": [],
                "role": "user",
                "content": "hi",
                "user_action": "chat",
                "files": [],
                "timestamp": 1,
                "models": ["qwen3-max"],
                "chat_type": "t2t",
                "feature_config": {"thinking_enabled": False, "output_schema": "phase"},
                "sub_chat_type": "t2t",
                "parent_id": parent,
            }
            body = {
                "stream": False,
                "incremental_output": True,
                "chat_id": chat,
                "chat_mode": "guest",
                "model": "qwen3-max",
                "parent_id": parent,
                "messages": [message],
                "timestamp": 1,
            }
            return client.post(f"/api/v2/chat/completions?chat_id={chat}", json=body).json()

        first = send(None)["data"]
        assert first["choices"][0]["message"]["content"] == f"Turn 1 of {chat}: hi"
        refused = send(first["message_id"])
        assert refused["success"] is False
        assert "is not exist" in refused["data"]["details"]
        assert send(first["parent_id"])["data"]["choices"][0]["message"]["content"].startswith(
            "Turn 2"
        )


def test_thinking_comes_back_as_reasoning_content(
    fake: tuple[FakeQwenChat, ServerThread], proxy: ServerThread
) -> None:
    body = {
        "model": "qwen3-max",
        "messages": [{"role": "user", "content": "why?"}],
        "reasoning_effort": "high",
    }
    answer = httpx.post(f"{proxy.url}/qwen-chat/v1/chat/completions", json=body).json()
    message = answer["choices"][0]["message"]
    assert message["content"] == "Turn 1 of chat-1: why?"
    assert message["reasoning_content"] == "Let me think."
    assert answer["usage"]["prompt_tokens"] == 12
    sent = _completions(fake[0])[0]["messages"][0]
    assert sent["feature_config"] == {"thinking_enabled": True, "output_schema": "phase"}


def test_an_upstream_that_lost_the_chat_gets_a_fresh_one_transparently(
    fake: tuple[FakeQwenChat, ServerThread], proxy: ServerThread
) -> None:
    qwen = fake[0]
    with _client(proxy) as client:
        first = client.chat.completions.create(
            model="qwen3-max", messages=[{"role": "user", "content": "hello"}]
        )
        qwen.forget_chats()
        answer = first.choices[0].message.content
        second = client.chat.completions.create(
            model="qwen3-max",
            messages=[
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "again"},
            ],
        )
    assert second.choices[0].message.content == "Turn 1 of chat-3: User: again"
    last = _completions(qwen)[-1]
    assert last["parent_id"] is None
    assert "User: hello" in last["messages"][0]["content"]


def _error(server: ServerThread) -> httpx.Response:
    return httpx.post(
        f"{server.url}/qwen-chat/v1/chat/completions",
        json={"model": "qwen3-max", "messages": [{"role": "user", "content": "hi"}]},
    )


@pytest.mark.parametrize(
    ("options", "status", "kind", "says"),
    [
        (
            {"cookies": "token=someone-elses-session-0123"},
            502,
            "upstream_challenge",
            "challenge page",
        ),
        ({"user_agent": "curl/8"}, 502, "upstream_challenge", "challenge page"),
        ({"api_key": "wrong-umid-token-0123456789"}, 401, "upstream_auth_rejected", "QWEN_TOKEN"),
    ],
)
def test_credential_failures_are_clear_openai_errors_without_the_token(
    fake: tuple[FakeQwenChat, ServerThread],
    options: dict[str, Any],
    status: int,
    kind: str,
    says: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "provider_proxy")
    app = make_asgi_app([_adapter(fake, **options)], validate_credentials="off")
    with serve(app) as server:
        response = _error(server)
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["type"], error["code"]) == (kind, kind)
    assert says in error["message"]
    for secret in (
        TOKEN,
        "wrong-umid-token-0123456789",
        "fake-session-0123456789",
        "someone-elses",
    ):
        assert secret not in response.text
        assert secret not in caplog.text
    assert _completions(fake[0]) == []


def test_an_expired_login_is_a_401_that_says_so(
    fake: tuple[FakeQwenChat, ServerThread], proxy: ServerThread
) -> None:
    fake[0].expired = True
    with _client(proxy) as client, pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(
            model="qwen3-max", messages=[{"role": "user", "content": "x"}]
        )
    assert "login has expired" in str(raised.value)
    assert "QWEN_COOKIES" in str(raised.value)


def test_credentials_come_from_the_environment_and_both_are_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("QWEN_COOKIES", raising=False)
    monkeypatch.setenv("QWEN_TOKEN", TOKEN)
    adapter = QwenChatAdapter()
    assert not adapter.availability().enabled
    assert "QWEN_COOKIES" in (adapter.availability().reason or "")
    assert not any(isinstance(a, QwenChatAdapter) for a in from_environment())
    monkeypatch.setenv("QWEN_COOKIES", COOKIES)
    adapter = QwenChatAdapter()
    assert adapter.availability().enabled
    assert adapter.name == "qwen-chat"
    assert str(adapter.base_url) == "https://chat.qwen.ai"
    assert TOKEN not in repr(adapter)
    assert any(isinstance(a, QwenChatAdapter) for a in from_environment())


def test_models_are_listed_from_the_service(
    fake: tuple[FakeQwenChat, ServerThread], proxy: ServerThread
) -> None:
    listed = httpx.get(f"{proxy.url}/v1/models").json()["data"]
    assert {"qwen-chat/qwen3-max", "qwen-chat/qwen3-coder-plus"} <= {m["id"] for m in listed}


def test_xml_tool_calls_run_a_tool_loop_in_one_chat(
    fake: tuple[FakeQwenChat, ServerThread],
) -> None:
    qwen = fake[0]
    app = make_asgi_app([_adapter(fake, transforms=[XmlToolCalls()])], validate_credentials="off")
    call = "<read_file><path>a.py</path></read_file>"
    with serve(app) as server, _client(server) as client:
        first = client.chat.completions.create(
            model="qwen3-coder-plus", messages=[{"role": "user", "content": call}], tools=ROO_TOOLS
        )
        message = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls"
        assert message.tool_calls is not None
        second = client.chat.completions.create(
            model="qwen3-coder-plus",
            messages=[
                {"role": "user", "content": call},
                message.model_dump(exclude_none=True),  # type: ignore[misc]
                {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "print(1)"},
            ],
            tools=ROO_TOOLS,
        )
    assert second.choices[0].message.content == "Turn 2 of chat-1: print(1)"
    assert _completions(qwen)[-1]["messages"][0]["content"] == "[read_file] Result:\nprint(1)"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("cookies", "state"), [(COOKIES, "valid"), ("token=stale", "auth_rejected")]
)
async def test_the_startup_probe_tells_a_refused_session(
    fake: tuple[FakeQwenChat, ServerThread], cookies: str, state: str
) -> None:
    adapter = _adapter(fake, cookies=cookies)
    async with httpx.AsyncClient() as client:
        check = await adapter.validate_credentials(client)
    assert check.state.value == state


def test_a_client_that_leaves_mid_stream_closes_the_upstream_and_keeps_nothing(
    fake: tuple[FakeQwenChat, ServerThread],
) -> None:
    qwen = fake[0]
    qwen.gap = 0.5
    app = make_asgi_app([_adapter(fake)], validate_credentials="off")
    body = {"model": "qwen3-max", "messages": [{"role": "user", "content": "a b c d e f"}]}
    with serve(app) as server:
        with httpx.stream(
            "POST", f"{server.url}/qwen-chat/v1/chat/completions", json={**body, "stream": True}
        ) as response:
            assert response.status_code == 200
            first = next(response.iter_raw())
            assert b"chat.completion.chunk" in first
        assert wait_until(lambda: qwen.closed_streams == 1)
        assert (qwen.open_streams, qwen.completed_streams) == (0, 0)  # cut short, not finished
        status = httpx.get(f"{server.url}/status").json()["sessions"]
    assert status["saved"] == 0  # the client never had the answer: nothing continues from it


def test_clients_with_the_adapters_base_url_can_list_its_models(
    fake: tuple[FakeQwenChat, ServerThread], proxy: ServerThread
) -> None:
    with _client(proxy) as client:  # as Roo Code does with an OpenAI-compatible base URL
        listed = [model.id for model in client.models.list()]
    assert listed == ["qwen3-max", "qwen3-coder-plus", "qwen-plus"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_client_at_the_gateway_holds_one_chat_too(
    fake: tuple[FakeQwenChat, ServerThread], proxy: ServerThread, stream: bool
) -> None:
    qwen = fake[0]
    messages: list[Any] = [{"role": "user", "content": "hello"}]
    with anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0) as client:
        for turn in range(2):
            arguments: Any = {
                "model": "qwen-chat/qwen3-max",
                "max_tokens": 100,
                "system": "Be brief.",
                "messages": messages,
            }
            if stream:
                with client.messages.stream(**arguments) as events:
                    message = events.get_final_message()
            else:
                message = client.messages.create(**arguments)
            text = "".join(b.text for b in message.content if b.type == "text")
            assert text == f"Turn {turn + 1} of chat-1: {messages[-1]['content']}"
            assert message.stop_reason == "end_turn"
            messages += [
                {"role": "assistant", "content": text},
                {"role": "user", "content": "more"},
            ]
    sent = _completions(qwen)
    assert [body["messages"][0]["content"] for body in sent] == ["Be brief.\n\nhello", "more"]


def test_the_answer_reader_gives_the_same_events_at_every_split() -> None:
    events = [
        {"response.created": {"chat_id": "c", "parent_id": "p-1", "message_id": "m-1"}},
        {"choices": [{"delta": {"content": "Hmm ", "phase": "think", "status": "typing"}}]},
        {"choices": [{"delta": {"content": "", "phase": "think", "status": "finished"}}]},
        {"choices": [{"delta": {"content": "Hé, ", "phase": "answer", "status": "typing"}}]},
        {"choices": [{"delta": {"content": "there", "phase": "answer", "status": "typing"}}]},
        {
            "choices": [{"delta": {"content": "", "phase": "answer", "status": "finished"}}],
            "usage": {"input_tokens": 3, "output_tokens": 2},
        },
    ]
    raw = b"".join(
        b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\r\n\r\n" for e in events
    )
    expected = [
        ReasoningDelta("Hmm "),
        TextDelta("Hé, "),
        TextDelta("there"),
        UsageReport(Usage(3, 2)),
        Finish(FinishReason.STOP),
    ]
    for cut in range(len(raw) + 1):
        reader = QwenAnswerReader("c")
        assert reader.next_ids is None
        got = [*reader.feed(raw[:cut]), *reader.feed(raw[cut:]), *reader.end()]
        assert got == expected, cut
        assert reader.next_ids == {"chat_id": "c", "parent_id": "p-1"}
