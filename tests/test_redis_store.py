"""RedisStore against a real redis-server: the Store contract, concurrency, outages."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from provider_proxy import MemoryStore, RedisStore, Store, StoreUnavailable
from provider_proxy.state._store import one_deadline

from .redis_server import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    # A generous timeout: 200 callers connect at once, and these tests are about atomicity.
    redis = RedisStore.from_url(redis_server.url, prefix=f"t-{uuid.uuid4().hex}:", timeout=5.0)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_rate_limit_contract(store: Store) -> None:
    results = [await store.rate("k", 1, 5, 60) for _ in range(6)]
    assert [r.allowed for r in results] == [True] * 5 + [False]
    assert [r.remaining for r in results] == [4, 3, 2, 1, 0, 0]
    assert results[-1].retry_after == pytest.approx(12.0, abs=0.5)
    assert 59 <= results[-1].reset_after <= 60.5


async def test_200_concurrent_hits_allow_exactly_the_limit(store: Store) -> None:
    allowed = 0

    async def hit() -> None:
        nonlocal allowed
        if (await store.rate("burst", 1, 50, 600)).allowed:
            allowed += 1

    async with anyio.create_task_group() as group:
        for _ in range(200):
            group.start_soon(hit)
    assert allowed == 50


async def test_counters_values_and_slots(store: Store) -> None:
    assert await store.add("n", 7, 60) == 7
    assert await store.add("n", 3, 60) == 10
    await store.set("v", b"\x00bytes", 60)
    assert await store.get("v") == b"\x00bytes"
    assert await store.get("missing") is None
    assert await store.acquire("slots", "a", 1, 60)
    assert not await store.acquire("slots", "b", 1, 60)
    await store.release("slots", "a")
    assert await store.acquire("slots", "b", 1, 60)


async def test_redis_values_expire(redis_server: RedisServer) -> None:
    store = RedisStore.from_url(redis_server.url, prefix=f"e-{uuid.uuid4().hex}:")
    try:
        await store.set("v", b"x", 0.05)
        await store.add("n", 1, 0.05)
        await anyio.sleep(0.2)
        assert await store.get("v") is None
        assert await store.add("n", 0, 60) == 0
    finally:
        await store.aclose()


async def test_two_clients_share_one_limit(redis_server: RedisServer) -> None:
    prefix = f"s-{uuid.uuid4().hex}:"
    first = RedisStore.from_url(redis_server.url, prefix=prefix)
    second = RedisStore.from_url(redis_server.url, prefix=prefix)
    try:
        results = [await (first if i % 2 else second).rate("k", 1, 4, 60) for i in range(6)]
    finally:
        await first.aclose()
        await second.aclose()
    assert [r.allowed for r in results] == [True] * 4 + [False] * 2


def test_repr_shows_no_url() -> None:
    store = RedisStore.from_url("redis://:hunter2-secret@127.0.0.1:1/0")
    assert "hunter2" not in repr(store)


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_outage_fail_mode_then_recovery(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer().start()
    store = RedisStore.from_url(
        server.url,
        prefix="o:",
        on_error=mode,
        timeout=0.3,  # type: ignore[arg-type]
    )
    try:
        assert (await store.rate("k", 1, 100, 60)).allowed
        server.kill()
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                started = time.monotonic()
                with anyio.fail_after(3):  # nothing hangs while Redis is gone
                    if mode == "open":
                        assert (await store.rate("k", 1, 100, 60)).allowed
                        assert await store.get("v") is None
                    else:
                        with pytest.raises(StoreUnavailable) as refused:
                            await store.rate("k", 1, 100, 60)
                        assert refused.value.headers["Retry-After"] == "1"
                assert time.monotonic() - started < 2
        outage = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(outage) == 1  # once per outage, not per call
        assert not store.available
        server.start()  # the same port
        recovered = False
        for _ in range(50):
            try:
                recovered = (await store.rate("again", 1, 100, 60)).allowed and store.available
            except StoreUnavailable:
                recovered = False
            if recovered:
                break
            await anyio.sleep(0.1)
        assert recovered
    finally:
        await store.aclose()
        server.stop()


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_a_hung_redis_costs_one_timeout_per_deadline(mode: str) -> None:
    server = RedisServer().start()
    timeout = 0.3
    store = RedisStore.from_url(
        server.url,
        prefix=f"h-{uuid.uuid4().hex}:",
        on_error=mode,  # type: ignore[arg-type]
        timeout=timeout,
    )
    try:
        assert (await store.rate("k", 1, 100, 60)).allowed  # connected before the hang
        with server.paused():
            started = time.monotonic()
            with one_deadline():
                for _ in range(4):  # a rate rule, a quota and two slots, say
                    if mode == "open":
                        assert (await store.rate("k", 1, 100, 60)).allowed
                        assert await store.acquire("slots", "lease", 1, 60)
                    else:
                        with pytest.raises(StoreUnavailable):
                            await store.rate("k", 1, 100, 60)
            spent = time.monotonic() - started
            assert spent < timeout + 0.2, spent
            # Outside a deadline, each call has the whole timeout.
            started = time.monotonic()
            if mode == "open":
                assert await store.get("v") is None
            else:
                with pytest.raises(StoreUnavailable):
                    await store.get("v")
            assert time.monotonic() - started >= timeout * 0.9
        assert not store.available
    finally:
        await store.aclose()
        server.stop()


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout"):
        RedisStore.from_url("redis://127.0.0.1:1/0", timeout=0)
