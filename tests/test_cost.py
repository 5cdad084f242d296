"""Cost: prices, the breakdown, the library, and cost in events, logs, /status and metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import genai_prices
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from provider_proxy import Guards, ProxyApp, Usage
from provider_proxy.engine import _priced
from provider_proxy.observe import NdjsonUsageSink, PrometheusMetrics
from provider_proxy.observe._sinks import event_fields
from provider_proxy.spend import LIBRARY, Cost, Price, Pricing, SpendTally, cost_of, estimate

from .conftest import CLIENT_KEY
from .events import event
from .servers import serve, wait_until
from .test_observability import Collect

M = Decimal(1_000_000)
PRICES = {"gpt-fake": {"input": 2, "output": 8, "cache_read": 0.5}}
CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}


# -- pure pricing ----------------------------------------------------------------------


def test_each_token_is_billed_once_at_the_rate_of_its_kind() -> None:
    price = Price.of(
        {"input": 3, "output": 15, "cache_read": "0.3", "cache_write": 3.75, "reasoning": 20}
    )
    cost = cost_of(
        Usage(1000, 400, cache_read_tokens=600, cache_write_tokens=100, reasoning_tokens=150), price
    )
    assert cost.input == 300 * Decimal(3) / M  # 1000 - 600 read - 100 written
    assert cost.cache_read == 600 * Decimal("0.3") / M
    assert cost.cache_write == 100 * Decimal("3.75") / M
    assert cost.output == 250 * Decimal(15) / M  # 400 - 150 reasoning
    assert cost.reasoning == 150 * Decimal(20) / M
    assert (
        cost.total == cost.input + cost.cache_read + cost.cache_write + cost.output + cost.reasoning
    )
    assert cost.total == Decimal("0.008205")


def test_cached_tokens_are_not_billed_at_the_full_rate() -> None:
    price = Price.of({"input": 2, "output": 8, "cache_read": 0.5})
    cached = cost_of(Usage(1000, 0, cache_read_tokens=900), price)
    uncached = cost_of(Usage(1000, 0), price)
    assert cached.total == (100 * 2 + 900 * Decimal("0.5")) / M
    assert uncached.total == 1000 * Decimal(2) / M
    assert cached.total < uncached.total


def test_rates_left_out_fall_back_to_their_parent_kind() -> None:
    price = Price.of({"input": 1, "output": 4})
    cost = cost_of(
        Usage(10, 10, cache_read_tokens=5, cache_write_tokens=5, reasoning_tokens=5), price
    )
    assert cost.cache_read == cost.cache_write == 5 * Decimal(1) / M
    assert cost.reasoning == cost.output == 5 * Decimal(4) / M


def test_unknown_counts_are_zero_and_reasoning_never_exceeds_output() -> None:
    price = Price.of({"input": 1, "output": 1})
    assert cost_of(Usage(), price).total == 0
    cost = cost_of(Usage(0, 3, reasoning_tokens=10), price)
    assert (cost.output, cost.reasoning) == (0, 3 / M)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"input": 1}, "needs output"),
        ({"input": 1, "output": 1, "cached": 1}, "Unknown price keys"),
        ({"input": -1, "output": 1}, ">= 0"),
        ({"input": "abc", "output": 1}, "must be a number"),
        ({"input": float("nan"), "output": 1}, "finite"),
    ],
)
def test_bad_prices_are_refused_naming_the_key(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Price.of(spec, "m")


def test_a_price_is_not_a_boolean_or_a_list() -> None:
    with pytest.raises(TypeError):
        Price.of({"input": True, "output": 1})
    with pytest.raises(TypeError):
        Price.of([1, 2])  # type: ignore[arg-type]


def test_floats_keep_their_written_value() -> None:
    assert Price.of({"input": 0.1, "output": 0.3}).input == Decimal("0.1")


def test_the_estimate_is_an_upper_bound_of_the_cost() -> None:
    price = Price.of({"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75})
    bound = estimate(1000, 500, price)
    for usage in (
        Usage(1000, 500),
        Usage(1000, 500, cache_read_tokens=1000),
        Usage(1000, 500, cache_write_tokens=1000),
        Usage(1000, 500, reasoning_tokens=500),
    ):
        assert cost_of(usage, price).total <= bound


def test_cost_as_dict_is_exact_strings() -> None:
    cost = cost_of(Usage(3, 0), Price.of({"input": "0.1", "output": 0}))
    assert cost.as_dict()["total"] == "3E-7"
    assert Decimal(cost.as_dict()["total"]) == Decimal("0.0000003")


# -- where prices come from ------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "url", "usage"),
    [
        ("claude-sonnet-4-5", "https://api.anthropic.com", Usage(5000, 300, 3000, 1000)),
        ("gpt-4o", "https://api.openai.com/v1", Usage(1200, 20, 1024)),
        ("gemini-2.5-flash", "https://generativelanguage.googleapis.com", Usage(4000, 150, 3500)),
    ],
)
def test_library_prices_agree_with_the_library_itself(model: str, url: str, usage: Usage) -> None:
    cost, why = Pricing().cost("any-name", model, usage, url)
    assert why is None
    assert cost is not None
    assert cost.source == LIBRARY
    theirs = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        ),
        model_ref=model,
        provider_api_url=url,
    )
    assert cost.total == theirs.total_price


def test_the_library_finds_a_model_by_name_behind_any_base_url() -> None:
    cost, why = Pricing().cost("local", "gpt-4o-mini", Usage(1000, 100), "http://127.0.0.1:9/v1")
    assert why is None
    assert cost is not None
    assert cost.total > 0


def test_operator_prices_win_and_a_provider_scoped_one_wins_over_the_model() -> None:
    pricing = Pricing(
        {"gpt-4o": {"input": 1, "output": 1}, "azure/GPT-4o": {"input": 10, "output": 10}}
    )
    usage = Usage(1_000_000, 0)
    assert pricing.cost("openai", "gpt-4o", usage)[0] == cost_of(
        usage, Price.of({"input": 1, "output": 1})
    )
    scoped, _ = pricing.cost("azure", "gpt-4o", usage)
    assert scoped is not None
    assert scoped.total == 10
    assert scoped.source == "prices"


def test_unknown_models_have_no_cost_and_say_why() -> None:
    assert Pricing().cost("p", "no-such-model-xyz", Usage(1, 1)) == (
        None,
        f"no price for 'no-such-model-xyz' in {LIBRARY}",
    )
    assert Pricing(library=False).cost("p", "gpt-4o", Usage(1, 1))[1] == (
        "no price for 'gpt-4o': add it to prices="
    )
    assert Pricing().cost("p", None, Usage(1, 1)) == (None, "the model is not known")
    assert Pricing().cost("p", "gpt-4o", None) == (None, "the provider reported no token usage")


def test_tiered_library_prices_step_up_with_the_prompt() -> None:
    pricing = Pricing()
    small, _, _ = pricing.price("a", "claude-sonnet-4-5", "https://api.anthropic.com", 1000)
    large, _, _ = pricing.price("a", "claude-sonnet-4-5", "https://api.anthropic.com", 300_000)
    assert small is not None
    assert large is not None
    assert large.input > small.input


# -- cost in events and sinks ----------------------------------------------------------


def test_event_fields_and_usage_lines_carry_the_cost(tmp_path: Path) -> None:
    cost = cost_of(Usage(1200, 20, 1024, 0), Price.of({"input": 2, "output": 8}))
    fields = event_fields(event(cost=cost))
    assert fields["cost_usd"] == str(cost.total)
    assert fields["cost"]["input"] == str(cost.input)
    sink = NdjsonUsageSink(tmp_path / "usage.ndjson")
    sink(event(cost=None, cost_unknown="no price for 'gpt-4o'"))
    sink(event(cost=cost))
    sink.close()
    first, second = (
        json.loads(line) for line in (tmp_path / "usage.ndjson").read_text().splitlines()
    )
    assert (first["cost_usd"], first["cost_unknown"]) == (None, "no price for 'gpt-4o'")
    assert Decimal(second["cost_usd"]) == cost.total
    assert second["cost_unknown"] is None


def test_prometheus_cost_by_provider_and_model_and_by_client_only_when_asked() -> None:
    cost = cost_of(Usage(1_000_000, 0), Price.of({"input": 2, "output": 8}))
    plain = PrometheusMetrics()
    plain(event(cost=cost))
    plain(event(cost=cost))
    by_client = PrometheusMetrics(cost_by_client=True)
    by_client(event(cost=cost, identity="team-a"))
    by_client(event(cost=cost, identity=None))

    def samples(metrics: PrometheusMetrics) -> dict[tuple[tuple[str, str], ...], float]:
        text = metrics.render()[0].decode()
        return {
            tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            if family.name == "provider_proxy_cost_usd"
            for s in family.samples
            if s.name == "provider_proxy_cost_usd_total"
        }

    assert samples(plain) == {(("model", "gpt-4o"), ("provider", "openai")): 4.0}
    assert samples(by_client) == {
        (("client", "team-a"), ("model", "gpt-4o"), ("provider", "openai")): 2.0,
        (("client", "none"), ("model", "gpt-4o"), ("provider", "openai")): 2.0,
    }


def test_the_tally_caps_its_names() -> None:
    tally = SpendTally(max_keys=2)
    cost = Cost(Decimal(1), Decimal(1), *(Decimal(0),) * 4)
    for model in ("a", "b", "c", "d"):
        tally.add("p", model, None, Usage(1, 1), cost)
    assert sorted(tally.spent("model")) == ["a", "b", "other"]
    assert tally.spent("model")["other"] == 2
    assert tally.status()["total"]["cost_usd"] == "4"


# -- through a real server -------------------------------------------------------------


def test_cost_of_real_requests_in_events_access_log_and_status(
    make_proxy: Callable[..., ProxyApp], caplog: pytest.LogCaptureFixture
) -> None:
    sink = Collect()
    guards = Guards(client_keys={CLIENT_KEY: "team-a"})
    proxy = make_proxy(sinks=[sink], prices=PRICES, guards=guards, metrics=True)
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    with caplog.at_level(logging.INFO, "provider_proxy.access"), serve(proxy) as server:
        whole = httpx.post(
            server.url + "/openai/chat/completions",
            json=CHAT,
            headers={**auth, "x-fake-cached": "6"},
            timeout=10,
        )
        streamed = httpx.post(
            server.url + "/openai/chat/completions",
            json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
            headers=auth,
            timeout=10,
        )
        unknown = httpx.post(
            server.url + "/openai/chat/completions",
            json={**CHAT, "model": "model-nobody-prices"},
            headers=auth,
            timeout=10,
        )
        assert whole.status_code == streamed.status_code == unknown.status_code == 200
        assert wait_until(lambda: len(sink.events) == 3)
        status = httpx.get(server.url + "/status", headers=auth, timeout=10).json()
        metrics = httpx.get(server.url + "/metrics", headers=auth, timeout=10).text
    price = Price.of(PRICES["gpt-fake"])
    by_id = {e.model: e for e in sink.events}
    events = sink.events
    first, second = events[0], events[1]
    assert first.usage is not None
    assert first.usage.cache_read_tokens == 6
    assert first.cost == cost_of(first.usage, price)
    assert first.cost_unknown is None
    assert first.cost.cache_read == 6 * Decimal("0.5") / M
    assert second.streamed
    assert second.usage is not None
    assert second.cost == cost_of(second.usage, price)
    unpriced = by_id["model-nobody-prices"]
    assert unpriced.cost is None
    assert unpriced.cost_unknown == (f"no price for 'model-nobody-prices' in {LIBRARY}")
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "provider_proxy.access"
    ]
    assert [line["cost_usd"] for line in lines[:3]] == [
        str(first.cost.total),
        str(second.cost.total),
        None,
    ]
    spend = status["spend"]
    total = first.cost.total + second.cost.total
    assert Decimal(spend["total"]["cost_usd"]) == total
    assert spend["total"]["requests"] == 3
    assert spend["total"]["priced"] == 2
    assert Decimal(spend["by_provider"]["openai"]["cost_usd"]) == total
    assert Decimal(spend["by_model"]["gpt-fake"]["cost_usd"]) == total
    assert spend["by_model"]["model-nobody-prices"]["priced"] == 0
    assert Decimal(spend["by_client"]["team-a"]["cost_usd"]) == total
    assert (
        f'provider_proxy_cost_usd_total{{model="gpt-fake",provider="openai"}} {float(total)}'
        in metrics
    )


# -- x-proxy-cost-usd --------------------------------------------------------------------


def test_cost_header_on_whole_answers_only(make_proxy: Callable[..., ProxyApp]) -> None:
    sink = Collect()
    proxy = make_proxy(sinks=[sink], prices=PRICES, cost_header=True)
    with serve(proxy) as server:
        whole = httpx.post(
            server.url + "/openai/chat/completions",
            json=CHAT,
            headers={"x-fake-cached": "4"},
            timeout=10,
        )
        streamed = httpx.post(
            server.url + "/openai/chat/completions",
            json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
            timeout=10,
        )
        unpriced = httpx.post(
            server.url + "/openai/chat/completions",
            json={**CHAT, "model": "model-nobody-prices"},
            timeout=10,
        )
        assert wait_until(lambda: len(sink.events) == 3)
    first = sink.events[0]
    assert first.cost is not None
    assert whole.headers["x-proxy-cost-usd"] == str(first.cost.total)
    assert whole.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 4
    assert first.response_bytes == len(whole.content)
    assert first.time_to_first_byte is not None
    assert "x-proxy-cost-usd" not in streamed.headers  # a stream never waits
    assert streamed.text.endswith("data: [DONE]\n\n")
    assert "x-proxy-cost-usd" not in unpriced.headers
    assert unpriced.status_code == 200


def test_cost_header_at_the_gateway_in_the_clients_format(
    make_proxy: Callable[..., ProxyApp],
) -> None:
    proxy = make_proxy(prices={"claude-fake": {"input": 3, "output": 15}}, cost_header=True)
    with serve(proxy) as server:
        response = httpx.post(
            server.url + "/v1/chat/completions",
            json={**CHAT, "model": "anthropic/claude-fake"},
            timeout=10,
        )
    assert response.status_code == 200
    usage = response.json()["usage"]
    expected = (usage["prompt_tokens"] * 3 + usage["completion_tokens"] * 15) / M
    assert Decimal(response.headers["x-proxy-cost-usd"]) == expected


def test_a_long_answer_is_relayed_as_it_comes_without_the_header(
    make_proxy: Callable[..., ProxyApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_priced, "MAX_PRICED_BYTES", 16)
    sink = Collect()
    proxy = make_proxy(sinks=[sink], prices=PRICES, cost_header=True)
    with serve(proxy) as server:
        response = httpx.post(server.url + "/openai/chat/completions", json=CHAT, timeout=10)
        assert wait_until(lambda: len(sink.events) == 1)
    assert response.status_code == 200
    assert "x-proxy-cost-usd" not in response.headers
    body = response.json()  # whole, in order, though read in two parts
    assert body["usage"]["prompt_tokens"] == 10
    event = sink.events[0]
    assert event.cost is not None
    assert event.usage is not None
    assert event.response_bytes == len(response.content)


def test_requests_without_a_billed_answer_say_why_they_have_no_cost(
    make_proxy: Callable[..., ProxyApp],
) -> None:
    sink = Collect()
    proxy = make_proxy(sinks=[sink], prices=PRICES)
    with serve(proxy) as server:
        failed = httpx.post(
            server.url + "/openai/chat/completions",
            json=CHAT,
            headers={"x-fake-status": "500"},
            timeout=10,
        )
        assert failed.status_code == 500
        assert wait_until(lambda: len(sink.events) == 1)
    [event] = sink.events
    assert event.cost is None
    assert event.cost_unknown == "the provider answered 500, with no usage"


def test_usage_is_read_for_the_status_page_when_prices_are_given(
    make_proxy: Callable[..., ProxyApp],
) -> None:
    # No sink, no guards, the access log's level off: only /status wants the spend.
    proxy = make_proxy(prices=PRICES)
    with serve(proxy) as server:
        httpx.post(server.url + "/openai/chat/completions", json=CHAT, timeout=10)
        status = httpx.get(server.url + "/status", timeout=10).json()
    assert status["spend"]["total"]["priced"] == 1
    assert Decimal(status["spend"]["by_model"]["gpt-fake"]["cost_usd"]) > 0


def test_library_models_without_a_price_per_token_have_no_cost() -> None:
    # Listed with no price at all (free, or unknown: the table does not say), or
    # priced by the character: never guessed as free.
    for model, url in [
        ("qwen-3-coder-480b", "https://api.cerebras.ai/v1"),
        ("canopylabs/orpheus-arabic-saudi", "https://api.groq.com/openai/v1"),
    ]:
        cost, why = Pricing().cost("p", model, Usage(100, 100), url)
        assert cost is None
        assert why == f"{LIBRARY} has no price per token for {model!r}"


def test_without_the_prices_extra_unknown_models_say_how_to_price_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "genai_prices.data_snapshot", None)
    assert Pricing().cost("openai", "gpt-4o", Usage(1, 1)) == (
        None,
        "no price for 'gpt-4o': pass prices=, or install the 'prices' extra "
        "(pip install 'provider-proxy[prices]')",
    )
    assert Pricing(PRICES).cost("openai", "gpt-fake", Usage(1, 1))[0] is not None
