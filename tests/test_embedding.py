"""The proxy inside real host apps, driven by the official SDKs over loopback.

A FastAPI app mounts it with ``app.mount("/llm", proxy)``; a Django app with
``mount()``. Each is served by uvicorn and called by the unmodified ``openai``
and ``anthropic`` SDKs, which only get their base URL changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from examples.django_app import create_application
from examples.fastapi_app import create_app

from provider_proxy import ProviderAdapter
from provider_proxy._fake import FakeUpstream
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter

from .conftest import ANTHROPIC_KEY, CLIENT_KEY, OPENAI_KEY, TRANSPORTS
from .servers import ServerThread, serve

TEXT = "Hello from the fake upstream, streamed one piece at a time."
MESSAGES: Any = [{"role": "user", "content": "Say hello."}]

HOSTS: dict[str, Callable[[list[ProviderAdapter]], Any]] = {
    "fastapi": create_app,
    "django": create_application,
}


def _adapters(upstream: ServerThread, transport_kind: str) -> list[ProviderAdapter]:
    return [
        OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
        AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
        # Mounted, but without a key.
        AnthropicAdapter(name="claude-nokey", api_key_env="SOME_UNSET_VAR_FOR_TESTS"),
    ]


@pytest.fixture(params=sorted(HOSTS))
def host(
    request: pytest.FixtureRequest,
    upstream: ServerThread,
    transport_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ServerThread]:
    """A real host app with the proxy under /llm, served on loopback."""
    monkeypatch.delenv("SOME_UNSET_VAR_FOR_TESTS", raising=False)
    monkeypatch.setattr(
        "provider_proxy._app.default_transport", lambda limits: TRANSPORTS[transport_kind]()
    )
    app = HOSTS[request.param](_adapters(upstream, transport_kind))
    with serve(app) as server:
        yield server


@pytest.fixture
def openai_client(host: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{host.url}/llm/openai", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        yield client


@pytest.fixture
def anthropic_client(host: ServerThread) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=f"{host.url}/llm/anthropic", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        yield client


def _no_client_key(fake: FakeUpstream) -> bool:
    return not any(CLIENT_KEY.encode() in value for _, value in fake.last.headers)


def test_host_routes_still_work(host: ServerThread) -> None:
    response = httpx.get(host.url + "/")
    assert response.status_code == 200
    assert "hello" in response.json()


def test_openai_sdk_plain_and_streamed(openai_client: openai.OpenAI, fake: FakeUpstream) -> None:
    completion = openai_client.chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert completion.choices[0].message.content == TEXT
    assert fake.last.path == "/v1/chat/completions"
    assert fake.last.header("authorization") == f"Bearer {OPENAI_KEY}"
    assert _no_client_key(fake)

    stream = openai_client.chat.completions.create(model="gpt-x", messages=MESSAGES, stream=True)
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces) == TEXT
    assert len(pieces) > 1
    assert _no_client_key(fake)


def test_anthropic_sdk_plain_and_streamed(
    anthropic_client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    message = anthropic_client.messages.create(model="claude-x", max_tokens=50, messages=MESSAGES)
    assert message.content[0].type == "text"
    assert message.content[0].text == TEXT
    assert fake.last.header("x-api-key") == ANTHROPIC_KEY
    assert _no_client_key(fake)

    with anthropic_client.messages.stream(
        model="claude-x", max_tokens=50, messages=MESSAGES
    ) as stream:
        assert "".join(stream.text_stream) == TEXT
    assert fake.last.path == "/v1/messages"
    assert _no_client_key(fake)


def test_sdk_errors_from_the_proxy(host: ServerThread) -> None:
    with openai.OpenAI(base_url=f"{host.url}/llm/nope", api_key="x", max_retries=0) as client:
        with pytest.raises(openai.NotFoundError, match="nope"):
            client.models.list()
    with anthropic.Anthropic(
        base_url=f"{host.url}/llm/claude-nokey", api_key="x", max_retries=0
    ) as client:
        with pytest.raises(anthropic.APIStatusError, match="SOME_UNSET_VAR_FOR_TESTS") as info:
            client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
        assert info.value.status_code == 503


def test_sdk_sees_upstream_errors_unchanged(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError, match="fake upstream error 429"):
        openai_client.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers={"x-fake-status": "429"}
        )


def test_sdk_sees_a_broken_stream_as_an_error(openai_client: openai.OpenAI) -> None:
    stream = openai_client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, extra_headers={"x-fake-fail-after": "2"}
    )
    with pytest.raises((openai.APIConnectionError, httpx.TransportError)):
        for _ in stream:
            pass


@pytest.mark.parametrize("host_kind", sorted(HOSTS))
def test_served_under_a_root_path(
    host_kind: str, upstream: ServerThread, transport_kind: str, fake: FakeUpstream
) -> None:
    # The host lives under /api behind a reverse proxy that strips the prefix
    # (uvicorn --root-path /api): requests arrive as /llm/... with root_path /api.
    app = HOSTS[host_kind](_adapters(upstream, transport_kind))
    with serve(app, root_path="/api") as server:
        with openai.OpenAI(
            base_url=f"{server.url}/llm/openai", api_key=CLIENT_KEY, max_retries=0
        ) as client:
            models = client.models.list()
        assert [model.id for model in models] == ["gpt-fake-1", "gpt-fake-2"]
        assert fake.last.path == "/v1/models"
        response = httpx.get(f"{server.url}/llm/openai/echo?q=1")
        assert response.json()["path"] == "/v1/echo"
        assert response.json()["query"] == "q=1"
        assert httpx.get(f"{server.url}/").status_code == 200
