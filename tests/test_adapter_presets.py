"""Ollama, vLLM and DashScope presets: defaults, optional keys, probes, through the app."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from pytest_httpx import HTTPXMock

from provider_proxy import CredentialState, ProviderAdapter, ProxyApp, RequestContext
from provider_proxy.adapters import BaseAdapter, DashScopeAdapter, OllamaAdapter, VLLMAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import CLIENT_KEY
from .servers import ServerThread, serve

CONTEXT = RequestContext("x", "POST", "/chat/completions", b"", [], "rid-1")
PRESETS: list[tuple[type[BaseAdapter], str, str, str, bool]] = [
    (OllamaAdapter, "ollama", "http://localhost:11434/v1", "OLLAMA_API_KEY", True),
    (VLLMAdapter, "vllm", "http://localhost:8000/v1", "VLLM_API_KEY", True),
    (
        DashScopeAdapter,
        "dashscope",
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        "DASHSCOPE_API_KEY",
        False,
    ),
]


@pytest.fixture(autouse=True)
def _no_preset_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for _, _, _, env, _ in PRESETS:
        monkeypatch.delenv(env, raising=False)


@pytest.mark.parametrize(("cls", "name", "base", "env", "optional"), PRESETS)
def test_defaults_and_keys(
    monkeypatch: pytest.MonkeyPatch,
    cls: type[BaseAdapter],
    name: str,
    base: str,
    env: str,
    optional: bool,
) -> None:
    adapter = cls()
    assert isinstance(adapter, ProviderAdapter)
    assert (adapter.name, str(adapter.base_url)) == (name, base)
    availability = adapter.availability()
    assert availability.enabled is optional
    if optional:
        assert adapter.auth_headers(CONTEXT) == {}
    else:
        assert env in str(availability.reason)
    monkeypatch.setenv(env, f"{name}-env-key")
    assert cls().auth_headers(CONTEXT) == {"authorization": f"Bearer {name}-env-key"}
    current = ["k1"]
    rotating = cls(api_key=lambda: current[0])
    assert rotating.auth_headers(CONTEXT) == {"authorization": "Bearer k1"}
    current[0] = "k2"
    assert rotating.auth_headers(CONTEXT) == {"authorization": "Bearer k2"}
    renamed = cls(name=f"{name}-2", base_url="http://10.0.0.5:9000/v1", api_key="k")
    assert (renamed.name, str(renamed.base_url)) == (f"{name}-2", "http://10.0.0.5:9000/v1")
    assert str(renamed.join("/models")) == "http://10.0.0.5:9000/v1/models"
    assert not cls(api_key="k").endpoint_allowed("POST", "/files")
    assert cls(api_key="k", allow="POST /files").endpoint_allowed("POST", "/files")


def test_vllm_also_forwards_rerank_and_score() -> None:
    vllm = VLLMAdapter()
    assert vllm.endpoint_allowed("POST", "/rerank")
    assert vllm.endpoint_allowed("POST", "/score")
    assert vllm.endpoint_allowed("POST", "/chat/completions")
    assert not OllamaAdapter().endpoint_allowed("POST", "/rerank")


@pytest.mark.anyio
async def test_local_servers_probe_and_list_without_a_key(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url="http://localhost:11434/v1/models",
        json={"object": "list", "data": [{"id": "llama3.2:latest", "owned_by": "library"}]},
        is_reusable=True,
    )
    httpx_mock.add_exception(httpx.ConnectError("refused"), url="http://localhost:8000/v1/models")
    async with httpx.AsyncClient() as client:
        check = await OllamaAdapter().validate_credentials(client)
        models = await OllamaAdapter().fetch_models(client)
        unreachable = await VLLMAdapter().validate_credentials(client)
    assert check.state is CredentialState.VALID
    assert [(m.id, m.provider) for m in models] == [("llama3.2:latest", "ollama")]
    assert unreachable.state is CredentialState.NETWORK_ERROR
    for request in httpx_mock.get_requests():
        assert "authorization" not in request.headers


def test_presets_through_the_app(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    adapters = [
        OllamaAdapter(base_url=upstream.url + "/ollama/v1"),
        VLLMAdapter(base_url=upstream.url + "/vllm/v1", api_key="vllm-server-key"),
        DashScopeAdapter(base_url=upstream.url + "/compatible-mode/v1", api_key="sk-dashscope"),
    ]
    expected = {
        "ollama": ("/ollama/v1/chat/completions", None),
        "vllm": ("/vllm/v1/chat/completions", "Bearer vllm-server-key"),
        "dashscope": ("/compatible-mode/v1/chat/completions", "Bearer sk-dashscope"),
    }
    with (
        serve(make_proxy(adapters=adapters)) as proxy,
        httpx.Client(base_url=proxy.url, timeout=10) as client,
    ):
        for name, (path, authorization) in expected.items():
            response = client.post(
                f"/{name}/chat/completions",
                json={"model": "qwen-plus", "messages": []},
                headers={"authorization": f"Bearer {CLIENT_KEY}", "api-key": CLIENT_KEY},
            )
            assert response.status_code == 200, name
            seen = fake.last
            assert seen.path == path
            assert seen.header("authorization") == authorization
            assert not any(CLIENT_KEY.encode() in value for _, value in seen.headers)
