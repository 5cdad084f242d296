"""``inference_api=True``: the ``/api/v1`` service API, through a real server on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI, Stream
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from provider_proxy import Guards, RateLimit, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenRouterAdapter
from provider_proxy.testing import FakeUpstream

from .servers import ServerThread, serve

#: A model list as OpenRouter gives it, with what the service API shows.
MODELS = [
    {
        "id": "openai/gpt-4o",
        "name": "GPT-4o",
        "description": "Most advanced GPT-4 model",
        "context_length": 128000,
        "pricing": {"prompt": "0.005", "completion": "0.015"},
        "supported_parameters": ["temperature", "max_tokens", "top_p"],
        "top_provider": {"is_moderated": True, "max_completion_tokens": 4096},
    },
    {
        "id": "anthropic/claude-3.5-sonnet",
        "name": "Claude 3.5 Sonnet",
        "description": "Writes code well",
        "context_length": 200000,
        "pricing": {"prompt": "0.003", "completion": "0.015"},
        "supported_parameters": ["temperature", "max_tokens"],
        "top_provider": {"is_moderated": False, "max_completion_tokens": 8192},
    },
    {
        "id": "meta/llama-3-8b",
        "name": "Llama 3 8B",
        "description": "Small and fast",
        "context_length": 8192,
        "pricing": {"prompt": "0.0001", "completion": "0.0001"},
        "supported_parameters": ["temperature"],
    },
]


class CatalogUpstream:
    """OpenRouter's model list at ``/v1/models``; everything else (Anthropic's list
    included) to the fake provider."""

    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        anthropic = any(name == b"anthropic-version" for name, _ in scope.get("headers", []))
        if scope["type"] == "http" and scope["path"] == "/v1/models" and not anthropic:
            body = json.dumps({"data": MODELS}).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.fake(scope, receive, send)


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[ServerThread, FakeUpstream]]:
    fake = FakeUpstream()
    with serve(CatalogUpstream(fake), lifespan="off") as server:
        yield server, fake


@pytest.fixture(scope="module")
def proxy(provider: tuple[ServerThread, FakeUpstream]) -> Iterator[ServerThread]:
    upstream, _ = provider
    app = make_asgi_app(
        [
            OpenRouterAdapter(api_key="or-key-123456", base_url=upstream.url + "/v1"),
            AnthropicAdapter(name="claude", api_key="an-key-123456", base_url=upstream.url),
        ],
        inference_api=True,
        default_provider="openrouter",
        validate_credentials="off",
        guards=Guards(
            rate_limits=[
                RateLimit(3, 600, key="ip", paths=["/api/v1/models/top"]),
                RateLimit(100, 600, key="ip", paths=["/api/v1/inference*"]),
            ]
        ),
    )
    with serve(app) as server:
        yield server


@pytest.fixture
def sdk(proxy: ServerThread) -> OpenAI:
    return OpenAI(base_url=proxy.url + "/api/v1", api_key="unused", max_retries=0)


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], **extra}


def test_inference_answers_in_openai_format_with_the_sdk(
    sdk: OpenAI, provider: tuple[ServerThread, FakeUpstream]
) -> None:
    _, fake = provider
    completion = sdk.post("/inference", body=chat("openai/gpt-4o"), cast_to=ChatCompletion)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content
    sent = json.loads(fake.last.body)
    assert fake.last.path == "/v1/chat/completions"
    assert sent["model"] == "openai/gpt-4o"  # the default provider's model, as named
    assert sent["stream"] is False
    assert fake.last.header("authorization") == "Bearer or-key-123456"


def test_inference_stream_is_sse_with_the_sdk(
    sdk: OpenAI, provider: tuple[ServerThread, FakeUpstream]
) -> None:
    _, fake = provider
    stream = sdk.post(
        "/inference/stream",
        body=chat("openai/gpt-4o"),  # no "stream": the endpoint streams
        cast_to=ChatCompletion,
        stream=True,
        stream_cls=Stream[ChatCompletionChunk],
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in pieces if p]) > 1
    assert json.loads(fake.last.body)["stream"] is True


def test_inference_is_routed_and_translated_like_the_gateway(
    sdk: OpenAI, provider: tuple[ServerThread, FakeUpstream]
) -> None:
    _, fake = provider
    completion = sdk.post("/inference", body=chat("claude/claude-fake-1"), cast_to=ChatCompletion)
    assert completion.choices[0].message.content
    assert fake.last.path == "/v1/messages"
    assert json.loads(fake.last.body)["model"] == "claude-fake-1"


def test_inference_answers_carry_their_rate_limit(proxy: ServerThread) -> None:
    answer = httpx.post(proxy.url + "/api/v1/inference", json=chat("openai/gpt-4o"))
    assert answer.status_code == 200
    assert answer.headers["x-ratelimit-limit"] == "100"
    assert int(answer.headers["x-ratelimit-remaining"]) < 100
    assert answer.headers["x-content-type-options"] == "nosniff"
    # the rule is scoped: the model endpoints are not counted by it
    assert "x-ratelimit-limit" not in httpx.get(proxy.url + "/api/v1/models").headers


def test_errors_are_in_the_services_format(proxy: ServerThread) -> None:
    url = proxy.url + "/api/v1/inference"
    missing = httpx.post(url, json={"messages": [{"role": "user", "content": "x"}]})
    assert missing.status_code == 400
    assert missing.json() == {
        "error": {
            "code": 400,
            "message": "Validation error: Model is required",
            "type": "validation",
            "details": {"field": "model", "message": "Model is required"},
        }
    }
    assert missing.headers["x-content-type-options"] == "nosniff"
    assert missing.headers["cache-control"] == "no-store"
    not_json = httpx.post(url, content=b"{", headers={"content-type": "application/json"})
    assert not_json.json()["error"]["type"] == "validation"
    assert httpx.get(url).json()["error"]["code"] == 405
    unknown = httpx.get(proxy.url + "/api/v1/nothing")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "validation"


def test_a_providers_error_is_in_the_services_format(sdk: OpenAI, proxy: ServerThread) -> None:
    refused = httpx.post(
        proxy.url + "/api/v1/inference",
        json=chat("openai/gpt-4o"),
        headers={"x-fake-status": "401"},
    )
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert error["code"] == 401
    assert error["type"] == "openrouter"
    assert error["message"]
    assert "or-key-123456" not in refused.text
    with pytest.raises(openai.APIStatusError) as caught:  # the SDK sees the status
        sdk.post(
            "/inference",
            body=chat("openai/gpt-4o"),
            cast_to=ChatCompletion,
            options={"headers": {"x-fake-status": "503"}},
        )
    assert caught.value.status_code == 503


def test_models_list_pages_filters_and_searches(proxy: ServerThread) -> None:
    url = proxy.url + "/api/v1/models"
    everything = httpx.get(url).json()
    # OpenRouter's three (the default provider's: ids as they are) and the other's one
    assert everything["pagination"] == {"total": 4, "limit": 50, "offset": 0, "hasMore": False}
    assert everything["data"][3]["id"] == "claude/claude-fake-1"
    first = everything["data"][0]
    assert first == {
        "id": "openai/gpt-4o",
        "name": "GPT-4o",
        "description": "Most advanced GPT-4 model",
        "context_length": 128000,
        "pricing": {"prompt": "0.005", "completion": "0.015"},
        "supported_parameters": ["temperature", "max_tokens", "top_p"],
        "is_moderated": True,
        "max_completion_tokens": 4096,
    }
    paged = httpx.get(url, params={"limit": 1, "offset": 1}).json()
    assert [m["id"] for m in paged["data"]] == ["anthropic/claude-3.5-sonnet"]
    assert paged["pagination"] == {"total": 4, "limit": 1, "offset": 1, "hasMore": True}
    by_vendor = httpx.get(url, params={"provider": "meta"}).json()
    assert [m["id"] for m in by_vendor["data"]] == ["meta/llama-3-8b"]
    described = httpx.get(url, params={"search": "code"}).json()
    assert [m["id"] for m in described["data"]] == ["anthropic/claude-3.5-sonnet"]
    too_many = httpx.get(url, params={"limit": 101})
    assert too_many.status_code == 400
    assert too_many.json()["error"]["details"] == {
        "field": "limit",
        "message": "limit must be 1 to 100",
    }


def test_one_model_its_parameters_and_pricing(proxy: ServerThread) -> None:
    url = proxy.url + "/api/v1/models/openai/gpt-4o"
    assert httpx.get(url).json()["data"]["name"] == "GPT-4o"
    assert httpx.get(url + "/parameters").json() == {
        "data": {
            "model": "openai/gpt-4o",
            "supported_parameters": ["temperature", "max_tokens", "top_p"],
        }
    }
    assert httpx.get(url + "/pricing").json() == {
        "data": {"model": "openai/gpt-4o", "pricing": {"prompt": "0.005", "completion": "0.015"}}
    }
    missing = httpx.get(proxy.url + "/api/v1/models/openai/gpt-9")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == 404
    # The other provider's models carry its name, as the gateway takes them.
    claude = httpx.get(proxy.url + "/api/v1/models/claude/claude-fake-1").json()
    assert claude["data"]["name"] == "Claude Fake 1"


def test_search_providers_and_by_provider(proxy: ServerThread) -> None:
    base = proxy.url + "/api/v1/models"
    found = httpx.get(base + "/search", params={"q": "GPT", "limit": 5}).json()
    assert found == {
        "data": [
            {"id": "openai/gpt-4o", "name": "GPT-4o", "description": "Most advanced GPT-4 model"}
        ],
        "query": "GPT",
        "total": 1,
    }
    assert httpx.get(base + "/search").json()["error"]["details"]["field"] == "q"
    assert httpx.get(base + "/providers").json() == {
        "data": ["anthropic", "claude", "meta", "openai"]
    }
    assert httpx.get(base + "/providers/openai").json() == {
        "data": [{"id": "openai/gpt-4o", "name": "GPT-4o", "context_length": 128000}],
        "provider": "openai",
    }


def test_top_by_context_length_and_its_rate_limit(proxy: ServerThread) -> None:
    url = proxy.url + "/api/v1/models/top"
    answers = [httpx.get(url, params={"limit": 2}) for _ in range(3)]
    assert [m["id"] for m in answers[0].json()["data"]] == [
        "anthropic/claude-3.5-sonnet",
        "openai/gpt-4o",
    ]
    assert answers[0].headers["x-ratelimit-limit"] == "3"
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0"]
    refused = httpx.get(url)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit"
    assert refused.headers["retry-after"]
    # The rule's paths scope it: other endpoints are not counted.
    assert httpx.get(proxy.url + "/api/v1/models").status_code == 200
