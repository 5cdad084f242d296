"""Two proxies on one real Redis share their routes' cool-downs."""

from __future__ import annotations

import uuid

import httpx

from provider_proxy import Cooldown, RedisStore, Route, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream, Faults

from .conftest import ANTHROPIC_KEY, OPENAI_KEY
from .redis_server import RedisServer
from .servers import ServerThread, serve

CHAT = {"model": "smart", "messages": [{"role": "user", "content": "Say hello."}]}


def test_two_instances_share_a_cooldown(redis_server: RedisServer) -> None:
    anthropic, openai = Faults(FakeUpstream()), Faults(FakeUpstream())
    prefix = f"t-{uuid.uuid4().hex}:"
    routes = {
        "smart": Route(
            ["anthropic/claude-x", "openai/gpt-x"], cooldown=Cooldown(failures=1, base=30)
        )
    }
    with serve(anthropic, lifespan="off") as a, serve(openai, lifespan="off") as o:

        def instance() -> ServerThread:
            adapters = [
                AnthropicAdapter(base_url=a.url, api_key=ANTHROPIC_KEY),
                OpenAIAdapter(base_url=o.url + "/v1", api_key=OPENAI_KEY),
            ]
            store = RedisStore.from_url(redis_server.url, prefix=prefix)
            app = make_asgi_app(adapters, routes=routes, store=store, validate_credentials="off")
            return ServerThread(app).start()

        first, second = instance(), instance()
        try:
            anthropic.fail(1, status=503)
            response = httpx.post(f"{first.url}/v1/chat/completions", json=CHAT, timeout=30)
            assert response.status_code == 200
            assert response.headers["x-proxy-attempts"] == "2"
            # The other instance knows: anthropic is cooling, openai serves at once.
            response = httpx.post(f"{second.url}/v1/chat/completions", json=CHAT, timeout=30)
            assert response.status_code == 200
            assert "x-proxy-attempts" not in response.headers
            assert anthropic.faulted == 1
            assert anthropic.passed == 0
            assert openai.passed == 2
            status = httpx.get(f"{second.url}/status").json()["routes"]["smart"]
            assert status["deployments"][0]["circuit"] == "open"
            assert 25 < status["deployments"][0]["cooling_for"] <= 30
        finally:
            first.stop()
            second.stop()


def test_two_instances_share_a_key_cooldown(redis_server: RedisServer) -> None:
    first_key, second_key = "sk-shared-first-0123456789", "sk-shared-second-0123456789"
    fake = FakeUpstream()
    faults = Faults(fake)
    prefix = f"t-{uuid.uuid4().hex}:"
    body = {**CHAT, "model": "openai/gpt-x"}
    with serve(faults, lifespan="off") as upstream:

        def instance() -> ServerThread:
            adapter = OpenAIAdapter(base_url=upstream.url + "/v1", api_key=[first_key, second_key])
            store = RedisStore.from_url(redis_server.url, prefix=prefix)
            app = make_asgi_app([adapter], store=store, validate_credentials="off")
            return ServerThread(app).start()

        first, second = instance(), instance()
        try:
            faults.fail(1, status=429, retry_after=30)
            response = httpx.post(f"{first.url}/v1/chat/completions", json=body, timeout=30)
            assert response.status_code == 200
            assert response.headers["x-proxy-attempts"] == "2"
            # The second instance starts with the first key too, but knows it is cooling.
            for _ in range(3):
                response = httpx.post(f"{second.url}/v1/chat/completions", json=body, timeout=30)
                assert response.status_code == 200
                assert "x-proxy-attempts" not in response.headers
            sent = [r.header("authorization") for r in fake.requests]
            assert sent == [f"Bearer {second_key}"] * 4
        finally:
            first.stop()
            second.stop()
