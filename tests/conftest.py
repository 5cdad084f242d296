from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from provider_proxy import ProxyApp, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream
from provider_proxy.transports._aiohttp import AiohttpTransport
from provider_proxy.transports._http1 import Http1Transport

from .redis_server import RedisServer
from .servers import ServerThread, serve

OPENAI_KEY = "sk-test-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-test-0123456789"
CLIENT_KEY = "client-key-must-not-travel"
ALL = "* /**"

TRANSPORTS: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
    "httpx": httpx.AsyncHTTPTransport,
    "aiohttp": AiohttpTransport,
    "http1": Http1Transport,
}
if sys.version_info >= (3, 11):  # pyreqwest needs 3.11
    from provider_proxy.transports._reqwest import ReqwestTransport

    TRANSPORTS["reqwest"] = ReqwestTransport
else:  # pragma: no cover - the reqwest transport's own tests need pyreqwest
    collect_ignore = ["test_reqwest_transport.py"]


def http_scope(
    path: str, headers: list[tuple[bytes, bytes]], method: str = "POST"
) -> dict[str, Any]:
    """The ASGI scope of an HTTP request to ``path``, for calling an app in process."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii"),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def fake() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture(scope="session")
def upstream(fake: FakeUpstream) -> Iterator[ServerThread]:
    """The fake provider on a loopback port, shared by the whole session."""
    with serve(fake, lifespan="off") as server:
        yield server


@pytest.fixture
def own_upstream() -> Iterator[tuple[FakeUpstream, ServerThread]]:
    """A fake provider of the test's own on a loopback port, and its server.

    For tests that count the fake's open and closed streams: on the session's
    fake, other tests' streams (a background run, a server thread still
    closing) open and close meanwhile and move the counts.
    """
    fake = FakeUpstream()
    with serve(fake, lifespan="off") as server:
        yield fake, server


class OwnUpstream:
    """A base for test classes whose tests, and every fixture they use, get
    :func:`own_upstream` as ``fake`` and ``upstream``."""

    @pytest.fixture
    def fake(self, own_upstream: tuple[FakeUpstream, ServerThread]) -> FakeUpstream:
        return own_upstream[0]

    @pytest.fixture
    def upstream(self, own_upstream: tuple[FakeUpstream, ServerThread]) -> ServerThread:
        return own_upstream[1]


@pytest.fixture(params=sorted(TRANSPORTS))
def transport_kind(request: pytest.FixtureRequest) -> str:
    """Each engine test runs with httpx's transport, the aiohttp one and the reqwest one."""
    return str(request.param)


@pytest.fixture
def make_proxy(upstream: ServerThread, transport_kind: str) -> Callable[..., ProxyApp]:
    """Build a proxy in front of the fake upstream with the transport under test."""

    def build(**options: Any) -> ProxyApp:
        # The engine tests use the fake's test routes (/echo, /stream, /gzip), so
        # every endpoint is open here; the endpoint policy has tests of its own.
        adapters = options.pop(
            "adapters",
            [
                OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY, allow=[ALL]),
                AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY, allow=[ALL]),
            ],
        )
        options.setdefault("transport", TRANSPORTS[transport_kind]())
        return make_asgi_app(adapters, **options)

    return build


@pytest.fixture
def proxy_server(make_proxy: Callable[..., ProxyApp]) -> Iterator[ServerThread]:
    """The default proxy served by uvicorn on loopback."""
    with serve(make_proxy()) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real ``redis-server`` per test process; each test keeps to its own key prefix."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()
