"""The model catalog: ``GET {mount}/v1/models`` merged across providers, filtered, paged,
cached, refreshed in the background, and read by the official OpenAI SDK.

The in-process tests answer the providers with pytest-httpx; the SDK test runs the
proxy under a Starlette ``Mount`` on loopback in front of the fake upstream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
from pytest_httpx import HTTPXMock
from starlette.applications import Starlette
from starlette.routing import Mount

from provider_proxy import MemoryStore, ProviderAdapter, ProxyApp, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter, OpenAICompatibleAdapter
from provider_proxy.engine._catalog import ModelCatalog
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY, CLIENT_KEY, OPENAI_KEY
from .servers import ServerThread, serve

pytestmark = pytest.mark.anyio

OPENAI_MODELS = "https://oa.example/v1/models"
ANTHROPIC_MODELS = "https://an.example/v1/models?limit=1000"
ROUTER_MODELS = "https://router.example/api/v1/models"
UNSET_VAR = "PROVIDER_PROXY_CATALOG_TEST_UNSET_KEY"

OPENAI_LIST = {
    "object": "list",
    "data": [
        {"id": "gpt-a", "object": "model", "created": 1_700_000_001, "owned_by": "openai"},
        {"id": "gpt-b", "object": "model", "created": 1_700_000_002, "owned_by": "openai"},
        {"id": "text-embedding-x", "object": "model", "created": 1_700_000_003},
    ],
}
ANTHROPIC_LIST = {
    "data": [
        {
            "type": "model",
            "id": "claude-x",
            "display_name": "Claude X",
            "created_at": "2026-01-01T00:00:00Z",
        }
    ],
    "has_more": False,
}
ROUTER_LIST = {
    "data": [
        {
            "id": "meta-llama/llama-3",
            "name": "Meta: Llama 3",
            "context_length": 8192,
            "pricing": {"prompt": "0.0000001", "completion": "0.0000002"},
        }
    ]
}
ALL_IDS = ["openai/gpt-a", "openai/gpt-b", "openai/text-embedding-x", "anthropic/claude-x"]


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _adapters(*extra: ProviderAdapter) -> list[ProviderAdapter]:
    return [
        OpenAIAdapter(base_url="https://oa.example/v1", api_key=OPENAI_KEY),
        AnthropicAdapter(base_url="https://an.example", api_key=ANTHROPIC_KEY),
        # Mounted without a key: not listed, and not a failure.
        OpenAIAdapter(name="nokey", base_url="https://nokey.example/v1", api_key_env=UNSET_VAR),
        *extra,
    ]


def _router() -> ProviderAdapter:
    return OpenAICompatibleAdapter("router", "https://router.example/api/v1", api_key="rk")


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> ProxyApp:
    monkeypatch.delenv(UNSET_VAR, raising=False)
    # httpx's own transport, which pytest-httpx answers.
    return make_asgi_app(
        _adapters(_router()), transport=httpx.AsyncHTTPTransport(), validate_credentials="off"
    )


@pytest.fixture
async def client(proxy: ProxyApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=proxy)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
        yield client
    await proxy.aclose()


def _answer_all(httpx_mock: HTTPXMock, *, router: bool = False) -> None:
    """Every provider answers its list, as often as asked (a filter may leave some out)."""
    options: dict[str, Any] = {"is_reusable": True, "is_optional": True}
    httpx_mock.add_response(url=OPENAI_MODELS, json=OPENAI_LIST, **options)
    httpx_mock.add_response(url=ANTHROPIC_MODELS, json=ANTHROPIC_LIST, **options)
    httpx_mock.add_response(
        url=ROUTER_MODELS, json=ROUTER_LIST if router else {"data": []}, **options
    )


def _ids(payload: dict[str, Any]) -> list[str]:
    return [model["id"] for model in payload["data"]]


def _calls(httpx_mock: HTTPXMock, url: str) -> int:
    return len(httpx_mock.get_requests(url=url))


# -- the merged list --------------------------------------------------------------------


async def test_merges_every_enabled_provider(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock
) -> None:
    _answer_all(httpx_mock, router=True)
    response = await client.get("/v1/models")
    assert response.status_code == 200
    payload = response.json()
    assert payload["object"] == "list"
    assert _ids(payload) == [*ALL_IDS, "router/meta-llama/llama-3"]
    assert payload["has_more"] is False
    assert payload["failed"] == {}
    assert payload["data"][0] == {
        "id": "openai/gpt-a",
        "object": "model",
        "created": 1_700_000_001,
        "owned_by": "openai",
        "provider": "openai",
        "name": None,
        "context_length": None,
        "pricing": None,
    }
    claude = payload["data"][3]
    assert (claude["owned_by"], claude["name"], claude["created"]) == ("anthropic", "Claude X", 0)
    router = payload["data"][4]
    assert router["context_length"] == 8192
    assert router["pricing"] == {"prompt": "0.0000001", "completion": "0.0000002"}
    # Each provider was asked with its own credentials; the keyless one not at all.
    openai_request = httpx_mock.get_request(url=OPENAI_MODELS)
    assert openai_request is not None
    assert openai_request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    anthropic_request = httpx_mock.get_request(url=ANTHROPIC_MODELS)
    assert anthropic_request is not None
    assert anthropic_request.headers["x-api-key"] == ANTHROPIC_KEY
    assert "authorization" not in anthropic_request.headers
    assert not any("nokey" in str(r.url) for r in httpx_mock.get_requests())
    for key in (OPENAI_KEY, ANTHROPIC_KEY):
        assert key not in response.text


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("provider=anthropic", ["anthropic/claude-x"]),
        ("provider=openai", ALL_IDS[:3]),
        ("search=GPT", ["openai/gpt-a", "openai/gpt-b"]),
        ("search=claude%20x", ["anthropic/claude-x"]),  # the display name, too
        ("search=embedding&provider=openai", ["openai/text-embedding-x"]),
        ("search=gpt&provider=anthropic", []),
        ("search=nothing-like-this", []),
        ("search=", ALL_IDS),
        ("provider=nokey", []),
    ],
)
async def test_filters(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, query: str, ids: list[str]
) -> None:
    _answer_all(httpx_mock)
    response = await client.get(f"/v1/models?{query}")
    assert response.status_code == 200
    assert _ids(response.json()) == ids
    assert response.json()["has_more"] is False


@pytest.mark.parametrize(
    ("query", "ids", "has_more"),
    [
        ("limit=2", ALL_IDS[:2], True),
        ("limit=2&offset=2", ALL_IDS[2:], False),
        ("limit=3&offset=1", ALL_IDS[1:], False),
        ("limit=1&offset=2", ALL_IDS[2:3], True),
        ("offset=3", ALL_IDS[3:], False),
        ("offset=10", [], False),
        ("limit=4", ALL_IDS, False),
        ("limit=1000", ALL_IDS, False),
        ("limit=1&search=gpt", ["openai/gpt-a"], True),
        ("limit=1&offset=1&search=gpt", ["openai/gpt-b"], False),
    ],
)
async def test_paging(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, query: str, ids: list[str], has_more: bool
) -> None:
    _answer_all(httpx_mock)
    payload = (await client.get(f"/v1/models?{query}")).json()
    assert _ids(payload) == ids
    assert payload["has_more"] is has_more


async def test_pages_walk_the_whole_list(client: httpx.AsyncClient, httpx_mock: HTTPXMock) -> None:
    _answer_all(httpx_mock)
    seen: list[str] = []
    offset = 0
    while True:
        page = (await client.get(f"/v1/models?limit=3&offset={offset}")).json()
        seen += _ids(page)
        offset += 3
        if not page["has_more"]:
            break
    assert seen == ALL_IDS


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "limit=x", "offset=-1", "offset=1.5", "limit=-3"]
)
async def test_bad_paging_is_400(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/v1/models?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_query"


async def test_unknown_provider_filter_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models?provider=nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "provider_not_found"
    assert "nope" in response.json()["error"]["message"]


# -- one model --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("/v1/models/openai/gpt-b", "openai/gpt-b"),
        ("/v1/models/anthropic/claude-x", "anthropic/claude-x"),
        # Ids with a slash of their own, as OpenRouter's: raw, or encoded as SDKs do.
        ("/v1/models/router/meta-llama/llama-3", "router/meta-llama/llama-3"),
        ("/v1/models/router%2Fmeta-llama%2Fllama-3", "router/meta-llama/llama-3"),
        ("/v1/models/router/meta-llama%2Fllama-3", "router/meta-llama/llama-3"),
        ("/v1/models/openai%2Fgpt-a", "openai/gpt-a"),
    ],
)
async def test_one_model(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, path: str, wanted: str
) -> None:
    _answer_all(httpx_mock, router=True)
    response = await client.get(path)
    assert response.status_code == 200
    model = response.json()
    assert model["id"] == wanted
    assert model["object"] == "model"
    assert model["owned_by"] == wanted.partition("/")[0]
    # Only that provider was asked.
    asked = {request.url.host for request in httpx_mock.get_requests()}
    assert len(asked) == 1


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/models/openai/gpt-nope", 404, "model_not_found"),
        ("/v1/models/openai/GPT-A", 404, "model_not_found"),  # ids are exact
        ("/v1/models/nope/gpt-a", 404, "model_not_found"),
        ("/v1/models/nokey/gpt-a", 404, "model_not_found"),
        ("/v1/models/openai", 404, "not_found"),
        ("/v1/models/openai/", 404, "not_found"),
        ("/v1/modelsx", 404, "not_found"),
    ],
)
async def test_one_model_not_found(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock, path: str, status: int, code: str
) -> None:
    _answer_all(httpx_mock)
    response = await client.get(path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_catalog_answers_get_only(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/models", json={})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


# -- caching ---------------------------------------------------------------------------------


async def test_cached_within_the_ttl(
    proxy: ProxyApp, client: httpx.AsyncClient, httpx_mock: HTTPXMock
) -> None:
    _answer_all(httpx_mock)
    first = (await client.get("/v1/models")).json()
    for path in ("/v1/models", "/v1/models?provider=openai", "/v1/models/openai/gpt-a"):
        assert (await client.get(path)).status_code == 200
    assert (await client.get("/v1/models")).json() == first
    assert _calls(httpx_mock, OPENAI_MODELS) == 1
    assert _calls(httpx_mock, ANTHROPIC_MODELS) == 1
    # Held in the app's store, where a RedisStore would share it between instances.
    cached = await proxy.store.get("models:openai")
    assert cached is not None
    assert [m["id"] for m in json.loads(cached)["models"]] == ["gpt-a", "gpt-b", "text-embedding-x"]
    status = (await client.get("/status")).json()["models"]
    assert status["providers"]["openai"]["models"] == 3
    assert status["providers"]["anthropic"]["error"] is None


async def test_concurrent_first_listings_share_one_fetch(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock
) -> None:
    gate = anyio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return httpx.Response(200, json=OPENAI_LIST)

    httpx_mock.add_callback(slow, url=OPENAI_MODELS, is_reusable=True)
    results: list[list[str]] = []

    async def list_openai() -> None:
        results.append(_ids((await client.get("/v1/models?provider=openai")).json()))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(list_openai)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert results == [ALL_IDS[:3]] * 20
    assert _calls(httpx_mock, OPENAI_MODELS) == 1


def _catalog(
    clock: Clock, adapters: list[ProviderAdapter] | None = None, **options: Any
) -> ModelCatalog:
    adapters = adapters or _adapters()[:2]
    return ModelCatalog(
        {adapter.name: adapter for adapter in adapters},
        MemoryStore(),
        ttl=300,
        client_factory=httpx.AsyncClient,
        clock=clock,
        **options,
    )


async def test_stale_list_is_served_while_a_background_refresh_runs(
    httpx_mock: HTTPXMock,
) -> None:
    gate = anyio.Event()
    newer = {"data": [*OPENAI_LIST["data"], {"id": "gpt-c", "created": 1_700_000_004}]}

    async def refreshed(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return httpx.Response(200, json=newer)

    httpx_mock.add_response(url=OPENAI_MODELS, json=OPENAI_LIST)
    httpx_mock.add_callback(refreshed, url=OPENAI_MODELS)
    clock = Clock()
    catalog = _catalog(clock)
    assert _ids(await catalog.listing("openai")) == ALL_IDS[:3]
    clock.now += 299  # fresh
    assert _ids(await catalog.listing("openai")) == ALL_IDS[:3]
    assert _calls(httpx_mock, OPENAI_MODELS) == 1
    clock.now += 2  # stale: answered at once from the cache, refreshed behind
    with anyio.fail_after(2):
        assert _ids(await catalog.listing("openai")) == ALL_IDS[:3]
    await anyio.wait_all_tasks_blocked()
    assert _calls(httpx_mock, OPENAI_MODELS) == 2
    # More stale listings while it runs start no second refresh.
    assert _ids(await catalog.listing("openai")) == ALL_IDS[:3]
    await anyio.wait_all_tasks_blocked()
    assert _calls(httpx_mock, OPENAI_MODELS) == 2
    gate.set()
    await anyio.wait_all_tasks_blocked()
    assert _ids(await catalog.listing("openai")) == [*ALL_IDS[:3], "openai/gpt-c"]
    assert catalog.status()["providers"]["openai"]["fetched_at"] == clock.now
    await catalog.aclose()


async def test_one_provider_failing_while_the_other_answers(
    client: httpx.AsyncClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=OPENAI_MODELS, status_code=500, json={"error": {}})
    httpx_mock.add_response(url=ANTHROPIC_MODELS, json=ANTHROPIC_LIST)
    httpx_mock.add_response(url=ROUTER_MODELS, json=ROUTER_LIST)
    response = await client.get("/v1/models")
    assert response.status_code == 200
    payload = response.json()
    assert _ids(payload) == ["anthropic/claude-x", "router/meta-llama/llama-3"]
    assert payload["failed"] == {"openai": "the provider answered HTTP 500"}
    # The failure is not asked again at once (nor is the cache of the others).
    again = (await client.get("/v1/models")).json()
    assert again["failed"] == payload["failed"]
    assert _ids(again) == _ids(payload)
    assert _calls(httpx_mock, OPENAI_MODELS) == 1
    status = (await client.get("/status")).json()["models"]["providers"]
    assert status["openai"]["error"] == "the provider answered HTTP 500"
    assert status["anthropic"]["error"] is None
    # Nor when one of its models is looked up meanwhile.
    single = await client.get("/v1/models/openai/gpt-a")
    assert single.status_code == 404
    assert _calls(httpx_mock, OPENAI_MODELS) == 1


async def test_failed_provider_is_asked_again_after_a_while(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=OPENAI_MODELS)
    httpx_mock.add_response(url=OPENAI_MODELS, json=OPENAI_LIST)
    httpx_mock.add_response(url=ANTHROPIC_MODELS, json=ANTHROPIC_LIST)
    clock = Clock()
    catalog = _catalog(clock)
    first = await catalog.listing()
    assert first["failed"] == {"openai": "ConnectError"}
    assert _ids(first) == ["anthropic/claude-x"]
    clock.now += 29
    assert (await catalog.listing())["failed"] == {"openai": "ConnectError"}
    assert _calls(httpx_mock, OPENAI_MODELS) == 1
    clock.now += 2
    recovered = await catalog.listing()
    assert recovered["failed"] == {}
    assert _ids(recovered) == ALL_IDS
    await catalog.aclose()


async def test_a_hanging_provider_delays_a_listing_only_briefly(httpx_mock: HTTPXMock) -> None:
    gate = anyio.Event()

    async def hanging(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return httpx.Response(200, json=OPENAI_LIST)

    httpx_mock.add_callback(hanging, url=OPENAI_MODELS)
    httpx_mock.add_response(url=ANTHROPIC_MODELS, json=ANTHROPIC_LIST)
    catalog = _catalog(Clock(), wait=0.2)
    with anyio.fail_after(2):
        first = await catalog.listing()
    assert _ids(first) == ["anthropic/claude-x"]
    assert "still waiting" in first["failed"]["openai"]
    # Its time is spent: the next listing does not wait again.
    with anyio.fail_after(0.15):
        assert "openai" in (await catalog.listing())["failed"]
    gate.set()
    await anyio.wait_all_tasks_blocked()
    later = await catalog.listing()
    assert later["failed"] == {}
    assert _ids(later) == ALL_IDS
    assert _calls(httpx_mock, OPENAI_MODELS) == 1
    await catalog.aclose()


async def test_model_ids_for_transforms(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET_VAR, raising=False)
    httpx_mock.add_response(url=OPENAI_MODELS, json=OPENAI_LIST)
    catalog = _catalog(Clock(), _adapters())
    assert await catalog.model_ids("openai") == ["gpt-a", "gpt-b", "text-embedding-x"]
    assert await catalog.model_ids("openai") == ["gpt-a", "gpt-b", "text-embedding-x"]
    # Unknown, and keyless (never asked: it would only fail for want of a key).
    assert await catalog.model_ids("nope") == []
    assert await catalog.model_ids("nokey") == []
    assert catalog.status()["providers"]["nokey"]["error"] is None
    assert len(httpx_mock.get_requests()) == 1
    await catalog.aclose()


async def test_per_provider_passthrough_is_unchanged(
    proxy: ProxyApp, client: httpx.AsyncClient, httpx_mock: HTTPXMock
) -> None:
    upstream_body = {"object": "list", "data": [{"id": "gpt-a", "object": "model"}], "x": 1}
    httpx_mock.add_response(url=OPENAI_MODELS, json=upstream_body)
    httpx_mock.add_response(url="https://oa.example/v1/models/gpt-a", json={"id": "gpt-a"})
    response = await client.get("/openai/models", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert response.status_code == 200
    assert response.json() == upstream_body  # the provider's own answer, ids unprefixed
    request = httpx_mock.get_request(url=OPENAI_MODELS)
    assert request is not None
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    # The passthrough neither reads nor fills the catalog.
    assert await proxy.store.get("models:openai") is None
    response = await client.get("/openai/models/gpt-a")
    assert response.json() == {"id": "gpt-a"}


# -- the official SDK over loopback ------------------------------------------------------


@pytest.fixture
def mounted(upstream: ServerThread) -> Iterator[ServerThread]:
    """Starlette with the proxy mounted at /llm, served by uvicorn, before the fake upstream."""
    proxy = make_asgi_app(
        [
            OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
        ]
    )
    host = Starlette(routes=[Mount("/llm", app=proxy)], lifespan=proxy.lifespan)
    with serve(host) as server:
        yield server


def test_openai_sdk_lists_and_retrieves(mounted: ServerThread, fake: FakeUpstream) -> None:
    with openai.OpenAI(
        base_url=f"{mounted.url}/llm/v1", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        models = list(client.models.list())
        assert [m.id for m in models] == [
            "openai/gpt-fake-1",
            "openai/gpt-fake-2",
            "anthropic/claude-fake-1",
        ]
        assert models[0].owned_by == "openai"
        assert models[0].created == 1_700_000_000
        # The SDK percent-encodes the slash (/models/openai%2Fgpt-fake-2); it arrives whole.
        model = client.models.retrieve("openai/gpt-fake-2")
        assert model.id == "openai/gpt-fake-2"
        assert model.owned_by == "openai"
        assert client.models.retrieve("anthropic/claude-fake-1").id == "anthropic/claude-fake-1"
        with pytest.raises(openai.NotFoundError, match="not in the catalog"):
            client.models.retrieve("openai/gpt-nope")
    assert not any(CLIENT_KEY.encode() in value for r in fake.requests for _, value in r.headers)
