"""Routes, offline: an ordered fallback across providers and formats.

The proxy runs in process in front of the fake provider, whose first answer is
a 529 (overloaded). The route ``smart`` falls back from Anthropic to OpenAI;
the client, speaking OpenAI Chat, gets the OpenAI deployment's answer and
never sees the failure, only ``x-proxy-attempts: 2``::

    python examples/routing.py
"""

from __future__ import annotations

import asyncio

import httpx

from provider_proxy import Deployment, ProxyApp, RetryPolicy, Route, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream, Faults


def build(upstream: httpx.AsyncBaseTransport) -> ProxyApp:
    """The proxy: two providers, and a route that prefers one and falls back to the other."""
    return make_asgi_app(
        [
            AnthropicAdapter(base_url="http://fake.test", api_key="sk-ant-example-0123456789"),
            OpenAIAdapter(base_url="http://fake.test/v1", api_key="sk-example-0123456789"),
        ],
        routes={
            "smart": Route(
                [Deployment("anthropic/claude-sonnet-4-5"), Deployment("openai/gpt-4.1")]
            ),
        },
        retry=RetryPolicy(attempts=3, backoff=0.25, max_backoff=8.0),
        transport=upstream,
        validate_credentials="off",
        access_log=False,
    )


async def main() -> None:
    faults = Faults(FakeUpstream())
    faults.fail(1, status=529)  # the first request (Anthropic's) is overloaded
    proxy = build(httpx.ASGITransport(app=faults))
    async with (
        proxy,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=proxy), base_url="http://proxy.test"
        ) as client,
    ):
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "smart", "messages": [{"role": "user", "content": "Say hello."}]},
        )
    print("status:", response.status_code)
    print("x-proxy-attempts:", response.headers.get("x-proxy-attempts"))
    print("answer:", response.json()["choices"][0]["message"]["content"])


if __name__ == "__main__":
    asyncio.run(main())
