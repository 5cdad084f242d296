"""Transforms and the endpoint policy through the real app on a loopback server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from provider_proxy import ProxyApp, RequestContext
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream
from provider_proxy.transforms import AnthropicPromptCache, ParameterPolicy, Transform

from .conftest import ANTHROPIC_KEY, OPENAI_KEY
from .servers import ServerThread, serve


def _adapters(upstream: ServerThread, **options: Any) -> list[Any]:
    return [
        OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY, **options),
        AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY, **options),
    ]


def _post(proxy: ProxyApp, path: str, **kwargs: Any) -> httpx.Response:
    with serve(proxy) as server:
        return httpx.post(server.url + path, timeout=10, **kwargs)


# -- endpoint policy -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/openai/files", "POST"),
        ("/openai/fine_tuning/jobs", "POST"),
        ("/openai/batches", "GET"),
        ("/openai/organization/admin_api_keys", "GET"),
        ("/openai/chat/completions", "GET"),
        ("/anthropic/v1/messages/batches", "POST"),
        ("/anthropic/v1/files", "GET"),
    ],
)
def test_other_endpoints_are_refused_without_reaching_the_provider(
    make_proxy: Callable[..., ProxyApp],
    upstream: ServerThread,
    fake: FakeUpstream,
    path: str,
    method: str,
) -> None:
    seen = len(fake.requests)
    with serve(make_proxy(validate_credentials="off", adapters=_adapters(upstream))) as server:
        response = httpx.request(method, server.url + path, json={}, timeout=10)
    assert response.status_code == 403
    assert len(fake.requests) == seen
    body = response.json()
    if path.startswith("/anthropic"):
        assert body["error"]["type"] == "permission_error"
        message = body["error"]["message"]
    else:
        assert body["error"]["code"] == "endpoint_not_allowed"
        message = body["error"]["message"]
    below_provider = "/" + path.split("/", 2)[2]
    assert f"{method} {below_provider}" in message
    assert "allow=" in message


def test_inference_endpoints_are_forwarded_by_default(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread
) -> None:
    with serve(make_proxy(validate_credentials="off", adapters=_adapters(upstream))) as server:
        chat = httpx.post(
            server.url + "/openai/chat/completions", json={"model": "m", "messages": []}
        )
        models = httpx.get(server.url + "/openai/models")
        message = httpx.post(server.url + "/anthropic/v1/messages", json={"model": "c"})
    assert (chat.status_code, models.status_code, message.status_code) == (200, 200, 200)


def test_the_operator_opens_more_endpoints_with_allow(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    proxy = make_proxy(
        validate_credentials="off", adapters=_adapters(upstream, allow=["GET,POST /echo"])
    )
    with serve(proxy) as server:
        allowed = httpx.post(server.url + "/openai/echo", content=b"{}")
        still_refused = httpx.put(server.url + "/openai/echo", content=b"{}")
    assert allowed.status_code == 200
    assert allowed.json()["path"] == "/v1/echo"
    assert still_refused.status_code == 403


# -- transforms ---------------------------------------------------------------------------


class _SetTemperature(Transform):
    """A transform object limited to chat completions, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def applies_to(self, context: RequestContext) -> bool:
        return context.path == "/chat/completions"

    def __call__(self, body: Any, context: RequestContext) -> Any:
        self.calls += 1
        return {**body, "temperature": 0.25}


def test_app_transform_rewrites_body_and_sets_length(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    transform = _SetTemperature()
    proxy = make_proxy(
        validate_credentials="off", adapters=_adapters(upstream), transforms=[transform]
    )
    response = _post(proxy, "/openai/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 200
    sent = fake.last
    assert json.loads(sent.body) == {"model": "m", "messages": [], "temperature": 0.25}
    assert sent.header("content-length") == str(len(sent.body))
    assert sent.header("transfer-encoding") is None
    assert transform.calls == 1


def test_body_no_transform_applies_to_is_forwarded_byte_for_byte(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    transform = _SetTemperature()
    proxy = make_proxy(
        validate_credentials="off", adapters=_adapters(upstream), transforms=[transform]
    )
    raw = b'{ "model" : "c",   "max_tokens": 5 }'
    response = _post(proxy, "/anthropic/v1/messages", content=raw)
    assert response.status_code == 200
    assert fake.last.body == raw
    assert transform.calls == 0


def test_invalid_json_is_refused_when_a_transform_must_read_it(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    seen = len(fake.requests)
    proxy = make_proxy(
        validate_credentials="off", adapters=_adapters(upstream), transforms=[_SetTemperature()]
    )
    response = _post(proxy, "/openai/chat/completions", content=b'{"model": "m",')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert "not valid JSON" in response.json()["error"]["message"]
    assert len(fake.requests) == seen


def test_invalid_json_passes_when_no_transform_applies(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    proxy = make_proxy(
        validate_credentials="off", adapters=_adapters(upstream, allow=["POST /echo"])
    )
    response = _post(proxy, "/openai/echo", content=b'{"model": "m",')
    assert response.status_code == 200
    assert fake.last.body == b'{"model": "m",'


def test_async_adapter_transform_runs_before_app_transform(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    order: list[str] = []

    async def adapter_level(body: Any, context: RequestContext) -> Any:
        order.append("adapter")
        return {**body, "model": "from-adapter"}

    def app_level(body: Any, context: RequestContext) -> Any:
        order.append("app")
        return {**body, "seen_model": body["model"]}

    adapter = OpenAIAdapter(
        base_url=upstream.url + "/v1", api_key=OPENAI_KEY, transforms=[adapter_level]
    )
    proxy = make_proxy(validate_credentials="off", adapters=[adapter], transforms=[app_level])
    response = _post(proxy, "/openai/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 200
    assert response.json()["model"] == "from-adapter"
    assert json.loads(fake.last.body)["seen_model"] == "from-adapter"
    assert order == ["adapter", "app"]


def test_model_allowlist_refuses_in_the_providers_format(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    seen = len(fake.requests)
    policy = ParameterPolicy(allowed_models=["claude-sonnet-*"])
    proxy = make_proxy(
        validate_credentials="off", adapters=_adapters(upstream, transforms=[policy])
    )
    refused = _post(
        proxy, "/anthropic/v1/messages", json={"model": "claude-opus-4", "messages": []}
    )
    assert refused.status_code == 403
    assert refused.json()["type"] == "error"
    assert refused.json()["error"]["type"] == "permission_error"
    assert "claude-opus-4" in refused.json()["error"]["message"]
    assert len(fake.requests) == seen
    allowed = _post(
        proxy, "/anthropic/v1/messages", json={"model": "claude-sonnet-4-5", "messages": []}
    )
    assert allowed.status_code == 200


def test_header_transform_merges_anthropic_beta(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    cache = AnthropicPromptCache(ttl="1h")
    proxy = make_proxy(validate_credentials="off", adapters=_adapters(upstream, transforms=[cache]))
    body = {
        "model": "claude-sonnet-4-5",
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "hi"}],
    }
    response = _post(
        proxy, "/anthropic/v1/messages", json=body, headers={"anthropic-beta": "tools-2024-04-04"}
    )
    assert response.status_code == 200
    betas = {b.strip() for b in (fake.last.header("anthropic-beta") or "").split(",")}
    assert "tools-2024-04-04" in betas
    assert "extended-cache-ttl-2025-04-11" in betas
    sent = json.loads(fake.last.body)
    assert sent["system"][-1]["cache_control"]["type"] == "ephemeral"
