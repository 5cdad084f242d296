"""``ws://{host}{mount}/v1/responses``: the Responses socket on any model, through real
uvicorn, with the openai SDK's ``responses.connect()`` against the fake provider.

Each ``response.create`` is served by the gateway over HTTP (translated for Anthropic
and for a Chat-only server); its events come back as socket messages, errors as the
protocol's ``error`` events, and ``previous_response_id`` continues what the proxy
kept, on one socket and across sockets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import openai
import pytest
from examples.fastapi_app import create_app
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from provider_proxy import Guards, RateLimit, StoredResponses, make_asgi_app
from provider_proxy.adapters import (
    AnthropicAdapter,
    GeminiAdapter,
    OpenAIAdapter,
    OpenAICompatibleAdapter,
)
from provider_proxy.dialects import Dialect, OpenAIChat
from provider_proxy.testing import FakeUpstream
from provider_proxy.transforms import ParameterPolicy

from .conftest import ANTHROPIC_KEY, CLIENT_KEY, OPENAI_KEY, OwnUpstream
from .servers import ServerThread, serve, wait_until

CLAUDE = "anthropic/claude-sonnet-4-5"
LOCAL = "local/qwen3-8b"
GEMINI = "gemini/gemini-2.5-flash"
GEMINI_KEY = "gemini-test-key-0123456789"
TEXT = "Hello from the fake upstream, streamed one piece at a time."
WEATHER: Any = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
TOOLS: Any = [{"type": "function", "name": "weather", "parameters": WEATHER}]


class ChatOnly(OpenAICompatibleAdapter):
    """An OpenAI-compatible server without the Responses API (vLLM's Chat, Ollama, ...)."""

    dialects: ClassVar[tuple[Dialect, ...]] = (OpenAIChat(),)


@pytest.fixture
def events() -> list[Any]:
    return []


def _proxy(upstream: ServerThread, events: list[Any], **options: Any) -> Any:
    adapters = [
        OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
        AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
        ChatOnly(name="local", base_url=upstream.url + "/v1", api_key="local-key-0123456789"),
        GeminiAdapter(base_url=upstream.url, api_key=GEMINI_KEY),
    ]
    options.setdefault("guards", Guards(client_keys=[CLIENT_KEY]))
    return make_asgi_app(
        adapters,
        validate_credentials="off",
        sinks=[events.append],
        stored_responses=StoredResponses(per_client=10),
        **options,
    )


@pytest.fixture
def gateway(upstream: ServerThread, events: list[Any]) -> Iterator[ServerThread]:
    with serve(_proxy(upstream, events), ws="websockets-sansio") as server:
        yield server


def _client(server: ServerThread) -> openai.OpenAI:
    """The SDK as the Codex CLI's built-in provider is set up: ``base_url = {mount}/v1``."""
    return openai.OpenAI(base_url=server.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def _turn(connection: Any, **create: Any) -> tuple[list[str], Any]:
    """Send one ``response.create``; the event types up to its end, and the last event."""
    connection.send({"type": "response.create", **create})
    kinds: list[str] = []
    for event in connection:
        kinds.append(event.type)
        if event.type in ("response.completed", "response.failed", "error"):
            return kinds, event
    raise AssertionError(f"the socket closed after {kinds}")


@pytest.mark.parametrize("model", [CLAUDE, LOCAL, GEMINI])
def test_whole_turns_stream_as_socket_events(
    gateway: ServerThread, fake: FakeUpstream, events: list[Any], model: str
) -> None:
    text = ""
    with _client(gateway).responses.connect() as connection:
        connection.send({"type": "response.create", "model": model, "input": "Hi"})
        for event in connection:
            if event.type == "response.output_text.delta":
                text += event.delta
            if event.type == "response.completed":
                done = event
                break
        kinds, second = _turn(connection, model=model, input="Again")
    assert text == TEXT
    assert done.response.output_text == TEXT
    assert done.response.usage is not None
    assert done.response.usage.output_tokens > 0
    assert kinds[0] == "response.created"
    assert second.type == "response.completed"
    paths = {
        CLAUDE: "/v1/messages",
        LOCAL: "/v1/chat/completions",
        GEMINI: "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    }
    assert fake.last.path == paths[model]
    assert CLIENT_KEY not in str(fake.last.headers)
    assert wait_until(lambda: any(e.websocket == "connection" for e in events))
    turns = [e for e in events if e.websocket == "turn"]
    assert [(e.status, e.client_dialect, e.translated) for e in turns] == [
        (200, "openai-responses", True),
        (200, "openai-responses", True),
    ]
    assert all(e.usage is not None and e.usage.output_tokens for e in turns)
    assert {e.identity for e in turns} == {"client-1"}
    [socket] = [e for e in events if e.websocket == "connection"]
    assert (socket.path, socket.provider, socket.status) == ("/v1/responses", None, 101)
    assert [e.provider for e in turns] == [model.partition("/")[0]] * 2
    assert socket.frames > 2


@pytest.mark.parametrize("model", [CLAUDE, LOCAL])
def test_a_tool_loop_continues_by_previous_response_id_on_one_socket(
    gateway: ServerThread, fake: FakeUpstream, model: str
) -> None:
    headers = {"x-fake-tools": "weather", "x-fake-tools-once": "1"}
    with _client(gateway).responses.connect(extra_headers=headers) as connection:
        _, first = _turn(connection, model=model, input="Weather in Paris?", tools=TOOLS)
        [call] = [item for item in first.response.output if item.type == "function_call"]
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}
        _, second = _turn(
            connection,
            model=model,
            previous_response_id=first.response.id,
            input=[output],
            tools=TOOLS,
        )
    assert second.type == "response.completed"
    assert second.response.output_text == TEXT
    sent = json.loads(fake.last.body)["messages"]
    if model == CLAUDE:
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        assert sent[1]["content"][-1]["id"] == call.call_id
        assert sent[2]["content"][0]["tool_use_id"] == call.call_id
    else:
        assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
        assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "Sunny."}


def test_previous_response_id_continues_across_sockets(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    client = _client(gateway)
    with client.responses.connect() as connection:
        _, first = _turn(connection, model=CLAUDE, input="Remember Paris.")
    with client.responses.connect() as connection:
        _, second = _turn(
            connection, model=CLAUDE, previous_response_id=first.response.id, input="Where?"
        )
    assert second.type == "response.completed"
    sent = json.loads(fake.last.body)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert "Remember Paris." in json.dumps(sent[0])


def test_a_turn_the_guards_refuse_is_an_error_event_and_the_socket_stays_open(
    upstream: ServerThread, events: list[Any]
) -> None:
    guards = Guards(client_keys=[CLIENT_KEY], rate_limits=[RateLimit(1, 60)])
    with serve(_proxy(upstream, events, guards=guards), ws="websockets-sansio") as server:
        with _client(server).responses.connect() as connection:
            _, first = _turn(connection, model=CLAUDE, input="Hi")
            _, refused = _turn(connection, model=CLAUDE, input="Hi again")
            _, again = _turn(connection, model=LOCAL, input="And again")
    assert first.type == "response.completed"
    assert (refused.type, refused.status, refused.error.type) == ("error", 429, "rate_limit_error")
    assert (again.type, again.status) == ("error", 429)  # still open, still limited
    assert wait_until(lambda: any(e.websocket == "connection" for e in events))
    assert [e.status for e in events if e.websocket == "turn"] == [200, 429, 429]
    [socket] = [e for e in events if e.websocket == "connection"]
    assert socket.close_code == 1000


def test_a_model_off_the_allowlist_is_refused_and_the_next_turn_served(
    upstream: ServerThread, events: list[Any]
) -> None:
    policy = ParameterPolicy(allowed_models=["anthropic/claude-*", "claude-*"])
    with serve(_proxy(upstream, events, transforms=[policy]), ws="websockets-sansio") as server:
        with _client(server).responses.connect() as connection:
            _, refused = _turn(connection, model=LOCAL, input="Hi")
            _, served = _turn(connection, model=CLAUDE, input="Hi")
    assert (refused.type, refused.status) == ("error", 403)
    assert "qwen3-8b" in refused.error.message
    assert served.type == "response.completed", served
    assert served.response.output_text == TEXT


def test_a_handshake_without_a_client_key_is_refused(gateway: ServerThread) -> None:
    url = gateway.url.replace("http://", "ws://") + "/v1/responses"
    with pytest.raises(InvalidStatus) as refused, connect(url):
        pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body or b"{}")["error"]["message"]


def test_bad_messages_get_error_events(gateway: ServerThread) -> None:
    url = gateway.url.replace("http://", "ws://") + "/v1/responses"
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    with connect(url, additional_headers=headers) as ws:
        ws.send("not json")
        bad = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"type": "session.update"}))
        unknown = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"type": "response.create", "input": "no model"}))
        modelless = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"type": "response.create", "model": CLAUDE, "input": "Hi"}))
        while (last := json.loads(ws.recv(timeout=10)))["type"] != "response.completed":
            pass
    assert (bad["type"], bad["status"]) == ("error", 400)
    assert (unknown["type"], unknown["error"]["param"]) == ("error", "type")
    assert (modelless["type"], modelless["status"]) == ("error", 400)
    assert "model" in modelless["error"]["message"]
    assert last["response"]["status"] == "completed"


def test_stream_id_is_echoed_on_the_turns_events(gateway: ServerThread) -> None:
    url = gateway.url.replace("http://", "ws://") + "/v1/responses"
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    create = {"type": "response.create", "model": LOCAL, "input": "Hi", "stream_id": "lane-1"}
    with connect(url, additional_headers=headers) as ws:
        ws.send(json.dumps(create))
        received = []
        while (event := json.loads(ws.recv(timeout=10)))["type"] != "response.completed":
            received.append(event)
    assert {e.get("stream_id") for e in [*received, event]} == {"lane-1"}


def test_two_sockets_are_isolated(gateway: ServerThread, fake: FakeUpstream) -> None:
    client = _client(gateway)
    slow = {"x-fake-chunks": "30", "x-fake-gap": "0.01"}
    with (
        client.responses.connect(extra_headers=slow) as first,
        client.responses.connect() as second,
    ):
        first.send({"type": "response.create", "model": CLAUDE, "input": "One"})
        second.send({"type": "response.create", "model": LOCAL, "input": "Two"})
        ids: dict[str, set[str]] = {"first": set(), "second": set()}
        ends: dict[str, Any] = {}
        for name, connection in (("second", second), ("first", first)):
            for event in connection:
                response = getattr(event, "response", None)
                if response is not None:
                    ids[name].add(response.id)
                if event.type == "response.completed":
                    ends[name] = event
                    break
    assert len(ids["first"]) == len(ids["second"]) == 1
    assert ids["first"].isdisjoint(ids["second"])
    assert ends["first"].response.output_text.count(" ") == 29
    assert ends["second"].response.output_text == TEXT


def test_a_prepared_request_is_continued_by_its_id(
    gateway: ServerThread, fake: FakeUpstream, events: list[Any]
) -> None:
    """``generate: false`` (a client warming the socket up): no provider is asked, and
    the next turn that names its id gets its input first."""
    before = len(fake.requests)
    with _client(gateway).responses.connect() as connection:
        kinds, prepared = _turn(connection, model=CLAUDE, input="You are in Paris.", generate=False)
        asked = len(fake.requests)
        _, answered = _turn(
            connection, model=CLAUDE, previous_response_id=prepared.response.id, input="Where?"
        )
    assert kinds == ["response.created", "response.completed"]
    assert prepared.response.output == []
    assert asked == before
    assert answered.type == "response.completed"
    sent = json.loads(fake.last.body)["messages"]
    assert [(m["role"], m["content"][0]["text"]) for m in sent] == [
        ("user", "You are in Paris."),
        ("user", "Where?"),
    ]


def test_creates_sent_at_once_are_served_in_turn_up_to_a_limit(gateway: ServerThread) -> None:
    """A ``response.create`` sent before the last one's answer ended waits for it
    (so it may continue it by id); beyond 8 running or waiting, an ``error`` event."""
    url = gateway.url.replace("http://", "ws://") + "/v1/responses"
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-fake-gap": "0.05"}
    with connect(url, additional_headers=headers) as ws:
        for number in range(9):
            create = {"type": "response.create", "model": LOCAL, "input": "Hi"}
            ws.send(json.dumps({**create, "stream_id": f"lane-{number}"}))
        received = []
        while len([e for e in received if e["type"] in ("response.completed", "error")]) < 9:
            received.append(json.loads(ws.recv(timeout=10)))
    [busy] = [e for e in received if e["type"] == "error"]
    assert (busy["status"], busy["error"]["code"], busy["stream_id"]) == (
        409,
        "response_in_progress",
        "lane-8",
    )
    lanes = [e["stream_id"] for e in received if e["type"] != "error"]
    # Each turn's events all come before the next turn's: served one after the other.
    assert lanes == sorted(lanes, key=lambda lane: int(lane.split("-")[1]))
    assert len({e["response"]["id"] for e in received if e["type"] == "response.completed"}) == 8


def test_a_create_sent_before_the_last_answer_is_stored_continues_it(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    """The next turn may be sent as soon as ``response.completed`` arrives: it waits
    until the answer before it is kept."""
    client = _client(gateway)
    with client.responses.connect() as connection:
        for store in (True, False):
            _, first = _turn(connection, model=CLAUDE, input="One", store=store)
            _, second = _turn(
                connection, model=CLAUDE, previous_response_id=first.response.id, input="Two"
            )
            assert second.type == "response.completed", second
            assert len(json.loads(fake.last.body)["messages"]) == 3


def test_an_openai_model_passes_through_over_http_with_its_own_state(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    with _client(gateway).responses.connect() as connection:
        _, first = _turn(connection, model="openai/gpt-5", input="Hi.")
        assert fake.last.path == "/v1/responses"
        assert json.loads(fake.last.body) == {"model": "gpt-5", "input": "Hi.", "stream": True}
        assert fake.last.header("authorization") == f"Bearer {OPENAI_KEY}"
        _, second = _turn(
            connection, model="openai/gpt-5", previous_response_id=first.response.id, input="More."
        )
    assert first.response.id in fake.responses  # the provider keeps it, as OpenAI does
    assert json.loads(fake.last.body)["previous_response_id"] == first.response.id
    assert second.response.output_text == TEXT


def test_the_relays_limits_apply(upstream: ServerThread, events: list[Any]) -> None:
    proxy = _proxy(upstream, events, ws_max_frame_bytes=2000, ws_max_sockets_per_client=1)
    with serve(proxy, ws="websockets-sansio") as server:
        url = server.url.replace("http://", "ws://") + "/v1/responses"
        headers = {"authorization": f"Bearer {CLIENT_KEY}"}
        with connect(url, additional_headers=headers) as ws:
            with connect(url, additional_headers=headers) as second:
                with pytest.raises(ConnectionClosed) as crowded:
                    second.recv(timeout=10)
            big = {"type": "response.create", "model": CLAUDE, "input": "x" * 3000}
            ws.send(json.dumps(big))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
    assert crowded.value.rcvd is not None
    assert crowded.value.rcvd.code == 1013
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    assert wait_until(lambda: len([e for e in events if e.websocket == "connection"]) == 2)
    assert not [e for e in events if e.websocket == "turn"]  # the big one was never served


@pytest.mark.parametrize("model", [CLAUDE, LOCAL])
def test_an_unstored_tool_loop_continues_on_its_socket_only(
    gateway: ServerThread, fake: FakeUpstream, model: str
) -> None:
    """``store: false`` (as coding agents send): the socket keeps its last answer, as
    the provider's socket does, so the next turn continues it by id; another socket
    does not know it. The fake Anthropic refuses a tool turn without its signed thinking."""
    headers = {"x-fake-tools": "weather", "x-fake-tools-once": "1", "x-fake-thinking": "1"}
    client = _client(gateway)
    with client.responses.connect(extra_headers=headers) as connection:
        _, first = _turn(connection, model=model, input="Weather?", tools=TOOLS, store=False)
        [call] = [item for item in first.response.output if item.type == "function_call"]
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}
        _, second = _turn(
            connection,
            model=model,
            previous_response_id=first.response.id,
            input=[output],
            tools=TOOLS,
            store=False,
        )
    assert second.type == "response.completed", second
    assert second.response.output_text == TEXT
    sent = json.loads(fake.last.body)["messages"]
    if model == CLAUDE:
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        assert sent[1]["content"][0]["type"] == "thinking"
        assert sent[1]["content"][0]["signature"]
        assert sent[2]["content"][0]["tool_use_id"] == call.call_id
    else:
        assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
        assert sent[1]["tool_calls"][0]["id"] == call.call_id
    with client.responses.connect() as other:
        _, unknown = _turn(
            other, model=model, previous_response_id=second.response.id, input="And?"
        )
    assert (unknown.type, unknown.status) == ("error", 404)


def test_provider_errors_and_cut_streams_are_error_events(gateway: ServerThread) -> None:
    url = gateway.url.replace("http://", "ws://") + "/v1/responses"
    create = json.dumps({"type": "response.create", "model": CLAUDE, "input": "Hi"})

    def last_event(headers: dict[str, str]) -> dict[str, Any]:
        with connect(
            url, additional_headers={**headers, "authorization": f"Bearer {CLIENT_KEY}"}
        ) as ws:
            ws.send(create)
            while True:
                event: dict[str, Any] = json.loads(ws.recv(timeout=10))
                if event["type"] in ("error", "response.failed", "response.completed"):
                    return event

    refused = last_event({"x-fake-status": "429"})
    cut = last_event({"x-fake-fail-after": "2"})
    assert (refused["type"], refused["status"]) == ("error", 429)
    assert refused["error"]["type"] == "rate_limit_error"
    assert refused["error"]["message"]
    assert (cut["type"], cut["status"], cut["error"]["type"]) == ("error", 502, "server_error")
    assert "failed before it finished" in cut["error"]["message"]


def test_the_socket_below_a_fastapi_mount(upstream: ServerThread, fake: FakeUpstream) -> None:
    """The Codex CLI's set-up: ``openai_base_url = "{mount}/v1"`` on a host app."""
    adapters = [AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY)]
    with serve(create_app(adapters), ws="websockets-sansio") as server:
        client = openai.OpenAI(base_url=f"{server.url}/llm/v1", api_key="unused", max_retries=0)
        with client.responses.connect() as connection:
            _, first = _turn(connection, model=CLAUDE, input="Hi")
            _, second = _turn(
                connection, model=CLAUDE, previous_response_id=first.response.id, input="More"
            )
    assert second.response.output_text == TEXT
    assert fake.last.path == "/v1/messages"
    assert len(json.loads(fake.last.body)["messages"]) == 3


def test_the_concurrency_guard_counts_turns_across_sockets(
    upstream: ServerThread, events: list[Any]
) -> None:
    guards = Guards(client_keys=[CLIENT_KEY], max_concurrent_per_client=1)
    slow = {"x-fake-chunks": "200", "x-fake-gap": "0.02"}
    with serve(_proxy(upstream, events, guards=guards), ws="websockets-sansio") as server:
        client = _client(server)
        with (
            client.responses.connect(extra_headers=slow) as busy,
            client.responses.connect() as other,
        ):
            busy.send({"type": "response.create", "model": CLAUDE, "input": "Talk."})
            for event in busy:
                if event.type == "response.output_text.delta":
                    break  # the first turn holds the client's one slot
            _, refused = _turn(other, model=LOCAL, input="Hi")
        assert (refused.type, refused.status) == ("error", 429)
        assert wait_until(lambda: any(e.error_kind == "client_disconnected" for e in events))
        with client.responses.connect() as again:  # the slot is free once the turn ended
            _, served = _turn(again, model=LOCAL, input="Hi")
    assert served.type == "response.completed"


class TestOnItsOwnUpstream(OwnUpstream):
    """Tests that count the fake's streams, each on a fake of its own."""

    def test_a_client_leaving_mid_turn_closes_the_upstream_stream(
        self, gateway: ServerThread, fake: FakeUpstream, events: list[Any]
    ) -> None:
        slow = {"x-fake-chunks": "2000", "x-fake-gap": "0.02"}
        closed = fake.closed_streams
        with _client(gateway).responses.connect(extra_headers=slow) as connection:
            connection.send({"type": "response.create", "model": CLAUDE, "input": "Talk."})
            deltas = 0
            for event in connection:
                if event.type == "response.output_text.delta":
                    deltas += 1
                if deltas >= 3:
                    break
        assert wait_until(lambda: fake.closed_streams == closed + 1, timeout=5)
        assert wait_until(lambda: any(e.websocket == "connection" for e in events))
        [turn] = [e for e in events if e.websocket == "turn"]
        assert turn.error_kind == "client_disconnected"
