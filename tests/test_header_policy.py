"""Header policy through a real server: what the upstream sees, and what the client gets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from provider_proxy import Guards, RateLimit, make_asgi_app
from provider_proxy.adapters import (
    ClientIdentity,
    FirstAvailableAdapter,
    OpenAIAdapter,
    OpenAICompatibleAdapter,
)
from provider_proxy.testing import FakeUpstream
from provider_proxy.types import Receive, Scope, Send

from .conftest import ALL, OPENAI_KEY
from .servers import ServerThread, serve

TOPOLOGY = {
    "x-forwarded-for": "203.0.113.7",
    "x-forwarded-host": "internal.example",
    "x-forwarded-proto": "http",
    "x-forwarded-port": "8080",
    "forwarded": "for=203.0.113.7;host=internal.example",
    "x-real-ip": "203.0.113.7",
    "via": "1.1 edge-proxy.internal",
    "true-client-ip": "203.0.113.7",
    "x-client-ip": "203.0.113.7",
    "cf-connecting-ip": "203.0.113.7",
}
URL_OVERRIDES = {
    "x-original-url": "/v1/organization/admin_api_keys",
    "x-rewrite-url": "/v1/files",
    "x-override-url": "/v1/files",
    "x-original-uri": "/v1/files",
    "x-forwarded-prefix": "/admin",
    "x-forwarded-uri": "/v1/files",
}


def _served(*adapters: Any, **options: Any) -> Any:
    options.setdefault("validate_credentials", "off")
    # uvicorn would itself read X-Forwarded-* from 127.0.0.1; the proxy decides here.
    return serve(make_asgi_app(list(adapters), **options), proxy_headers=False)


def _echoed(server: ServerThread, fake: FakeUpstream, path: str, headers: dict[str, str]) -> Any:
    response = httpx.post(server.url + path, content=b"{}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return fake.last


def test_topology_and_url_override_headers_are_not_forwarded(
    upstream: ServerThread, fake: FakeUpstream
) -> None:
    adapter = OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY, allow=[ALL])
    with _served(adapter) as server:
        seen = _echoed(
            server, fake, "/openai/echo", {**TOPOLOGY, **URL_OVERRIDES, "x-tenant": "kept"}
        )
    for name in (*TOPOLOGY, *URL_OVERRIDES):
        assert seen.header(name) is None, name
    assert not any(b"203.0.113.7" in value or b"internal" in value for _, value in seen.headers)
    assert seen.header("x-tenant") == "kept"


def test_forward_headers_forwards_only_the_named_ones(
    upstream: ServerThread, fake: FakeUpstream
) -> None:
    adapter = OpenAIAdapter(
        base_url=upstream.url + "/v1",
        api_key=OPENAI_KEY,
        allow=[ALL],
        forward_headers=["X-Forwarded-For", "x-real-ip"],
    )
    with _served(adapter) as server:
        seen = _echoed(server, fake, "/openai/echo", {**TOPOLOGY, **URL_OVERRIDES})
    assert seen.header("x-forwarded-for") == "203.0.113.7"
    assert seen.header("x-real-ip") == "203.0.113.7"
    for name in (*TOPOLOGY, *URL_OVERRIDES):
        if name not in ("x-forwarded-for", "x-real-ip"):
            assert seen.header(name) is None, name


@pytest.mark.parametrize("name", ["authorization", "x-api-key", "connection", "x-tenant"])
def test_forward_headers_names_only_topology_headers(name: str) -> None:
    with pytest.raises(ValueError, match="not a topology or URL-override header"):
        OpenAIAdapter(api_key="k", forward_headers=[name])


def test_client_identity_replaces_the_sdk_fingerprint(
    upstream: ServerThread, fake: FakeUpstream
) -> None:
    identity = ClientIdentity(
        user_agent="QwenCode/0.0.14 (linux; x64)",
        headers={"X-Stainless-Lang": "js", "x-stainless-runtime": "node"},
    )
    adapter = OpenAICompatibleAdapter(
        "agentrouter",
        base_url=upstream.url + "/v1",
        api_key=OPENAI_KEY,
        client_identity=identity,
    )
    with _served(adapter) as server:
        with openai.OpenAI(
            base_url=server.url + "/agentrouter", api_key="unused", max_retries=0
        ) as client:
            client.chat.completions.create(
                model="gpt-fake", messages=[{"role": "user", "content": "hi"}]
            )
    seen = fake.last
    assert seen.path == "/v1/chat/completions"
    assert seen.header("user-agent") == "QwenCode/0.0.14 (linux; x64)"
    stainless = {
        name.decode(): value.decode()
        for name, value in seen.headers
        if name.startswith(b"x-stainless-")
    }
    # The Python SDK's own (lang, os, arch, package-version, retry-count, ...) are gone.
    assert stainless == {"x-stainless-lang": "js", "x-stainless-runtime": "node"}


def test_client_identity_merges_with_the_other_header_options() -> None:
    identity = ClientIdentity(user_agent="QwenCode/1", headers={"x-a": "1", "x-b": "1"})
    adapter = OpenAICompatibleAdapter(
        "gw", "https://gw.example/v1", api_key="k", client_identity=identity, headers={"X-B": "2"}
    )
    assert adapter.headers == {"x-a": "1", "x-b": "2", "user-agent": "QwenCode/1"}
    assert OpenAICompatibleAdapter(
        "gw", "https://gw.example/v1", api_key="k", client_identity=identity, user_agent="ua/2"
    ).headers["user-agent"] == ("ua/2")
    assert ClientIdentity(drop_prefixes="X-Stainless-").drop_prefixes == ("x-stainless-",)
    with pytest.raises(ValueError, match="empty prefix"):
        OpenAIAdapter(api_key="k", client_identity=ClientIdentity(drop_prefixes=("",)))
    with pytest.raises(ValueError, match="control character"):
        OpenAIAdapter(api_key="k", client_identity=ClientIdentity(user_agent="a\r\nb: c"))


def test_first_available_uses_the_chosen_adapters_policy(
    upstream: ServerThread, fake: FakeUpstream
) -> None:
    chosen = OpenAIAdapter(
        base_url=upstream.url + "/v1",
        api_key=OPENAI_KEY,
        allow=[ALL],
        forward_headers="x-forwarded-for",
        client_identity=ClientIdentity(user_agent="QwenCode/1"),
    )
    either = FirstAvailableAdapter("either", [OpenAIAdapter(name="nokey", api_key=""), chosen])
    with _served(either) as server:
        seen = _echoed(
            server,
            fake,
            "/either/echo",
            {**TOPOLOGY, "x-stainless-lang": "python", "user-agent": "OpenAI/Python"},
        )
    assert seen.header("x-forwarded-for") == "203.0.113.7"
    assert seen.header("x-real-ip") is None
    assert seen.header("x-stainless-lang") is None
    assert seen.header("user-agent") == "QwenCode/1"


# -- limit headers --------------------------------------------------------------------

PROVIDER_LIMITS = [
    (b"x-ratelimit-limit", b"100"),
    (b"x-ratelimit-remaining", b"99"),
    (b"x-ratelimit-reset", b"7"),
    (b"ratelimit-policy", b'"default";q=100;w=60'),
    (b"x-ratelimit-limit-requests", b"10000"),
    (b"anthropic-ratelimit-tokens-remaining", b"4000"),
]


async def _limited_upstream(scope: Scope, receive: Receive, send: Send) -> None:
    """An upstream that reports limits of its own, under the proxy's names too."""
    if scope["type"] != "http":  # pragma: no cover
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"id": "x", "object": "chat.completion", "choices": []}'
    headers = [(b"content-type", b"application/json"), *PROVIDER_LIMITS]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def limited_upstream() -> Iterator[ServerThread]:
    with serve(_limited_upstream, lifespan="off") as server:
        yield server


def test_the_proxys_limit_headers_replace_the_providers(limited_upstream: ServerThread) -> None:
    adapter = OpenAIAdapter(base_url=limited_upstream.url + "/v1", api_key=OPENAI_KEY)
    guards = Guards(rate_limits=[RateLimit(20, 60)])
    with _served(adapter, guards=guards) as server:
        answer = httpx.post(server.url + "/openai/chat/completions", json={}, timeout=10)
    assert answer.status_code == 200
    # One value each (httpx joins repeated headers with ", "): the proxy's.
    assert answer.headers["x-ratelimit-limit"] == "20"
    assert answer.headers["x-ratelimit-remaining"] == "19"
    assert answer.headers.get_list("x-ratelimit-reset") == ["3"]
    assert "ratelimit-policy" not in answer.headers
    # The provider's are kept, under names of their own.
    assert answer.headers["x-upstream-ratelimit-limit"] == "100"
    assert answer.headers["x-upstream-ratelimit-remaining"] == "99"
    assert answer.headers["x-upstream-ratelimit-reset"] == "7"
    assert answer.headers["x-upstream-ratelimit-policy"] == '"default";q=100;w=60'
    # Names the proxy does not set pass as they are.
    assert answer.headers["x-ratelimit-limit-requests"] == "10000"
    assert answer.headers["anthropic-ratelimit-tokens-remaining"] == "4000"


def test_without_limits_of_its_own_the_providers_pass(limited_upstream: ServerThread) -> None:
    adapter = OpenAIAdapter(base_url=limited_upstream.url + "/v1", api_key=OPENAI_KEY)
    with _served(adapter, guards=Guards(max_concurrent=5)) as server:
        answer = httpx.post(server.url + "/openai/chat/completions", json={}, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["x-ratelimit-limit"] == "100"
    assert answer.headers["ratelimit-policy"] == '"default";q=100;w=60'
    assert not any(name.startswith("x-upstream-ratelimit") for name in answer.headers)
