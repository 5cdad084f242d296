"""Budgets in USD: reserve then settle, under concurrency, on disconnect, across periods
and instances, refused in the client's format."""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from provider_proxy import Guards, MemoryStore, ProxyApp, RedisStore, Usage, make_asgi_app
from provider_proxy.adapters import OpenAIAdapter
from provider_proxy.guards import Budget, BudgetExceeded, Estimate, ModelNotPriced
from provider_proxy.guards._budget import BYTES_PER_TOKEN, money, nanos, period_window
from provider_proxy.spend import Price, Pricing, cost_of, estimate

from .conftest import CLIENT_KEY, OPENAI_KEY, http_scope
from .redis_server import RedisServer
from .servers import ServerThread, serve, wait_until
from .test_observability import Collect

UTC = datetime.timezone.utc
#: Output is what costs: a request's reservation is then close to its real cost.
PRICES = {"gpt-fake": {"input": 100, "output": 1000, "cache_read": 10}}
PRICE = Price.of(PRICES["gpt-fake"])
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
CHUNKS = 5


def chat(**extra: object) -> dict[str, object]:
    return {
        "model": "gpt-fake",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": CHUNKS,
        **extra,
    }


def reservation(body: dict[str, object]) -> Decimal:
    """What the proxy reserves for ``body`` (as the proxy serialises it: compact JSON)."""
    size = len(json.dumps(body, separators=(",", ":")).encode())
    return estimate(math.ceil(size / BYTES_PER_TOKEN), CHUNKS, PRICE)


# -- pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "now", "expected_id", "expected_reset"),
    [
        (
            "day",
            datetime.datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            "2026-12-31",
            datetime.datetime(2027, 1, 1, tzinfo=UTC),
        ),
        (
            "week",
            datetime.datetime(2026, 12, 3, 8, tzinfo=UTC),
            "2026-W49",
            datetime.datetime(2026, 12, 7, tzinfo=UTC),
        ),
        (
            "week",
            datetime.datetime(2026, 12, 7, 0, 0, tzinfo=UTC),
            "2026-W50",
            datetime.datetime(2026, 12, 14, tzinfo=UTC),
        ),
        (
            "month",
            datetime.datetime(2026, 2, 28, 12, tzinfo=UTC),
            "2026-02",
            datetime.datetime(2026, 3, 1, tzinfo=UTC),
        ),
        (
            "month",
            datetime.datetime(2026, 12, 15, tzinfo=UTC),
            "2026-12",
            datetime.datetime(2027, 1, 1, tzinfo=UTC),
        ),
        (None, datetime.datetime(2026, 12, 15, tzinfo=UTC), "all", None),
    ],
)
def test_periods_and_when_they_reset(
    period: str | None,
    now: datetime.datetime,
    expected_id: str,
    expected_reset: datetime.datetime | None,
) -> None:
    assert period_window(period, now) == (expected_id, expected_reset)  # type: ignore[arg-type]


def test_budget_values_are_checked() -> None:
    assert Budget("0.10").limit == Decimal("0.10")
    assert Budget(0.1).limit == Decimal("0.1")
    for bad in (0, -1, "x", float("inf")):
        with pytest.raises(ValueError, match="amount"):
            Budget(bad)
    with pytest.raises(ValueError, match="period"):
        Budget(1, period="year")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per must"):
        Budget(1, per="team")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Budget(1, models="gpt-4o")
    with pytest.raises(ValueError, match="same name"):
        Guards(budgets=[Budget(1), Budget(1)])


def test_a_budget_covers_the_models_it_names_by_pattern() -> None:
    budget = Budget(1, models=["gpt-4o*", "Claude-Sonnet-4-5"])
    assert budget.covers("gpt-4o-mini")
    assert budget.covers("claude-sonnet-4-5")
    assert not budget.covers("o3")
    assert not budget.covers(None)
    assert Budget(1).covers("anything")
    assert Budget(1).covers(None)
    assert Budget(5, period="day", models=["gpt-4o*"]).label == "$5/day per client on gpt-4o*"


def test_amounts_round_up_to_nano_dollars_and_read_well() -> None:
    assert nanos(Decimal("0.0000000001")) == 1
    assert nanos(Decimal("1")) == 1_000_000_000
    assert money(Decimal("0.012500")) == "0.0125"
    assert money(Decimal(0)) == "0"
    assert money(Decimal(10)) == "10"


# -- the guards in process, with a clock -----------------------------------------------


class Clock:
    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now


def guards_with(*budgets: Budget, clock: Clock, store: MemoryStore | None = None) -> Guards:
    guards = Guards(client_keys={CLIENT_KEY: "team-a"}, budgets=budgets, now=clock)
    guards.bind(store or MemoryStore())
    guards.bind_pricing(Pricing(PRICES))
    return guards


SCOPE = http_scope(
    "/openai/chat/completions", [(b"authorization", b"Bearer " + CLIENT_KEY.encode())]
)
#: 30 bytes of body (10 input tokens) and 10 output tokens: $0.001 + $0.01 reserved.
ESTIMATE = Estimate(30, 10)
RESERVED = estimate(10, 10, PRICE)


async def admit(guards: Guards, model: str = "gpt-fake") -> object:
    return await guards.admit(
        SCOPE, provider="openai", model=model, request_bytes=30, estimate=ESTIMATE
    )


@pytest.mark.anyio
async def test_reserve_then_settle_to_the_real_cost() -> None:
    clock = Clock(datetime.datetime(2026, 12, 1, 12, tzinfo=UTC))
    guards = guards_with(Budget("0.05", period="day"), clock=clock)
    admission = await admit(guards)
    [row] = guards.budget_status()
    assert Decimal(row["spent_usd"]["team-a"]) == RESERVED  # held while in flight
    async with admission:  # type: ignore[attr-defined]
        admission.charge(Usage(10, 4), 30)  # type: ignore[attr-defined]
    [row] = guards.budget_status()
    real = cost_of(Usage(10, 4), PRICE).total
    assert Decimal(row["spent_usd"]["team-a"]) == real
    assert Decimal(row["left_usd"]["team-a"]) == Decimal("0.05") - real
    assert row["resets_at"] == "2026-12-02T00:00:00Z"


@pytest.mark.anyio
async def test_a_request_whose_estimate_exceeds_what_is_left_is_refused() -> None:
    clock = Clock(datetime.datetime(2026, 12, 1, 12, tzinfo=UTC))
    guards = guards_with(Budget("0.025", period="day", name="team cap"), clock=clock)
    first = await admit(guards)
    second = await admit(guards)  # 0.022 reserved of 0.025
    with pytest.raises(BudgetExceeded) as refused:
        await admit(guards)
    error = refused.value
    assert error.status_code == 429
    assert error.kind == "budget_exceeded"
    assert not error.retryable
    assert error.message == (
        "The budget team cap has $0.003 left, less than this request may cost (up to $0.011; "
        "lower max_tokens to need less); it resets at 2026-12-02T00:00:00Z."
    )
    assert error.headers["Retry-After"] == str(12 * 3600)
    assert error.headers["x-proxy-budget-remaining-usd"] == "0.003"
    for admission in (first, second):
        async with admission:  # type: ignore[attr-defined]
            admission.charge(None, 30, billed=False)  # type: ignore[attr-defined]
    # Nothing was billed: every reservation came back, and the refusal took nothing.
    assert guards.budget_status()[0]["spent_usd"]["team-a"] == "0"
    await admit(guards)


@pytest.mark.anyio
async def test_a_refused_later_budget_gives_back_the_earlier_reservations() -> None:
    clock = Clock(datetime.datetime(2026, 12, 1, 12, tzinfo=UTC))
    guards = guards_with(Budget(10, name="roomy"), Budget("0.001", name="tight"), clock=clock)
    with pytest.raises(BudgetExceeded, match="tight"):
        await admit(guards)
    spent = {row["name"]: row["spent_usd"]["team-a"] for row in guards.budget_status()}
    assert spent == {"roomy": "0", "tight": "0"}


@pytest.mark.anyio
async def test_the_period_rolls_over_and_a_new_budget_starts() -> None:
    clock = Clock(datetime.datetime(2026, 12, 1, 23, 59, tzinfo=UTC))
    guards = guards_with(Budget("0.02", period="day"), clock=clock)
    admission = await admit(guards)
    async with admission:  # type: ignore[attr-defined]
        admission.charge(Usage(10, 10), 30)  # type: ignore[attr-defined]
    with pytest.raises(BudgetExceeded, match="resets at 2026-12-02T00:00:00Z"):
        await admit(guards)
    clock.now = datetime.datetime(2026, 12, 2, 0, 0, 1, tzinfo=UTC)
    async with await admit(guards):  # type: ignore[attr-defined]
        pass
    [row] = guards.budget_status()
    assert row["resets_at"] == "2026-12-03T00:00:00Z"


@pytest.mark.anyio
async def test_budgets_per_app_are_shared_and_models_outside_are_free() -> None:
    clock = Clock(datetime.datetime(2026, 12, 1, tzinfo=UTC))
    guards = Guards(
        client_keys={CLIENT_KEY: "team-a", "other-key-0123456789": "team-b"},
        budgets=[Budget("0.02", per="app", models=["gpt-fake"])],
        now=clock,
    )
    guards.bind(MemoryStore())
    guards.bind_pricing(Pricing(PRICES))
    other = http_scope(
        "/openai/chat/completions", [(b"authorization", b"Bearer other-key-0123456789")]
    )
    await guards.admit(
        SCOPE, provider="openai", model="gpt-fake", request_bytes=30, estimate=ESTIMATE
    )
    with pytest.raises(BudgetExceeded):
        await guards.admit(
            other, provider="openai", model="gpt-fake", request_bytes=30, estimate=ESTIMATE
        )
    # Not covered: no price needed, nothing reserved.
    await guards.admit(
        other, provider="openai", model="unpriced", request_bytes=30, estimate=ESTIMATE
    )


@pytest.mark.anyio
async def test_a_covered_model_without_a_price_is_refused_not_guessed() -> None:
    guards = guards_with(Budget(1), clock=Clock(datetime.datetime(2026, 12, 1, tzinfo=UTC)))
    with pytest.raises(ModelNotPriced, match="no price for 'mystery-model'"):
        await admit(guards, model="mystery-model-xyz".replace("-xyz", ""))


@pytest.mark.anyio
async def test_an_answer_cut_short_pays_a_bound_from_its_bytes_not_more_than_reserved() -> None:
    guards = guards_with(Budget(1), clock=Clock(datetime.datetime(2026, 12, 1, tzinfo=UTC)))
    admission = await admit(guards)
    async with admission:  # type: ignore[attr-defined]
        admission.charge(None, 30, cut_after=9)  # type: ignore[attr-defined]
    bound = estimate(10, 3, PRICE)  # 9 bytes: 3 output tokens
    assert Decimal(guards.budget_status()[0]["spent_usd"]["team-a"]) == bound
    admission = await admit(guards)
    async with admission:  # type: ignore[attr-defined]
        admission.charge(None, 30, cut_after=10_000)  # type: ignore[attr-defined]
    assert Decimal(guards.budget_status()[0]["spent_usd"]["team-a"]) == bound + RESERVED


# -- through a real server -------------------------------------------------------------


def budget_proxy(
    make_proxy: Callable[..., ProxyApp], amount: str, sink: Collect, **options: object
) -> ProxyApp:
    guards = Guards(client_keys={CLIENT_KEY: "team-a"}, budgets=[Budget(amount, period="day")])
    return make_proxy(sinks=[sink], prices=PRICES, guards=guards, **options)


def spent_in_status(server: ServerThread) -> Decimal:
    status = httpx.get(server.url + "/status", headers=AUTH, timeout=10).json()
    [row] = status["guards"]["budgets"]
    return Decimal(row["spent_usd"].get("team-a", "0"))


def test_200_concurrent_streams_never_overspend(make_proxy: Callable[..., ProxyApp]) -> None:
    body = chat(stream=True, stream_options={"include_usage": True})
    held = reservation(body)
    limit = held * 12 + held / 2  # room for twelve reservations at a time
    sink = Collect()
    proxy = budget_proxy(make_proxy, str(limit), sink)
    headers = {**AUTH, "x-fake-chunks": str(CHUNKS), "x-fake-gap": "0.01"}

    async def one(client: httpx.AsyncClient, url: str, index: int) -> int:
        await asyncio.sleep(index % 20 * 0.02)  # in waves, so some settle while others start
        async with client.stream("POST", url, json=body, headers=headers) as response:
            await response.aread()
            return response.status_code

    async def run(url: str) -> list[int]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            return await asyncio.gather(*(one(client, url, i) for i in range(200)))

    with serve(proxy) as server:
        statuses = asyncio.run(run(server.url + "/openai/chat/completions"))
        assert wait_until(lambda: len(sink.events) == 200)
        in_store = spent_in_status(server)
    served = [e for e in sink.events if e.provider and e.status == 200]
    refused = [e for e in sink.events if e.provider and e.status == 429]
    assert statuses.count(200) == len(served)
    assert statuses.count(429) == len(refused)
    assert len(served) + len(refused) == 200
    assert served
    assert refused
    assert {e.error_kind for e in refused} == {"budget_exceeded"}
    assert all(e.cost is not None and e.usage is not None for e in served)
    spent = sum((e.cost.total for e in served if e.cost is not None), Decimal(0))
    assert spent <= limit + held  # the guarantee
    assert spent <= limit  # and with max_tokens set, the estimate is a true upper bound
    # Every reservation was settled to the real cost: the store holds what the events say.
    assert (
        in_store
        == sum((Decimal(nanos(e.cost.total)) for e in served if e.cost), Decimal(0)) / 10**9
    )


def test_a_client_that_leaves_mid_stream_settles_what_was_used(
    make_proxy: Callable[..., ProxyApp],
) -> None:
    body = chat(stream=True, stream_options={"include_usage": True}, max_tokens=200)
    sink = Collect()
    proxy = budget_proxy(make_proxy, "10", sink)
    headers = {**AUTH, "x-fake-chunks": "200", "x-fake-gap": "0.02"}
    with serve(proxy) as server:
        with httpx.stream(
            "POST", server.url + "/openai/chat/completions", json=body, headers=headers, timeout=10
        ) as response:
            assert response.status_code == 200
            for _ in response.iter_raw():
                break  # leave after the first chunk
        assert wait_until(lambda: len(sink.events) == 1)
        [event] = sink.events
        assert event.error_kind == "client_disconnected"
        assert wait_until(lambda: spent_in_status(server) > 0)
        spent = spent_in_status(server)
    size = len(json.dumps(body, separators=(",", ":")).encode())
    input_tokens = math.ceil(size / BYTES_PER_TOKEN)
    full = estimate(input_tokens, 200, PRICE)
    used = estimate(input_tokens, math.ceil(event.response_bytes / BYTES_PER_TOKEN), PRICE)
    assert spent == Decimal(nanos(used)) / 10**9
    assert spent < full  # the rest of the reservation came back


def test_cached_tokens_are_charged_at_the_cache_rate(make_proxy: Callable[..., ProxyApp]) -> None:
    sink = Collect()
    proxy = budget_proxy(make_proxy, "10", sink)
    with serve(proxy) as server:
        response = httpx.post(
            server.url + "/openai/chat/completions",
            json=chat(),
            headers={**AUTH, "x-fake-chunks": str(CHUNKS), "x-fake-cached": "1000"},
            timeout=10,
        )
        assert response.status_code == 200
        assert wait_until(lambda: len(sink.events) == 1)
        spent = spent_in_status(server)
    usage = sink.events[0].usage
    assert usage == Usage(1010, CHUNKS, 1000, None, None)
    at_cache_rate = (10 * 100 + 1000 * 10 + CHUNKS * 1000) / Decimal(10**6)
    assert spent == at_cache_rate == sink.events[0].cost.total  # type: ignore[union-attr]
    assert spent < (1010 * 100 + CHUNKS * 1000) / Decimal(10**6)


def test_refusals_are_in_the_clients_format_and_not_retried_by_the_sdks(
    make_proxy: Callable[..., ProxyApp],
) -> None:
    sink = Collect()
    guards = Guards(client_keys={CLIENT_KEY: "team-a"}, budgets=[Budget("0.000001", period="week")])
    proxy = make_proxy(
        sinks=[sink], prices={**PRICES, "claude-fake": PRICES["gpt-fake"]}, guards=guards
    )
    with serve(proxy) as server:
        client = openai.OpenAI(base_url=server.url + "/openai", api_key=CLIENT_KEY, max_retries=3)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(
                model="gpt-fake", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )
        assert refused.value.code == "budget_exceeded"
        assert "The budget $0.000001/week per client has $0.000001 left" in refused.value.message
        assert "resets at" in refused.value.message
        claude = anthropic.Anthropic(
            base_url=server.url + "/anthropic", api_key=CLIENT_KEY, max_retries=3
        )
        with pytest.raises(anthropic.RateLimitError) as refused_too:
            claude.messages.create(
                model="claude-fake", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        assert refused_too.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        assert "The budget" in str(refused_too.value)
        assert wait_until(lambda: len(sink.events) == 2)
    # One request each: the SDKs did not retry (they would, three times, on a plain 429).
    assert [e.error_kind for e in sink.events] == ["budget_exceeded", "budget_exceeded"]


# -- two instances on one Redis ----------------------------------------------------------


def test_two_instances_share_one_budget_on_redis(
    redis_server: RedisServer, upstream: ServerThread
) -> None:
    body = chat(stream=True, stream_options={"include_usage": True})
    held = reservation(body)
    limit = held * 6 + held / 2
    prefix = f"t-{uuid.uuid4().hex}:"
    sinks = [Collect(), Collect()]

    def instance(sink: Collect) -> ProxyApp:
        return make_asgi_app(
            [OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY)],
            # 64 callers connect at once: a generous timeout, as this is about the shared budget.
            store=RedisStore.from_url(redis_server.url, prefix=prefix, timeout=5.0),
            guards=Guards(
                client_keys={CLIENT_KEY: "team-a"}, budgets=[Budget(str(limit), period="day")]
            ),
            prices=PRICES,
            sinks=[sink],
        )

    headers = {**AUTH, "x-fake-chunks": str(CHUNKS), "x-fake-gap": "0.01"}

    async def one(client: httpx.AsyncClient, url: str) -> int:
        response = await client.post(url, json=body, headers=headers)
        return response.status_code

    async def run(urls: list[str]) -> list[int]:
        async with httpx.AsyncClient(
            timeout=30, limits=httpx.Limits(max_connections=100)
        ) as client:
            return await asyncio.gather(*(one(client, urls[i % 2]) for i in range(60)))

    with serve(instance(sinks[0])) as a, serve(instance(sinks[1])) as b:
        urls = [a.url + "/openai/chat/completions", b.url + "/openai/chat/completions"]
        # First one at a time, in turn: each instance serves, from the same budget.
        for i in range(4):
            response = httpx.post(urls[i % 2], json=body, headers=headers, timeout=10)
            assert response.status_code == 200
        statuses = asyncio.run(run(urls))
        statuses += [200] * 4
        assert wait_until(lambda: sum(len(s.events) for s in sinks) == 64)
    events = [e for sink in sinks for e in sink.events]
    served = [e for e in events if e.status == 200]
    assert statuses.count(200) == len(served)
    assert 4 < len(served) < 64
    assert {e.error_kind for e in events if e.status != 200} == {"budget_exceeded"}
    # Both instances served some, and together they stayed within the one budget.
    assert all(any(e.status == 200 for e in sink.events) for sink in sinks)
    spent = sum((e.cost.total for e in served if e.cost is not None), Decimal(0))
    assert spent <= limit + held
    assert spent <= limit


@pytest.mark.parametrize(("mode", "status"), [("closed", 503), ("open", 200)])
def test_redis_down_follows_the_stores_on_error_mode(
    upstream: ServerThread, mode: str, status: int
) -> None:
    from .servers import free_port

    sink = Collect()
    proxy = make_asgi_app(
        [OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY)],
        store=RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", on_error=mode),  # type: ignore[arg-type]
        guards=Guards(client_keys={CLIENT_KEY: "team-a"}, budgets=[Budget("1", period="day")]),
        prices=PRICES,
        sinks=[sink],
    )
    with serve(proxy) as server:
        response = httpx.post(
            server.url + "/openai/chat/completions", json=chat(), headers=AUTH, timeout=10
        )
    assert response.status_code == status
    if mode == "closed":
        assert response.json()["error"]["code"] == "store_unavailable"
    else:  # let through unbudgeted, and priced all the same
        assert wait_until(lambda: len(sink.events) == 1)
        assert sink.events[0].cost is not None


# -- the store's reserve, and the request's output limit -----------------------------------


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[MemoryStore | RedisStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    # A generous timeout: 200 callers connect at once, and these tests are about atomicity.
    redis = RedisStore.from_url(redis_server.url, prefix=f"t-{uuid.uuid4().hex}:", timeout=5.0)
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.mark.anyio
async def test_reserve_adds_only_within_the_limit(store: MemoryStore | RedisStore) -> None:
    assert await store.reserve("b", 6, 10, 60) == (True, 6)
    assert await store.reserve("b", 5, 10, 60) == (False, 6)
    assert await store.reserve("b", 4, 10, 60) == (True, 10)
    assert await store.add("b", -7, 60) == 3  # settled below what was reserved
    assert await store.reserve("b", 7, 10, 60) == (True, 10)
    assert await store.reserve("big", 10**15, 2 * 10**15, 60) == (True, 10**15)


@pytest.mark.anyio
async def test_200_concurrent_reservations_never_pass_the_limit(
    store: MemoryStore | RedisStore,
) -> None:
    import anyio

    granted = 0

    async def take() -> None:
        nonlocal granted
        added, value = await store.reserve("race", 7, 100, 60)
        assert value <= 100
        granted += added

    async with anyio.create_task_group() as group:
        for _ in range(200):
            group.start_soon(take)
    assert granted == 14  # 14 * 7 = 98; a 15th would pass 100
    assert await store.add("race", 0, 60) == 98


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v1/chat/completions", {"max_tokens": 10}, 10),
        ("/v1/chat/completions", {"max_tokens": 10, "max_completion_tokens": 20}, 20),
        ("/v1/responses", {"max_output_tokens": 30}, 30),
        ("/v1/chat/completions", {"max_tokens": "10"}, None),
        ("/v1/chat/completions", {}, None),
        ("/v1/messages", {"max_tokens": 40}, 40),
        ("/v1/complete", {"max_tokens_to_sample": 50}, 50),
        ("/v1beta/models/g:generateContent", {"generationConfig": {"maxOutputTokens": 60}}, 60),
        ("/v1beta/models/g:generateContent", {"generationConfig": []}, None),
    ],
)
def test_dialects_read_the_output_limit_a_request_sets(
    path: str, body: dict[str, object], expected: int | None
) -> None:
    from provider_proxy.dialects import BUILTIN

    [dialect] = [d for d in BUILTIN if d.recognizes(path)][:1]
    assert dialect.output_limit_of(body) == expected
