"""The engine through a real server: routing, headers, bodies and the proxy's own errors.

Every test runs once per upstream transport (httpx's own and the aiohttp one).
"""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import provider_proxy
from provider_proxy import ProxyApp
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter, OpenAICompatibleAdapter
from provider_proxy.engine._app import _capped
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY, CLIENT_KEY, OPENAI_KEY
from .servers import ServerThread, free_port, serve, wait_until


@pytest.fixture
def client(proxy_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy_server.url, timeout=10) as client:
        yield client


def test_forwards_to_base_url_with_query_as_sent(client: httpx.Client, fake: FakeUpstream) -> None:
    response = client.get("/openai/echo?a=%20x&b=1&b=2")
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["method"] == "GET"
    assert echoed["path"] == "/v1/echo"
    assert echoed["query"] == "a=%20x&b=1&b=2"
    assert fake.last.query == b"a=%20x&b=1&b=2"


def test_request_headers_swap_credentials(
    client: httpx.Client, fake: FakeUpstream, upstream: ServerThread
) -> None:
    response = client.post(
        "/openai/echo",
        content=b'{"x": 1}',
        headers={
            "authorization": f"Bearer {CLIENT_KEY}",
            "x-api-key": CLIENT_KEY,
            "api-key": CLIENT_KEY,
            "x-goog-api-key": CLIENT_KEY,
            "cookie": f"session={CLIENT_KEY}",
            "connection": "keep-alive, x-hop",
            "x-hop": "1",
            "content-type": "application/json",
            "openai-organization": "org-1",
            "openai-project": "proj-1",
            "origin": "https://chat.example",
            "x-http-method-override": "DELETE",
            "x-tenant": "kept",
        },
    )
    assert response.status_code == 200
    seen = fake.last
    assert seen.header("authorization") == f"Bearer {OPENAI_KEY}"
    assert seen.header("host") == upstream.url.removeprefix("http://")
    for name in ("x-api-key", "api-key", "x-goog-api-key", "cookie", "x-hop"):
        assert seen.header(name) is None, name
    assert not any(CLIENT_KEY.encode() in value for _, value in seen.headers)
    # The operator's key bills the operator's account: a client picks no other.
    for name in ("openai-organization", "openai-project", "origin", "x-http-method-override"):
        assert seen.header(name) is None, name
    assert seen.header("x-tenant") == "kept"
    assert seen.header("content-length") == "8"
    assert seen.body == b'{"x": 1}'


def test_anthropic_adapter_sets_its_key_and_version(
    client: httpx.Client, fake: FakeUpstream
) -> None:
    response = client.post(
        "/anthropic/v1/messages",
        json={"model": "claude-x", "max_tokens": 5, "messages": []},
        headers={"x-api-key": CLIENT_KEY, "authorization": f"Bearer {CLIENT_KEY}"},
    )
    assert response.status_code == 200
    assert response.json()["type"] == "message"
    assert fake.last.header("x-api-key") == ANTHROPIC_KEY
    assert fake.last.header("authorization") is None
    assert fake.last.header("anthropic-version") == "2023-06-01"
    client.post("/anthropic/v1/messages", json={}, headers={"anthropic-version": "2099-01-01"})
    assert fake.last.header("anthropic-version") == "2099-01-01"


def test_request_id_kept_sent_upstream_and_returned(
    client: httpx.Client, fake: FakeUpstream
) -> None:
    response = client.get("/openai/models", headers={"x-request-id": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    assert fake.last.header("x-request-id") == "trace-42"
    # The upstream's own id is kept under another name.
    assert response.headers["x-upstream-request-id"] == "upstream-200"

    response = client.get("/openai/models", headers={"x-request-id": "bad id; drop"})
    made = response.headers["x-request-id"]
    assert made != "bad id; drop"
    assert len(made) == 32
    assert fake.last.header("x-request-id") == made


def test_response_headers_filtered(client: httpx.Client) -> None:
    response = client.get("/openai/models")
    assert "set-cookie" not in response.headers
    assert response.headers.get_list("date") == response.headers.get_list("date")[:1]
    assert response.headers["content-type"] == "application/json"


def test_compressed_body_relayed_raw(client: httpx.Client) -> None:
    with client.stream("GET", "/openai/gzip", headers={"accept-encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(raw)) == {"compressed": True}
    assert int(response.headers["content-length"]) == len(raw)


def test_upstream_errors_relayed_unchanged(client: httpx.Client) -> None:
    response = client.post("/openai/chat/completions", json={}, headers={"x-fake-status": "429"})
    assert response.status_code == 429
    assert response.json() == {
        "error": {
            "message": "fake upstream error 429",
            "type": "fake_error",
            "param": None,
            "code": "429",
        }
    }
    response = client.post("/anthropic/v1/messages", json={}, headers={"x-fake-status": "529"})
    assert response.status_code == 529
    assert response.json()["error"]["type"] == "api_error"
    assert "x-should-retry" not in response.headers


def test_unknown_provider_404_in_openai_format(client: httpx.Client) -> None:
    response = client.post("/nope/chat/completions", json={})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "provider_not_found"
    assert "'nope'" in error["message"]
    assert "openai, anthropic" in error["message"]
    assert response.headers["x-should-retry"] == "false"
    assert client.get("/").status_code == 404


def test_health_lists_providers_without_secrets(
    client: httpx.Client, upstream: ServerThread
) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    # The startup probe (validate_credentials="warn" by default) found both keys accepted.
    valid = {"state": "valid", "status_code": 200}
    health = response.json()
    assert health.pop("version") == provider_proxy.__version__
    assert health.pop("uptime") >= 0
    assert health.pop("timestamp").endswith("Z")
    assert health == {
        "status": "ok",
        "providers": {
            "openai": {"enabled": True, "base_url": upstream.url + "/v1", "credentials": valid},
            "anthropic": {"enabled": True, "base_url": upstream.url, "credentials": valid},
        },
    }
    assert OPENAI_KEY not in response.text
    assert ANTHROPIC_KEY not in response.text
    assert client.post("/health").status_code == 405


def test_not_configured_503_names_the_env_var(
    make_proxy: Callable[..., ProxyApp], monkeypatch: pytest.MonkeyPatch, upstream: ServerThread
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    proxy = make_proxy(adapters=[OpenAIAdapter(base_url=upstream.url), AnthropicAdapter()])
    with serve(proxy) as server, httpx.Client(base_url=server.url) as client:
        response = client.post("/openai/chat/completions", json={})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["type"] == "provider_not_configured"
        assert "OPENAI_API_KEY" in error["message"]
        response = client.post("/anthropic/v1/messages", json={})
        assert response.status_code == 503
        body = response.json()
        assert body["type"] == "error"
        assert body["error"]["type"] == "api_error"
        assert "ANTHROPIC_API_KEY" in body["error"]["message"]
        health = client.get("/health").json()
        assert health["status"] == "unconfigured"
        assert "OPENAI_API_KEY" in health["providers"]["openai"]["reason"]


def test_unreachable_upstream_502(make_proxy: Callable[..., ProxyApp]) -> None:
    port = free_port()
    proxy = make_proxy(
        adapters=[
            OpenAIAdapter(base_url=f"http://127.0.0.1:{port}/v1", api_key=OPENAI_KEY),
            AnthropicAdapter(base_url=f"http://127.0.0.1:{port}", api_key=ANTHROPIC_KEY),
        ]
    )
    with serve(proxy) as server, httpx.Client(base_url=server.url) as client:
        response = client.post("/openai/chat/completions", json={})
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["type"] == "upstream_unreachable"
        assert "127.0.0.1" in error["message"]
        assert OPENAI_KEY not in response.text
        assert response.headers["x-should-retry"] == "true"
        response = client.post("/anthropic/v1/messages", json={})
        assert response.status_code == 502
        assert response.json()["error"]["type"] == "api_error"


def test_upstream_timeout_504(make_proxy: Callable[..., ProxyApp]) -> None:
    proxy = make_proxy(timeout=httpx.Timeout(5.0, read=0.3))
    with serve(proxy) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.post("/openai/chat/completions", json={}, headers={"x-fake-delay": "2"})
        assert response.status_code == 504
        assert response.json()["error"]["type"] == "upstream_timeout"
        # A fast answer on the same proxy still works.
        assert client.post("/openai/chat/completions", json={}).status_code == 200


@pytest.mark.parametrize("size", [1025, 5000])
def test_body_over_limit_413_by_content_length(
    make_proxy: Callable[..., ProxyApp], fake: FakeUpstream, size: int
) -> None:
    with (
        serve(make_proxy(max_body_size=1024)) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        before = len(fake.requests)
        response = client.post("/openai/chat/completions", content=b"x" * size)
        assert response.status_code == 413
        assert response.json()["error"]["type"] == "body_too_large"
        assert "1024" in response.json()["error"]["message"]
        assert len(fake.requests) == before
        assert client.post("/openai/chat/completions", content=b"{}").status_code == 200


def test_body_over_limit_413_when_streamed_without_length(
    make_proxy: Callable[..., ProxyApp],
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"y" * 512

    with (
        serve(make_proxy(max_body_size=1024)) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        response = client.post("/anthropic/v1/messages", content=chunks())
        assert response.status_code == 413
        assert response.json()["error"]["type"] == "request_too_large"


def test_streamed_body_under_limit_is_forwarded_whole(
    client: httpx.Client, fake: FakeUpstream
) -> None:
    def chunks() -> Iterator[bytes]:
        for index in range(20):
            yield b"%05d" % index * 1000

    response = client.post("/openai/echo", content=chunks())
    assert response.status_code == 200
    assert fake.last.body == b"".join(b"%05d" % i * 1000 for i in range(20))


def _raw_request(server: ServerThread, target: str) -> tuple[int, dict[str, Any]]:
    """Send a request target exactly as written (no client-side normalisation)."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize(
    "target",
    [
        "/openai/../anthropic/v1/messages",
        "/openai/%2e%2e/%2e%2e/etc/passwd",
        "/openai/.%2E/x",
        "/openai/a%2Fb",
        "/openai/a%5Cb",
        "/openai//evil.example/x",
        "/openai/http://evil.example/x",
    ],
)
def test_refused_paths_400(proxy_server: ServerThread, fake: FakeUpstream, target: str) -> None:
    before = len(fake.requests)
    status, body = _raw_request(proxy_server, target)
    assert status == 400
    assert body["error"]["type"] == "path_refused"
    assert len(fake.requests) == before


def test_compatible_adapter_sets_user_agent_and_headers(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    gateway = OpenAICompatibleAdapter(
        "gateway",
        base_url=upstream.url + "/v1",
        api_key="gw-key",
        user_agent="QwenCode/0.0.14 (linux; x64)",
        headers={"x-title": "my app"},
    )
    with (
        serve(make_proxy(adapters=[gateway])) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        response = client.post(
            "/gateway/chat/completions", json={"model": "m"}, headers={"user-agent": "browser/1"}
        )
    assert response.status_code == 200
    assert fake.last.path == "/v1/chat/completions"
    assert fake.last.header("user-agent") == "QwenCode/0.0.14 (linux; x64)"
    assert fake.last.header("x-title") == "my app"
    assert fake.last.header("authorization") == "Bearer gw-key"


def test_key_callable_is_read_per_request(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    keys = iter(["key-1", "key-2"])
    adapter = OpenAIAdapter(base_url=upstream.url + "/v1", api_key=lambda: next(keys))
    # No startup probe, so the first key goes to the first request.
    proxy = make_proxy(adapters=[adapter], validate_credentials="off")
    with serve(proxy) as server, httpx.Client(base_url=server.url) as client:
        client.get("/openai/models")
        assert fake.last.header("authorization") == "Bearer key-1"
        client.get("/openai/models")
        assert fake.last.header("authorization") == "Bearer key-2"


def test_adapter_failure_is_a_clear_500(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(OpenAIAdapter):
        def rewrite_url(self, url: httpx.URL, context: Any) -> httpx.URL:
            raise RuntimeError("bug in the adapter")

    adapter = Broken(base_url=upstream.url + "/v1", api_key=OPENAI_KEY)
    with (
        serve(make_proxy(adapters=[adapter])) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        response = client.post(
            "/openai/chat/completions", json={}, headers={"x-request-id": "r-500"}
        )
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "proxy_error"
    assert "RuntimeError" in error["message"]
    assert "r-500" in error["message"]
    assert "bug in the adapter" not in response.text
    assert any("r-500" in record.getMessage() for record in caplog.records)


def test_no_cookies_cross_the_proxy(client: httpx.Client, fake: FakeUpstream) -> None:
    # The fake sets a cookie on every answer; it never reaches the client, and
    # no later request (from this client or another) carries it upstream.
    first = client.get("/openai/models")
    assert "set-cookie" not in first.headers
    assert not client.cookies
    client.get("/openai/models", headers={"cookie": "host_session=secret"})
    assert fake.last.header("cookie") is None


@pytest.mark.parametrize(
    ("method", "content", "lengths"),
    [
        ("GET", b"", {None}),
        # aiohttp frames a body-less DELETE with "Content-Length: 0"; both mean no body.
        ("DELETE", b"", {None, "0"}),
        ("POST", b"", {"0"}),
        ("PUT", b"{}", {"2"}),
        ("PATCH", b"[]", {"2"}),
    ],
)
def test_methods_and_body_framing(
    client: httpx.Client, fake: FakeUpstream, method: str, content: bytes, lengths: set[str | None]
) -> None:
    response = client.request(method, "/openai/echo", content=content)
    assert response.status_code == 200
    assert fake.last.method == method
    assert fake.last.body == content
    assert fake.last.header("content-length") in lengths
    assert fake.last.header("transfer-encoding") is None


def test_async_auth_headers_are_awaited(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    class TokenAdapter(OpenAIAdapter):
        async def auth_headers(self, context: Any) -> dict[str, str]:  # type: ignore[override]
            return {"authorization": f"Bearer token-for-{context.request_id}"}

    adapter = TokenAdapter(base_url=upstream.url + "/v1", api_key="unused")
    with (
        serve(make_proxy(adapters=[adapter])) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        client.get("/openai/models", headers={"x-request-id": "abc"})
    assert fake.last.header("authorization") == "Bearer token-for-abc"


def test_own_requests_never_wait_as_long_as_a_generation() -> None:
    # Credential probes and model lists use the app's timeouts, each capped, so a
    # provider that hangs cannot hold up startup for the 600 s a generation may take.
    capped = _capped(httpx.Timeout(600.0, connect=10.0, pool=None), 15.0)
    assert capped.as_dict() == {"connect": 10.0, "read": 15.0, "write": 15.0, "pool": 15.0}
    shorter = _capped(httpx.Timeout(2.0), 15.0)
    assert shorter.as_dict() == {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [
        ("GET", "/v1/models?limit=x", 400, "invalid_query"),
        ("GET", "/v1/models?provider=nope", 404, "provider_not_found"),
        ("GET", "/v1/models/openai/gpt-nope", 404, "model_not_found"),
        ("GET", "/v1/modelsx", 404, "not_found"),
        ("POST", "/v1/models", 405, "method_not_allowed"),
    ],
)
def test_model_catalog_errors_take_the_error_path(
    make_proxy: Callable[..., ProxyApp], method: str, path: str, status: int, kind: str
) -> None:
    # Like every other error of the proxy's: x-should-retry for the SDKs, and the
    # kind in the event, so the errors metric counts it.
    events: list[Any] = []
    proxy = make_proxy(sinks=[events.append], metrics=True)
    with serve(proxy) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.request(method, path)
        assert response.status_code == status
        assert response.headers["x-should-retry"] == "false"
        assert response.headers["x-request-id"]
        assert response.json()["error"]["code"] == kind
        assert wait_until(lambda: len(events) == 1)
        assert (events[0].status, events[0].error_kind) == (status, kind)
        metrics = client.get("/metrics").text
    assert f'provider_proxy_errors_total{{kind="{kind}",provider="none"}} 1.0' in metrics
