"""FirstAvailableAdapter: the first enabled adapter serves each request, consistently."""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from provider_proxy import (
    EndpointNotAllowed,
    Provider,
    ProviderAdapter,
    ProviderNotConfigured,
    ProxyApp,
    RequestContext,
    Usage,
)
from provider_proxy.adapters import (
    AnthropicAdapter,
    FirstAvailableAdapter,
    GeminiAdapter,
    OllamaAdapter,
    OpenAIAdapter,
    OpenAICompatibleAdapter,
)
from provider_proxy.testing import FakeUpstream

from .conftest import CLIENT_KEY
from .servers import ServerThread, serve

CONTEXT = RequestContext("llm", "POST", "/chat/completions", b"", [], "rid-1")
UNSET = "PP_TEST_UNSET_FIRST_AVAILABLE_KEY"


@pytest.fixture(autouse=True)
def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UNSET, raising=False)


def fresh(call: Callable[[], Any]) -> Any:
    """``call()`` in a new context, as each request runs in its own task."""
    return contextvars.Context().run(call)


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="at least one"):
        FirstAvailableAdapter("llm", [])
    with pytest.raises(ValueError, match="URL segment"):
        FirstAvailableAdapter("Has Space", [OllamaAdapter()])
    with pytest.raises(TypeError, match="ProviderAdapter"):
        FirstAvailableAdapter("llm", [object()])  # type: ignore[list-item]
    adapter = FirstAvailableAdapter("llm", [OllamaAdapter(), OpenAIAdapter(api_key="k")])
    # A provider the app mounts; the adapter serving each request is one of its own.
    assert isinstance(adapter, Provider)
    assert not isinstance(adapter, ProviderAdapter)
    assert isinstance(adapter.serving(), ProviderAdapter)
    assert adapter.name == "llm"
    assert repr(adapter) == "FirstAvailableAdapter(name='llm', adapters=[ollama, openai])"


def test_availability_lists_why_each_is_not() -> None:
    adapter = FirstAvailableAdapter(
        "llm",
        [
            OpenAIAdapter(api_key_env=UNSET),
            AnthropicAdapter(name="claude", api_key=lambda: None),
        ],
    )
    availability = fresh(adapter.availability)
    assert not availability.enabled
    reason = str(availability.reason)
    assert f"openai: No API key: set {UNSET}" in reason
    assert "claude: No API key right now: its key callable returned none." in reason


def test_a_key_it_cannot_send_passes_to_the_next() -> None:
    # A key callable returning a key with a line break makes its adapter unavailable
    # (with the reason, not the key), so the next one serves.
    adapter = FirstAvailableAdapter(
        "llm",
        [
            OpenAIAdapter(name="broken", api_key=lambda: "sk-broken\nx"),
            OpenAICompatibleAdapter("backup", base_url="https://gw.example/v1", api_key="k2"),
        ],
    )
    chosen = fresh(lambda: (adapter.availability(), adapter.serving().name))
    assert chosen[0].enabled
    assert chosen[1] == "backup"
    only = FirstAvailableAdapter("llm", [OpenAIAdapter(api_key=lambda: "sk-broken\nx")])
    availability = fresh(only.availability)
    assert not availability.enabled
    assert "line break" in str(availability.reason)
    assert "sk-broken" not in str(availability.reason)


def test_every_method_follows_the_first_enabled() -> None:
    current: list[str | None] = [None]
    first = GeminiAdapter(name="first", api_key=lambda: current[0])
    second = OpenAICompatibleAdapter(
        "second",
        "https://second.example/v1",
        api_key="second-key",
        user_agent="ua/2",
        default_headers={"x-d": "2"},
    )
    adapter = FirstAvailableAdapter("llm", [first, second])

    def snapshot() -> dict[str, Any]:
        assert adapter.availability().enabled
        serving = adapter.serving()  # the engine talks to this one for the whole request
        url = httpx.URL("https://any.example/x?key=k&alt=sse")
        dialect = serving.dialect_for("/v1beta/models/g:generateContent")
        return {
            "base_url": str(serving.base_url),
            "headers": dict(serving.headers),
            "default_headers": dict(serving.default_headers),
            "auth": serving.auth_headers(CONTEXT),
            "url": str(serving.rewrite_url(url, CONTEXT)),
            "gemini_path": serving.endpoint_allowed("POST", "/v1beta/models/g:generateContent"),
            "error": json.loads(dialect.error_body(EndpointNotAllowed("no"), "rid"))["error"],
            "usage": dialect.usage_of({"usageMetadata": {"promptTokenCount": 3}}),
            "model": dialect.model_of({"modelVersion": "gemini-x", "model": "m"}),
        }

    second_view = fresh(snapshot)
    assert second_view == {
        "base_url": "https://second.example/v1",
        "headers": {"user-agent": "ua/2"},
        "default_headers": {"x-d": "2"},
        "auth": {"authorization": "Bearer second-key"},
        "url": "https://any.example/x?key=k&alt=sse",
        "gemini_path": False,
        "error": {
            "message": "no",
            "type": "endpoint_not_allowed",
            "param": None,
            "code": "endpoint_not_allowed",
        },
        "usage": None,
        "model": "m",
    }
    current[0] = "first-key"  # the key callable has a key now
    first_view = fresh(snapshot)
    assert first_view == {
        "base_url": "https://generativelanguage.googleapis.com",
        "headers": {},
        "default_headers": {},
        "auth": {"x-goog-api-key": "first-key"},
        "url": "https://any.example/x?alt=sse",
        "gemini_path": True,
        "error": {"code": 403, "message": "no", "status": "PERMISSION_DENIED"},
        "usage": Usage(3, None),
        "model": "gemini-x",
    }


def test_the_choice_holds_for_the_rest_of_a_request() -> None:
    current: list[str | None] = ["first-key"]
    first = OpenAICompatibleAdapter("first", "https://first.example/v1", api_key=lambda: current[0])
    second = OpenAICompatibleAdapter("second", "https://second.example/v1", api_key="second-key")
    adapter = FirstAvailableAdapter("llm", [first, second])

    serving = adapter.serving()  # what the engine holds for one request
    current[0] = None  # ... the key vanishes before the URL is built
    assert serving is first
    assert str(serving.base_url) == "https://first.example/v1"
    assert serving.endpoint_allowed("POST", "/chat/completions")
    # The next request chooses again.
    assert adapter.serving() is second

    serving = adapter.serving()
    current[0] = "appeared"
    # The second was chosen; the first's key appearing mid-request is not sent there.
    assert (str(serving.base_url), serving.auth_headers(CONTEXT)) == (
        "https://second.example/v1",
        {"authorization": "Bearer second-key"},
    )


def test_nested() -> None:
    inner = FirstAvailableAdapter(
        "inner", [OpenAIAdapter(api_key_env=UNSET), OllamaAdapter(base_url="http://gpu:11434/v1")]
    )
    outer = FirstAvailableAdapter("outer", [inner, OpenAIAdapter(api_key="k")])

    assert outer.availability().enabled
    assert str(outer.serving().base_url) == "http://gpu:11434/v1"


@pytest.mark.anyio
async def test_models_of_the_chosen(httpx_mock: HTTPXMock) -> None:
    # (Its credential check, the chosen one's: tests/test_adapter_contract.py.)
    httpx_mock.add_response(
        url="https://backup.example/v1/models", json={"data": [{"id": "m1", "name": "Model 1"}]}
    )
    adapter = FirstAvailableAdapter(
        "llm",
        [
            OpenAIAdapter(api_key_env=UNSET),
            OpenAICompatibleAdapter("backup", "https://backup.example/v1", api_key="b-key"),
        ],
    )
    async with httpx.AsyncClient() as client:
        models = await adapter.fetch_models(client)
        nothing = FirstAvailableAdapter("none", [OpenAIAdapter(api_key_env=UNSET)])
        with pytest.raises(ProviderNotConfigured, match=UNSET):
            await nothing.fetch_models(client)
    assert [(m.id, m.provider, m.display_name) for m in models] == [("m1", "llm", "Model 1")]
    assert all(r.headers["authorization"] == "Bearer b-key" for r in httpx_mock.get_requests())


@pytest.mark.anyio
async def test_aclose_closes_the_members() -> None:
    closed: list[str] = []

    class Closing(OpenAICompatibleAdapter):
        async def aclose(self) -> None:
            closed.append(self.name)

    class Failing(OpenAICompatibleAdapter):
        async def aclose(self) -> None:
            closed.append(self.name)
            raise RuntimeError("boom")

    adapter = FirstAvailableAdapter(
        "llm",
        [
            Failing("a", "https://a.example", api_key="k"),
            OpenAIAdapter(api_key="k"),
            Closing("b", "https://b.example", api_key="k"),
        ],
    )
    with pytest.raises(RuntimeError, match="boom"):
        await adapter.aclose()
    assert closed == ["a", "b"]


def test_through_the_app(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    current: list[str | None] = [None]
    primary = OpenAICompatibleAdapter(
        "primary", upstream.url + "/primary/v1", api_key=lambda: current[0]
    )
    backup = OpenAICompatibleAdapter("backup", upstream.url + "/backup/v1", api_key="backup-key")
    unset = OpenAIAdapter(base_url=upstream.url + "/unset/v1", api_key_env=UNSET)
    llm = FirstAvailableAdapter("llm", [unset, primary, backup])
    body = {"model": "m", "messages": []}
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    with (
        serve(make_proxy(adapters=[llm])) as proxy,
        httpx.Client(base_url=proxy.url, timeout=10) as client,
    ):
        assert client.post("/llm/chat/completions", json=body, headers=headers).status_code == 200
        assert fake.last.path == "/backup/v1/chat/completions"
        assert fake.last.header("authorization") == "Bearer backup-key"
        assert not any(CLIENT_KEY.encode() in value for _, value in fake.last.headers)

        current[0] = "primary-key"  # the key callable has a key now
        assert client.post("/llm/chat/completions", json=body, headers=headers).status_code == 200
        assert fake.last.path == "/primary/v1/chat/completions"
        assert fake.last.header("authorization") == "Bearer primary-key"

        health = client.get("/health").json()["providers"]["llm"]
        assert health["enabled"] is True
        assert health["base_url"] == upstream.url + "/primary/v1"

        current[0] = None
        assert client.post("/llm/chat/completions", json=body, headers=headers).status_code == 200
        assert fake.last.path == "/backup/v1/chat/completions"


def test_through_the_app_when_none_is_available(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread
) -> None:
    llm = FirstAvailableAdapter(
        "llm",
        [
            OpenAIAdapter(base_url=upstream.url + "/v1", api_key_env=UNSET),
            AnthropicAdapter(base_url=upstream.url, api_key=lambda: None),
        ],
    )
    with (
        serve(make_proxy(adapters=[llm])) as proxy,
        httpx.Client(base_url=proxy.url, timeout=10) as client,
    ):
        response = client.post("/llm/chat/completions", json={"model": "m"})
        health = client.get("/health").json()["providers"]["llm"]
    assert response.status_code == 503
    message = response.json()["error"]["message"]
    assert UNSET in message
    assert "anthropic: No API key right now" in message
    assert health["enabled"] is False
    assert UNSET in health["reason"]
