"""The proxy's own errors come in the format of the API at the path, not one per provider.

Copilot serves OpenAI's API and, on ``/v1/messages``, Anthropic's: a client of
each gets the error its own SDK reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest

from provider_proxy import (
    EndpointNotAllowed,
    Guards,
    ProviderAdapter,
    ProxyApp,
    ProxyError,
    RateLimit,
    RateLimited,
)
from provider_proxy.adapters import CopilotAdapter, FirstAvailableAdapter, OpenAIAdapter

from .conftest import CLIENT_KEY
from .servers import ServerThread, serve

COPILOT_KEY = "copilot-server-key"
MESSAGES: Any = [{"role": "user", "content": "Say hello."}]


def _anthropic_shape(body: bytes, error_type: str) -> None:
    payload = json.loads(body)
    assert payload["type"] == "error"
    assert payload["error"]["type"] == error_type
    assert payload["request_id"] == "rid-1"


def _openai_shape(body: bytes, kind: str) -> None:
    assert json.loads(body)["error"]["code"] == kind


def _error_body(adapter: ProviderAdapter, error: ProxyError, request_id: str, path: str) -> bytes:
    """The body the engine answers ``error`` with on ``path``: the path's dialect's."""
    return adapter.dialect_for(path).error_body(error, request_id)


@pytest.mark.parametrize(
    "path", ["/v1/messages", "/v1/messages/", "/v1/messages/count_tokens", "/v1/messages?beta=1"]
)
def test_copilot_messages_paths_answer_in_anthropics_format(path: str) -> None:
    adapter = CopilotAdapter(api_key=COPILOT_KEY)
    _anthropic_shape(
        _error_body(adapter, RateLimited("slow down"), "rid-1", path), "rate_limit_error"
    )


@pytest.mark.parametrize("path", ["/chat/completions", "/responses", "/v1/messagesx", ""])
def test_copilot_other_paths_answer_in_openais_format(path: str) -> None:
    adapter = CopilotAdapter(api_key=COPILOT_KEY)
    _openai_shape(_error_body(adapter, RateLimited("slow down"), "rid-1", path), "rate_limited")


def test_first_available_passes_the_path_on() -> None:
    chosen = FirstAvailableAdapter("chat", [CopilotAdapter(api_key=COPILOT_KEY)]).serving()
    error = EndpointNotAllowed("no")
    _anthropic_shape(_error_body(chosen, error, "rid-1", "/v1/messages"), "permission_error")
    _openai_shape(_error_body(chosen, error, "rid-1", "/chat/completions"), error.kind)


def test_adapters_with_one_format_keep_theirs() -> None:
    body = _error_body(OpenAIAdapter(api_key="k"), RateLimited("x"), "rid-1", "/v1/messages")
    _openai_shape(body, "rate_limited")


# -- the SDKs through a real server ------------------------------------------------------


@pytest.fixture
def copilot_proxy(make_proxy: Callable[..., ProxyApp], upstream: ServerThread) -> Iterator[str]:
    """Copilot in front of the fake, one request a minute per client."""
    adapter = CopilotAdapter(base_url=upstream.url, api_key=COPILOT_KEY)
    proxy = make_proxy(adapters=[adapter], guards=Guards(rate_limits=[RateLimit(1, 60)]))
    with serve(proxy) as server:
        yield f"{server.url}/copilot"


def test_anthropic_sdk_on_copilot_reads_the_proxys_errors(copilot_proxy: str) -> None:
    with anthropic.Anthropic(base_url=copilot_proxy, api_key=CLIENT_KEY, max_retries=0) as client:
        message = client.messages.create(model="claude-x", max_tokens=16, messages=MESSAGES)
        assert message.type == "message"

        with pytest.raises(anthropic.PermissionDeniedError) as refused:
            client.messages.count_tokens(model="claude-x", messages=MESSAGES)
        assert refused.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
        assert "count_tokens" in refused.value.message

        with pytest.raises(anthropic.RateLimitError) as limited:
            client.messages.create(model="claude-x", max_tokens=16, messages=MESSAGES)
    body: Any = limited.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert limited.value.response.headers["x-should-retry"] == "true"

    # The same proxy answers the OpenAI SDK on Copilot's OpenAI routes in OpenAI's format.
    with (
        openai.OpenAI(base_url=copilot_proxy, api_key=CLIENT_KEY, max_retries=0) as oai,
        pytest.raises(openai.RateLimitError) as openai_limited,
    ):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert openai_limited.value.code == "rate_limited"
