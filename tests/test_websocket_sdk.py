"""The openai SDK's own sockets through the relay: ``responses.connect()`` and
``realtime.connect()``, with only a client key, against the fake provider socket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI

from provider_proxy import Guards, make_asgi_app
from provider_proxy.adapters import OpenAIAdapter
from provider_proxy.testing import FakeSocketUpstream

from .conftest import CLIENT_KEY, OPENAI_KEY
from .servers import serve, wait_until


@pytest.fixture(scope="module")
def fake_ws() -> FakeSocketUpstream:
    return FakeSocketUpstream(forbidden=[CLIENT_KEY])


@pytest.fixture
def events() -> list[Any]:
    return []


@pytest.fixture
def client(fake_ws: FakeSocketUpstream, events: list[Any]) -> Iterator[OpenAI]:
    with serve(fake_ws, lifespan="off", ws="websockets-sansio") as provider:
        adapter = OpenAIAdapter(base_url=provider.url + "/v1", api_key=OPENAI_KEY)
        proxy = make_asgi_app(
            [adapter],
            guards=Guards(client_keys=[CLIENT_KEY]),
            validate_credentials="off",
            sinks=[events.append],
        )
        with serve(proxy, ws="websockets-sansio") as server:
            yield OpenAI(base_url=server.url + "/openai", api_key=CLIENT_KEY, max_retries=0)


def test_responses_connect(client: OpenAI, fake_ws: FakeSocketUpstream, events: list[Any]) -> None:
    text = ""
    with client.responses.connect() as connection:
        connection.send({"type": "response.create", "model": "gpt-5", "input": "Hi"})  # type: ignore[typeddict-item]
        for event in connection:
            if event.type == "response.output_text.delta":
                text += event.delta
            if event.type == "response.completed":
                usage = event.response.usage
                break
    assert text == "Hello from the socket"
    assert usage is not None
    assert usage.output_tokens == 4
    assert fake_ws.last.path == "/v1/responses"
    assert fake_ws.last.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert fake_ws.violations == []
    assert wait_until(lambda: any(e.websocket == "connection" for e in events))
    [turn] = [e for e in events if e.websocket == "turn"]
    assert (turn.model, turn.usage.input_tokens, turn.identity) == ("gpt-5", 10, "client-1")


def test_realtime_connect(client: OpenAI, fake_ws: FakeSocketUpstream) -> None:
    kinds = []
    with client.realtime.connect(model="gpt-realtime") as connection:
        connection.response.create()
        for event in connection:
            kinds.append(event.type)
            if event.type == "response.done":
                break
    assert kinds[0] == "session.created"
    assert kinds[-1] == "response.done"
    assert fake_ws.last.path == "/v1/realtime"
    assert fake_ws.last.query == "model=gpt-realtime"
    assert fake_ws.violations == []
