"""The gateway through a real server: each SDK on its own endpoint, any provider's model.

The ``openai`` SDK calls ``{mount}/v1/chat/completions`` with Anthropic-backed
models, the ``anthropic`` SDK calls ``{mount}/v1/messages`` with OpenAI-backed
ones: both translated, whole and streamed, against the fake provider (which
answers each format as the provider would). Same-format models pass through
with the model rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from provider_proxy import ProxyApp, ProxyEvent, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream
from provider_proxy.transforms import ModelAliases

from .conftest import ANTHROPIC_KEY, OPENAI_KEY, TRANSPORTS
from .servers import ServerThread, serve, wait_until

TEXT = "Hello from the fake upstream, streamed one piece at a time."
MESSAGES: Any = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def events() -> list[ProxyEvent]:
    return []


@pytest.fixture
def gateway(
    upstream: ServerThread, transport_kind: str, events: list[ProxyEvent]
) -> Iterator[ServerThread]:
    proxy: ProxyApp = make_asgi_app(
        [
            OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
        ],
        transport=TRANSPORTS[transport_kind](),
        transforms=[ModelAliases({"fast": "anthropic/claude-haiku-4-5"})],
        validate_credentials="off",
        sinks=[events.append],
    )
    with serve(proxy) as server:
        yield server


@pytest.fixture
def openai_client(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture
def anthropic_client(gateway: ServerThread) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as client:
        yield client


def test_openai_sdk_on_an_anthropic_model(
    openai_client: openai.OpenAI, fake: FakeUpstream, events: list[ProxyEvent]
) -> None:
    completion = openai_client.chat.completions.create(
        model="anthropic/claude-sonnet-4-5", messages=MESSAGES, max_tokens=50
    )
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    sent = json.loads(fake.last.body)
    assert fake.last.path == "/v1/messages"
    assert sent["model"] == "claude-sonnet-4-5"
    assert sent["max_tokens"] == 50
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Say hello."}]}
    ]
    assert fake.last.header("x-api-key") == ANTHROPIC_KEY
    assert wait_until(lambda: bool(events))
    assert events[-1].provider == "anthropic"
    assert events[-1].status == 200
    assert events[-1].usage is not None
    assert events[-1].usage.output_tokens


def test_openai_sdk_streams_an_anthropic_model(openai_client: openai.OpenAI) -> None:
    stream = openai_client.chat.completions.create(
        model="anthropic/claude-sonnet-4-5",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert len(chunks) > 3  # event by event, not one translated lump


def test_anthropic_sdk_on_an_openai_model(
    anthropic_client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    message = anthropic_client.messages.create(
        model="openai/gpt-4.1", max_tokens=64, messages=MESSAGES
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == TEXT
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    assert fake.last.path == "/v1/chat/completions"
    sent = json.loads(fake.last.body)
    assert sent["model"] == "gpt-4.1"
    assert fake.last.header("authorization") == f"Bearer {OPENAI_KEY}"


def test_anthropic_sdk_streams_an_openai_model(anthropic_client: anthropic.Anthropic) -> None:
    with anthropic_client.messages.stream(
        model="openai/gpt-4.1", max_tokens=64, messages=MESSAGES
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == TEXT
    assert len(pieces) > 3
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_same_format_passes_through_with_the_model_rewritten(
    openai_client: openai.OpenAI, fake: FakeUpstream
) -> None:
    completion = openai_client.chat.completions.create(model="openai/gpt-4.1", messages=MESSAGES)
    assert completion.choices[0].message.content == TEXT
    sent = json.loads(fake.last.body)
    assert sent == {"model": "gpt-4.1", "messages": MESSAGES}


def test_aliases_resolve_before_routing(openai_client: openai.OpenAI, fake: FakeUpstream) -> None:
    openai_client.chat.completions.create(model="fast", messages=MESSAGES)
    assert fake.last.path == "/v1/messages"
    assert json.loads(fake.last.body)["model"] == "claude-haiku-4-5"


def test_an_unknown_provider_is_a_404_in_the_clients_format(
    openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    with pytest.raises(openai.NotFoundError) as chat_error:
        openai_client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert "/v1/models" in str(chat_error.value)
    with pytest.raises(anthropic.NotFoundError) as messages_error:
        anthropic_client.messages.create(model="nobody/x", max_tokens=5, messages=MESSAGES)
    assert "provider/model" in str(messages_error.value).replace("{", "").replace("}", "")


def test_provider_errors_become_the_clients_typed_errors(
    openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    with pytest.raises(openai.RateLimitError):
        openai_client.chat.completions.create(
            model="anthropic/claude-sonnet-4-5",
            messages=MESSAGES,
            extra_headers={"x-fake-status": "429"},
        )
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_client.messages.create(
            model="openai/gpt-4.1",
            max_tokens=5,
            messages=MESSAGES,
            extra_headers={"x-fake-status": "401"},
        )


def test_a_field_that_changes_the_answer_is_refused_naming_it(gateway: ServerThread) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "anthropic/claude-sonnet-4-5", "messages": MESSAGES, "n": 2},
    )
    assert response.status_code == 400
    assert "n" in response.json()["error"]["message"]


def test_a_provider_cut_mid_stream_is_not_a_clean_end(openai_client: openai.OpenAI) -> None:
    stream = openai_client.chat.completions.create(
        model="anthropic/claude-sonnet-4-5",
        messages=MESSAGES,
        stream=True,
        extra_headers={"x-fake-fail-after": "3"},
    )
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        list(stream)


def test_events_name_both_formats_and_whether_translated(
    openai_client: openai.OpenAI, events: list[ProxyEvent]
) -> None:
    openai_client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=MESSAGES)
    openai_client.chat.completions.create(model="openai/gpt-4.1", messages=MESSAGES)
    assert wait_until(lambda: len(events) >= 2)
    translated, passed = events[-2], events[-1]
    assert (translated.client_dialect, translated.dialect, translated.translated) == (
        "openai-chat",
        "anthropic-messages",
        True,
    )
    assert (passed.client_dialect, passed.dialect, passed.translated) == (
        "openai-chat",
        "openai-chat",
        False,
    )


def test_count_tokens_elsewhere_without_a_tokenizer_is_501_in_anthropics_format(
    upstream: ServerThread,
) -> None:
    proxy = make_asgi_app(
        [OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY)],
        validate_credentials="off",
        tokenizer=None,
    )
    with (
        serve(proxy) as server,
        anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0) as client,
        pytest.raises(anthropic.APIStatusError) as refused,
    ):
        client.messages.count_tokens(model="openai/gpt-4.1", messages=MESSAGES)
    assert refused.value.status_code == 501
    assert refused.value.response.json()["type"] == "error"
    assert "count_tokens" in refused.value.response.json()["error"]["message"]


def test_dropped_fields_are_named_on_the_answer(gateway: ServerThread) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "anthropic/claude-sonnet-4-5", "messages": MESSAGES, "seed": 7},
    )
    assert response.status_code == 200
    assert response.headers["x-proxy-dropped-fields"] == "seed"


def test_strict_translation_refuses_what_it_would_drop(upstream: ServerThread) -> None:
    proxy = make_asgi_app(
        [AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY)],
        strict_translation=True,
        validate_credentials="off",
    )
    with serve(proxy) as server:
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "anthropic/claude-sonnet-4-5", "messages": MESSAGES, "seed": 7},
        )
    assert response.status_code == 400
    assert "'seed'" in response.json()["error"]["message"]


def test_default_provider_serves_unprefixed_names(
    upstream: ServerThread, fake: FakeUpstream
) -> None:
    proxy = make_asgi_app(
        [AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY)],
        default_provider="anthropic",
        validate_credentials="off",
    )
    with serve(proxy) as server:
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "claude-sonnet-4-5", "messages": MESSAGES},
        )
    assert response.status_code == 200
    assert json.loads(fake.last.body)["model"] == "claude-sonnet-4-5"
    with pytest.raises(ValueError, match="default_provider"):
        make_asgi_app([], default_provider="nobody")


def test_content_the_provider_cannot_hold_is_named_too(gateway: ServerThread) -> None:
    body = {
        "model": "openai/gpt-4.1",
        "max_tokens": 32,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": MESSAGES,
    }
    response = httpx.post(f"{gateway.url}/v1/messages", json=body)
    assert response.status_code == 200
    assert response.headers["x-proxy-dropped-fields"] == "cache_control"


def test_strict_translation_refuses_content_it_would_drop(upstream: ServerThread) -> None:
    proxy = make_asgi_app(
        [OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY)],
        strict_translation=True,
        validate_credentials="off",
    )
    body = {
        "model": "openai/gpt-4.1",
        "max_tokens": 32,
        "system": [{"type": "text", "text": "Hi.", "cache_control": {"type": "ephemeral"}}],
        "messages": MESSAGES,
    }
    with serve(proxy) as server:
        response = httpx.post(f"{server.url}/v1/messages", json=body)
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert "'cache_control'" in response.json()["error"]["message"]


def test_each_sdk_lists_the_models_in_its_own_format(
    openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    openai_ids = {model.id for model in openai_client.models.list()}
    page = anthropic_client.models.list(limit=1)
    assert page.data[0].type == "model"
    assert page.data[0].display_name
    assert page.has_more
    anthropic_ids = {model.id for model in anthropic_client.models.list(limit=1000)}
    assert anthropic_ids == openai_ids  # the same catalog, each SDK's shape
    assert any(name.startswith("anthropic/") for name in anthropic_ids)
    second = anthropic_client.models.list(limit=1, after_id=page.data[0].id)
    assert second.data[0].id != page.data[0].id
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client.models.retrieve("nobody/none")
