"""OpenAICompatibleAdapter's options, and ``allow=`` given as one string."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from provider_proxy import ProxyApp, RequestContext
from provider_proxy.adapters import BaseAdapter, OpenAIAdapter, OpenAICompatibleAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import CLIENT_KEY
from .servers import ServerThread, serve

CONTEXT = RequestContext("gw", "POST", "/chat/completions", b"", [], "rid-1")


@pytest.mark.parametrize(
    "adapter_type",
    [OpenAIAdapter, lambda **kw: OpenAICompatibleAdapter("gw", "https://gw/v1", **kw)],
)
def test_allow_as_one_string_is_one_rule(adapter_type: Callable[..., BaseAdapter]) -> None:
    everything = adapter_type(api_key="k", allow="* /**")
    assert everything.endpoint_allowed("POST", "/files")
    assert everything.endpoint_allowed("DELETE", "/organization/users/u1")
    files = adapter_type(api_key="k", allow="GET,POST /files/**")
    assert files.endpoint_allowed("POST", "/files")
    assert files.endpoint_allowed("GET", "/files/f1/content")
    assert not files.endpoint_allowed("DELETE", "/files/f1")
    assert not files.endpoint_allowed("POST", "/batches")
    assert files.endpoint_allowed("POST", "/chat/completions")  # the defaults stay
    listed = adapter_type(api_key="k", allow=["POST /batches", "GET /files"])
    assert listed.endpoint_allowed("POST", "/batches")
    assert listed.endpoint_allowed("GET", "/files")
    assert not adapter_type(api_key="k").endpoint_allowed("POST", "/batches")


def test_a_bad_rule_string_is_refused_whole() -> None:
    with pytest.raises(ValueError, match="'files/\\*\\*'"):
        OpenAICompatibleAdapter("gw", "https://gw/v1", api_key="k", allow="files/**")


def test_options_reach_base_adapter() -> None:
    def upper(body: Any, context: RequestContext) -> Any:
        return {**body, "model": str(body["model"]).upper()}

    adapter = OpenAICompatibleAdapter(
        "gw",
        "https://gw.example/v1",
        api_key="k",
        user_agent="QwenCode/0.0.14 (linux; x64)",
        headers={"x-fixed": "1"},
        default_headers={"x-region": "eu"},
        transforms=[upper],
    )
    assert adapter.headers == {"x-fixed": "1", "user-agent": "QwenCode/0.0.14 (linux; x64)"}
    assert adapter.default_headers == {"x-region": "eu"}
    transform = adapter.body_transform(CONTEXT)
    assert transform is upper
    assert OpenAICompatibleAdapter("gw", "https://gw/v1").body_transform(CONTEXT) is None


def test_api_key_env_may_name_several(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PP_TEST_FIRST", raising=False)
    monkeypatch.delenv("PP_TEST_SECOND", raising=False)
    names = ["PP_TEST_FIRST", "PP_TEST_SECOND"]
    reason = OpenAICompatibleAdapter("gw", "https://gw/v1", api_key_env=names).availability()
    assert not reason.enabled
    assert "set PP_TEST_FIRST or PP_TEST_SECOND or pass api_key=" in str(reason.reason)
    monkeypatch.setenv("PP_TEST_SECOND", "second")
    adapter = OpenAICompatibleAdapter("gw", "https://gw/v1", api_key_env=names)
    assert adapter.auth_headers(CONTEXT) == {"authorization": "Bearer second"}
    monkeypatch.setenv("PP_TEST_FIRST", "first")
    adapter = OpenAICompatibleAdapter("gw", "https://gw/v1", api_key_env=names)
    assert adapter.auth_headers(CONTEXT) == {"authorization": "Bearer first"}


def test_current_availability_asks_the_key_callable() -> None:
    current: list[str | None] = [None]
    adapter = OpenAICompatibleAdapter("gw", "https://gw/v1", api_key=lambda: current[0])
    assert adapter.availability().enabled  # the callable is not asked here
    now = adapter.current_availability()
    assert not now.enabled
    assert "key callable returned none" in str(now.reason)
    current[0] = "k"
    assert adapter.current_availability().enabled
    optional = OpenAICompatibleAdapter(
        "local", "http://127.0.0.1:1/v1", api_key=lambda: None, key_optional=True
    )
    assert optional.current_availability().enabled


def test_user_agent_replaces_the_clients_through_the_app(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream
) -> None:
    adapter = OpenAICompatibleAdapter(
        "agentrouter",
        upstream.url + "/v1",
        api_key="sk-gateway",
        user_agent="QwenCode/0.0.14 (linux; x64)",
        default_headers={"x-region": "eu"},
    )
    with (
        serve(make_proxy(adapters=[adapter])) as proxy,
        httpx.Client(base_url=proxy.url, timeout=10) as client,
    ):
        response = client.post(
            "/agentrouter/chat/completions",
            json={"model": "m", "messages": []},
            headers={
                "user-agent": "OpenAI/Python 1.0",
                "authorization": f"Bearer {CLIENT_KEY}",
                "x-region": "us",
            },
        )
        refused = client.post("/agentrouter/files", content=b"x")
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"
    seen = fake.last
    assert seen.path == "/v1/chat/completions"
    assert seen.header("user-agent") == "QwenCode/0.0.14 (linux; x64)"
    assert [v for k, v in seen.headers if k == b"user-agent"] == [b"QwenCode/0.0.14 (linux; x64)"]
    assert seen.header("authorization") == "Bearer sk-gateway"
    assert seen.header("x-region") == "us"  # a default header: the client's wins
    assert refused.status_code == 403
