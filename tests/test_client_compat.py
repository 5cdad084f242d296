"""What SDKs and agent frameworks call reaches the provider, through a real server on loopback.

The fake upstream answers these routes with a 404 of its own ("Unknown fake
route"): that it answered at all shows the proxy forwarded the request rather
than refusing it with 403.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from provider_proxy import ProxyApp
from provider_proxy.adapters import AzureOpenAIAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import CLIENT_KEY, OPENAI_KEY
from .servers import ServerThread, serve


@pytest.fixture
def default_proxy(make_proxy: Callable[..., ProxyApp], upstream: ServerThread) -> Iterator[str]:
    """OpenAI and Azure with their default endpoints only (no ``allow=``)."""
    adapters = [
        OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
        AzureOpenAIAdapter(base_url=upstream.url, api_key="azure-server-key"),
    ]
    with serve(make_proxy(adapters=adapters)) as server:
        yield server.url


def _responses_calls(client: openai.OpenAI) -> list[tuple[str, Callable[[], Any]]]:
    """Each Responses API sub-resource the SDK offers, with the path it calls."""
    return [
        ("/responses/compact", lambda: client.responses.compact(model="gpt-5", input="hi")),
        ("/responses/resp_1/input_items", lambda: client.responses.input_items.list("resp_1")),
        ("/responses/resp_1/cancel", lambda: client.responses.cancel("resp_1")),
        (
            "/responses/input_tokens",
            lambda: client.responses.input_tokens.count(model="gpt-5", input="hi"),
        ),
    ]


def _reaches_upstream(call: Callable[[], Any], fake: FakeUpstream, path: str) -> None:
    with pytest.raises(openai.NotFoundError, match="Unknown fake route"):
        call()
    assert fake.last.path == path
    assert fake.last.header("authorization") != f"Bearer {CLIENT_KEY}"


def test_openai_responses_sub_resources_are_forwarded(
    default_proxy: str, fake: FakeUpstream
) -> None:
    with openai.OpenAI(
        base_url=f"{default_proxy}/openai", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        for path, call in _responses_calls(client):
            _reaches_upstream(call, fake, "/v1" + path)


def test_azure_v1_responses_sub_resources_are_forwarded(
    default_proxy: str, fake: FakeUpstream
) -> None:
    with openai.OpenAI(
        base_url=f"{default_proxy}/azure/openai/v1", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        for path, call in _responses_calls(client):
            _reaches_upstream(call, fake, "/openai/v1" + path)


def test_azure_api_version_responses_sub_resources_are_forwarded(
    default_proxy: str, fake: FakeUpstream
) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=f"{default_proxy}/azure",
        api_key=CLIENT_KEY,
        api_version="2025-04-01-preview",
        max_retries=0,
    ) as client:
        for path, call in _responses_calls(client)[1:3]:  # input_items and cancel
            _reaches_upstream(call, fake, "/openai" + path)
            assert fake.last.query == b"api-version=2025-04-01-preview"
