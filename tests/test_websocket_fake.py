"""``FakeSocketUpstream`` on its own: its protocols, and the credentials it refuses to see."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from provider_proxy.testing import FakeSocketUpstream

from .servers import ServerThread, serve, wait_until

SECRET = "the-client-key-0123456789"


@pytest.fixture
def fake() -> FakeSocketUpstream:
    return FakeSocketUpstream(forbidden=[SECRET], subprotocol="realtime")


@pytest.fixture
def server(fake: FakeSocketUpstream) -> Iterator[ServerThread]:
    with serve(fake, lifespan="off", ws="websockets-sansio") as running:
        yield running


def _url(server: ServerThread, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


@pytest.mark.parametrize(
    ("where", "options"),
    [
        ("header", {"additional_headers": {"authorization": f"Bearer {SECRET}"}}),
        ("query", {}),
        ("subprotocol", {"subprotocols": [f"openai-insecure-api-key.{SECRET}"]}),
    ],
)
def test_a_forbidden_value_in_the_handshake_is_refused_and_recorded(
    server: ServerThread, fake: FakeSocketUpstream, where: str, options: dict[str, object]
) -> None:
    path = f"/v1/responses?key={SECRET}" if where == "query" else "/v1/responses"
    with connect(_url(server, path), **options) as ws:  # type: ignore[arg-type]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403
    assert len(fake.violations) == 1


def test_a_forbidden_value_in_a_message_is_refused(
    server: ServerThread, fake: FakeSocketUpstream
) -> None:
    with connect(_url(server, "/v1/responses")) as ws:
        ws.send(json.dumps({"type": "fake.echo", "leak": SECRET}))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    assert fake.violations == [f"a message carried {SECRET!r}"]


def test_realtime_and_gemini_live_and_a_refusal(
    server: ServerThread, fake: FakeSocketUpstream
) -> None:
    with connect(_url(server, "/v1/realtime?model=m"), subprotocols=["realtime"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "realtime"
        assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=10) == b"\x00\xff"
    assert fake.last.received == [b"\x00\xff"]
    live = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    with connect(_url(server, live)) as ws:
        ws.send(json.dumps({"setup": {}}))
        assert json.loads(ws.recv(timeout=10)) == {"setupComplete": {}}
    with pytest.raises(InvalidStatus) as refused:
        connect(_url(server, "/v1/responses"), additional_headers={"x-fake-status": "401"})
    assert refused.value.response.status_code == 401
    assert wait_until(lambda: fake.open_sockets == 0)
