"""Provider sockets relayed through real uvicorn servers, to the fake provider socket.

The fake (``provider_proxy.testing.FakeSocketUpstream``) speaks the Realtime,
Responses-socket and Gemini Live protocols and closes any socket that brings
it the client's key; the client is the ``websockets`` library, as the openai
SDK uses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from provider_proxy import CORS, Guards, ProxyApp, Quota, RateLimit, make_asgi_app
from provider_proxy.adapters import AzureOpenAIAdapter, GeminiAdapter, OpenAIAdapter
from provider_proxy.testing import FakeSocketUpstream
from provider_proxy.transforms import ModelAliases, ParameterPolicy

from .conftest import CLIENT_KEY, OPENAI_KEY
from .servers import ServerThread, serve, wait_until

GEMINI_KEY = "gemini-test-key-0123456789"
AZURE_KEY = "azure-test-key-0123456789"
LIVE = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(scope="module")
def fake_ws() -> FakeSocketUpstream:
    return FakeSocketUpstream(forbidden=[CLIENT_KEY], subprotocol="realtime")


@pytest.fixture(scope="module")
def socket_upstream(fake_ws: FakeSocketUpstream) -> Iterator[ServerThread]:
    with serve(fake_ws, lifespan="off", ws="websockets-sansio") as server:
        yield server


@pytest.fixture
def events() -> list[Any]:
    return []


@pytest.fixture
def build(
    socket_upstream: ServerThread, events: list[Any]
) -> Iterator[Callable[..., ServerThread]]:
    """Serve a proxy in front of the fake socket (with client keys, unless told)."""
    servers: list[Any] = []

    def start(**options: Any) -> ServerThread:
        url = socket_upstream.url
        adapters = [
            OpenAIAdapter(base_url=url + "/v1", api_key=OPENAI_KEY),
            GeminiAdapter(base_url=url, api_key=GEMINI_KEY),
            AzureOpenAIAdapter(base_url=url, api_key=AZURE_KEY),
        ]
        options.setdefault("guards", Guards(client_keys=[CLIENT_KEY]))
        options.setdefault("validate_credentials", "off")
        proxy = make_asgi_app(adapters, sinks=[events.append], **options)
        context = serve(proxy, ws=options.pop("ws", "websockets-sansio"))
        server = context.__enter__()
        server.proxy = proxy  # type: ignore[attr-defined]
        servers.append(context)
        return server

    yield start
    for context in reversed(servers):
        context.__exit__(None, None, None)


def ws_url(server: ServerThread, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def recv_json(ws: ClientConnection) -> dict[str, Any]:
    message = ws.recv(timeout=10)
    assert isinstance(message, str)
    payload: dict[str, Any] = json.loads(message)
    return payload


def turn(ws: ClientConnection, **create: Any) -> list[dict[str, Any]]:
    """Send a ``response.create`` and read until its end."""
    ws.send(json.dumps({"type": "response.create", **create}))
    received = []
    while True:
        payload = recv_json(ws)
        received.append(payload)
        if payload["type"] in ("response.done", "response.completed", "error"):
            return received


def connection_events(events: list[Any]) -> list[Any]:
    return [e for e in events if e.websocket == "connection"]


def turn_events(events: list[Any]) -> list[Any]:
    return [e for e in events if e.websocket == "turn"]


def test_realtime_turn_relayed_with_the_providers_key_and_one_event_per_turn(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream, events: list[Any]
) -> None:
    server = build()
    headers = {**AUTH, "OpenAI-Beta": "realtime=v1", "X-Forwarded-For": "10.1.2.3"}
    url = ws_url(server, "/openai/realtime?model=gpt-realtime")
    with connect(url, additional_headers=headers) as ws:
        assert recv_json(ws)["type"] == "session.created"
        answer = turn(ws, response={"modalities": ["text"]})
        assert [p["type"] for p in answer] == [
            "response.created",
            *["response.output_text.delta"] * 4,
            "response.done",
        ]
        assert "".join(p.get("delta", "") for p in answer) == "Hello from the socket"
        assert turn(ws)[-1]["response"]["usage"]["input_tokens"] == 20
    seen = fake_ws.last
    assert seen.path == "/v1/realtime"
    assert seen.query == "model=gpt-realtime"
    assert seen.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert seen.headers["openai-beta"] == "realtime=v1"
    assert "x-forwarded-for" not in seen.headers
    assert fake_ws.violations == []
    assert wait_until(lambda: len(connection_events(events)) == 1)
    turns = turn_events(events)
    assert [(t.model, t.usage.input_tokens, t.usage.output_tokens) for t in turns] == [
        ("gpt-realtime", 10, 4),
        ("gpt-realtime", 20, 4),
    ]
    assert all(t.identity == "client-1" and t.status == 200 for t in turns)
    create = json.dumps({"type": "response.create", "response": {"modalities": ["text"]}})
    assert turns[0].request_bytes == len(create)
    end = connection_events(events)[0]
    assert (end.status, end.close_code, end.provider, end.path) == (
        101,
        1000,
        "openai",
        "/realtime",
    )
    assert end.frames == 2 + 2 * 6 + 1  # two creates, two answers of six, session.created
    assert end.usage is None  # the turns carry it, so no sink counts it twice


def test_frames_both_ways_in_order_text_and_binary(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream
) -> None:
    server = build()
    with connect(ws_url(server, "/openai/responses"), additional_headers=AUTH) as ws:
        sent: list[str | bytes] = []
        for i in range(20):
            text = json.dumps({"type": "fake.echo", "n": i, "pad": "é" * i}, ensure_ascii=False)
            blob = bytes([i % 256]) * (i * 100 + 1)
            ws.send(text)
            ws.send(blob)
            sent += [text, blob]
        got = [ws.recv(timeout=10) for _ in sent]
    assert got == sent  # same order, same types, same bytes
    assert fake_ws.last.received == sent


def test_close_codes_and_reasons_cross_both_ways(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream
) -> None:
    server = build()
    with connect(ws_url(server, "/openai/responses"), additional_headers=AUTH) as ws:
        ws.send(json.dumps({"type": "fake.close", "code": 4001, "reason": "provider says bye"}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "provider says bye")

    with connect(ws_url(server, "/openai/responses"), additional_headers=AUTH) as ws:
        ws.send(json.dumps({"type": "fake.echo"}))
        ws.recv(timeout=10)
        record = fake_ws.last
        ws.close(4002, "client says bye")
    assert wait_until(lambda: record.closed)
    assert record.close_code == 4002


def test_a_refused_upstream_handshake_gives_the_client_its_status(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream, events: list[Any]
) -> None:
    server = build()
    headers = {**AUTH, "x-fake-status": "429"}
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(server, "/openai/responses"), additional_headers=headers).close()
    response = refused.value.response
    assert response.status_code == 429
    assert json.loads(response.body)["error"]["message"] == "refused by the fake"
    assert wait_until(lambda: len(connection_events(events)) == 1)
    assert connection_events(events)[0].upstream_status == 429


def test_an_upstream_that_dies_closes_the_client_with_1011(
    build: Callable[..., ServerThread],
) -> None:
    server = build()
    with connect(ws_url(server, "/openai/responses"), additional_headers=AUTH) as ws:
        ws.send(json.dumps({"type": "fake.crash"}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011


def test_an_unreachable_provider_is_a_502(events: list[Any]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = OpenAIAdapter(base_url=f"http://127.0.0.1:{port}/v1", api_key=OPENAI_KEY)
    proxy = make_asgi_app([adapter], validate_credentials="off", sinks=[events.append])
    with serve(proxy, ws="websockets-sansio") as server:
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(server, "/openai/responses")).close()
    assert refused.value.response.status_code == 502
    assert json.loads(refused.value.response.body)["error"]["code"] == "upstream_unreachable"


def test_browser_key_in_the_subprotocol_is_checked_and_never_forwarded(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream
) -> None:
    server = build()
    protocols = ["realtime", f"openai-insecure-api-key.{CLIENT_KEY}", "openai-beta.realtime-v1"]
    url = ws_url(server, "/openai/realtime?model=gpt-realtime")
    with connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "realtime"  # the provider's choice
        assert recv_json(ws)["type"] == "session.created"
    assert fake_ws.last.subprotocols == ["realtime", "openai-beta.realtime-v1"]
    assert fake_ws.violations == []
    with pytest.raises(InvalidStatus) as refused:
        connect(url, subprotocols=["realtime", "openai-insecure-api-key.wrong"]).close()  # type: ignore[list-item]
    assert refused.value.response.status_code == 401


def test_a_wrong_client_key_is_a_401_in_the_formats_error(
    build: Callable[..., ServerThread],
) -> None:
    server = build()
    with pytest.raises(InvalidStatus) as refused:
        connect(
            ws_url(server, "/openai/responses"), additional_headers={"Authorization": "Bearer no"}
        ).close()
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "client_not_authorized"


def test_gemini_live_with_key_param_gets_the_adapters_key_in_the_query(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream, events: list[Any]
) -> None:
    server = build()
    with connect(ws_url(server, "/gemini" + LIVE + f"?key={CLIENT_KEY}")) as ws:
        ws.send(json.dumps({"setup": {"model": "models/gemini-live"}}))
        assert recv_json(ws) == {"setupComplete": {}}
        ws.send(json.dumps({"clientContent": {"turnComplete": True}}))
        parts = [recv_json(ws) for _ in range(5)]
    assert parts[-1]["serverContent"] == {"turnComplete": True}
    seen = fake_ws.last
    assert seen.path == LIVE
    assert seen.query == f"key={GEMINI_KEY}"
    assert "x-goog-api-key" not in seen.headers
    assert fake_ws.violations == []
    assert wait_until(lambda: len(connection_events(events)) == 1)
    [live] = turn_events(events)
    assert (live.provider, live.usage.input_tokens, live.usage.output_tokens) == ("gemini", 7, 4)


def test_azure_realtime_socket_gets_api_key_and_api_version(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream
) -> None:
    server = build()
    url = ws_url(server, "/azure/openai/realtime?deployment=gpt-4o-realtime")
    with connect(url, additional_headers={"api-key": CLIENT_KEY}) as ws:
        assert recv_json(ws)["type"] == "session.created"
    seen = fake_ws.last
    assert seen.headers["api-key"] == AZURE_KEY
    assert "deployment=gpt-4o-realtime" in seen.query
    assert "api-version=" in seen.query


def test_each_response_create_passes_the_rate_limit(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream, events: list[Any]
) -> None:
    guards = Guards(client_keys=[CLIENT_KEY], rate_limits=[RateLimit(2, 60)])
    server = build(guards=guards)
    with connect(ws_url(server, "/openai/responses"), additional_headers=AUTH) as ws:
        assert turn(ws, model="gpt-5")[-1]["type"] == "response.completed"
        assert turn(ws, model="gpt-5")[-1]["type"] == "response.completed"
        refused = turn(ws, model="gpt-5")
        assert len(refused) == 1
        assert refused[0]["error"]["code"] == "rate_limited"
        assert refused[0]["status"] == 429
        ws.send(json.dumps({"type": "fake.echo"}))  # the socket stays open
        assert recv_json(ws) == {"type": "fake.echo"}
    creates = [m for m in fake_ws.last.received if "response.create" in str(m)]
    assert len(creates) == 2  # the refused turn never reached the provider
    assert wait_until(lambda: len(connection_events(events)) == 1)
    assert [(t.status, t.error_kind) for t in turn_events(events)] == [
        (200, None),
        (200, None),
        (429, "rate_limited"),
    ]


def test_the_model_allowlist_applies_to_each_turn(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream
) -> None:
    server = build(transforms=[ParameterPolicy(allowed_models=["gpt-5*"])])
    with connect(ws_url(server, "/openai/responses"), additional_headers=AUTH) as ws:
        assert turn(ws, model="gpt-5-mini")[-1]["type"] == "response.completed"
        refused = turn(ws, model="o3-pro")
        assert refused[0]["error"]["code"] == "model_not_allowed"
    assert not any("o3-pro" in str(m) for m in fake_ws.last.received)


def test_the_realtime_model_of_the_handshake_meets_the_allowlist_and_aliases(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream
) -> None:
    server = build(
        transforms=[
            ModelAliases({"voice": "gpt-realtime"}),
            ParameterPolicy(allowed_models=["gpt-realtime*"]),
        ]
    )
    before = len(fake_ws.sockets)
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(server, "/openai/realtime?model=o3-pro"), additional_headers=AUTH)
    assert refused.value.response.status_code == 403
    assert b"model_not_allowed" in (refused.value.response.body or b"")
    assert len(fake_ws.sockets) == before  # the provider never saw that socket
    with connect(ws_url(server, "/openai/realtime?model=voice"), additional_headers=AUTH):
        assert wait_until(lambda: len(fake_ws.sockets) == before + 1)
    assert fake_ws.last.query == "model=gpt-realtime"  # the alias, renamed upstream


def test_a_message_over_the_frame_limit_closes_with_1009(
    build: Callable[..., ServerThread],
) -> None:
    server = build(ws_max_frame_bytes=1000)
    with connect(ws_url(server, "/openai/responses"), additional_headers=AUTH) as ws:
        ws.send("x" * 2000)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


def test_idle_and_lifetime_limits_close_with_1001(build: Callable[..., ServerThread]) -> None:
    server = build(ws_idle_timeout=0.3)
    with connect(ws_url(server, "/openai/responses"), additional_headers=AUTH) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert "Idle" in closed.value.rcvd.reason

    server = build(ws_max_lifetime=0.5, ws_idle_timeout=None)
    with connect(ws_url(server, "/openai/responses"), additional_headers=AUTH) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(100):  # busy: the idle limit would not end it
                ws.send(json.dumps({"type": "fake.echo"}))
                ws.recv(timeout=10)
                time.sleep(0.02)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert "Open for" in closed.value.rcvd.reason


def test_socket_count_limits_close_with_1013(build: Callable[..., ServerThread]) -> None:
    server = build(ws_max_sockets_per_client=1)
    url = ws_url(server, "/openai/responses")
    with connect(url, additional_headers=AUTH) as first:
        with connect(url, additional_headers=AUTH) as second:
            with pytest.raises(ConnectionClosed) as closed:
                second.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013
        first.send(json.dumps({"type": "fake.echo"}))
        assert recv_json(first) == {"type": "fake.echo"}
    with connect(url, additional_headers=AUTH) as again:  # the slot was given back
        again.send(json.dumps({"type": "fake.echo"}))
        assert recv_json(again) == {"type": "fake.echo"}

    server = build(ws_max_sockets=1, guards=None)
    with connect(ws_url(server, "/openai/responses")):
        with connect(ws_url(server, "/openai/responses")) as other:
            with pytest.raises(ConnectionClosed) as closed:
                other.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013


@pytest.mark.parametrize(
    "path", ["/openai/chat/completions", "/gemini/ws/other.Service", "/azure/openai/v1/files"]
)
def test_paths_no_adapter_opens_still_get_426(
    build: Callable[..., ServerThread], path: str
) -> None:
    server = build()
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(server, path), additional_headers=AUTH).close()
    assert refused.value.response.status_code == 426


def test_dot_segments_are_refused_as_for_http(build: Callable[..., ServerThread]) -> None:
    server = build()
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(server, "/openai/%2e%2e/realtime"), additional_headers=AUTH).close()
    assert refused.value.response.status_code == 400


def test_client_disconnect_closes_the_upstream_at_once(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream
) -> None:
    server = build()
    ws = connect(ws_url(server, "/openai/responses"), additional_headers=AUTH)
    ws.send(json.dumps({"type": "fake.echo"}))
    ws.recv(timeout=10)
    record = fake_ws.last
    assert not record.closed
    ws.socket.shutdown(socket.SHUT_RDWR)  # gone without a close frame
    ws.socket.close()
    assert wait_until(lambda: record.closed)


def test_500_aborted_sockets_leave_nothing_open(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream, events: list[Any]
) -> None:
    server = build(guards=None, ws_max_sockets_per_client=1000)
    url = ws_url(server, "/openai/responses")
    before = len(fake_ws.sockets)

    async def one() -> None:
        ws = await async_connect(url)
        await ws.send(json.dumps({"type": "fake.echo"}))
        await ws.recv()
        ws.transport.abort()  # gone without a close frame

    async def many() -> None:
        for start in range(0, 500, 50):
            await asyncio.gather(*(one() for _ in range(50)))
            del start

    asyncio.run(many())
    assert wait_until(lambda: len(fake_ws.sockets) - before == 500, timeout=30)
    assert wait_until(lambda: fake_ws.open_sockets == 0, timeout=30)
    proxy: ProxyApp = server.proxy  # type: ignore[attr-defined]
    assert wait_until(lambda: proxy._sockets.count.open == 0)
    assert wait_until(lambda: len(connection_events(events)) == 500, timeout=30)


@pytest.mark.anyio
async def test_without_the_http_response_extension_a_refusal_is_a_mapped_close(
    socket_upstream: ServerThread,
) -> None:
    adapter = OpenAIAdapter(base_url=socket_upstream.url + "/v1", api_key=OPENAI_KEY)
    proxy = make_asgi_app([adapter], validate_credentials="off")
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop()
        await asyncio.sleep(3600)  # pragma: no cover - the relay never waits here
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/openai/responses",
        "raw_path": b"/openai/responses",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"x-fake-status", b"429")],
        "client": ("127.0.0.1", 5000),
        "subprotocols": [],
        "extensions": {},
    }
    await proxy(scope, receive, send)
    await proxy.aclose()
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert sent[1]["code"] == 1013
    assert "HTTP 429" in sent[1]["reason"]


def test_a_turn_holds_its_concurrency_slot_until_it_ends(
    build: Callable[..., ServerThread], fake_ws: FakeSocketUpstream
) -> None:
    server = build(guards=Guards(client_keys=[CLIENT_KEY], max_concurrent_per_client=1))
    with connect(ws_url(server, "/openai/responses"), additional_headers=AUTH) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "gpt-5", "fake_wait": True}))
        assert recv_json(ws)["type"] == "response.created"  # the turn is in flight
        refused = turn(ws, model="gpt-5")
        assert refused[0]["error"]["code"] == "too_many_concurrent"
        ws.send(json.dumps({"type": "fake.release"}))
        while recv_json(ws)["type"] != "response.completed":
            pass
        assert turn(ws, model="gpt-5")[-1]["type"] == "response.completed"  # slot freed
    creates = [m for m in fake_ws.last.received if "response.create" in str(m)]
    assert len(creates) == 2


def test_no_key_in_the_logs_even_at_debug(
    build: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    server = build()
    with caplog.at_level(logging.DEBUG):
        with connect(ws_url(server, "/gemini" + LIVE + f"?key={CLIENT_KEY}")) as ws:
            ws.send(json.dumps({"setup": {"model": "models/gemini-live"}}))
            assert recv_json(ws) == {"setupComplete": {}}
    proxy_log = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("provider_proxy")
    )
    assert "GET /ws/google" in proxy_log  # the upstream handshake was logged, key scrubbed
    assert GEMINI_KEY not in proxy_log
    assert CLIENT_KEY not in proxy_log


def test_turns_the_provider_starts_itself_are_charged_and_limited(
    build: Callable[..., ServerThread], events: list[Any]
) -> None:
    # Server voice activity starts a response with no response.create: it is counted
    # and charged when it ends, and a client over its quota is then disconnected.
    guards = Guards(client_keys=[CLIENT_KEY], quotas=[Quota(tokens=30)])
    server = build(guards=guards)
    url = ws_url(server, "/openai/realtime?model=gpt-realtime")
    with connect(url, additional_headers=AUTH) as ws:
        assert recv_json(ws)["type"] == "session.created"
        for expected_input in (10, 20):  # 14 then 24 tokens: 38, over the quota of 30
            ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            while (event := recv_json(ws))["type"] != "response.done":
                pass
            assert event["response"]["usage"]["input_tokens"] == expected_input
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        while (event := recv_json(ws))["type"] != "response.done":
            pass  # the third answer is delivered: it was made before the check
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    assert "quota" in closed.value.rcvd.reason
    assert wait_until(lambda: len(connection_events(events)) == 1)
    assert [(t.status, t.usage.input_tokens) for t in turn_events(events)] == [
        (200, 10),
        (200, 20),
        (429, 30),
    ]
    # Once the day's quota is used up, a response.create is refused before it is sent.
    with connect(url, additional_headers=AUTH) as ws:
        assert recv_json(ws)["type"] == "session.created"
        assert turn(ws)[0]["error"]["code"] == "quota_exceeded"


def test_a_failing_adapter_is_a_clear_500(socket_upstream: ServerThread) -> None:
    class Broken(OpenAIAdapter):
        def auth_headers(self, context: Any) -> Any:
            raise RuntimeError("secret detail")

    adapter = Broken(base_url=socket_upstream.url + "/v1", api_key=OPENAI_KEY)
    proxy = make_asgi_app([adapter], validate_credentials="off")
    with serve(proxy, ws="websockets-sansio") as server:
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(server, "/openai/responses")).close()
    response = refused.value.response
    assert response.status_code == 500
    message = json.loads(response.body)["error"]["message"]
    assert "RuntimeError" in message
    assert "secret detail" not in message


def test_with_cors_only_allowed_origins_open_sockets(build: Callable[..., ServerThread]) -> None:
    server = build(cors=CORS(allow_origins=["https://app.example"]))
    for path in ("/openai/responses", "/ws"):
        with pytest.raises(InvalidStatus) as refused:
            connect(
                ws_url(server, path),
                additional_headers=AUTH,
                origin="https://evil.example",  # type: ignore[arg-type]
            ).close()
        assert refused.value.response.status_code == 403
        assert json.loads(refused.value.response.body)["error"]["code"] == "forbidden"
    with connect(
        ws_url(server, "/openai/responses"),
        additional_headers=AUTH,
        origin="https://app.example",  # type: ignore[arg-type]
    ) as ws:
        ws.send(json.dumps({"type": "fake.echo"}))
        assert recv_json(ws) == {"type": "fake.echo"}
    with connect(ws_url(server, "/openai/responses"), additional_headers=AUTH) as ws:
        ws.send(json.dumps({"type": "fake.echo"}))  # no Origin: not a browser
        assert recv_json(ws) == {"type": "fake.echo"}
