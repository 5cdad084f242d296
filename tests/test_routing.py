"""Routes through real servers: retries, fallbacks across formats, stream integrity,
load balancing, cool-downs and stickiness, against fake providers with scripted faults."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from provider_proxy import (
    Cooldown,
    Deployment,
    Guards,
    ProxyEvent,
    RateLimit,
    RetryPolicy,
    Route,
    make_asgi_app,
)
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream, Faults

from .conftest import ANTHROPIC_KEY, OPENAI_KEY
from .servers import ServerThread, free_port, serve, wait_until

TEXT = "Hello from the fake upstream, streamed one piece at a time."
CHAT = {"model": "smart", "messages": [{"role": "user", "content": "Say hello."}]}


@dataclass
class Rig:
    """Two fake providers (OpenAI's format, Anthropic's), each behind its faults, and a proxy."""

    openai: Faults
    anthropic: Faults
    openai_fake: FakeUpstream
    anthropic_fake: FakeUpstream
    openai_url: str
    anthropic_url: str
    events: list[ProxyEvent]
    proxy_url: str = ""

    def adapters(self, **keys: Any) -> list[Any]:
        return [
            OpenAIAdapter(base_url=self.openai_url + "/v1", api_key=OPENAI_KEY, **keys),
            AnthropicAdapter(base_url=self.anthropic_url, api_key=ANTHROPIC_KEY),
        ]


@pytest.fixture
def fakes() -> Iterator[Rig]:
    openai_fake, anthropic_fake = FakeUpstream(), FakeUpstream()
    openai, anthropic = Faults(openai_fake), Faults(anthropic_fake)
    with serve(openai, lifespan="off") as a, serve(anthropic, lifespan="off") as b:
        yield Rig(openai, anthropic, openai_fake, anthropic_fake, a.url, b.url, [])


@pytest.fixture
def proxied(fakes: Rig) -> Iterator[Callable[..., Rig]]:
    """Serve a proxy with the given routes in front of the fakes (one per test)."""
    servers: list[ServerThread] = []

    def build(routes: dict[str, Route], **options: Any) -> Rig:
        adapters = options.pop("adapters", None) or fakes.adapters()
        proxy = make_asgi_app(
            adapters,
            routes=routes,
            validate_credentials="off",
            sinks=[fakes.events.append],
            **options,
        )
        server = ServerThread(proxy).start()
        servers.append(server)
        fakes.proxy_url = server.url
        return fakes

    yield build
    for server in servers:
        server.stop()


def chat(rig: Rig, body: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
    return httpx.post(
        f"{rig.proxy_url}/v1/chat/completions", json=body or CHAT, timeout=30, **kwargs
    )


def served_by(rig: Rig) -> tuple[int, int]:
    """How many requests each fake answered for real (OpenAI's, Anthropic's)."""
    return len(rig.openai_fake.requests), len(rig.anthropic_fake.requests)


SMART = {"smart": Route([Deployment("anthropic/claude-x"), Deployment("openai/gpt-x")])}
SOLO = {"smart": Route(["openai/gpt-x"])}


# -- fallbacks and retries ------------------------------------------------------------


def test_an_anthropic_failure_is_served_by_an_openai_deployment(
    proxied: Callable[..., Rig],
) -> None:
    rig = proxied(SMART)
    rig.anthropic.fail(1, status=529)
    response = chat(rig)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == TEXT
    assert response.headers["x-proxy-attempts"] == "2"
    assert rig.anthropic.faulted == 1
    assert served_by(rig) == (1, 0)
    assert json.loads(rig.openai_fake.last.body)["model"] == "gpt-x"


def test_an_openai_failure_is_served_translated_by_anthropic_for_an_openai_client(
    proxied: Callable[..., Rig],
) -> None:
    rig = proxied({"smart": Route(["openai/gpt-x", "anthropic/claude-x"])})
    rig.openai.fail(1, status=500)
    with httpx.stream(
        "POST", f"{rig.proxy_url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-proxy-attempts"] == "2"
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    text = "".join(
        (json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for line in lines[:-1]
    )
    assert text == TEXT
    assert served_by(rig) == (0, 1)


def test_an_anthropic_client_falls_back_to_openai_in_its_own_format(
    proxied: Callable[..., Rig],
) -> None:
    rig = proxied(SMART)
    rig.anthropic.fail(1, status=503)
    response = httpx.post(
        f"{rig.proxy_url}/v1/messages",
        json={**CHAT, "max_tokens": 50},
        headers={"anthropic-version": "2023-06-01"},
        timeout=30,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "message"
    assert body["content"][0]["text"] == TEXT
    assert served_by(rig) == (1, 0)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 529])
def test_each_retried_status_is_tried_again(proxied: Callable[..., Rig], status: int) -> None:
    rig = proxied(SOLO, retry=RetryPolicy(attempts=2, backoff=0.01))
    rig.openai.fail(1, status=status)
    response = chat(rig)
    assert response.status_code == 200
    assert response.headers["x-proxy-attempts"] == "2"
    assert rig.openai.faulted == 1
    assert served_by(rig) == (1, 0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_client_error_is_never_retried(proxied: Callable[..., Rig], status: int) -> None:
    rig = proxied(SMART)
    rig.anthropic.fail(1, status=status)
    response = chat(rig)
    assert response.status_code == status
    assert "x-proxy-attempts" not in response.headers
    assert "error" in response.json()  # the provider's error, in the client's format
    assert served_by(rig) == (0, 0)
    assert rig.anthropic.faulted == 1


def test_the_proxys_own_rate_limit_is_not_retried(proxied: Callable[..., Rig]) -> None:
    rig = proxied(SMART, guards=Guards(rate_limits=[RateLimit(1, 60)]))
    assert chat(rig).status_code == 200
    response = chat(rig)
    assert response.status_code == 429
    assert "x-proxy-attempts" not in response.headers
    assert served_by(rig) == (0, 1)  # the first request only: no fallback for the second


def test_a_fallback_is_not_charged_to_the_clients_rate_limit_again(
    proxied: Callable[..., Rig],
) -> None:
    rig = proxied(SMART, guards=Guards(rate_limits=[RateLimit(1, 60)]))
    rig.anthropic.fail(1, status=503)
    response = chat(rig)
    assert response.status_code == 200  # one request: one unit, however many attempts
    assert response.headers["x-proxy-attempts"] == "2"
    assert chat(rig).status_code == 429


def test_out_of_attempts_the_last_failure_is_answered(proxied: Callable[..., Rig]) -> None:
    rig = proxied(SOLO, retry=RetryPolicy(attempts=3, backoff=0.01))
    rig.openai.fail(5, status=503)
    response = chat(rig)
    assert response.status_code == 503
    assert response.headers["x-proxy-attempts"] == "3"
    assert rig.openai.faulted == 3
    assert rig.openai.pending == 2


def test_a_connect_error_falls_back(proxied: Callable[..., Rig], fakes: Rig) -> None:
    dead = OpenAIAdapter(
        name="dead", base_url=f"http://127.0.0.1:{free_port()}/v1", api_key=OPENAI_KEY
    )
    rig = proxied(
        {"smart": Route(["dead/gpt-x", "openai/gpt-x"])}, adapters=[dead, *fakes.adapters()]
    )
    response = chat(rig)
    assert response.status_code == 200
    assert response.headers["x-proxy-attempts"] == "2"
    assert served_by(rig) == (1, 0)


def test_a_deployment_that_hangs_before_its_headers_is_abandoned(
    proxied: Callable[..., Rig],
) -> None:
    rig = proxied(SMART, retry=RetryPolicy(attempt_timeout=0.5))
    rig.anthropic.hang(1, seconds=5)
    started = time.monotonic()
    response = chat(rig)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.headers["x-proxy-attempts"] == "2"
    assert 0.5 <= elapsed < 4
    assert served_by(rig) == (1, 0)


def test_an_upstream_read_timeout_before_the_headers_falls_back(
    proxied: Callable[..., Rig],
) -> None:
    rig = proxied(SMART, timeout=httpx.Timeout(10, read=0.4))
    rig.anthropic.hang(1, seconds=3)
    response = chat(rig)
    assert response.status_code == 200
    assert response.headers["x-proxy-attempts"] == "2"
    assert served_by(rig) == (1, 0)


def test_no_deployment_in_time_is_a_504(proxied: Callable[..., Rig]) -> None:
    rig = proxied(SOLO, retry=RetryPolicy(attempts=2, attempt_timeout=0.3, backoff=0.01))
    rig.openai.hang(2, seconds=3)
    response = chat(rig)
    assert response.status_code == 504
    assert response.headers["x-proxy-attempts"] == "2"
    assert response.json()["error"]["message"].startswith("No deployment answered in time")


def test_app_and_adapter_retry_policies_apply_to_models_named_directly(
    proxied: Callable[..., Rig], fakes: Rig
) -> None:
    direct = {**CHAT, "model": "openai/gpt-x"}
    rig = proxied({}, adapters=fakes.adapters(retry=RetryPolicy(attempts=2, backoff=0.01)))
    rig.openai.fail(1, status=503)
    response = chat(rig, direct)
    assert response.status_code == 200
    assert response.headers["x-proxy-attempts"] == "2"
    rig.anthropic.fail(1, status=503)  # no policy for this adapter: not retried
    anthropic = chat(rig, {**CHAT, "model": "anthropic/claude-x"})
    assert anthropic.status_code == 503
    assert "x-proxy-attempts" not in anthropic.headers


def test_an_app_retry_policy_retries_every_gateway_model(proxied: Callable[..., Rig]) -> None:
    rig = proxied({}, retry=RetryPolicy(attempts=3, backoff=0.01))
    rig.anthropic.fail(2, status=529)
    response = chat(rig, {**CHAT, "model": "anthropic/claude-x"})
    assert response.status_code == 200
    assert response.headers["x-proxy-attempts"] == "3"
    assert response.json()["choices"][0]["message"]["content"] == TEXT


# -- stream integrity ---------------------------------------------------------------------


@pytest.mark.parametrize("error", ["overloaded", "rate_limit"])
def test_a_stream_whose_first_event_is_an_error_fails_over(
    proxied: Callable[..., Rig], error: str
) -> None:
    rig = proxied(SMART)
    rig.anthropic.error_event(1, error)
    with httpx.stream(
        "POST", f"{rig.proxy_url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-proxy-attempts"] == "2"
        body = response.read().decode()
    assert "error" not in body
    assert body.rstrip().endswith("data: [DONE]")
    assert served_by(rig) == (1, 0)


def test_an_error_first_event_out_of_attempts_reaches_the_client_as_an_error_event(
    proxied: Callable[..., Rig],
) -> None:
    rig = proxied({"smart": Route(["anthropic/claude-x"])}, retry=RetryPolicy(attempts=1))
    rig.anthropic.error_event(1, "overloaded")
    with httpx.stream(
        "POST", f"{rig.proxy_url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30
    ) as response:
        assert response.status_code == 200
        body = response.read().decode()
    assert '"error"' in body
    assert "[DONE]" not in body  # never a clean end after an error


def test_no_retry_after_the_first_byte(proxied: Callable[..., Rig]) -> None:
    rig = proxied(SMART)
    rig.anthropic.cut(1, after=2)
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            f"{rig.proxy_url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            timeout=30,
        ) as response,
    ):
        assert "x-proxy-attempts" not in response.headers
        received.extend(response.iter_lines())
    assert any("Hello" in line for line in received)
    assert served_by(rig) == (0, 1)  # the cut stream only: no fallback after content


def test_a_body_over_max_retry_body_is_sent_once(proxied: Callable[..., Rig]) -> None:
    rig = proxied(SMART, retry=RetryPolicy(max_retry_body=64))
    rig.anthropic.fail(1, status=503)
    response = chat(rig)
    assert response.status_code == 503
    assert rig.anthropic.faulted == 1
    assert served_by(rig) == (0, 0)
    assert wait_until(lambda: len(rig.events) == 1)
    (event,) = rig.events
    assert event.not_retried is not None  # the event says why it was sent once
    assert "max_retry_body (64 bytes)" in event.not_retried


# -- timing --------------------------------------------------------------------------------


def test_backoff_doubles_between_retries_of_one_deployment(proxied: Callable[..., Rig]) -> None:
    rig = proxied(SOLO, retry=RetryPolicy(attempts=3, backoff=0.2, jitter=False))
    rig.openai.fail(2, status=503)
    assert chat(rig).status_code == 200
    first, second, third = rig.openai.arrivals
    assert second - first >= 0.2
    assert third - second >= 0.4
    assert third - first < 5


def test_retry_after_is_honoured(proxied: Callable[..., Rig]) -> None:
    rig = proxied(SOLO, retry=RetryPolicy(attempts=2, backoff=0.01))
    rig.openai.fail(1, status=429, retry_after=1)
    assert chat(rig).status_code == 200
    first, second = rig.openai.arrivals
    assert 1.0 <= second - first < 5


def test_a_retry_after_past_the_deadline_is_not_waited_for(proxied: Callable[..., Rig]) -> None:
    rig = proxied(SOLO, retry=RetryPolicy(attempts=3, deadline=0.5))
    rig.openai.fail(1, status=429, retry_after=2)
    started = time.monotonic()
    response = chat(rig)
    assert response.status_code == 429
    assert time.monotonic() - started < 1.5
    assert rig.openai.pending == 0
    assert served_by(rig) == (0, 0)


# -- load balancing, cool-downs, stickiness -------------------------------------------------


def test_weighted_split_follows_the_weights(proxied: Callable[..., Rig]) -> None:
    route = Route(
        [Deployment("openai/a", weight=3), Deployment("openai/b", weight=1)],
        strategy="weighted",
        sticky=False,
    )
    rig = proxied({"fast": route})
    with httpx.Client(timeout=30) as client:
        for _ in range(300):
            assert client.post(
                f"{rig.proxy_url}/v1/chat/completions", json={**CHAT, "model": "fast"}
            ).is_success
    models = [json.loads(r.body)["model"] for r in rig.openai_fake.requests]
    share = models.count("a") / len(models)
    assert len(models) == 300
    assert 0.65 <= share <= 0.85


def test_the_circuit_opens_probes_once_cooled_and_closes(proxied: Callable[..., Rig]) -> None:
    cooldown = Cooldown(failures=2, base=1.5)
    rig = proxied(
        {"smart": Route(["anthropic/claude-x", "openai/gpt-x"], cooldown=cooldown, sticky=False)}
    )
    rig.anthropic.fail(2, status=503)
    assert chat(rig).status_code == 200  # anthropic fails (1), openai serves
    assert chat(rig).status_code == 200  # anthropic fails (2): its circuit opens
    status = httpx.get(f"{rig.proxy_url}/status").json()["routes"]["smart"]["deployments"]
    assert status[0]["circuit"] == "open"
    assert chat(rig).status_code == 200  # skipped: openai at once
    assert rig.anthropic.faulted == 2
    assert rig.anthropic.passed == 0
    time.sleep(1.6)
    status = httpx.get(f"{rig.proxy_url}/status").json()["routes"]["smart"]["deployments"]
    assert status[0]["circuit"] == "half_open"
    response = chat(rig)  # the probe: anthropic has recovered
    assert response.status_code == 200
    assert "x-proxy-attempts" not in response.headers
    assert rig.anthropic.passed == 1
    status = httpx.get(f"{rig.proxy_url}/status").json()["routes"]["smart"]["deployments"]
    assert status[0]["circuit"] == "closed"


def test_a_failed_probe_cools_longer(proxied: Callable[..., Rig]) -> None:
    cooldown = Cooldown(failures=1, base=0.4, factor=6)
    rig = proxied(
        {"smart": Route(["anthropic/claude-x", "openai/gpt-x"], cooldown=cooldown, sticky=False)}
    )
    rig.anthropic.fail(2, status=503)
    assert chat(rig).status_code == 200  # opens for 0.4 s
    time.sleep(0.5)
    assert chat(rig).status_code == 200  # the probe fails: open for 2.4 s
    time.sleep(0.5)
    assert chat(rig).status_code == 200
    assert rig.anthropic.faulted == 2  # still cooling: not asked
    assert rig.anthropic.passed == 0


def test_a_route_whose_every_deployment_cools_is_a_503_with_retry_after(
    proxied: Callable[..., Rig],
) -> None:
    cooldown = Cooldown(failures=1, base=30)
    rig = proxied(
        {"smart": Route(["anthropic/claude-x", "openai/gpt-x"], cooldown=cooldown)},
        retry=RetryPolicy(attempts=2),
    )
    rig.anthropic.fail(1, status=503)
    rig.openai.fail(1, status=503)
    assert chat(rig).status_code == 503
    response = chat(rig)
    assert response.status_code == 503
    assert 25 <= int(response.headers["retry-after"]) <= 30
    error = response.json()["error"]
    assert "cooling down" in error["message"]
    assert wait_until(lambda: len(rig.events) == 2)
    assert rig.events[1].route == "smart"
    assert rig.events[1].error_kind == "route_unavailable"
    assert rig.events[1].deployments == ()
    response = httpx.post(
        f"{rig.proxy_url}/v1/messages",
        json={**CHAT, "max_tokens": 5},
        headers={"anthropic-version": "2023-06-01"},
        timeout=30,
    )
    assert response.status_code == 503
    assert response.json()["type"] == "error"  # Anthropic's format for an Anthropic client


def test_a_conversation_sticks_to_its_deployment_and_moves_when_it_fails(
    proxied: Callable[..., Rig],
) -> None:
    route = Route([Deployment("openai/a"), Deployment("openai/b")], strategy="weighted")
    rig = proxied({"fast": route})
    body = {"model": "fast", "messages": [{"role": "user", "content": "Keep me here."}]}
    for _ in range(12):
        assert chat(rig, body).is_success
    models = {json.loads(r.body)["model"] for r in rig.openai_fake.requests}
    assert len(models) == 1
    (first,) = models
    # Another conversation is spread independently; this one stays.
    for i in range(20):
        other = {"model": "fast", "messages": [{"role": "user", "content": f"other {i}"}]}
        assert chat(rig, other).is_success
    spread = {json.loads(r.body)["model"] for r in rig.openai_fake.requests[12:]}
    assert spread == {"a", "b"}
    # Its deployment fails: it moves, and stays on the new one.
    rig.openai.fail(1, status=503)
    count = len(rig.openai_fake.requests)
    for _ in range(5):
        assert chat(rig, body).is_success
    moved = {json.loads(r.body)["model"] for r in rig.openai_fake.requests[count:]}
    assert moved == ({"a", "b"} - {first})


@pytest.mark.parametrize("field", ["prompt_cache_key", "user"])
def test_a_prompt_cache_key_or_user_keeps_a_conversation_on_its_deployment(
    proxied: Callable[..., Rig], field: str
) -> None:
    route = Route([Deployment("openai/a"), Deployment("openai/b")], strategy="weighted")
    rig = proxied({"fast": route})

    def turn(i: int) -> dict[str, Any]:  # each turn opens differently: only the key is shared
        return {
            "model": "fast",
            field: "tenant-7",
            "messages": [{"role": "user", "content": f"{i}"}],
        }

    for i in range(12):
        assert chat(rig, turn(i)).is_success
    sent = [json.loads(r.body) for r in rig.openai_fake.requests]
    assert len({body["model"] for body in sent}) == 1
    (first,) = {body["model"] for body in sent}
    assert all(body[field] == "tenant-7" for body in sent)  # carried to the provider as sent
    # Its deployment fails: the conversation moves, and stays on the new one.
    rig.openai.fail(1, status=503)
    count = len(rig.openai_fake.requests)
    for i in range(5):
        response = chat(rig, turn(100 + i))
        assert response.is_success
    moved = {json.loads(r.body)["model"] for r in rig.openai_fake.requests[count:]}
    assert moved == ({"a", "b"} - {first})


def test_events_and_metrics_record_the_attempts(proxied: Callable[..., Rig]) -> None:
    rig = proxied(SMART, metrics=True)
    rig.anthropic.fail(1, status=503)
    assert chat(rig).status_code == 200
    assert wait_until(lambda: len(rig.events) == 1)
    (event,) = rig.events
    assert event.route == "smart"
    assert event.deployments == ("anthropic/claude-x", "openai/gpt-x")
    assert event.attempts == 2
    assert event.provider == "openai"
    assert event.status == 200
    metrics = httpx.get(f"{rig.proxy_url}/metrics").text
    assert (
        'provider_proxy_route_attempts_total{deployment="anthropic/claude-x",outcome="failed",'
        'route="smart"} 1.0'
    ) in metrics
    assert (
        'provider_proxy_route_attempts_total{deployment="openai/gpt-x",outcome="served",'
        'route="smart"} 1.0'
    ) in metrics


# -- what the app shows and refuses --------------------------------------------------------


def test_routes_are_listed_in_models_and_status(proxied: Callable[..., Rig]) -> None:
    rig = proxied(SMART)
    models = httpx.get(f"{rig.proxy_url}/v1/models").json()
    (smart,) = [m for m in models["data"] if m["id"] == "smart"]
    assert smart["route"] is True
    assert smart["owned_by"] == "proxy"
    status = httpx.get(f"{rig.proxy_url}/status").json()["routes"]
    assert status["smart"]["strategy"] == "priority"
    assert [d["target"] for d in status["smart"]["deployments"]] == [
        "anthropic/claude-x",
        "openai/gpt-x",
    ]
    assert status["smart"]["deployments"][0]["configured"] is True


def test_an_unconfigured_deployment_is_skipped(proxied: Callable[..., Rig], fakes: Rig) -> None:
    keyless = OpenAIAdapter(name="keyless", base_url=fakes.openai_url + "/v1", api_key_env="NOPE_X")
    rig = proxied(
        {"smart": Route(["keyless/gpt-x", "openai/gpt-x"])}, adapters=[keyless, *fakes.adapters()]
    )
    response = chat(rig)
    assert response.status_code == 200
    assert "x-proxy-attempts" not in response.headers
    status = httpx.get(f"{rig.proxy_url}/status").json()["routes"]["smart"]["deployments"]
    assert status[0]["configured"] is False
    health = httpx.get(f"{rig.proxy_url}/health").json()
    assert health["routes"]["smart"] == {"deployments": 2, "unconfigured": ["keyless/gpt-x"]}


def test_a_route_may_name_another_route(proxied: Callable[..., Rig]) -> None:
    rig = proxied(
        {
            "smart": Route(["anthropic/claude-x", "backup"]),
            "backup": Route(["openai/gpt-x"]),
        }
    )
    rig.anthropic.fail(1, status=503)
    assert chat(rig).status_code == 200
    assert served_by(rig) == (1, 0)


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({"x": Route(["nowhere/model"])}, "'nowhere', which is not configured"),
        ({"a": Route(["b"]), "b": Route(["a"])}, "cycle: a -> b -> a"),
        ({"openai/gpt-4.1": Route(["anthropic/c"])}, "reads as a model of the adapter 'openai'"),
    ],
)
def test_bad_routes_are_refused_at_construction(
    fakes: Rig, routes: dict[str, Route], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_asgi_app(fakes.adapters(), routes=routes)


def test_a_model_named_directly_of_an_unconfigured_adapter_says_so(
    proxied: Callable[..., Rig], fakes: Rig
) -> None:
    keyless = OpenAIAdapter(name="keyless", base_url=fakes.openai_url + "/v1", api_key_env="NOPE_X")
    rig = proxied({}, adapters=[keyless, *fakes.adapters()], retry=RetryPolicy(attempts=2))
    response = chat(rig, {**CHAT, "model": "keyless/gpt-x"})
    assert response.status_code == 503
    assert "not configured" in response.json()["error"]["message"]


def test_a_responses_client_falls_back_too(proxied: Callable[..., Rig]) -> None:
    rig = proxied(SMART)
    rig.anthropic.fail(1, status=503)
    response = httpx.post(
        f"{rig.proxy_url}/v1/responses", json={"model": "smart", "input": "Say hello."}, timeout=30
    )
    assert response.status_code == 200
    assert response.headers["x-proxy-attempts"] == "2"
    assert response.json()["object"] == "response"
    assert rig.anthropic.faulted == 1
    assert rig.openai_fake.last.path.endswith("/responses")
