"""Web searches a provider runs are counted, priced and budgeted.

Anthropic bills ``usage.server_tool_use.web_search_requests``, OpenAI each
``web_search_call`` item of a Responses answer, Google each answer grounded in
Google Search. The count travels as :attr:`provider_proxy.Usage.web_searches`
(and the canonical ``Usage.web_searches`` through the gateway's codecs), reaches
the :class:`~provider_proxy.ProxyEvent`, the ``web_searches_total`` metric and the
cost (``web_search`` in ``prices=``, USD per thousand searches), so a budget
counts searches. The end-to-end tests run searches on
:class:`~provider_proxy.testing.FakeUpstream` through a real server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from provider_proxy import Guards, ProxyEvent, Usage, make_asgi_app
from provider_proxy.adapters import (
    AnthropicAdapter,
    GeminiAdapter,
    OpenAIAdapter,
    OpenAICompatibleAdapter,
)
from provider_proxy.dialects import AnthropicMessages, Dialect, Gemini, OpenAIResponses, canonical
from provider_proxy.dialects import _anthropic_codec as anthropic_codec
from provider_proxy.guards import Budget
from provider_proxy.spend import Price, cost_of

from .conftest import ANTHROPIC_KEY, OPENAI_KEY
from .servers import ServerThread, serve, wait_until

GEMINI_KEY = "gemini-test-key-0123456789"
QUESTION = "What is the weather in Paris?"
ANTHROPIC_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
#: Tokens free, so a cost is the searches' alone: USD 10 per thousand (Anthropic's price).
PRICES: dict[str, dict[str, Any]] = {
    "claude-fake-search": {"input": 0, "output": 0, "web_search": 10},
    "gemini-2.5-flash": {"input": 0, "output": 0, "web_search": 35},
    "gpt-fake-search": {"input": 0, "output": 0, "web_search": "25"},
    "claude-unpriced-search": {"input": 0, "output": 0},
}


class ResponsesOnly(OpenAICompatibleAdapter):
    """A server that speaks only the Responses API (OpenAI's web search with it)."""

    dialects: ClassVar[tuple[Dialect, ...]] = (OpenAIResponses(),)


class Collect:
    def __init__(self) -> None:
        self.events: list[ProxyEvent] = []

    def __call__(self, event: ProxyEvent) -> None:
        self.events.append(event)

    def last(self, count: int) -> ProxyEvent:
        assert wait_until(lambda: len(self.events) >= count)
        return self.events[count - 1]


def _adapters(upstream: ServerThread) -> list[Any]:
    return [
        AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
        GeminiAdapter(base_url=upstream.url, api_key=GEMINI_KEY),
        OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
        ResponsesOnly(name="resp", base_url=upstream.url + "/v1", api_key="resp-key-0123456789"),
    ]


@pytest.fixture
def collect() -> Collect:
    return Collect()


@pytest.fixture
def proxy(upstream: ServerThread, collect: Collect) -> Iterator[ServerThread]:
    app = make_asgi_app(
        _adapters(upstream),
        sinks=[collect],
        metrics=True,
        prices=PRICES,
        validate_credentials="off",
    )
    with serve(app) as server:
        yield server


def _messages(model: str, stream: bool = False) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [ANTHROPIC_SEARCH],
        "stream": stream,
    }


def _post(server: ServerThread, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    answer = httpx.post(server.url + path, json=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer


def _searched(event: ProxyEvent, count: int, usd_per_thousand: int) -> None:
    assert event.usage is not None
    assert event.usage.web_searches == count
    assert event.web_searches == count
    assert event.cost is not None
    assert event.cost.web_search == Decimal(usd_per_thousand) * count / 1000
    assert event.cost.total == event.cost.web_search  # the tokens are free here
    assert event.cost.as_dict()["web_search"] == str(event.cost.web_search)


# -- passthrough: each provider's own format ------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_searches_are_counted_and_priced(
    proxy: ServerThread, collect: Collect, stream: bool
) -> None:
    answer = _post(proxy, "/anthropic/v1/messages", _messages("claude-fake-search", stream))
    if not stream:
        assert answer.json()["usage"]["server_tool_use"] == {"web_search_requests": 1}
    _searched(collect.last(1), 1, 10)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_web_search_calls_are_counted(
    proxy: ServerThread, collect: Collect, stream: bool
) -> None:
    body = {
        "model": "gpt-fake-search",
        "input": QUESTION,
        "tools": [{"type": "web_search"}],
        "stream": stream,
    }
    _post(proxy, "/openai/responses", body)
    _searched(collect.last(1), 1, 25)


@pytest.mark.parametrize(
    "method", ["generateContent", "streamGenerateContent?alt=sse"], ids=["whole", "stream"]
)
def test_a_grounded_gemini_answer_is_one_search(
    proxy: ServerThread, collect: Collect, method: str
) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": QUESTION}]}],
        "tools": [{"googleSearch": {}}],
    }
    _post(proxy, f"/gemini/v1beta/models/gemini-2.5-flash:{method}", body)
    _searched(collect.last(1), 1, 35)


def test_an_answer_without_a_search_counts_none(proxy: ServerThread, collect: Collect) -> None:
    body = _messages("claude-fake-search")
    del body["tools"]
    _post(proxy, "/anthropic/v1/messages", body)
    event = collect.last(1)
    assert event.usage is not None
    assert event.usage.web_searches is None
    assert event.web_searches == 0
    assert event.cost is not None
    assert event.cost.web_search == 0


def test_a_price_without_a_search_rate_bills_searches_nothing(
    proxy: ServerThread, collect: Collect
) -> None:
    _post(proxy, "/anthropic/v1/messages", _messages("claude-unpriced-search"))
    event = collect.last(1)
    assert event.web_searches == 1  # still counted
    assert event.cost is not None
    assert event.cost.web_search == 0


# -- the gateway: the provider's count, whatever the client's format --------------------------


def test_a_chat_client_on_claude_counts_claudes_searches(
    proxy: ServerThread, collect: Collect
) -> None:
    body = {
        "model": "anthropic/claude-fake-search",
        "messages": [{"role": "user", "content": QUESTION}],
        "web_search_options": {},
    }
    _post(proxy, "/v1/chat/completions", body)
    _searched(collect.last(1), 1, 10)


def test_a_responses_client_on_gemini_counts_the_grounded_answer(
    proxy: ServerThread, collect: Collect
) -> None:
    body = {
        "model": "gemini/gemini-2.5-flash",
        "input": QUESTION,
        "tools": [{"type": "web_search"}],
    }
    answer = _post(proxy, "/v1/responses", body)
    assert "web_search_call" in [item["type"] for item in answer.json()["output"]]
    _searched(collect.last(1), 1, 35)


def test_an_anthropic_client_on_a_responses_provider_sees_the_search_in_usage(
    proxy: ServerThread, collect: Collect
) -> None:
    body = _messages("resp/gpt-fake-search")
    body["tools"] = [{"type": "web_search_20250305", "name": "web_search"}]  # no max_uses there
    answer = _post(proxy, "/v1/messages", body, **{"anthropic-version": "2023-06-01"})
    assert answer.json()["usage"]["server_tool_use"] == {
        "web_search_requests": 1,
        "web_fetch_requests": 0,
    }
    _searched(collect.last(1), 1, 25)


# -- metrics and budgets -------------------------------------------------------------------------


def test_the_metric_counts_searches_by_provider_and_model(
    proxy: ServerThread, collect: Collect
) -> None:
    for _ in range(2):
        _post(proxy, "/anthropic/v1/messages", _messages("claude-fake-search"))
    assert wait_until(lambda: len(collect.events) == 2)
    text = httpx.get(proxy.url + "/metrics", timeout=30).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    labels = (("model", "claude-fake-search"), ("provider", "anthropic"))
    assert samples[("provider_proxy_web_searches_total", labels)] == 2
    assert samples[("provider_proxy_cost_usd_total", labels)] == pytest.approx(0.02)


def test_a_budget_counts_searches(upstream: ServerThread, collect: Collect) -> None:
    app = make_asgi_app(
        _adapters(upstream),
        sinks=[collect],
        prices=PRICES,
        guards=Guards(client_keys={"key-alice": "alice"}, budgets=[Budget("0.015", period=None)]),
        validate_credentials="off",
    )
    headers = {"x-api-key": "key-alice", "anthropic-version": "2023-06-01"}
    with serve(app) as server:
        body = _messages("claude-fake-search")
        statuses = [
            httpx.post(
                f"{server.url}/anthropic/v1/messages", json=body, headers=headers
            ).status_code
            for _ in range(3)
        ]
        refused = httpx.post(f"{server.url}/anthropic/v1/messages", json=body, headers=headers)
    # Tokens cost nothing: only the two searches (USD 0.01 each) spent the budget.
    assert statuses == [200, 200, 429]
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "budget" in refused.json()["error"]["message"]
    assert refused.headers["x-proxy-budget-remaining-usd"] == "0"


# -- the readers, the codec and the arithmetic ------------------------------------------------


def test_anthropic_usage_reads_server_tool_use() -> None:
    read = AnthropicMessages().usage_of(
        {
            "type": "message_delta",
            "usage": {"output_tokens": 5, "server_tool_use": {"web_search_requests": 3}},
        }
    )
    assert read is not None
    assert read.web_searches == 3
    started = Usage(input_tokens=10, output_tokens=1)
    assert started.merge(read) == Usage(10, 5, None, None, None, 3)
    assert AnthropicMessages().usage_of({"usage": {"input_tokens": 1}}) == Usage(1)


def test_responses_usage_counts_web_search_call_items() -> None:
    completed = {
        "type": "response.completed",
        "response": {
            "output": [
                {"type": "web_search_call", "id": "ws_1"},
                {"type": "web_search_call", "id": "ws_2"},
                {"type": "message", "content": []},
            ],
            "usage": {"input_tokens": 4, "output_tokens": 2},
        },
    }
    read = OpenAIResponses().usage_of(completed)
    assert read is not None
    assert (read.input_tokens, read.web_searches) == (4, 2)
    plain = OpenAIResponses().usage_of({"output": [], "usage": {"input_tokens": 4}})
    assert plain is not None
    assert plain.web_searches is None  # none ran: as every other format says it


def test_gemini_usage_counts_a_grounded_answer_once() -> None:
    usage_metadata = {"promptTokenCount": 3, "candidatesTokenCount": 2}
    grounded = {
        "candidates": [{"groundingMetadata": {"webSearchQueries": ["a", "b"]}}],
        "usageMetadata": usage_metadata,
    }
    read = Gemini().usage_of(grounded)
    assert read is not None
    assert read.web_searches == 1
    ungrounded = Gemini().usage_of({"candidates": [{}], "usageMetadata": usage_metadata})
    assert ungrounded is not None
    assert ungrounded.web_searches is None


def test_the_anthropic_codec_carries_the_count_both_ways() -> None:
    decoded = anthropic_codec.decode_usage(
        {"input_tokens": 1, "output_tokens": 2, "server_tool_use": {"web_search_requests": 2}}
    )
    assert decoded.web_searches == 2
    assert anthropic_codec.encode_usage(decoded)["server_tool_use"] == {
        "web_search_requests": 2,
        "web_fetch_requests": 0,
    }
    assert "server_tool_use" not in anthropic_codec.encode_usage(canonical.Usage(1, 2))
    assert decoded.to_usage().web_searches == 2
    assert canonical.Usage.from_usage(Usage(web_searches=4)).web_searches == 4


def test_cost_of_bills_searches_per_thousand() -> None:
    price = Price.of({"input": 3, "output": 15, "web_search": 10})
    assert price.web_search == Decimal(10)
    cost = cost_of(Usage(1_000_000, 0, web_searches=3), price)
    assert cost.web_search == Decimal("0.03")
    assert cost.total == Decimal(3) + Decimal("0.03")
    assert cost_of(Usage(0, 0, web_searches=3), Price.of({"input": 1, "output": 1})).total == 0
    with pytest.raises(ValueError, match="web_search"):
        Price.of({"input": 1, "output": 1, "web_search": -1})


def test_the_json_log_names_the_count(proxy: ServerThread, collect: Collect) -> None:
    from provider_proxy.observe._sinks import event_fields

    _post(proxy, "/anthropic/v1/messages", _messages("claude-fake-search"))
    fields = event_fields(collect.last(1))
    assert fields["web_searches"] == 1
    assert json.loads(json.dumps(fields["cost"]))["web_search"] == "0.01"
