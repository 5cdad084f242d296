"""The stores' atomic operations: MemoryStore with a fake clock, and GCRA itself."""

from __future__ import annotations

import time

import pytest

from provider_proxy import MemoryStore
from provider_proxy.state._store import gcra, one_deadline, time_left

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_burst_up_to_the_limit_then_refused_with_retry_after() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    results = [await store.rate("k", 1, 10, 60) for _ in range(11)]
    assert [r.allowed for r in results] == [True] * 10 + [False]
    assert [r.remaining for r in results[:10]] == list(range(9, -1, -1))
    assert results[-1].retry_after == pytest.approx(6.0)  # one unit refills every 6 s
    assert results[-1].reset_after == pytest.approx(60.0)


async def test_no_double_burst_at_a_window_edge() -> None:
    """A fixed window lets 10 through at 59 s and 10 more at 61 s; GCRA does not."""
    clock = Clock()
    store = MemoryStore(clock)
    clock.now += 59
    assert all([(await store.rate("k", 1, 10, 60)).allowed for _ in range(10)])
    clock.now += 2  # across a fixed window's edge
    allowed = sum([(await store.rate("k", 1, 10, 60)).allowed for _ in range(10)])
    assert allowed == 0
    # Over any 60 s span, at most 10 + the refill of that span get through.
    clock.now += 58
    allowed = sum([(await store.rate("k", 1, 10, 60)).allowed for _ in range(20)])
    assert allowed == 10


async def test_refill_is_continuous() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    for _ in range(10):
        await store.rate("k", 1, 10, 60)
    clock.now += 12
    assert [(await store.rate("k", 1, 10, 60)).allowed for _ in range(3)] == [True, True, False]


async def test_forced_charges_become_debt() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    # 1,000 tokens per minute; a call used 2,500: the next is refused for 90 s.
    charged = await store.rate("t", 2500, 1000, 60, force=True)
    assert not charged.allowed
    check = await store.rate("t", 0, 1000, 60)
    assert not check.allowed
    assert check.retry_after == pytest.approx(90.0)
    clock.now += 91
    assert (await store.rate("t", 0, 1000, 60)).allowed


async def test_counters_expire() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    assert await store.add("q", 5, 10) == 5
    assert await store.add("q", 0, 10) == 5
    assert await store.add("q", 3, 10) == 8
    clock.now += 11
    assert await store.add("q", 0, 10) == 0


async def test_concurrency_slots_and_expired_leases() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    assert await store.acquire("c", "a", 2, 30)
    assert await store.acquire("c", "b", 2, 30)
    assert not await store.acquire("c", "c", 2, 30)
    await store.release("c", "a")
    assert await store.acquire("c", "c", 2, 30)
    clock.now += 31  # leases of a crashed instance age out
    assert await store.acquire("c", "d", 2, 30)
    assert await store.acquire("c", "e", 2, 30)


async def test_values_expire_and_sweep_frees_memory() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    await store.set("v", b"x", 5)
    assert await store.get("v") == b"x"
    for i in range(100):
        await store.rate(f"r{i}", 1, 10, 1)
        await store.add(f"a{i}", 1, 1)
    clock.now += 6
    assert await store.get("v") is None
    store.sweep()
    assert len(store) == 0


def test_gcra_never_reports_negative_or_over_limit() -> None:
    result, stored = gcra(None, 0.0, 0, 5, 10, False)
    assert (result.allowed, result.remaining, stored) == (True, 5, 0.0)
    result, stored = gcra(100.0, 0.0, 1, 5, 10, False)
    assert (result.allowed, result.remaining, stored) == (False, 0, None)


def test_one_deadline_is_shared_by_the_calls_inside() -> None:
    assert time_left(0.5) == 0.5  # outside a deadline: each call its own timeout
    with one_deadline():
        assert time_left(0.5) == pytest.approx(0.5, abs=0.01)  # the first call starts it
        time.sleep(0.1)
        assert time_left(0.5) == pytest.approx(0.4, abs=0.05)
        with one_deadline():  # a nested one is its own
            assert time_left(0.5) == pytest.approx(0.5, abs=0.01)
        assert time_left(0.5) < 0.45
    assert time_left(0.5) == 0.5
