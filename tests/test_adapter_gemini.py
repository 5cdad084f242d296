"""GeminiAdapter: key header and query scrubbing, endpoints, Google errors, probe, model pages."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from provider_proxy import (
    BodyTooLarge,
    EndpointNotAllowed,
    ProviderAdapter,
    ProviderNotConfigured,
    ProxyApp,
    ProxyEvent,
    RateLimited,
    RequestContext,
    UpstreamTimeout,
    UpstreamUnreachable,
    Usage,
)
from provider_proxy.adapters import GeminiAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import CLIENT_KEY
from .servers import ServerThread, serve, wait_until

BASE = "https://generativelanguage.googleapis.com"
GENERATE = "/v1beta/models/gemini-2.0-flash:generateContent"
CONTEXT = RequestContext("gemini", "POST", GENERATE, b"", [], "rid-1")


@pytest.fixture(autouse=True)
def _no_google_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)


def test_defaults_and_key_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-env")
    adapter = GeminiAdapter()
    assert isinstance(adapter, ProviderAdapter)
    assert (adapter.name, str(adapter.base_url)) == ("gemini", BASE)
    assert adapter.auth_headers(CONTEXT) == {"x-goog-api-key": "gemini-env"}
    assert adapter.default_headers == {}
    assert str(adapter.join(GENERATE)) == BASE + GENERATE


def test_google_api_key_wins_as_in_the_google_genai_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "google-env")
    assert GeminiAdapter().auth_headers(CONTEXT) == {"x-goog-api-key": "google-env"}
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-env")
    assert GeminiAdapter().auth_headers(CONTEXT) == {"x-goog-api-key": "google-env"}
    monkeypatch.delenv("GOOGLE_API_KEY")
    assert GeminiAdapter().auth_headers(CONTEXT) == {"x-goog-api-key": "gemini-env"}


def test_missing_key_says_which_variables() -> None:
    availability = GeminiAdapter().availability()
    assert not availability.enabled
    assert "GOOGLE_API_KEY" in str(availability.reason)
    assert "GEMINI_API_KEY" in str(availability.reason)
    assert "api_key=" in str(availability.reason)


def test_key_rotation_and_options() -> None:
    current = ["AIza-1"]
    adapter = GeminiAdapter(api_key=lambda: current[0])
    assert adapter.auth_headers(CONTEXT) == {"x-goog-api-key": "AIza-1"}
    current[0] = "AIza-2"
    assert adapter.auth_headers(CONTEXT) == {"x-goog-api-key": "AIza-2"}
    current[0] = ""
    with pytest.raises(ProviderNotConfigured):
        adapter.auth_headers(CONTEXT)
    other = GeminiAdapter(name="gemini-b", base_url="https://gw.example/google", api_key="k")
    assert (other.name, str(other.base_url)) == ("gemini-b", "https://gw.example/google")
    assert GeminiAdapter(api_key="k", allow="POST /upload/v1beta/files").endpoint_allowed(
        "POST", "/upload/v1beta/files"
    )


@pytest.mark.parametrize(
    ("query", "forwarded"),
    [
        ("", ""),
        ("alt=sse", "alt=sse"),
        ("key=client", ""),
        ("alt=sse&key=client", "alt=sse"),
        ("key=a&alt=sse&key=b", "alt=sse"),  # every repeat
        ("apiKey=a&api_key=b&access_token=c&pageSize=5", "pageSize=5"),
        ("oauth_token=t&pageSize=5", "pageSize=5"),
        ("k%65y=smuggled&alt=sse", "alt=sse"),  # the name as Google decodes it
        ("api%5Fkey=x&x=1", "x=1"),
        ("key", ""),  # without a value
        ("Key=kept&KEY=kept&keys=kept", "Key=kept&KEY=kept&keys=kept"),  # case-sensitive
        ("q=key%3Dx&keyword=y", "q=key%3Dx&keyword=y"),  # only names count
    ],
)
def test_credential_params_are_removed(query: str, forwarded: str) -> None:
    url = httpx.URL(BASE + GENERATE + ("?" + query if query else ""))
    rewritten = GeminiAdapter(api_key="k").rewrite_url(url, CONTEXT)
    assert rewritten.query.decode() == forwarded
    assert rewritten.path == GENERATE
    assert rewritten.host == "generativelanguage.googleapis.com"
    if query == forwarded:
        assert rewritten is url


@pytest.mark.parametrize(
    ("method", "path"),
    [
        *(
            ("POST", f"/{version}/models/gemini-2.0-flash:{name}")
            for version in ("v1beta", "v1")
            for name in (
                "generateContent",
                "streamGenerateContent",
                "countTokens",
                "embedContent",
                "batchEmbedContents",
            )
        ),
        ("POST", "/v1beta/models/gemini-2.5-pro-preview-06-05:streamGenerateContent"),
        ("POST", "/v1beta/models/text-embedding-004:embedContent"),
        ("GET", "/v1beta/models"),
        ("GET", "/v1beta/models/gemini-2.0-flash"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/gemini-2.0-flash"),
        ("POST", "/v1beta/openai/chat/completions"),
        ("POST", "/v1beta/openai/embeddings"),
        ("GET", "/v1beta/openai/models"),
        ("GET", "/v1beta/openai/models/models/gemini-2.0-flash"),
    ],
)
def test_inference_endpoints_are_open(method: str, path: str) -> None:
    assert GeminiAdapter(api_key="k").endpoint_allowed(method, path)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1beta/models/gemini-2.0-flash:predict"),
        ("POST", "/v1beta/models/gemini-2.0-flash:generateContentX"),
        ("POST", "/v1beta/models/a/b:generateContent"),  # * stays within one segment
        ("POST", "/v1beta/tunedModels/mine:generateContent"),
        ("POST", "/v1beta/models"),
        ("DELETE", "/v1beta/models/gemini-2.0-flash"),
        ("GET", "/v1beta/files"),
        ("POST", "/upload/v1beta/files"),
        ("POST", "/v1beta/cachedContents"),
        ("POST", "/v1beta/tunedModels"),
        ("POST", "/v1beta/openai/files"),
        ("POST", "/v2/models/gemini-2.0-flash:generateContent"),
    ],
)
def test_other_endpoints_are_closed(method: str, path: str) -> None:
    assert not GeminiAdapter(api_key="k").endpoint_allowed(method, path)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (EndpointNotAllowed("closed"), "PERMISSION_DENIED"),
        (ProviderNotConfigured("no key"), "UNAVAILABLE"),
        (RateLimited("slow down"), "RESOURCE_EXHAUSTED"),
        (BodyTooLarge("too big"), "INVALID_ARGUMENT"),
        (UpstreamUnreachable("down"), "UNAVAILABLE"),
        (UpstreamTimeout("late"), "DEADLINE_EXCEEDED"),
    ],
)
def test_errors_in_googles_format(error: Any, status: str) -> None:
    dialect = GeminiAdapter(api_key="k").dialect_for("/v1beta/models/gemini-x:generateContent")
    body = json.loads(dialect.error_body(error, "rid"))
    assert body == {
        "error": {"code": error.status_code, "message": error.message, "status": status}
    }


def test_usage_and_model_native_and_openai_compatible() -> None:
    adapter = GeminiAdapter(api_key="k")
    native_routes = adapter.dialect_for("/v1beta/models/gemini-2.5-flash:generateContent")
    compatible_routes = adapter.dialect_for("/v1beta/openai/chat/completions")
    native = {
        "candidates": [],
        "usageMetadata": {
            "promptTokenCount": 12,
            "candidatesTokenCount": 5,
            "thoughtsTokenCount": 3,
            "cachedContentTokenCount": 4,
        },
        "modelVersion": "gemini-2.5-flash",
    }
    assert native_routes.usage_of(native) == Usage(12, 8, 4, None, 3)
    assert native_routes.model_of(native) == "gemini-2.5-flash"
    compatible = {
        "model": "gemini-2.0-flash",
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }
    assert compatible_routes.usage_of(compatible) == Usage(7, 2)
    assert compatible_routes.model_of(compatible) == "gemini-2.0-flash"
    assert native_routes.model_of({"contents": []}) is None  # the model is in the URL
    assert native_routes.usage_of({"candidates": []}) is None


@pytest.mark.anyio
async def test_models_follow_every_page(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=BASE + "/v1beta/models?pageSize=1000",
        json={
            "models": [
                {
                    "name": "models/gemini-2.0-flash",
                    "displayName": "Gemini 2.0 Flash",
                    "inputTokenLimit": 1048576,
                    "outputTokenLimit": 8192,
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                }
            ],
            "nextPageToken": "page-2",
        },
    )
    httpx_mock.add_response(
        url=BASE + "/v1beta/models?pageSize=1000&pageToken=page-2",
        json={"models": [{"name": "models/text-embedding-004", "inputTokenLimit": 2048}]},
    )
    async with httpx.AsyncClient() as client:
        models = await GeminiAdapter(api_key="AIza-list").fetch_models(client)
    assert [(m.id, m.provider, m.display_name, m.context_length) for m in models] == [
        ("gemini-2.0-flash", "gemini", "Gemini 2.0 Flash", 1048576),
        ("text-embedding-004", "gemini", None, 2048),
    ]
    assert models[0].raw["outputTokenLimit"] == 8192
    requests = httpx_mock.get_requests()
    assert len(requests) == 2
    assert all(r.headers["x-goog-api-key"] == "AIza-list" for r in requests)


@pytest.mark.anyio
async def test_models_stop_on_a_repeated_page_token(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=BASE + "/v1beta/models?pageSize=1000",
        json={"models": [{"name": "models/a"}], "nextPageToken": "same"},
    )
    httpx_mock.add_response(
        url=BASE + "/v1beta/models?pageSize=1000&pageToken=same",
        json={"models": [{"name": "models/b"}], "nextPageToken": "same"},
    )
    async with httpx.AsyncClient() as client:
        models = await GeminiAdapter(api_key="k").fetch_models(client)
    assert [m.id for m in models] == ["a", "b"]


class _Events:
    def __init__(self) -> None:
        self.events: list[ProxyEvent] = []

    def __call__(self, event: ProxyEvent) -> None:
        self.events.append(event)


def test_through_the_app(
    make_proxy: Callable[..., ProxyApp],
    upstream: ServerThread,
    fake: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = _Events()
    adapter = GeminiAdapter(base_url=upstream.url, api_key="AIza-server")
    first_upstream = len(fake.requests)  # the fake is shared by the whole session
    with (
        caplog.at_level(logging.DEBUG, logger="provider_proxy"),
        serve(make_proxy(adapters=[adapter], sinks=[sink])) as proxy,
        httpx.Client(base_url=proxy.url, timeout=10) as client,
    ):
        response = client.post(
            f"/gemini{GENERATE}?key={CLIENT_KEY}&apiKey={CLIENT_KEY}&k%65y={CLIENT_KEY}",
            json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
            headers={"x-goog-api-key": CLIENT_KEY, "authorization": f"Bearer {CLIENT_KEY}"},
        )
        assert response.status_code == 200
        assert response.json()["modelVersion"] == "gemini-2.0-flash"
        seen = fake.last
        assert seen.path == GENERATE
        assert seen.query == b""
        assert seen.header("x-goog-api-key") == "AIza-server"
        assert seen.header("authorization") is None
        assert not any(CLIENT_KEY.encode() in value for _, value in seen.headers)

        with client.stream(
            "POST",
            f"/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key={CLIENT_KEY}",
            json={"contents": []},
            headers={"x-fake-chunks": "3"},
        ) as stream:
            assert stream.status_code == 200
            text = stream.read().decode()
        assert text.count("data: ") == 3
        assert fake.last.query == b"alt=sse"

        refused = client.post("/gemini/v1beta/cachedContents", json={})
        assert refused.status_code == 403
        assert refused.json()["error"]["status"] == "PERMISSION_DENIED"
        assert refused.json()["error"]["code"] == 403
        assert wait_until(lambda: len(sink.events) == 3)
        assert wait_until(lambda: len(_proxy_logs(caplog)) >= 3)
    plain, streamed, _ = sink.events
    assert (plain.provider, plain.model, plain.usage) == (
        "gemini",
        "gemini-2.0-flash",
        Usage(10, 11),
    )
    assert (streamed.model, streamed.usage) == ("gemini-2.0-flash", Usage(10, 3))
    # The client's key, sent in the query and in headers, reached no upstream request
    # (URL, headers or body), no answer and none of the proxy's logs (whose access
    # lines do name the requests).
    secret = CLIENT_KEY.encode()
    forwarded = fake.requests[first_upstream:]  # the startup probe's model list too
    paths = [r.path for r in forwarded]
    assert GENERATE in paths
    assert GENERATE.replace(":gen", ":streamGen") in paths
    for request in forwarded:
        assert secret not in request.raw_path
        assert secret not in request.query
        assert not any(secret in name or secret in value for name, value in request.headers)
        assert secret not in request.body
    for answer in (response, refused):
        assert CLIENT_KEY not in answer.text
        assert not any(secret in value for _, value in answer.headers.raw)
    assert CLIENT_KEY not in text
    logs = _proxy_logs(caplog)
    assert any("gemini" in message and "generateContent" in message for message in logs)
    assert not any(CLIENT_KEY in message for message in logs)


def _proxy_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The messages the proxy's own loggers wrote (the test's httpx client logs URLs)."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("provider_proxy")]
