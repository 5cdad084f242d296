"""Key pools: keys spread over requests, a failing key cooled alone, the request served
by another key; in process for the pool, through real servers for the proxy."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from provider_proxy import ProviderNotConfigured, ProxyEvent, RetryPolicy, Route, make_asgi_app
from provider_proxy.adapters import KeyPool, OpenAIAdapter
from provider_proxy.testing import FakeUpstream, Faults

from .servers import ServerThread, serve, wait_until

K1 = "sk-pool-first-0123456789"
K2 = "sk-pool-second-0123456789"
CHAT = {"model": "openai/gpt-x", "messages": [{"role": "user", "content": "Say hello."}]}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pool_takes_its_keys_in_turn_and_cools_a_failing_one_alone() -> None:
    clock = Clock()
    pool = KeyPool([K1, K2], "adapter 'x'", clock=clock)
    assert [k.reveal() for k in (pool(), pool(), pool(), pool())] == [K1, K2, K1, K2]
    pool.failed("#1", 429, retry_after=2.0)
    assert pool.ready() == 1
    assert [pool().reveal() for _ in range(3)] == [K2, K2, K2]
    clock.now += 2.0  # cooled: one probe, then in turn again
    assert {pool().reveal() for _ in range(4)} == {K1, K2}
    pool.succeeded("#1")
    assert pool.status()["#1"]["circuit"] == "closed"


def test_a_rejected_key_rests_longer_and_all_cooling_takes_the_soonest_back() -> None:
    clock = Clock()
    pool = KeyPool({"team-a": K1, "team-b": K2}, "adapter 'x'", auth_cooldown=60, clock=clock)
    pool.failed("team-a", 401)
    clock.now += 30
    assert pool.ready() == 1
    pool.failed("team-b", 429, retry_after=5)
    assert pool.ready() == 0
    assert pool().reveal() == K2  # back in 5 s, team-a in 30
    pool.failed("team-b", 500)  # not the key's fault: not cooled further
    assert pool.status()["team-b"]["cooling_for"] == 5.0


def test_a_pool_never_shows_its_keys() -> None:
    pool = KeyPool([K1, K2], "adapter 'x'")
    assert K1 not in repr(pool)
    assert K1 not in str(pool.status())
    with pytest.raises(ValueError, match="line break") as refused:
        KeyPool(["sk-ok-0123456789", "sk-bad\nkey"], "adapter 'x'")
    assert "sk-bad" not in str(refused.value)
    with pytest.raises(ValueError, match="empty list"):
        KeyPool([], "adapter 'x'")


def test_a_callable_may_return_several_keys() -> None:
    keys = [K1, K2]
    pool = KeyPool(lambda: keys, "adapter 'x'")
    assert [pool().reveal(), pool().reveal()] == [K1, K2]
    assert pool.several
    keys = ["sk-bad\nx", K2]
    with pytest.raises(ProviderNotConfigured, match="key callable"):
        pool()


def test_an_adapter_with_a_list_of_keys_holds_a_pool() -> None:
    adapter = OpenAIAdapter(api_key=[K1, K2])
    assert adapter.key_pool is not None
    assert adapter.availability().enabled
    assert adapter.current_availability().enabled
    seen = [adapter.api_key() for _ in range(2)]
    assert [k.reveal() for k in seen if k is not None] == [K1, K2]
    assert OpenAIAdapter(api_key=K1).key_pool is None
    own = KeyPool([K1, K2], "adapter 'openai'", auth_cooldown=1.0)
    assert OpenAIAdapter(api_key=own).key_pool is own


# -- through the proxy --------------------------------------------------------------------


@pytest.fixture
def fake_and_faults() -> tuple[Faults, FakeUpstream]:
    fake = FakeUpstream()
    return Faults(fake), fake


@pytest.fixture
def rig() -> Iterator[tuple[Faults, FakeUpstream, ServerThread, list[ProxyEvent]]]:
    fake = FakeUpstream()
    faults = Faults(fake)
    events: list[ProxyEvent] = []
    with serve(faults, lifespan="off") as upstream:
        adapter = OpenAIAdapter(base_url=upstream.url + "/v1", api_key=[K1, K2])
        proxy = make_asgi_app([adapter], validate_credentials="off", sinks=[events.append])
        with serve(proxy) as server:
            yield faults, fake, server, events


def keys_sent(fake: FakeUpstream) -> list[str]:
    return [(r.header("authorization") or "").removeprefix("Bearer ") for r in fake.requests]


def post(server: ServerThread, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=CHAT, timeout=30, **kwargs)


def test_passthrough_spreads_requests_over_the_keys(rig: Any) -> None:
    _, fake, server, _ = rig
    for _ in range(4):
        assert post(server, "/openai/chat/completions").status_code == 200
    assert keys_sent(fake) == [K1, K2, K1, K2]


@pytest.mark.parametrize("status", [429, 401, 403])
def test_a_gateway_request_is_served_by_another_key_when_one_fails(rig: Any, status: int) -> None:
    faults, fake, server, events = rig
    faults.fail(1, status=status, retry_after=30 if status == 429 else None)
    response = post(server, "/v1/chat/completions")
    assert response.status_code == 200
    assert response.headers["x-proxy-attempts"] == "2"
    assert keys_sent(fake) == [K2]  # the first key's answer was the fault
    for _ in range(3):  # the failed key cools; the other serves
        assert post(server, "/v1/chat/completions").status_code == 200
    keys = httpx.get(f"{server.url}/status").json()["providers"]["openai"]["keys"]
    assert keys["#1"]["circuit"] == "open"
    assert keys["#2"]["circuit"] == "closed"
    assert keys_sent(fake) == [K2, K2, K2, K2]
    assert wait_until(lambda: len(events) == 5)  # the four answers, and /status
    assert events[0].key == "#2"
    assert events[0].attempts == 2
    assert events[0].deployments == ("openai/gpt-x", "openai/gpt-x")
    assert all(K1 not in repr(e) and K2 not in repr(e) for e in events)


def test_a_cooled_key_comes_back(rig: Any) -> None:
    faults, fake, server, _ = rig
    faults.fail(1, status=429, retry_after=0.5)
    assert post(server, "/v1/chat/completions").status_code == 200
    time.sleep(0.6)
    for _ in range(4):
        assert post(server, "/v1/chat/completions").status_code == 200
    assert K1 in keys_sent(fake)[1:]


def test_a_passthrough_request_is_sent_again_with_another_key(rig: Any) -> None:
    faults, fake, server, events = rig
    faults.fail(1, status=429, retry_after=30)
    response = post(server, "/openai/chat/completions")
    assert response.status_code == 200
    assert response.headers["x-proxy-attempts"] == "2"
    assert fake.requests[0].body == httpx.Request("POST", "/", json=CHAT).read()  # as sent
    for _ in range(3):
        assert post(server, "/openai/chat/completions").status_code == 200
    assert keys_sent(fake) == [K2, K2, K2, K2]
    assert wait_until(lambda: len(events) == 4)
    assert events[0].key == "#2"
    assert events[0].attempts == 2


def test_a_passthrough_body_too_large_to_keep_is_sent_once(fake_and_faults: Any) -> None:
    faults, fake = fake_and_faults
    with serve(faults, lifespan="off") as upstream:
        adapter = OpenAIAdapter(base_url=upstream.url + "/v1", api_key=[K1, K2])
        proxy = make_asgi_app(
            [adapter], validate_credentials="off", retry=RetryPolicy(max_retry_body=16)
        )
        with serve(proxy) as server:
            faults.fail(1, status=429)
            response = post(server, "/openai/chat/completions")
            assert response.status_code == 429  # the first key's answer, as it came
            assert "x-proxy-attempts" not in response.headers
            assert post(server, "/openai/chat/completions").status_code == 200
    assert keys_sent(fake) == [K2]  # the first key cools all the same


def test_both_keys_failing_answers_the_last_failure(rig: Any) -> None:
    faults, fake, server, _ = rig
    faults.fail(2, status=401)
    response = post(server, "/v1/chat/completions")
    assert response.status_code == 401
    assert response.headers["x-proxy-attempts"] == "2"
    assert fake.requests == []


def test_a_sticky_conversation_keeps_its_deployment_and_its_key() -> None:
    fake = FakeUpstream()
    with serve(fake, lifespan="off") as upstream:
        adapter = OpenAIAdapter(base_url=upstream.url + "/v1", api_key=[K1, K2])
        route = Route(["openai/a", "openai/b"], strategy="weighted")
        proxy = make_asgi_app([adapter], routes={"fast": route}, validate_credentials="off")
        with serve(proxy) as server:
            body = {"model": "fast", "messages": [{"role": "user", "content": "Keep me."}]}
            for _ in range(6):
                response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
                assert response.status_code == 200
            for i in range(6):  # other conversations take the keys in turn
                other = {"model": "fast", "messages": [{"role": "user", "content": f"o{i}"}]}
                httpx.post(f"{server.url}/v1/chat/completions", json=other, timeout=30)
    served = [(json.loads(r.body)["model"], r.header("authorization")) for r in fake.requests]
    assert len(set(served[:6])) == 1  # one deployment, one key
    assert {key for _, key in served[6:]} == {f"Bearer {K1}", f"Bearer {K2}"}
