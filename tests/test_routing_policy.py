"""The pure routing rules: retry timing, strategies, the circuit, route checks."""

from __future__ import annotations

import email.utils
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provider_proxy.policy import (
    Candidate,
    CircuitState,
    Cooldown,
    Deployment,
    RetryPolicy,
    Route,
    after_failure,
    after_success,
    check_routes,
    choose,
    circuit_phase,
    decode_state,
    encode_state,
    ewma,
    retry_after_seconds,
    sticky_key,
    weighted_pick,
)

draws = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
candidates = st.lists(
    st.builds(
        Candidate,
        index=st.integers(0, 50),
        weight=st.floats(min_value=0.01, max_value=100),
        in_flight=st.integers(0, 20),
        latency=st.none() | st.floats(min_value=0, max_value=60),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda c: c.index,
)


# -- retries ---------------------------------------------------------------------------


@given(retry=st.integers(1, 100), draw=draws)
def test_full_jitter_stays_under_a_doubling_capped_ceiling(retry: int, draw: float) -> None:
    policy = RetryPolicy(backoff=0.25, max_backoff=8.0)
    wait = policy.wait(retry, draw, None, None)
    assert wait is not None
    assert 0 <= wait <= min(8.0, 0.25 * 2 ** (retry - 1)) + 1e-9


def test_backoff_doubles_without_jitter_and_stops_at_the_cap() -> None:
    policy = RetryPolicy(backoff=0.5, max_backoff=3.0, jitter=False)
    assert [policy.wait(n, 0.0, None, None) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]


@given(retry_after=st.floats(0, 30), draw=draws)
def test_retry_after_is_a_floor(retry_after: float, draw: float) -> None:
    wait = RetryPolicy().wait(1, draw, retry_after, None)
    assert wait is not None
    assert wait >= retry_after


def test_a_wait_past_the_deadline_or_a_long_retry_after_means_no_retry() -> None:
    policy = RetryPolicy(max_retry_after=10)
    assert policy.wait(1, 0.5, 5.0, remaining=4.0) is None
    assert policy.wait(1, 0.5, 11.0, remaining=None) is None
    assert policy.wait(1, 0.5, 5.0, remaining=6.0) == 5.0


def test_what_is_retried() -> None:
    policy = RetryPolicy()
    assert all(policy.retries(s) for s in (429, 500, 502, 503, 504, 529))
    assert not any(policy.retries(s) for s in (400, 401, 403, 404, 413, 422))
    assert RetryPolicy(retry_on={418}).retries(418)


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"backoff": -1}, {"deadline": 0}, {"attempt_timeout": -2}],
)
def test_bad_retry_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_after_headers() -> None:
    assert retry_after_seconds([(b"retry-after", b"3")], 0) == 3.0
    assert retry_after_seconds([(b"retry-after-ms", b"1500"), (b"retry-after", b"9")], 0) == 1.5
    date = email.utils.formatdate(1_000_010, usegmt=True).encode()
    assert retry_after_seconds([(b"retry-after", date)], 1_000_000) == pytest.approx(10)
    assert retry_after_seconds([(b"retry-after", b"soon")], 0) is None
    assert retry_after_seconds([(b"retry-after", b"-1")], 0) is None
    assert retry_after_seconds([], 0) is None


# -- strategies --------------------------------------------------------------------------


@given(
    cands=candidates,
    a=draws,
    b=draws,
    strategy=st.sampled_from(["priority", "weighted", "least_busy", "latency"]),
)
def test_every_strategy_picks_one_of_the_candidates(
    cands: list[Candidate], a: float, b: float, strategy: str
) -> None:
    picked = choose(strategy, cands, (a, b))  # type: ignore[arg-type]
    assert picked in {c.index for c in cands}


@given(cands=candidates, a=draws, b=draws)
def test_priority_is_the_first_in_order(cands: list[Candidate], a: float, b: float) -> None:
    assert choose("priority", cands, (a, b)) == min(c.index for c in cands)


@given(cands=candidates, a=draws)
def test_least_busy_picks_one_with_the_fewest_in_flight(cands: list[Candidate], a: float) -> None:
    picked = choose("least_busy", cands, (a, 0.0))
    fewest = min(c.in_flight for c in cands)
    assert next(c for c in cands if c.index == picked).in_flight == fewest


@given(cands=candidates.filter(lambda c: len(c) >= 2), a=draws, b=draws)
def test_latency_never_picks_the_slowest_of_many(
    cands: list[Candidate], a: float, b: float
) -> None:
    """Power of two choices: the pick beats (or ties) another candidate, so the
    single slowest one is never picked over the other of its pair."""
    picked = choose("latency", cands, (a, b))
    key = {c.index: (-1.0 if c.latency is None else c.latency) for c in cands}
    assert sum(key[picked] <= v for v in key.values()) >= 2


def test_latency_prefers_the_unmeasured_then_the_faster() -> None:
    pair = [Candidate(0, latency=2.0), Candidate(1, latency=0.1)]
    assert {choose("latency", pair, (a / 10, b / 10)) for a in range(10) for b in range(10)} == {1}
    fresh = [Candidate(0, latency=0.1), Candidate(1, latency=None)]
    assert choose("latency", fresh, (0.0, 0.0)) == 1


def test_weighted_follows_the_weights_over_evenly_spread_draws() -> None:
    cands = [Candidate(0, weight=3), Candidate(1, weight=1)]
    counts = Counter(weighted_pick(cands, i / 1000).index for i in range(1000))
    assert counts == {0: 750, 1: 250}


@given(cands=candidates, a=draws)
def test_weighted_pick_never_picks_outside(cands: list[Candidate], a: float) -> None:
    assert weighted_pick(cands, a) in cands


def test_choose_needs_candidates() -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        choose("priority", [], (0.0, 0.0))


@given(samples=st.lists(st.floats(0, 100), min_size=1, max_size=30))
def test_ewma_stays_within_the_samples(samples: list[float]) -> None:
    value = None
    for sample in samples:
        value = ewma(value, sample)
    assert value is not None
    assert min(samples) - 1e-9 <= value <= max(samples) + 1e-9


# -- the circuit ---------------------------------------------------------------------------


def test_the_circuit_opens_after_n_failures_in_the_window_and_probes_once_cooled() -> None:
    policy = Cooldown(failures=3, window=60, base=5, factor=2, max=300)
    state = CircuitState()
    for t in (100.0, 101.0):
        state = after_failure(state, t, policy)
        assert circuit_phase(state, t) == "closed"
    state = after_failure(state, 102.0, policy)
    assert circuit_phase(state, 102.0) == "open"
    assert circuit_phase(state, 106.9) == "open"
    assert circuit_phase(state, 107.0) == "half_open"
    # the probe fails: open again, twice as long
    state = after_failure(state, 107.0, policy)
    assert circuit_phase(state, 116.9) == "open"
    assert circuit_phase(state, 117.0) == "half_open"
    # the probe succeeds: closed, failures forgotten
    state = after_success(state)
    assert circuit_phase(state, 117.0) == "closed"
    assert state == CircuitState()


def test_failures_outside_the_window_do_not_add_up() -> None:
    policy = Cooldown(failures=2, window=10)
    state = after_failure(CircuitState(), 0.0, policy)
    state = after_failure(state, 20.0, policy)
    assert circuit_phase(state, 20.0) == "closed"


def test_retry_after_cools_for_as_long_as_the_provider_asked() -> None:
    state = after_failure(CircuitState(), 50.0, Cooldown(failures=5), retry_after=7.0)
    assert circuit_phase(state, 56.9) == "open"
    assert circuit_phase(state, 57.0) == "half_open"


@given(
    events=st.lists(st.tuples(st.booleans(), st.floats(0, 5), st.none() | st.floats(0, 20))),
    failures=st.integers(1, 5),
)
def test_cool_downs_never_exceed_the_max_and_success_always_closes(
    events: list[tuple[bool, float, float | None]], failures: int
) -> None:
    policy = Cooldown(failures=failures, base=1, factor=3, max=40)
    state, now = CircuitState(), 0.0
    for failed, step, retry_after in events:
        now += step
        if failed:
            state = after_failure(state, now, policy, retry_after)
            assert state.open_until - now <= max(40.0, retry_after or 0) + 1e-9
        else:
            state = after_success(state)
            assert circuit_phase(state, now) == "closed"
        assert decode_state(encode_state(state)) == state


def test_an_unreadable_stored_state_is_closed() -> None:
    assert decode_state(b"garbage") == CircuitState()
    assert decode_state(None) == CircuitState()


# -- routes ------------------------------------------------------------------------------


def test_routes_are_checked() -> None:
    adapters = ["openai", "anthropic"]
    good = {
        "smart": Route([Deployment("anthropic/claude"), "fast"]),
        "fast": Route(["openai/gpt-4.1-mini"], strategy="weighted"),
    }
    check_routes(good, adapters)
    with pytest.raises(ValueError, match=r"'nope'.*not configured"):
        check_routes({"x": Route(["nope/model"])}, adapters)
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        check_routes({"a": Route(["b"]), "b": Route(["a"])}, adapters)
    with pytest.raises(ValueError, match="reads as a model of the adapter 'openai'"):
        check_routes({"openai/gpt-4.1": Route(["anthropic/claude"])}, adapters)
    with pytest.raises(ValueError, match="names no route"):
        check_routes({"x": Route(["elsewhere"])}, adapters)


def test_bad_routes_and_deployments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Route([])
    with pytest.raises(ValueError, match="Unknown strategy"):
        Route(["openai/x"], strategy="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight above 0"):
        Deployment("openai/x", weight=0)
    with pytest.raises(ValueError, match="sticky_ttl"):
        Route(["openai/x"], sticky_ttl=0)


def test_sticky_keys_differ_by_client_and_conversation() -> None:
    one = sticky_key("smart", "alice", "hello")
    assert one == sticky_key("smart", "alice", "hello")
    assert one != sticky_key("smart", "bob", "hello")
    assert one != sticky_key("smart", "alice", "other")
    assert "alice" not in one
    assert "hello" not in one
