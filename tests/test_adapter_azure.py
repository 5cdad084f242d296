"""AzureOpenAIAdapter: endpoint, api-key, api-version, Entra ID tokens, and the real openai SDK."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from pytest_httpx import HTTPXMock

from provider_proxy import (
    CredentialState,
    ProviderAdapter,
    ProviderNotConfigured,
    ProxyApp,
    RequestContext,
    Secret,
)
from provider_proxy.adapters import AzureOpenAIAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import CLIENT_KEY
from .servers import ServerThread, serve

ENDPOINT = "https://myres.openai.azure.com"
CHAT = "/openai/deployments/gpt-4o/chat/completions"
MESSAGES: Any = [{"role": "user", "content": "Say hello."}]


def context(path: str = CHAT, query: bytes = b"") -> RequestContext:
    return RequestContext("azure", "POST", path, query, [], "rid-1")


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "OPENAI_API_VERSION"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-env-key")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", ENDPOINT + "/")
    adapter = AzureOpenAIAdapter()
    assert isinstance(adapter, ProviderAdapter)
    assert adapter.availability().enabled
    assert (adapter.name, str(adapter.base_url)) == ("azure", ENDPOINT + "/")
    assert adapter.auth_headers(context()) == {"api-key": "azure-env-key"}
    assert adapter.api_version == "2024-10-21"
    monkeypatch.setenv("OPENAI_API_VERSION", "2025-01-01-preview")
    assert AzureOpenAIAdapter().api_version == "2025-01-01-preview"
    assert AzureOpenAIAdapter(api_version="2024-06-01").api_version == "2024-06-01"


@pytest.mark.parametrize(
    "endpoint",
    [ENDPOINT, ENDPOINT + "/", ENDPOINT + "/openai", ENDPOINT + "/openai/"],
)
def test_a_trailing_openai_is_dropped(endpoint: str) -> None:
    adapter = AzureOpenAIAdapter(base_url=endpoint, api_key="k")
    assert str(adapter.join(CHAT)) == ENDPOINT + CHAT


def test_no_endpoint_or_no_credentials_disable_with_a_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_endpoint = AzureOpenAIAdapter(api_key="k").availability()
    assert not no_endpoint.enabled
    assert "AZURE_OPENAI_ENDPOINT" in str(no_endpoint.reason)
    assert "base_url=" in str(no_endpoint.reason)
    no_key = AzureOpenAIAdapter(base_url=ENDPOINT).availability()
    assert not no_key.enabled
    assert "AZURE_OPENAI_API_KEY" in str(no_key.reason)
    assert "azure_ad_token=" in str(no_key.reason)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", ENDPOINT)
    assert AzureOpenAIAdapter(azure_ad_token=lambda: "t").availability().enabled


def test_key_rotation() -> None:
    current = ["key-1"]
    adapter = AzureOpenAIAdapter(base_url=ENDPOINT, api_key=lambda: current[0])
    assert adapter.auth_headers(context()) == {"api-key": "key-1"}
    current[0] = "key-2"
    assert adapter.auth_headers(context()) == {"api-key": "key-2"}


@pytest.mark.anyio
async def test_entra_id_tokens_sync_and_async() -> None:
    tokens = iter(["token-1", "token-2"])
    adapter = AzureOpenAIAdapter(
        base_url=ENDPOINT, api_key="ignored", azure_ad_token=tokens.__next__
    )
    assert adapter.auth_headers(context()) == {"authorization": "Bearer token-1"}
    assert adapter.auth_headers(context()) == {"authorization": "Bearer token-2"}

    async def fetch() -> Secret:
        return Secret("async-token")

    later = AzureOpenAIAdapter(base_url=ENDPOINT, azure_ad_token=fetch).auth_headers(context())
    assert not isinstance(later, dict)
    assert await later == {"authorization": "Bearer async-token"}  # type: ignore[misc]
    with pytest.raises(ProviderNotConfigured, match="azure_ad_token"):
        AzureOpenAIAdapter(base_url=ENDPOINT, azure_ad_token=lambda: None).auth_headers(context())
    # A token with its trailing newline is stripped; one with a line break inside
    # is refused with a 503 that does not show it.
    padded = AzureOpenAIAdapter(base_url=ENDPOINT, azure_ad_token=lambda: "tok-1\n")
    assert padded.auth_headers(context()) == {"authorization": "Bearer tok-1"}
    broken = AzureOpenAIAdapter(base_url=ENDPOINT, azure_ad_token=lambda: "entra-secret\nx")
    with pytest.raises(ProviderNotConfigured, match="line break") as refused:
        broken.auth_headers(context())
    assert "entra-secret" not in refused.value.message


@pytest.mark.parametrize(
    ("path", "query", "forwarded"),
    [
        (CHAT, "", "api-version=2024-10-21"),
        (CHAT, "api-version=2024-06-01", "api-version=2024-06-01"),
        (CHAT, "x=1", "x=1&api-version=2024-10-21"),
        (CHAT, "x=1&api-version=2025-01-01-preview", "x=1&api-version=2025-01-01-preview"),
        (CHAT, "api%2Dversion=2024-06-01", "api%2Dversion=2024-06-01"),
        (CHAT, "API-VERSION=1", "API-VERSION=1&api-version=2024-10-21"),
        ("/openai/responses", "", "api-version=2024-10-21"),
        ("/openai/v1/chat/completions", "", ""),
        ("/openai/v1/responses", "api-version=preview", "api-version=preview"),
    ],
)
def test_api_version_is_added_only_when_absent(path: str, query: str, forwarded: str) -> None:
    adapter = AzureOpenAIAdapter(base_url=ENDPOINT, api_key="k")
    url = httpx.URL(ENDPOINT + path + ("?" + query if query else ""))
    rewritten = adapter.rewrite_url(url, context(path, query.encode()))
    assert rewritten.query.decode() == forwarded
    assert rewritten.path == path


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", CHAT, True),
        ("POST", "/openai/deployments/gpt-35/completions", True),
        ("POST", "/openai/deployments/emb/embeddings", True),
        ("POST", "/openai/deployments/whisper/audio/transcriptions", True),
        ("POST", "/openai/deployments/dalle/images/generations", True),
        ("POST", "/openai/responses", True),
        ("GET", "/openai/responses/resp_1", True),
        ("GET", "/openai/responses/resp_1/input_items", True),
        ("POST", "/openai/responses/resp_1/cancel", True),
        ("POST", "/openai/v1/responses/compact", True),
        ("POST", "/openai/v1/responses/input_tokens", True),
        ("GET", "/openai/v1/responses/resp_1/input_items", True),
        ("POST", "/openai/v1/responses/resp_1/cancel", True),
        ("POST", "/openai/responses/resp_1", False),
        ("GET", "/openai/models", True),
        ("POST", "/openai/v1/chat/completions", True),
        ("POST", "/openai/v1/responses", True),
        ("POST", "/openai/v1/embeddings", True),
        ("GET", "/openai/v1/models", True),
        ("POST", "/openai/deployments/a/b/chat/completions", False),
        ("POST", "/openai/files", False),
        ("POST", "/openai/v1/files", False),
        ("POST", "/openai/batches", False),
        ("GET", "/openai/deployments", False),
        ("POST", "/openai/assistants", False),
        ("POST", "/chat/completions", False),
    ],
)
def test_inference_endpoints_only(method: str, path: str, allowed: bool) -> None:
    adapter = AzureOpenAIAdapter(base_url=ENDPOINT, api_key="k")
    assert adapter.endpoint_allowed(method, path) is allowed
    assert AzureOpenAIAdapter(base_url=ENDPOINT, allow="* /**").endpoint_allowed(method, path)


@pytest.mark.anyio
async def test_probe_without_an_endpoint_and_with_entra(httpx_mock: HTTPXMock) -> None:
    # (The probe's answers and the api-key header: tests/test_adapter_contract.py.)
    httpx_mock.add_response(url=ENDPOINT + "/openai/models?api-version=2024-10-21", json={})

    async def token() -> str:
        return "entra-token"

    async with httpx.AsyncClient() as client:
        unset = await AzureOpenAIAdapter(api_key="k").validate_credentials(client)
        entra = await AzureOpenAIAdapter(
            base_url=ENDPOINT, azure_ad_token=token
        ).validate_credentials(client)
    assert unset.state is CredentialState.NOT_CONFIGURED
    assert entra.state is CredentialState.VALID
    (request,) = httpx_mock.get_requests()
    assert request.headers["authorization"] == "Bearer entra-token"
    assert "api-key" not in request.headers


@pytest.mark.anyio
async def test_models(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=ENDPOINT + "/openai/models?api-version=2024-06-01",
        json={
            "data": [
                {
                    "id": "gpt-4o-2024-08-06",
                    "object": "model",
                    "lifecycle_status": "generally-available",
                }
            ]
        },
    )
    async with httpx.AsyncClient() as client:
        adapter = AzureOpenAIAdapter(base_url=ENDPOINT, api_key="k", api_version="2024-06-01")
        models = await adapter.fetch_models(client)
    assert [(m.id, m.provider) for m in models] == [("gpt-4o-2024-08-06", "azure")]


def test_error_body_is_openais() -> None:
    adapter = AzureOpenAIAdapter(base_url=ENDPOINT, api_key="k")
    for path in ("/openai/deployments/gpt-4o/chat/completions", "/openai/v1/responses", "/x"):
        dialect = adapter.dialect_for(path)
        body = dialect.error_body(ProviderNotConfigured("x"), "rid")
        assert b'"type":"provider_not_configured"' in body.replace(b" ", b""), path


# -- the official SDK through the proxy, over loopback --------------------------------


@pytest.fixture
def azure_proxy(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread
) -> Iterator[ServerThread]:
    adapter = AzureOpenAIAdapter(base_url=upstream.url + "/openai", api_key="azure-server-key")
    with serve(make_proxy(adapters=[adapter])) as server:
        yield server


def _only_server_credentials(fake: FakeUpstream) -> None:
    seen = fake.last
    assert seen.header("api-key") == "azure-server-key"
    assert seen.header("authorization") is None
    assert not any(CLIENT_KEY.encode() in value for _, value in seen.headers)


def test_azure_sdk_with_azure_endpoint(azure_proxy: ServerThread, fake: FakeUpstream) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=f"{azure_proxy.url}/azure",
        api_key=CLIENT_KEY,
        api_version="2024-06-01",
        max_retries=0,
    ) as client:
        completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert completion.choices[0].message.content is not None
        assert completion.choices[0].message.content.startswith("Hello from the fake")
        assert fake.last.path == CHAT
        assert fake.last.query == b"api-version=2024-06-01"
        _only_server_credentials(fake)

        stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        pieces = [
            c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
        ]
        assert "".join(pieces).startswith("Hello from the fake")
        _only_server_credentials(fake)


def test_azure_sdk_with_base_url_and_a_deployment(
    azure_proxy: ServerThread, fake: FakeUpstream
) -> None:
    with openai.AzureOpenAI(
        base_url=f"{azure_proxy.url}/azure/openai/deployments/my-gpt",
        api_key=CLIENT_KEY,
        api_version="2024-10-21",
        max_retries=0,
    ) as client:
        completion = client.chat.completions.create(model="ignored", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert fake.last.path == "/openai/deployments/my-gpt/chat/completions"
    assert fake.last.query == b"api-version=2024-10-21"
    _only_server_credentials(fake)


def test_v1_api_with_the_plain_sdk(azure_proxy: ServerThread, fake: FakeUpstream) -> None:
    with openai.OpenAI(
        base_url=f"{azure_proxy.url}/azure/openai/v1", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        completion = client.chat.completions.create(model="my-gpt", messages=MESSAGES)
        models = client.models.list()
    assert completion.model == "my-gpt"
    assert [m.id for m in models] == ["gpt-fake-1", "gpt-fake-2"]
    assert fake.last.path == "/openai/v1/models"
    assert fake.last.query == b""  # the v1 API takes no api-version
    _only_server_credentials(fake)


def test_raw_client_gets_the_default_api_version(
    azure_proxy: ServerThread, fake: FakeUpstream
) -> None:
    response = httpx.post(
        f"{azure_proxy.url}/azure{CHAT}",
        json={"messages": MESSAGES},
        headers={"api-key": CLIENT_KEY},
        timeout=10,
    )
    assert response.status_code == 200
    assert fake.last.query == b"api-version=2024-10-21"
    _only_server_credentials(fake)
    refused = httpx.post(f"{azure_proxy.url}/azure/openai/files", content=b"x", timeout=10)
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "endpoint_not_allowed"
