"""``{mount}/ws``: the inference socket, through real uvicorn, in front of the fake provider.

Requests route like the gateway's (``"{adapter}/{model}"``, translated for
Anthropic), stream as ``inference_response`` frames, run at once on one
socket, and are cancelled, limited and refused with the protocol's frames.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from provider_proxy import Guards, RateLimit, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY, CLIENT_KEY, OPENAI_KEY, OwnUpstream
from .servers import ServerThread, serve, wait_until

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def events() -> list[Any]:
    return []


@pytest.fixture
def build(upstream: ServerThread, events: list[Any]) -> Iterator[Callable[..., str]]:
    """Serve a proxy in front of the fake provider; returns the ``ws://`` URL of ``/ws``."""
    contexts: list[Any] = []

    def start(**options: Any) -> str:
        adapters = [
            OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
        ]
        options.setdefault("validate_credentials", "off")
        proxy = make_asgi_app(adapters, sinks=[events.append], **options)
        context = serve(proxy, ws="websockets-sansio")
        server = context.__enter__()
        contexts.append(context)
        return server.url.replace("http://", "ws://") + "/ws"

    yield start
    for context in reversed(contexts):
        context.__exit__(None, None, None)


def frame(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    message = ws.recv(timeout=timeout)
    assert isinstance(message, str)
    payload: dict[str, Any] = json.loads(message)
    return payload


def request(ws: ClientConnection, request_id: str, model: str, **data: Any) -> None:
    ws.send(
        json.dumps(
            {
                "type": "inference_request",
                "id": request_id,
                "data": {"model": model, "messages": HELLO, **data},
            }
        )
    )


def until_done(ws: ClientConnection, ids: set[str]) -> list[dict[str, Any]]:
    """Frames (heartbeats aside) until each of ``ids`` got its last frame."""
    frames, left = [], set(ids)
    while left:
        payload = frame(ws)
        if payload["type"] == "heartbeat":
            continue
        frames.append(payload)
        if payload["type"] == "error" or "finish_reason" in payload.get("data", {}):
            left.discard(payload["id"])
    return frames


def test_two_requests_at_once_stream_multiplexed_by_id(
    build: Callable[..., str], fake: FakeUpstream, events: list[Any]
) -> None:
    url = build()
    headers = {"x-fake-chunks": "6", "x-fake-gap": "0.05"}
    with connect(url, additional_headers=headers) as ws:
        request(ws, "a", "openai/gpt-4o-mini")
        request(ws, "b", "anthropic/claude-sonnet-4-5")
        frames = until_done(ws, {"a", "b"})
    order = [f["id"] for f in frames]
    assert order.index("b") < len(order) - 1 - order[::-1].index("a")  # interleaved
    for request_id, model in (("a", "gpt-4o-mini"), ("b", "claude-sonnet-4-5")):
        mine = [f for f in frames if f["id"] == request_id]
        assert all(f["type"] == "inference_response" for f in mine)
        deltas = [f["data"]["content"] for f in mine[:-1]]
        assert len(deltas) >= 6
        assert all(deltas)
        last = mine[-1]["data"]
        assert last["finish_reason"] == "stop"
        assert last["model"].startswith(model)
        assert (
            last["usage"]["total_tokens"]
            == (last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"])
            > 0
        )
        assert abs(last["created"] - time.time()) < 60
    assert wait_until(lambda: len(events) == 2)
    assert sorted((e.provider, e.client_dialect, e.status) for e in events) == [
        ("anthropic", "openai-chat", 200),
        ("openai", "openai-chat", 200),
    ]


def test_heartbeats_come_every_interval(build: Callable[..., str]) -> None:
    url = build(ws_heartbeat_interval=0.2)
    with connect(url) as ws:
        beats = [frame(ws) for _ in range(3)]
    assert [b["type"] for b in beats] == ["heartbeat"] * 3
    gaps = [b["timestamp"] - a["timestamp"] for a, b in itertools.pairwise(beats)]
    assert all(150 <= gap <= 2000 for gap in gaps), gaps
    assert abs(beats[0]["timestamp"] / 1000 - time.time()) < 60


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        ("not json", 400),
        ('{"type": "dance"}', 400),
        ('{"type": "inference_request", "data": {}}', 400),
        ('{"type": "inference_request", "id": "x"}', 400),
        ('{"type": "inference_request", "id": "x", "data": {"messages": []}}', 400),
        ('{"type": "inference_request", "id": "x", "data": {"model": "nowhere/m"}}', 404),
    ],
)
def test_bad_frames_get_validation_errors(build: Callable[..., str], sent: str, code: int) -> None:
    url = build()
    with connect(url) as ws:
        ws.send(sent)
        error = frame(ws)
        ws.send(json.dumps({"type": "heartbeat"}))  # still open
    assert error["type"] == "error"
    assert error["error"]["type"] == "validation"
    assert error["error"]["code"] == code
    assert error["error"]["message"]


def test_provider_errors_are_upstream_and_proxy_limits_rate_limit(
    build: Callable[..., str],
) -> None:
    url = build()
    with connect(url, additional_headers={"x-fake-status": "500"}) as ws:
        request(ws, "a", "openai/gpt-4o-mini")
        [error] = until_done(ws, {"a"})
    assert error["id"] == "a"
    assert (error["error"]["type"], error["error"]["code"]) == ("upstream", 500)

    url = build(guards=Guards(rate_limits=[RateLimit(1, 60)]))
    with connect(url) as ws:
        request(ws, "a", "openai/gpt-4o-mini")
        assert until_done(ws, {"a"})[-1]["data"]["finish_reason"] == "stop"
        request(ws, "b", "openai/gpt-4o-mini")
        [error] = until_done(ws, {"b"})
    assert (error["error"]["type"], error["error"]["code"]) == ("rate_limit", 429)


def test_close_frame_then_close(build: Callable[..., str]) -> None:
    url = build()
    with connect(url) as ws:
        ws.send(json.dumps({"type": "close"}))
        assert frame(ws) == {"type": "close", "reason": "Client requested close", "code": 1000}
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1000


def test_connection_limits_are_refused_with_a_close_frame(build: Callable[..., str]) -> None:
    url = build(ws_max_connections=1)
    with connect(url) as first:
        with connect(url) as second:
            refused = frame(second)
        assert refused["type"] == "close"
        assert refused["code"] == 1013
        first.send(json.dumps({"type": "heartbeat"}))

    url = build(ws_connections_per_minute=2)
    for _ in range(2):
        with connect(url):
            pass
    with connect(url) as third:
        refused = frame(third)
        with pytest.raises(ConnectionClosed) as closed:
            third.recv(timeout=10)
    assert refused["code"] == 1013
    assert "a minute" in refused["reason"]
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013


def test_client_keys_by_query_or_subprotocol(build: Callable[..., str], fake: FakeUpstream) -> None:
    url = build(guards=Guards(client_keys=[CLIENT_KEY]), ws_connections_per_minute=None)
    with connect(url) as ws:
        refused = frame(ws)
    assert (refused["type"], refused["code"]) == ("close", 1008)
    with connect(url + f"?key={CLIENT_KEY}") as ws:
        request(ws, "a", "openai/gpt-4o-mini")
        assert until_done(ws, {"a"})[-1]["data"]["finish_reason"] == "stop"
    seen = fake.last
    assert CLIENT_KEY.encode() not in repr(seen.headers).encode() + seen.query
    protocols = ["chat", f"openai-insecure-api-key.{CLIENT_KEY}"]
    with connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "chat"
        request(ws, "b", "openai/gpt-4o-mini")
        assert until_done(ws, {"b"})[-1]["data"]["finish_reason"] == "stop"
    assert CLIENT_KEY not in repr(fake.last.headers)
    assert fake.last.header("authorization") == f"Bearer {OPENAI_KEY}"


class TestOnItsOwnUpstream(OwnUpstream):
    """Tests that count the fake's streams, each on a fake of its own."""

    def test_cancel_stops_one_request_and_its_upstream(
        self, build: Callable[..., str], fake: FakeUpstream, events: list[Any]
    ) -> None:
        url = build()
        with connect(url, additional_headers={"x-fake-chunks": "100", "x-fake-gap": "0.02"}) as ws:
            before = fake.closed_streams
            request(ws, "long", "openai/gpt-4o-mini")
            assert frame(ws)["data"]["content"]
            ws.send(json.dumps({"type": "cancel", "id": "long"}))
            deltas = 1
            while (payload := frame(ws))["data"].get("content"):
                deltas += 1
            assert deltas < 50  # stopped, not finished
            assert payload == {
                "type": "inference_response",
                "id": "long",
                "data": {"finish_reason": "cancelled", "created": payload["data"]["created"]},
            }
            assert wait_until(lambda: fake.closed_streams == before + 1)
            request(ws, "next", "openai/gpt-4o-mini")  # the socket still serves
            assert until_done(ws, {"next"})[-1]["data"]["finish_reason"] == "stop"
            ws.send(json.dumps({"type": "cancel", "id": "nothing"}))
            error = frame(ws)
        assert error["type"] == "error"
        assert error["error"]["type"] == "validation"
        assert wait_until(lambda: len(events) == 2)
        assert sorted((e.status, e.error_kind or "") for e in events) == [
            (200, ""),
            (499, "client_disconnected"),
        ]
