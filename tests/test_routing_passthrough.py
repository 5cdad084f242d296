"""Retries of passthrough requests (``{mount}/{adapter}/...``) through real servers,
against a fake provider with scripted faults: what is retried, what never is."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from provider_proxy import ProxyEvent, RetryPolicy, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream, Faults

from .conftest import ANTHROPIC_KEY, OPENAI_KEY
from .servers import ServerThread, free_port, serve, wait_until

CHAT = {"model": "gpt-x", "messages": [{"role": "user", "content": "Say hello."}]}
STREAM = {**CHAT, "stream": True}
MESSAGES = {
    "model": "claude-x",
    "max_tokens": 16,
    "stream": True,
    "messages": [{"role": "user", "content": "Say hello."}],
}


@dataclass
class Rig:
    faults: Faults
    fake: FakeUpstream
    url: str
    events: list[ProxyEvent]

    def post(self, path: str = "/openai/chat/completions", body: Any = CHAT) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=30)


@pytest.fixture
def proxied() -> Iterator[Callable[..., Rig]]:
    """A proxy in front of one fake provider behind its faults, built per test."""
    servers: list[ServerThread] = []

    def build(adapter_retry: RetryPolicy | None = None, **options: Any) -> Rig:
        fake = FakeUpstream()
        faults = Faults(fake)
        upstream = ServerThread(faults, lifespan="off").start()
        servers.append(upstream)
        events: list[ProxyEvent] = []
        adapters = [
            OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY, retry=adapter_retry),
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY, retry=adapter_retry),
        ]
        proxy = make_asgi_app(
            adapters, validate_credentials="off", sinks=[events.append], **options
        )
        servers.append(ServerThread(proxy).start())
        return Rig(faults, fake, servers[-1].url, events)

    yield build
    for server in reversed(servers):
        server.stop()


FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 529])
def test_an_adapters_retry_policy_retries_a_passthrough_request(
    proxied: Callable[..., Rig], status: int
) -> None:
    rig = proxied(adapter_retry=FAST)
    rig.faults.fail(2, status=status)
    response = rig.post()
    assert response.status_code == 200
    assert response.headers["x-proxy-attempts"] == "3"
    assert rig.faults.faulted == 2
    assert len(rig.fake.requests) == 1
    assert json.loads(rig.fake.requests[0].body) == CHAT  # the body kept, sent again whole
    assert wait_until(lambda: len(rig.events) == 1)
    (event,) = rig.events
    assert event.attempts == 3
    assert event.deployments == ("openai", "openai", "openai")
    assert event.status == 200


def test_the_apps_retry_policy_applies_to_passthrough_too(proxied: Callable[..., Rig]) -> None:
    rig = proxied(retry=FAST)
    rig.faults.fail(1, status=503)
    response = rig.post()
    assert response.status_code == 200
    assert response.headers["x-proxy-attempts"] == "2"


def test_without_a_retry_policy_a_passthrough_failure_is_answered_as_it_came(
    proxied: Callable[..., Rig],
) -> None:
    rig = proxied()
    rig.faults.fail(1, status=503)
    response = rig.post()
    assert response.status_code == 503
    assert "x-proxy-attempts" not in response.headers
    assert rig.fake.requests == []


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
def test_a_client_caused_error_is_never_retried(proxied: Callable[..., Rig], status: int) -> None:
    rig = proxied(adapter_retry=FAST)
    rig.faults.fail(1, status=status)
    response = rig.post()
    assert response.status_code == status
    assert "x-proxy-attempts" not in response.headers
    assert rig.faults.faulted == 1
    assert rig.fake.requests == []


def test_out_of_attempts_the_last_failure_is_answered(proxied: Callable[..., Rig]) -> None:
    rig = proxied(adapter_retry=FAST)
    rig.faults.fail(3, status=503)
    response = rig.post()
    assert response.status_code == 503
    assert response.headers["x-proxy-attempts"] == "3"
    assert response.json()["error"]["message"] == "fake upstream overloaded (503)"
    assert rig.faults.pending == 0
    assert rig.fake.requests == []


def test_retry_after_is_honoured(proxied: Callable[..., Rig]) -> None:
    rig = proxied(adapter_retry=RetryPolicy(attempts=2, backoff=0.01))
    rig.faults.fail(1, status=429, retry_after=1)
    assert rig.post().status_code == 200
    first, second = rig.faults.arrivals
    assert 1.0 <= second - first < 5


def test_a_retry_after_over_max_retry_after_is_not_waited_for(
    proxied: Callable[..., Rig],
) -> None:
    rig = proxied(adapter_retry=RetryPolicy(attempts=3, max_retry_after=1))
    rig.faults.fail(1, status=429, retry_after=20)
    started = time.monotonic()
    response = rig.post()
    assert response.status_code == 429
    assert response.headers["retry-after"] == "20"  # the provider's, for the client to honour
    assert time.monotonic() - started < 5
    assert rig.fake.requests == []


def test_backoff_grows_between_retries(proxied: Callable[..., Rig]) -> None:
    rig = proxied(adapter_retry=RetryPolicy(attempts=3, backoff=0.2, jitter=False))
    rig.faults.fail(2, status=503)
    assert rig.post().status_code == 200
    first, second, third = rig.faults.arrivals
    assert second - first >= 0.2
    assert third - second >= 0.4


def test_a_connect_error_is_retried_then_answered_in_the_paths_format(
    proxied: Callable[..., Rig],
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    events: list[ProxyEvent] = []
    adapter = OpenAIAdapter(base_url=dead + "/v1", api_key=OPENAI_KEY, retry=FAST)
    proxy = make_asgi_app([adapter], validate_credentials="off", sinks=[events.append])
    with serve(proxy) as server:
        response = httpx.post(f"{server.url}/openai/chat/completions", json=CHAT, timeout=30)
    assert response.status_code == 502
    assert response.headers["x-proxy-attempts"] == "3"
    assert response.json()["error"]["type"]  # OpenAI's error format
    assert wait_until(lambda: len(events) == 1)
    assert events[0].attempts == 3


def test_a_provider_that_hangs_past_the_attempt_timeout_is_tried_again(
    proxied: Callable[..., Rig],
) -> None:
    rig = proxied(adapter_retry=RetryPolicy(attempts=2, backoff=0.01, attempt_timeout=0.5))
    rig.faults.hang(1, seconds=5)
    started = time.monotonic()
    response = rig.post()
    assert response.status_code == 200
    assert response.headers["x-proxy-attempts"] == "2"
    assert time.monotonic() - started < 4


def test_hanging_out_of_attempts_is_a_504(proxied: Callable[..., Rig]) -> None:
    rig = proxied(adapter_retry=RetryPolicy(attempts=2, backoff=0.01, attempt_timeout=0.3))
    rig.faults.hang(2, seconds=3)
    response = rig.post()
    assert response.status_code == 504
    assert response.headers["x-proxy-attempts"] == "2"
    assert response.json()["error"]["type"]


def test_a_body_over_max_retry_body_is_sent_once(proxied: Callable[..., Rig]) -> None:
    rig = proxied(adapter_retry=RetryPolicy(attempts=3, backoff=0.01, max_retry_body=16))
    rig.faults.fail(1, status=503)
    response = rig.post()
    assert response.status_code == 503
    assert "x-proxy-attempts" not in response.headers
    assert rig.faults.faulted == 1
    assert rig.fake.requests == []
    assert wait_until(lambda: len(rig.events) == 1)
    (event,) = rig.events
    assert event.not_retried is not None  # the event says why it was not retried
    assert "max_retry_body (16 bytes)" in event.not_retried


# -- streams ---------------------------------------------------------------------------


@pytest.mark.parametrize("error", ["overloaded", "rate_limit"])
@pytest.mark.parametrize(
    ("path", "body"), [("/openai/chat/completions", STREAM), ("/anthropic/v1/messages", MESSAGES)]
)
def test_a_stream_whose_first_event_is_an_error_is_retried(
    proxied: Callable[..., Rig], error: str, path: str, body: Any
) -> None:
    rig = proxied(adapter_retry=FAST)
    rig.faults.error_event(1, error)
    headers = {"anthropic-version": "2023-06-01"}
    with httpx.stream("POST", rig.url + path, json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["x-proxy-attempts"] == "2"
        text = response.read().decode()
    assert "error" not in text  # the failed stream never reached the client
    assert "Hello" in text
    assert rig.faults.faulted == 1
    assert len(rig.fake.requests) == 1


def test_an_error_first_event_out_of_attempts_reaches_the_client(
    proxied: Callable[..., Rig],
) -> None:
    rig = proxied(adapter_retry=RetryPolicy(attempts=2, backoff=0.01))
    rig.faults.error_event(2, "overloaded")
    with httpx.stream(
        "POST", f"{rig.url}/openai/chat/completions", json=STREAM, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-proxy-attempts"] == "2"
        text = response.read().decode()
    assert "fake upstream overloaded" in text  # the provider's own error event, as it came


def test_no_retry_after_the_first_byte(proxied: Callable[..., Rig]) -> None:
    rig = proxied(adapter_retry=FAST)
    rig.faults.cut(1, after=1)
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST", f"{rig.url}/openai/chat/completions", json=STREAM, timeout=30
        ) as response,
    ):
        assert "x-proxy-attempts" not in response.headers
        received.extend(response.iter_lines())
    assert any("Hello" in line for line in received)
    assert len(rig.fake.requests) == 1  # the cut stream only: never sent again
    assert rig.faults.arrivals[1:] == []


def test_a_healthy_stream_passes_with_one_attempt(proxied: Callable[..., Rig]) -> None:
    rig = proxied(adapter_retry=FAST)
    with httpx.stream(
        "POST", f"{rig.url}/openai/chat/completions", json=STREAM, timeout=30
    ) as response:
        assert response.status_code == 200
        assert "x-proxy-attempts" not in response.headers
        lines = list(response.iter_lines())
    assert "data: [DONE]" in lines
    assert wait_until(lambda: len(rig.events) == 1)
    assert rig.events[0].attempts == 1
    assert rig.events[0].deployments == ()


def test_a_body_still_uploading_when_the_connect_failed_is_kept_for_the_retry() -> None:
    """The provider could not be reached before the upload ended: the rest of the body
    is read (within max_retry_body) so the retry sends all of it."""
    dead = f"http://127.0.0.1:{free_port()}"
    adapter = OpenAIAdapter(base_url=dead + "/v1", api_key=OPENAI_KEY, retry=FAST)
    proxy = make_asgi_app([adapter], validate_credentials="off")
    body = json.dumps(CHAT).encode()

    def upload() -> Iterator[bytes]:
        for start in range(0, len(body), 8):
            time.sleep(0.05)
            yield body[start : start + 8]

    with serve(proxy) as server:
        response = httpx.post(
            f"{server.url}/openai/chat/completions",
            content=upload(),
            headers={"content-type": "application/json"},
            timeout=30,
        )
    assert response.status_code == 502
    assert response.headers["x-proxy-attempts"] == "3"
