"""The proxy inside real host apps, driven by the official SDKs over loopback.

A FastAPI app mounts it with ``app.mount("/llm", proxy)``; a Django app with
``mount()``. Each is served by uvicorn and called by the unmodified ``openai``
and ``anthropic`` SDKs, which only get their base URL changed. Every test runs
with both upstream transports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anthropic
import httpx
import openai
import pytest
from examples.django_app import create_application
from examples.fastapi_app import create_app

from provider_proxy import ProviderAdapter
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY, CLIENT_KEY, OPENAI_KEY, TRANSPORTS
from .servers import ServerThread, serve

TEXT = "Hello from the fake upstream, streamed one piece at a time."
MESSAGES: Any = [{"role": "user", "content": "Say hello."}]
UNSET_VAR = "SOME_UNSET_VAR_FOR_PROVIDER_PROXY_TESTS"

HostFactory = Callable[..., Any]
HOSTS: dict[str, HostFactory] = {
    "fastapi": create_app,  # app.mount("/llm", proxy)
    "django": create_application,  # mount(django_asgi_app, "/llm", proxy)
}


def _adapters(upstream: ServerThread) -> Sequence[ProviderAdapter]:
    return [
        # /echo is a test route of the fake, opened beside the inference endpoints.
        OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY, allow=["GET /echo"]),
        AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
        # Mounted, but without a key.
        AnthropicAdapter(name="claude-nokey", api_key=None, api_key_env=UNSET_VAR),
    ]


def _build_host(kind: str, upstream: ServerThread, transport_kind: str) -> Any:
    return HOSTS[kind](_adapters(upstream), transport=TRANSPORTS[transport_kind]())


@pytest.fixture(params=sorted(HOSTS))
def host(
    request: pytest.FixtureRequest,
    upstream: ServerThread,
    transport_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ServerThread]:
    """A real host app with the proxy under /llm, served on loopback."""
    monkeypatch.delenv(UNSET_VAR, raising=False)
    with serve(_build_host(request.param, upstream, transport_kind)) as server:
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


def _client_key_never_sent(fake: FakeUpstream) -> bool:
    return not any(CLIENT_KEY.encode() in value for _, value in fake.last.headers)


def test_host_routes_still_work(host: ServerThread) -> None:
    response = httpx.get(host.url + "/")
    assert response.status_code == 200
    assert response.json()["hello"].startswith("from the")


def test_openai_sdk_plain_and_streamed(openai_client: openai.OpenAI, fake: FakeUpstream) -> None:
    completion = openai_client.chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert completion.choices[0].message.content == TEXT
    assert completion.model == "gpt-x"
    assert fake.last.path == "/v1/chat/completions"
    assert fake.last.header("authorization") == f"Bearer {OPENAI_KEY}"
    assert _client_key_never_sent(fake)

    stream = openai_client.chat.completions.create(model="gpt-x", messages=MESSAGES, stream=True)
    with stream:
        pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces) == TEXT
    assert len([piece for piece in pieces if piece]) == len(TEXT.split())
    assert fake.last.header("authorization") == f"Bearer {OPENAI_KEY}"
    assert _client_key_never_sent(fake)


def test_anthropic_sdk_plain_and_streamed(
    anthropic_client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    message = anthropic_client.messages.create(model="claude-x", max_tokens=50, messages=MESSAGES)
    assert message.content[0].type == "text"
    assert message.content[0].text == TEXT
    assert fake.last.path == "/v1/messages"
    assert fake.last.header("x-api-key") == ANTHROPIC_KEY
    assert fake.last.header("anthropic-version") is not None  # the SDK's, passed on
    assert _client_key_never_sent(fake)

    with anthropic_client.messages.stream(
        model="claude-x", max_tokens=50, messages=MESSAGES
    ) as stream:
        assert "".join(stream.text_stream) == TEXT
        assert stream.get_final_message().stop_reason == "end_turn"
    assert fake.last.path == "/v1/messages"
    assert fake.last.header("x-api-key") == ANTHROPIC_KEY
    assert _client_key_never_sent(fake)

    events = anthropic_client.messages.create(
        model="claude-x", max_tokens=50, messages=MESSAGES, stream=True
    )
    with events:
        text = "".join(
            event.delta.text
            for event in events
            if event.type == "content_block_delta" and event.delta.type == "text_delta"
        )
    assert text == TEXT


def test_stream_reaches_the_sdk_piece_by_piece(openai_client: openai.OpenAI) -> None:
    # The fake waits `gap` seconds between events: a host or proxy that buffered
    # the answer would hand all the pieces over at once.
    gap, chunks = 0.2, 3
    stream = openai_client.chat.completions.create(
        model="m",
        messages=MESSAGES,
        stream=True,
        extra_headers={"x-fake-gap": str(gap), "x-fake-chunks": str(chunks)},
    )
    arrivals = []
    with stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic())
    assert len(arrivals) == chunks
    assert arrivals[-1] - arrivals[0] >= gap * (chunks - 1) * 0.75


def test_sdk_errors_from_the_proxy(host: ServerThread) -> None:
    with openai.OpenAI(base_url=f"{host.url}/llm/nope", api_key="x", max_retries=0) as client:
        with pytest.raises(openai.NotFoundError, match="No provider named 'nope'") as not_found:
            client.models.list()
    # The mounted providers are listed, and the error is in OpenAI's format.
    assert "openai, anthropic, claude-nokey" in not_found.value.message
    assert isinstance(not_found.value.body, dict)
    assert not_found.value.code == "provider_not_found"

    with anthropic.Anthropic(
        base_url=f"{host.url}/llm/claude-nokey", api_key="x", max_retries=0
    ) as client:
        with pytest.raises(anthropic.InternalServerError, match=UNSET_VAR) as unconfigured:
            client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
    assert unconfigured.value.status_code == 503
    # Anthropic's error format, which the SDK parsed.
    body = unconfigured.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert UNSET_VAR in body["error"]["message"]


def test_sdk_sees_upstream_errors_unchanged(
    openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    with pytest.raises(openai.RateLimitError, match="fake upstream error 429") as limited:
        openai_client.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers={"x-fake-status": "429"}
        )
    assert limited.value.status_code == 429
    with pytest.raises(anthropic.AuthenticationError, match="fake upstream error 401"):
        anthropic_client.messages.create(
            model="m", max_tokens=5, messages=MESSAGES, extra_headers={"x-fake-status": "401"}
        )


def test_sdk_sees_a_broken_stream_as_an_error(openai_client: openai.OpenAI) -> None:
    stream = openai_client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, extra_headers={"x-fake-fail-after": "2"}
    )
    with stream, pytest.raises((openai.APIConnectionError, httpx.TransportError)):
        for _ in stream:
            pass


@pytest.mark.parametrize("host_kind", sorted(HOSTS))
def test_served_under_a_root_path(
    host_kind: str, upstream: ServerThread, transport_kind: str, fake: FakeUpstream
) -> None:
    # The host lives under /api behind a reverse proxy that strips the prefix
    # (uvicorn --root-path /api): requests arrive as /llm/... with root_path "/api"
    # and a path of "/api/llm/...". The proxy must forward what is below /llm.
    app = _build_host(host_kind, upstream, transport_kind)
    with serve(app, root_path="/api") as server:
        with openai.OpenAI(
            base_url=f"{server.url}/llm/openai", api_key=CLIENT_KEY, max_retries=0
        ) as client:
            models = client.models.list()
            assert [model.id for model in models] == ["gpt-fake-1", "gpt-fake-2"]
            assert fake.last.path == "/v1/models"
            stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            with stream:
                text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text == TEXT
            assert fake.last.path == "/v1/chat/completions"
        with anthropic.Anthropic(
            base_url=f"{server.url}/llm/anthropic", api_key=CLIENT_KEY, max_retries=0
        ) as claude:
            message = claude.messages.create(model="c", max_tokens=5, messages=MESSAGES)
            assert message.content[0].type == "text"
            assert message.content[0].text == TEXT
            assert fake.last.path == "/v1/messages"

        with httpx.Client(base_url=server.url) as http:
            echo = http.get("/llm/openai/echo?q=1").json()
            assert echo["path"] == "/v1/echo"
            assert echo["query"] == "q=1"
            # The provider name is read below the mount, not from the root path.
            response = http.get("/llm/nope/models")
            assert response.status_code == 404
            assert "No provider named 'nope'" in response.json()["error"]["message"]
            assert http.get("/llm/health").json()["status"] == "ok"
            # The host's own routes still work.
            hello = http.get("/")
            assert hello.status_code == 200
            assert hello.json()["hello"].startswith("from the")
