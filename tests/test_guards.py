"""Guards through the real app on loopback: exact statuses, headers and error formats."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import anyio
import httpx
import pytest

from provider_proxy import (
    CORS,
    Guards,
    MemoryStore,
    ProxyApp,
    ProxyEvent,
    Quota,
    RateLimit,
    RedisStore,
    StoreUnavailable,
    make_asgi_app,
)
from provider_proxy.adapters import AnthropicAdapter, GeminiAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream
from provider_proxy.transforms import ModelAliases

from .conftest import ANTHROPIC_KEY, OPENAI_KEY, http_scope
from .redis_server import RedisServer
from .servers import ServerThread, serve, wait_until

CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
CLIENT_A, CLIENT_B = "client-key-alpha-123", "client-key-bravo-456"


def _proxy(upstream: ServerThread, **options: Any) -> ProxyApp:
    adapters = [
        OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
        AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
    ]
    options.setdefault("validate_credentials", "off")
    return make_asgi_app(adapters, **options)


@pytest.fixture
def served(upstream: ServerThread) -> Iterator[Any]:
    servers: list[Any] = []

    def start(**options: Any) -> httpx.Client:
        # uvicorn would itself trust X-Forwarded-For from 127.0.0.1; the guards decide here.
        context = serve(_proxy(upstream, **options), proxy_headers=False)
        server = context.__enter__()
        servers.append(context)
        client = httpx.Client(base_url=server.url, timeout=10)
        servers.append(client)
        return client

    yield start
    for item in reversed(servers):
        if isinstance(item, httpx.Client):
            item.close()
        else:
            item.__exit__(None, None, None)


def _chat(client: httpx.Client, key: str | None = None, **headers: str) -> httpx.Response:
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return client.post("/openai/chat/completions", json=CHAT, headers=headers)


def test_client_keys(served: Any, fake: FakeUpstream) -> None:
    events: list[ProxyEvent] = []
    client = served(guards=Guards(client_keys={CLIENT_A: "alice"}), sinks=[events.append])
    missing = _chat(client)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "client_not_authorized"
    assert "x-api-key" in missing.json()["error"]["message"]
    wrong = _chat(client, "not-the-key")
    assert wrong.status_code == 401
    assert "not-the-key" not in wrong.text
    ok = _chat(client, CLIENT_A)
    assert ok.status_code == 200
    assert fake.last.header("authorization") == f"Bearer {OPENAI_KEY}"
    anthropic = client.post(
        "/anthropic/v1/messages", json={"model": "c"}, headers={"x-api-key": CLIENT_A}
    )
    assert anthropic.status_code == 200
    assert fake.last.header("x-api-key") == ANTHROPIC_KEY
    refused = client.post("/anthropic/v1/messages", json={"model": "c"})
    assert refused.json()["error"]["type"] == "authentication_error"
    assert wait_until(lambda: len(events) == 5)
    assert [e.identity for e in events] == [None, None, "alice", "alice", None]
    assert CLIENT_A not in repr(Guards(client_keys=[CLIENT_A]))


def test_own_endpoints_take_the_client_auth_but_health(served: Any) -> None:
    client = served(guards=Guards(client_keys=[CLIENT_A]), metrics=True)
    key = {"authorization": f"Bearer {CLIENT_A}"}
    for path in ("/v1/models", "/v1/models/openai/gpt-fake", "/status", "/metrics"):
        refused = client.get(path)
        assert refused.status_code == 401, path
        assert refused.json()["error"]["code"] == "client_not_authorized"
        assert client.get(path, headers=key).status_code != 401, path
    assert client.get("/status", headers=key).status_code == 200
    assert client.get("/metrics", headers=key).status_code == 200
    # /health stays open, but shows the setup only to a client it knows.
    outsider = client.get("/health")
    assert outsider.status_code == 200
    assert {k: v for k, v in outsider.json().items() if k in ("status", "providers")} == {
        "status": "ok",
        "providers": {"openai": {"enabled": True}, "anthropic": {"enabled": True}},
    }
    known = client.get("/health", headers=key).json()
    assert known["providers"]["openai"]["base_url"].endswith("/v1")


def test_authenticate_callable_reuses_host_auth(served: Any) -> None:
    async def from_session(scope: dict[str, Any]) -> str | None:
        for name, value in scope["headers"]:
            if name == b"x-session" and value == b"valid":
                return "user-42"
        return None

    client = served(guards=Guards(authenticate=from_session))
    assert _chat(client).status_code == 401
    assert _chat(client, **{"x-session": "valid"}).status_code == 200


def test_rate_limit_headers_and_429(served: Any) -> None:
    client = served(guards=Guards(rate_limits=[RateLimit(3, 60)]))
    answers = [_chat(client) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a.headers["x-ratelimit-limit"] == "3" for a in answers)
    assert 0 < int(answers[0].headers["x-ratelimit-reset"]) <= 60
    limited = answers[-1]
    assert limited.headers["retry-after"] == "20"
    assert limited.headers["x-should-retry"] == "true"
    assert limited.json()["error"]["code"] == "rate_limited"
    assert "3 requests/60s" in limited.json()["error"]["message"]


@pytest.mark.parametrize(
    ("window", "retry_after", "should_retry"),
    [(120, "60", "true"), (122, "61", "false"), (3600, "1800", "false")],
)
def test_a_long_wait_tells_sdks_not_to_retry(
    served: Any, window: int, retry_after: str, should_retry: str
) -> None:
    client = served(guards=Guards(rate_limits=[RateLimit(2, window)]))
    limited = [_chat(client) for _ in range(3)][-1]
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == retry_after
    assert limited.headers["x-should-retry"] == should_retry
    assert limited.json()["error"]["code"] == "rate_limited"
    assert f"retry in {retry_after} s" in limited.json()["error"]["message"]


def test_the_anthropic_sdk_gives_up_at_once_on_a_long_wait(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Anthropic SDK sleeps for any ``Retry-After`` it is told to retry."""
    waits: list[float] = []
    calculate = anthropic.Anthropic._calculate_retry_timeout

    def recorded(self: anthropic.Anthropic, *args: Any, **kwargs: Any) -> float:
        waits.append(calculate(self, *args, **kwargs))
        return 0.0  # what it would sleep is recorded, not slept

    monkeypatch.setattr(anthropic.Anthropic, "_calculate_retry_timeout", recorded)
    events: list[ProxyEvent] = []
    client = served(guards=Guards(rate_limits=[RateLimit(1, 3600)]), sinks=[events.append])
    message = {"model": "c", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    with anthropic.Anthropic(
        base_url=f"{client.base_url}/anthropic", api_key="unused", max_retries=2
    ) as sdk:
        sdk.messages.create(**message)
        with pytest.raises(anthropic.RateLimitError, match="retry in 3600 s"):
            sdk.messages.create(**message)
    assert waits == []
    assert wait_until(lambda: len(events) >= 2)
    time.sleep(0.1)
    assert [event.status for event in events] == [200, 429]  # no retry was sent


def test_forwarded_for_only_from_trusted_proxies(served: Any) -> None:
    rule = RateLimit(1, 60, key="ip")
    trusting = served(guards=Guards(rate_limits=[rule], trusted_proxies=["127.0.0.1/32"]))
    assert _chat(trusting, **{"x-forwarded-for": "203.0.113.5"}).status_code == 200
    assert _chat(trusting, **{"x-forwarded-for": "203.0.113.6"}).status_code == 200
    assert _chat(trusting, **{"x-forwarded-for": "203.0.113.5"}).status_code == 429
    # Spoofed left-most entries do not help: the right-most untrusted hop counts.
    spoof = {"x-forwarded-for": "198.51.100.1, 203.0.113.6"}
    assert _chat(trusting, **spoof).status_code == 429
    untrusting = served(guards=Guards(rate_limits=[rule]))
    assert _chat(untrusting, **{"x-forwarded-for": "203.0.113.5"}).status_code == 200
    assert _chat(untrusting, **{"x-forwarded-for": "203.0.113.6"}).status_code == 429


def test_token_limit_counts_usage_after_each_call(served: Any) -> None:
    # The fake answers with 10 input and 11 output tokens.
    client = served(guards=Guards(rate_limits=[RateLimit(30, 60, unit="tokens")]))
    assert _chat(client).status_code == 200
    assert _chat(client).status_code == 200  # 21 used, budget left
    limited = _chat(client)  # 42 used: over
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 20


def test_bytes_limit(served: Any) -> None:
    client = served(guards=Guards(rate_limits=[RateLimit(200, 60, unit="bytes")]))
    assert _chat(client).status_code == 200
    big = client.post("/openai/chat/completions", json={**CHAT, "pad": "x" * 300})
    assert big.status_code == 429


def test_quota_per_day(served: Any) -> None:
    client = served(guards=Guards(client_keys=[CLIENT_A, CLIENT_B], quotas=[Quota(20)]))
    assert _chat(client, CLIENT_A).status_code == 200  # 21 tokens
    spent = _chat(client, CLIENT_A)
    assert spent.status_code == 429
    assert spent.json()["error"]["code"] == "quota_exceeded"
    assert "resets at" in spent.json()["error"]["message"]
    assert 0 < int(spent.headers["retry-after"]) <= 86400
    assert spent.headers["x-should-retry"] == "false"
    assert _chat(client, CLIENT_B).status_code == 200  # another client's budget


def test_per_model_rule_reads_the_model(served: Any) -> None:
    client = served(guards=Guards(rate_limits=[RateLimit(1, 60, per_model=True)]))
    post = client.post
    assert post("/openai/chat/completions", json={**CHAT, "model": "a"}).status_code == 200
    assert post("/openai/chat/completions", json={**CHAT, "model": "a"}).status_code == 429
    assert post("/openai/chat/completions", json={**CHAT, "model": "b"}).status_code == 200


def test_per_model_rule_limits_the_model_served(served: Any) -> None:
    # Case variants and an alias of one model share its budget.
    guards = Guards(rate_limits=[RateLimit(1, 60, per_model=True)])
    client = served(guards=guards, transforms=[ModelAliases({"fast": "gpt-a"})])
    post = client.post
    assert post("/openai/chat/completions", json={**CHAT, "model": "gpt-a"}).status_code == 200
    assert post("/openai/chat/completions", json={**CHAT, "model": "GPT-A"}).status_code == 429
    assert post("/openai/chat/completions", json={**CHAT, "model": "fast"}).status_code == 429
    assert post("/openai/chat/completions", json={**CHAT, "model": "gpt-b"}).status_code == 200


def test_per_model_rule_counts_the_model_in_the_path(upstream: ServerThread) -> None:
    # Gemini names the model in the path: each model has its own budget, and a
    # body naming another model changes nothing.
    gemini = GeminiAdapter(base_url=upstream.url, api_key="g-key")
    guards = Guards(rate_limits=[RateLimit(1, 60, per_model=True)])
    app = make_asgi_app([gemini], guards=guards, validate_credentials="off")
    with serve(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:

        def generate(model: str, body_model: str | None = None) -> int:
            body: dict[str, Any] = {"contents": [{"parts": [{"text": "hi"}]}]}
            if body_model is not None:
                body["model"] = body_model
            path = f"/gemini/v1beta/models/{model}:generateContent"
            return client.post(path, json=body).status_code

        assert generate("gemini-a") == 200
        assert generate("gemini-a", body_model="gemini-z") == 429
        assert generate("gemini-b") == 200


@pytest.mark.anyio
async def test_per_model_rule_reads_no_body_of_an_unknown_client(upstream: ServerThread) -> None:
    # The body is only read once the client is known: a stranger's upload is not.
    guards = Guards(client_keys=[CLIENT_A], rate_limits=[RateLimit(5, 60, per_model=True)])
    app = _proxy(upstream, guards=guards)
    sent: list[dict[str, Any]] = []
    chunks = 0
    never = anyio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal chunks
        chunks += 1
        if chunks == 1:
            return {"type": "http.request", "body": b'{"model": "gpt-a", ', "more_body": True}
        await never.wait()  # the rest of the body never comes
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope(
        "/openai/chat/completions",
        [(b"content-type", b"application/json"), (b"content-length", b"1000")],
    )
    async with app:
        with anyio.fail_after(5):
            await app(scope, receive, send)
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 401
    assert chunks <= 1


def test_a_client_key_in_the_query_is_not_forwarded(served: Any, fake: FakeUpstream) -> None:
    client = served(guards=Guards(client_keys=[CLIENT_A]))
    answer = client.post(f"/openai/chat/completions?key={CLIENT_A}&user=1", json=CHAT)
    assert answer.status_code == 200
    assert fake.last.query == b"user=1"
    assert CLIENT_A.encode() not in fake.last.raw_path


class _FailingOverallSlot(MemoryStore):
    """A store that fails once, on the overall slot, after the client's was taken."""

    failed = False

    async def acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        if key == "conc|all" and not self.failed:
            self.failed = True
            raise StoreUnavailable("The store is unreachable.")
        return await super().acquire(key, lease, limit, ttl)


def test_a_store_failure_between_two_slots_frees_the_first(served: Any) -> None:
    store = _FailingOverallSlot()
    guards = Guards(
        client_keys=[CLIENT_A], max_concurrent_per_client=1, max_concurrent=5, store=store
    )
    client = served(guards=guards)
    assert _chat(client, CLIENT_A).status_code == 503
    assert store.failed
    # Had the client's slot stayed taken, this would be a 429 until its TTL.
    assert _chat(client, CLIENT_A).status_code == 200


def _hold_stream(client: httpx.Client, started: threading.Event, key: str) -> threading.Thread:
    def run() -> None:
        body = {**CHAT, "stream": True}
        headers = {"authorization": f"Bearer {key}", "x-fake-chunks": "20", "x-fake-gap": "0.05"}
        with client.stream("POST", "/openai/chat/completions", json=body, headers=headers) as r:
            started.set()
            for _ in r.iter_bytes():
                pass

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_concurrency_per_client_and_overall(served: Any) -> None:
    guards = Guards(client_keys=[CLIENT_A, CLIENT_B], max_concurrent_per_client=1, max_concurrent=2)
    client = served(guards=guards)
    started = threading.Event()
    stream = _hold_stream(client, started, CLIENT_A)
    assert started.wait(5)
    busy = _chat(client, CLIENT_A)
    assert busy.status_code == 429
    assert busy.json()["error"]["code"] == "too_many_concurrent"
    assert busy.headers["retry-after"] == "1"
    started_b = threading.Event()
    stream_b = _hold_stream(client, started_b, CLIENT_B)
    assert started_b.wait(5)
    other = httpx.post(
        str(client.base_url) + "/openai/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {CLIENT_B}"},
    )
    assert other.status_code in (429, 503)
    stream.join(10)
    stream_b.join(10)
    # Streams count until they end; then the slots are free again.
    assert _chat(client, CLIENT_A).status_code == 200
    assert _chat(client, CLIENT_B).status_code == 200


def test_overall_cap_is_503(served: Any) -> None:
    client = served(guards=Guards(max_concurrent=1))
    started = threading.Event()
    stream = _hold_stream(client, started, "x")
    assert started.wait(5)
    overloaded = _chat(client)
    assert overloaded.status_code == 503
    assert overloaded.json()["error"]["code"] == "overloaded"
    assert overloaded.headers["retry-after"] == "1"
    stream.join(10)
    assert _chat(client).status_code == 200


def test_two_apps_sharing_redis_enforce_one_limit(upstream: ServerThread) -> None:
    redis = RedisServer().start()
    prefix = f"pp-{uuid.uuid4().hex}:"
    try:

        def app() -> ProxyApp:
            store = RedisStore.from_url(redis.url, prefix=prefix)
            return _proxy(upstream, store=store, guards=Guards(rate_limits=[RateLimit(4, 60)]))

        with serve(app(), proxy_headers=False) as first, serve(app()) as second:
            codes = [
                httpx.post(
                    (first if i % 2 else second).url + "/openai/chat/completions", json=CHAT
                ).status_code
                for i in range(6)
            ]
    finally:
        redis.stop()
    assert codes == [200, 200, 200, 200, 429, 429]


def test_a_hung_redis_delays_a_request_by_one_timeout(upstream: ServerThread) -> None:
    redis = RedisServer().start()
    timeout = 0.5
    store = RedisStore.from_url(
        redis.url, prefix=f"hung-{uuid.uuid4().hex}:", on_error="open", timeout=timeout
    )
    guards = Guards(
        rate_limits=[RateLimit(100, 60), RateLimit(10**6, 60, unit="bytes")],
        quotas=[Quota(10**6)],
        max_concurrent=10,
        max_concurrent_per_client=5,
    )
    try:
        with (
            serve(_proxy(upstream, store=store, guards=guards), proxy_headers=False) as server,
            httpx.Client(base_url=server.url, timeout=10) as client,
        ):
            assert _chat(client).status_code == 200
            with redis.paused():
                for _ in range(2):
                    started = time.monotonic()
                    answer = _chat(client)
                    spent = time.monotonic() - started
                    assert answer.status_code == 200  # failing open
                    # Five store calls, one deadline: not five timeouts.
                    assert spent < timeout + 0.4, spent
    finally:
        redis.stop()


def test_cors_preflight_and_actual(served: Any, fake: FakeUpstream) -> None:
    seen = len(fake.requests)
    client = served(cors=CORS(allow_origins=["https://app.example"]))
    preflight = client.options(
        "/openai/chat/completions",
        headers={
            "origin": "https://app.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    assert len(fake.requests) == seen  # answered without the upstream
    actual = client.post(
        "/openai/chat/completions", json=CHAT, headers={"origin": "https://app.example"}
    )
    assert actual.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in actual.headers["access-control-expose-headers"]
    stranger = client.options(
        "/openai/chat/completions",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert stranger.status_code == 403
    assert "access-control-allow-origin" not in stranger.headers
    plain = client.post(
        "/openai/chat/completions", json=CHAT, headers={"origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in plain.headers


def test_cors_wildcard_and_credentials() -> None:
    with pytest.raises(ValueError, match="cannot be combined"):
        CORS(allow_origins=["*"], allow_credentials=True)
    assert CORS(allow_origins=["*"]).origin_headers("https://x.example") == [
        (b"access-control-allow-origin", b"*")
    ]
    echoed = CORS(allow_origins=["https://x.example"], allow_credentials=True)
    assert (b"access-control-allow-credentials", b"true") in echoed.origin_headers(
        "https://x.example"
    )
