"""OpenRouterAdapter: defaults, attribution headers, probe on GET /key, model records."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from pytest_httpx import HTTPXMock

from provider_proxy import ProviderAdapter, ProxyApp, RequestContext
from provider_proxy.adapters import OpenRouterAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import CLIENT_KEY
from .servers import ServerThread, serve

CONTEXT = RequestContext("openrouter", "POST", "/chat/completions", b"", [], "rid-1")
MODELS = "https://openrouter.ai/api/v1/models"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-env")
    adapter = OpenRouterAdapter()
    assert isinstance(adapter, ProviderAdapter)
    assert (adapter.name, str(adapter.base_url)) == ("openrouter", "https://openrouter.ai/api/v1")
    assert adapter.auth_headers(CONTEXT) == {"authorization": "Bearer sk-or-env"}
    assert adapter.default_headers == {}
    assert adapter.headers == {}
    assert str(adapter.join("/chat/completions")) == "https://openrouter.ai/api/v1/chat/completions"
    url = httpx.URL("https://openrouter.ai/api/v1/models?category=x")
    assert adapter.rewrite_url(url, CONTEXT) is url
    for method, path in [
        ("POST", "/chat/completions"),
        ("POST", "/completions"),
        ("POST", "/embeddings"),
        ("POST", "/responses"),
        ("GET", "/models"),
        ("GET", "/models/anthropic/claude-sonnet-4/endpoints"),
    ]:
        assert adapter.endpoint_allowed(method, path), path
    for method, path in [("GET", "/key"), ("GET", "/credits"), ("POST", "/keys")]:
        assert not adapter.endpoint_allowed(method, path), path


def test_missing_key_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    availability = OpenRouterAdapter().availability()
    assert not availability.enabled
    assert "OPENROUTER_API_KEY" in str(availability.reason)
    other = OpenRouterAdapter(
        name="or-eu", base_url="https://eu.openrouter.example/api/v1", api_key="k", allow="* /**"
    )
    assert (other.name, str(other.base_url)) == ("or-eu", "https://eu.openrouter.example/api/v1")
    assert other.endpoint_allowed("GET", "/credits")


def test_attribution_headers_are_defaults() -> None:
    adapter = OpenRouterAdapter(
        api_key="k", referer="https://myapp.example", title="My App", default_headers={"x-a": "1"}
    )
    assert adapter.default_headers == {
        "http-referer": "https://myapp.example",
        "x-title": "My App",
        "x-a": "1",
    }
    assert adapter.headers == {}
    assert OpenRouterAdapter(api_key="k", title="T").default_headers == {"x-title": "T"}


def test_key_rotation() -> None:
    current = ["sk-or-1"]
    adapter = OpenRouterAdapter(api_key=lambda: current[0])
    assert adapter.auth_headers(CONTEXT) == {"authorization": "Bearer sk-or-1"}
    current[0] = "sk-or-2"
    assert adapter.auth_headers(CONTEXT) == {"authorization": "Bearer sk-or-2"}


@pytest.mark.anyio
async def test_models_map_name_context_and_pricing(httpx_mock: HTTPXMock) -> None:
    pricing = {"prompt": "0.000003", "completion": "0.000015", "request": "0"}
    httpx_mock.add_response(
        url=MODELS,
        json={
            "data": [
                {
                    "id": "anthropic/claude-sonnet-4",
                    "name": "Anthropic: Claude Sonnet 4",
                    "context_length": 200000,
                    "pricing": pricing,
                    "top_provider": {"context_length": 200000, "max_completion_tokens": 64000},
                },
                {
                    "id": "meta/llama-x",
                    "name": "",
                    "context_length": None,
                    "pricing": "free",
                    "top_provider": {"context_length": 131072.0},
                },
            ]
        },
    )
    async with httpx.AsyncClient() as client:
        models = await OpenRouterAdapter(api_key="k").fetch_models(client)
    first, second = models
    assert (first.id, first.provider, first.display_name) == (
        "anthropic/claude-sonnet-4",
        "openrouter",
        "Anthropic: Claude Sonnet 4",
    )
    assert first.context_length == 200000
    assert first.pricing == pricing
    assert (second.display_name, second.context_length, second.pricing) == (None, 131072, None)


def test_through_the_app_with_attribution(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    adapter = OpenRouterAdapter(
        base_url=upstream.url + "/api/v1",
        api_key="sk-or-server",
        referer="https://myapp.example",
        title="My App",
    )
    with (
        serve(make_proxy(adapters=[adapter])) as proxy,
        httpx.Client(base_url=proxy.url, timeout=10) as client,
    ):
        plain = client.post(
            "/openrouter/chat/completions",
            json={"model": "openai/gpt-4o", "messages": []},
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
        )
        assert plain.status_code == 200
        first = fake.last
        own = client.post(
            "/openrouter/chat/completions",
            json={"model": "openai/gpt-4o", "messages": []},
            headers={"http-referer": "https://client.example", "x-title": "Client"},
        )
        assert own.status_code == 200
        second = fake.last
    assert first.path == "/api/v1/chat/completions"
    assert first.header("authorization") == "Bearer sk-or-server"
    assert not any(CLIENT_KEY.encode() in value for _, value in first.headers)
    assert (first.header("http-referer"), first.header("x-title")) == (
        "https://myapp.example",
        "My App",
    )
    assert (second.header("http-referer"), second.header("x-title")) == (
        "https://client.example",
        "Client",
    )
