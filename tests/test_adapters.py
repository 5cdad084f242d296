"""Adapters in isolation: URLs, headers, keys, error formats and probes (pytest-httpx)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import ClassVar

import httpx
import pytest
from pytest_httpx import HTTPXMock

from provider_proxy import (
    ProviderAdapter,
    ProviderNotConfigured,
    ProviderNotFound,
    RequestContext,
    Secret,
    UpstreamTimeout,
)
from provider_proxy.adapters import (
    AnthropicAdapter,
    AzureOpenAIAdapter,
    BaseAdapter,
    CopilotAdapter,
    DashScopeAdapter,
    GeminiAdapter,
    OllamaAdapter,
    OpenAIAdapter,
    OpenAICompatibleAdapter,
    OpenRouterAdapter,
    VLLMAdapter,
)

CONTEXT = RequestContext("x", "POST", "/chat/completions", b"", [], "rid-1")


def test_defaults_follow_the_official_sdks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    openai, anthropic = OpenAIAdapter(), AnthropicAdapter()
    assert (openai.name, str(openai.base_url)) == ("openai", "https://api.openai.com/v1")
    assert (anthropic.name, str(anthropic.base_url)) == ("anthropic", "https://api.anthropic.com")
    assert openai.auth_headers(CONTEXT) == {"authorization": "Bearer sk-env"}
    assert anthropic.auth_headers(CONTEXT) == {"x-api-key": "sk-ant-env"}
    assert anthropic.default_headers == {"anthropic-version": "2023-06-01"}
    assert isinstance(openai, ProviderAdapter)
    assert isinstance(anthropic, ProviderAdapter)


def test_missing_key_disables_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    availability = OpenAIAdapter().availability()
    assert not availability.enabled
    assert availability.reason is not None
    assert "OPENAI_API_KEY" in availability.reason
    gateway = OpenAICompatibleAdapter("gw", "https://gw.example/v1", api_key_env="GW_KEY_UNSET")
    assert "GW_KEY_UNSET" in str(gateway.availability().reason)
    local = OpenAICompatibleAdapter("local", "http://127.0.0.1:11434/v1", key_optional=True)
    assert local.availability().enabled
    assert local.auth_headers(CONTEXT) == {}


def test_key_sources_and_rotation() -> None:
    assert OpenAIAdapter(api_key=Secret("s1")).auth_headers(CONTEXT) == {
        "authorization": "Bearer s1"
    }
    current = ["k1"]
    adapter = OpenAIAdapter(api_key=lambda: current[0])
    assert adapter.auth_headers(CONTEXT) == {"authorization": "Bearer k1"}
    current[0] = "k2"
    assert adapter.auth_headers(CONTEXT) == {"authorization": "Bearer k2"}
    empty = OpenAIAdapter(api_key=lambda: None)
    with pytest.raises(ProviderNotConfigured, match="key callable"):
        empty.auth_headers(CONTEXT)


def test_keys_are_stripped_and_line_breaks_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A key read from a file keeps its trailing newline: harmless, it is stripped.
    assert OpenAIAdapter(api_key="sk-file\n").auth_headers(CONTEXT) == {
        "authorization": "Bearer sk-file"
    }
    monkeypatch.setenv("OPENAI_API_KEY", "  sk-env\r\n")
    assert OpenAIAdapter().auth_headers(CONTEXT) == {"authorization": "Bearer sk-env"}
    assert OpenAIAdapter(api_key=Secret("sk-s\n")).auth_headers(CONTEXT) == {
        "authorization": "Bearer sk-s"
    }
    blank = OpenAIAdapter(api_key=" \n")
    assert not blank.availability().enabled
    # One with a line break inside would be an invalid header, quoted by HTTP
    # libraries in their errors: refused, without showing it.
    with pytest.raises(ValueError, match="line break") as refused:
        OpenAIAdapter(api_key="sk-one\nsk-two")
    assert "sk-one" not in str(refused.value)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env\x1bx")
    with pytest.raises(ValueError, match="OPENAI_API_KEY contains a line break") as refused:
        OpenAIAdapter()
    assert "sk-env" not in str(refused.value)
    rotating = OpenAIAdapter(api_key=lambda: "sk-cb\nx")
    with pytest.raises(ProviderNotConfigured, match="key callable") as refused:
        rotating.auth_headers(CONTEXT)
    assert "sk-cb" not in str(refused.value)
    assert OpenAIAdapter(api_key=lambda: "sk-cb\n").auth_headers(CONTEXT) == {
        "authorization": "Bearer sk-cb"
    }


def test_configured_headers_merge_whatever_their_case() -> None:
    adapter = OpenAIAdapter(
        api_key="k", headers={"User-Agent": "from-headers", "X-Team": "a"}, user_agent="ua/1"
    )
    assert adapter.headers == {"user-agent": "ua/1", "x-team": "a"}
    with pytest.raises(ValueError, match="'X-Bad'") as refused:
        OpenAIAdapter(api_key="k", headers={"X-Bad": "v\r\nInjected: 1"})
    assert "Injected" not in str(refused.value)


def test_reprs_hide_keys() -> None:
    adapter = AnthropicAdapter(api_key="sk-ant-very-secret")
    assert "very-secret" not in repr(adapter)
    assert "very-secret" not in repr(adapter.api_key())
    assert "very-secret" not in str(adapter.api_key())
    assert "very-secret" not in repr(vars(adapter))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "Upper"},
        {"name": "has/slash"},
        {"name": ""},
        {"base_url": "ftp://x.example"},
        {"base_url": "not a url"},
        {"base_url": "https://user:pass@x.example/v1"},
        {"base_url": "https://x.example/v1?key=SECRET"},
        {"base_url": "https://x.example/v1?"},
        {"base_url": "https://x.example/v1#frag"},
    ],
)
def test_invalid_configuration_is_refused(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages are checked below
        OpenAIAdapter(api_key="k", **kwargs)


LEAKY_BASE_URLS = [
    "https://user:pass@host.example/v1?key=sk-secret",
    "ftp://user:pass@host.example/v1?key=sk-secret",
    "user:pass@host.example/v1?key=sk-secret",
    "https://user:pass@host.example:bad/v1?key=sk-secret",
]
BASE_URL_TAKERS: dict[str, Callable[[str], object]] = {
    "openai": lambda url: OpenAIAdapter(api_key="k", base_url=url),
    "anthropic": lambda url: AnthropicAdapter(api_key="k", base_url=url),
    "gemini": lambda url: GeminiAdapter(api_key="k", base_url=url),
    "azure": lambda url: AzureOpenAIAdapter(api_key="k", base_url=url),
    "openrouter": lambda url: OpenRouterAdapter(api_key="k", base_url=url),
    "compatible": lambda url: OpenAICompatibleAdapter("gw", url, api_key="k"),
    "ollama": lambda url: OllamaAdapter(base_url=url),
    "copilot": lambda url: CopilotAdapter(api_key="k", base_url=url),
    "copilot token_url": lambda url: CopilotAdapter(github_token="t", token_url=url),
    "copilot github_host": lambda url: CopilotAdapter(api_key="k", github_host=url),
}


@pytest.mark.parametrize("url", LEAKY_BASE_URLS)
@pytest.mark.parametrize("taker", sorted(BASE_URL_TAKERS))
def test_url_errors_never_show_userinfo_or_query(taker: str, url: str) -> None:
    with pytest.raises(ValueError) as refused:  # noqa: PT011 - the message is checked below
        BASE_URL_TAKERS[taker](url.replace("host.example", "bad host") if "host" in taker else url)
    message = str(refused.value)
    for secret in ("user:pass", "pass@", "sk-secret", "?key"):
        assert secret not in message


def test_url_errors_show_scheme_host_and_path() -> None:
    with pytest.raises(ValueError, match=r"got 'ftp://host\.example/v1'"):
        OpenAIAdapter(api_key="k", base_url="ftp://user:pass@host.example/v1?key=sk-secret")


def test_error_formats() -> None:
    error = ProviderNotFound("No provider named 'x'.")
    openai = OpenAIAdapter(api_key="k").dialect_for("/chat/completions")
    anthropic = AnthropicAdapter(api_key="k").dialect_for("/v1/messages")
    assert json.loads(openai.error_body(error, "rid")) == {
        "error": {
            "message": "No provider named 'x'.",
            "type": "provider_not_found",
            "param": None,
            "code": "provider_not_found",
        }
    }
    assert json.loads(anthropic.error_body(error, "rid")) == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "No provider named 'x'."},
        "request_id": "rid",
    }
    timeout = json.loads(anthropic.error_body(UpstreamTimeout("t"), "r"))
    assert timeout["error"]["type"] == "api_error"


@pytest.mark.anyio
async def test_fetch_models(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url="https://gw.example/v1/models",
        json={"data": [{"id": "m1", "name": "Model One", "context_length": 8192}]},
    )
    httpx_mock.add_response(
        url="https://api.anthropic.com/v1/models?limit=1000",
        json={"data": [{"id": "claude-x", "display_name": "Claude X"}]},
    )
    async with httpx.AsyncClient() as client:
        models = await OpenAICompatibleAdapter(
            "gw", "https://gw.example/v1", api_key="k"
        ).fetch_models(client)
        claude = await AnthropicAdapter(api_key="k").fetch_models(client)
    assert [(m.id, m.provider, m.display_name, m.context_length) for m in models] == [
        ("m1", "gw", "Model One", 8192)
    ]
    assert [(m.id, m.provider, m.display_name) for m in claude] == [
        ("claude-x", "anthropic", "Claude X")
    ]


def test_custom_adapter_is_a_small_subclass() -> None:
    class Acme(BaseAdapter):
        default_name = "acme"
        default_base_url = "https://llm.acme.example/api"
        auth_header = "x-acme-key"
        auth_scheme = ""

    adapter = Acme(api_key="acme-key")
    assert isinstance(adapter, ProviderAdapter)
    assert adapter.name == "acme"
    assert adapter.auth_headers(CONTEXT) == {"x-acme-key": "acme-key"}
    assert str(adapter.join("/v2/chat")) == "https://llm.acme.example/api/v2/chat"


def test_usage_hints_only_for_the_built_in_readers() -> None:
    from provider_proxy import Usage
    from provider_proxy.adapters import FirstAvailableAdapter
    from provider_proxy.dialects import Dialect, OpenAIChat
    from provider_proxy.observe._usage_tap import UsageTap

    built_in: tuple[type[BaseAdapter], ...] = (
        OpenAIAdapter,
        OpenAICompatibleAdapter,
        AnthropicAdapter,
        AzureOpenAIAdapter,
        CopilotAdapter,
        GeminiAdapter,
        OllamaAdapter,
        OpenRouterAdapter,
        VLLMAdapter,
        DashScopeAdapter,
    )
    for adapter_class in built_in:
        assert adapter_class.dialects, adapter_class.__name__
        for dialect in adapter_class.dialects:
            assert dialect.usage_hints == ("usage", "model"), (adapter_class.__name__, dialect)

    class CountsItsOwnWay(OpenAIChat):
        usage_hints: ClassVar[tuple[str, str] | None] = None

        def usage_of(self, payload: object) -> Usage | None:
            if isinstance(payload, dict) and isinstance(payload.get("tokens"), int):
                return Usage(output_tokens=payload["tokens"])
            return None

    class HintedButCountsItsOwnWay(CountsItsOwnWay):
        usage_hints: ClassVar[tuple[str, str] | None] = ("usage", "model")

    class Custom(OpenAICompatibleAdapter):
        dialects: ClassVar[tuple[Dialect, ...]] = (CountsItsOwnWay(),)

    def read(dialect: Dialect) -> tuple[Usage | None, str | None]:
        """Usage of a stream whose events name neither "usage" nor "model", as the engine
        reads it through ``dialect``'s reader and hints."""
        hints = dialect.usage_hints
        tap = UsageTap(
            dialect.usage_of,
            dialect.model_of,
            content_type="text/event-stream",
            content_encoding=None,
            usage_hint=hints[0] if hints else None,
            model_hint=hints[1] if hints else None,
        )
        tap.feed(b'data: {"text": "hi"}\n\ndata: {"tokens": 7}\n\ndata: [DONE]\n\n')
        return tap.result()

    # A reader of its own may look anywhere: every event is parsed for it.
    custom = Custom("custom", base_url="https://gw.example/v1", api_key="k")
    assert custom.dialect_for("/chat/completions").usage_hints is None
    assert custom.dialect_for("/responses").usage_hints is None
    assert read(custom.dialect_for("/chat/completions")) == (Usage(output_tokens=7), None)
    # (With the built-in hints the same events would be skipped unparsed.)
    assert read(HintedButCountsItsOwnWay()) == (None, None)
    routed = FirstAvailableAdapter("any", [custom, OpenAIAdapter(api_key="k")])
    assert routed.availability().enabled
    assert routed.serving().dialect_for("/chat/completions").usage_hints is None
