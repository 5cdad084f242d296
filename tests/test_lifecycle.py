"""The upstream pool: created lazily, one per app, closed on shutdown."""

from __future__ import annotations

import sys

import httpx
import pytest

from provider_proxy import (
    DEFAULT_TIMEOUT,
    ProxyApp,
    aiohttp_transport,
    default_transport,
    http1_transport,
    make_asgi_app,
    reqwest_transport,
)
from provider_proxy.adapters import OpenAIAdapter
from provider_proxy.transports._aiohttp import AiohttpTransport
from provider_proxy.transports._http1 import Http1Transport
from provider_proxy.transports._reqwest import ReqwestTransport

pytestmark = pytest.mark.anyio


def _proxy(**options: object) -> ProxyApp:
    return make_asgi_app([OpenAIAdapter(api_key="k")], **options)  # type: ignore[arg-type]


def test_default_transport_is_the_fast_one_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(default_transport(), Http1Transport)
    assert isinstance(_proxy().transport, Http1Transport)
    monkeypatch.setitem(sys.modules, "provider_proxy.transports._http1", None)  # no httptools
    assert isinstance(default_transport(), AiohttpTransport)
    monkeypatch.setitem(sys.modules, "provider_proxy.transports._aiohttp", None)
    assert isinstance(default_transport(), httpx.AsyncHTTPTransport)


def test_each_fast_transport_can_be_asked_for_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(aiohttp_transport(), AiohttpTransport)
    assert isinstance(http1_transport(), Http1Transport)
    assert isinstance(reqwest_transport(), ReqwestTransport)
    monkeypatch.setitem(sys.modules, "provider_proxy.transports._aiohttp", None)
    with pytest.raises(ImportError, match=r"provider-proxy\[fast\]"):
        aiohttp_transport()
    monkeypatch.setitem(sys.modules, "provider_proxy.transports._http1", None)
    with pytest.raises(ImportError, match=r"httptools: pip install 'provider-proxy\[fast\]'"):
        http1_transport()


def test_default_timeouts_match_the_sdks() -> None:
    assert DEFAULT_TIMEOUT.connect == 10.0
    assert DEFAULT_TIMEOUT.read == 600.0


async def test_transport_created_lazily_and_recreated_after_close() -> None:
    proxy = _proxy()
    assert proxy._transport is None
    first = proxy.transport
    assert proxy.transport is first
    await proxy.aclose()
    assert proxy._transport is None
    async with proxy:
        assert proxy.transport is not first
    assert proxy._transport is None


async def test_given_transport_is_closed_but_kept() -> None:
    closed = []

    class Transport(httpx.AsyncBaseTransport):
        async def aclose(self) -> None:
            closed.append(True)

    transport = Transport()
    proxy = _proxy(transport=transport)
    async with proxy:
        assert proxy.transport is transport
    assert closed == [True]
    assert proxy.transport is transport


def test_adapter_names_must_be_unique_and_not_reserved() -> None:
    with pytest.raises(ValueError, match="Two adapters"):
        make_asgi_app([OpenAIAdapter(api_key="k"), OpenAIAdapter(api_key="k")])
    with pytest.raises(ValueError, match="reserved"):
        make_asgi_app([OpenAIAdapter(name="health", api_key="k")])
    with pytest.raises(TypeError):
        make_asgi_app([object()])  # type: ignore[list-item]


def test_repr_has_no_secrets() -> None:
    proxy = make_asgi_app([OpenAIAdapter(api_key="sk-secret-value")])
    assert "sk-secret-value" not in repr(proxy)
    assert "openai" in repr(proxy)


async def test_lifespan_context_for_starlette_hosts() -> None:
    closed = []

    class Transport(httpx.AsyncBaseTransport):
        async def aclose(self) -> None:
            closed.append(True)

    proxy = _proxy(transport=Transport())
    async with proxy.lifespan(object()):
        assert not closed
    assert closed == [True]


def test_fastapi_host_closes_the_proxy_on_shutdown() -> None:
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    closed = []

    class Transport(httpx.AsyncBaseTransport):
        async def aclose(self) -> None:
            closed.append(True)

    proxy = _proxy(transport=Transport())
    app = FastAPI(lifespan=proxy.lifespan)
    app.mount("/llm", proxy)
    with TestClient(app) as client:
        assert client.get("/llm/health").json()["providers"]["openai"]["enabled"] is True
        assert not closed
    assert closed == [True]
