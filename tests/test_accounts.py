"""The accounts of answered requests: counted lazily, shown the same on ``/status``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from provider_proxy import Pricing, ProxyApp, Usage
from provider_proxy.adapters import OpenAIAdapter
from provider_proxy.engine._accounts import FOLD_AT, Accounts
from provider_proxy.engine._report import Outcome, Report

from .servers import serve

CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}


def _accounts() -> Accounts:
    adapter = OpenAIAdapter(base_url="http://127.0.0.1:9/v1", api_key="sk-test-0123456789")
    return Accounts({"openai": adapter}, Pricing({"gpt-fake": {"input": 2, "output": 8}}))


def _reports(kinds: int) -> list[Report]:
    """Answers of every sort: answered, failed upstream, refused, the client gone, with usage."""
    reports = []
    for number in range(kinds):
        model = f"model-{number % (FOLD_AT + 40)}"  # more kinds than a fold holds
        client = f"client-{number % 3}" if number % 4 else None
        if number % 5 == 0:
            outcome = Outcome(500, upstream_status=500)
        elif number % 7 == 0:
            outcome = Outcome(429, error_kind="rate_limited")  # refused: never sent
        elif number % 11 == 0:
            outcome = Outcome(200, upstream_status=200, error_kind="client_disconnected")
        elif number % 13 == 0:
            outcome = Outcome(200, upstream_status=200, usage=Usage(10, 5), model="gpt-fake")
            model = None  # the answer names the (priced) model
        else:
            outcome = Outcome(200, upstream_status=200)
        reports.append(Report(outcome, "openai", "/chat/completions", model, client))
    reports.append(Report(Outcome(200), None, "/health"))  # the proxy's own: not counted
    return reports


def test_counting_lazily_shows_the_same_totals_as_recording_each() -> None:
    each, lazy = _accounts(), _accounts()
    reports = _reports(3 * FOLD_AT)
    for report in reports:
        each.record(report)
        lazy.count(report)
    assert lazy._pending  # some are still waiting for the next fold
    assert lazy.status() == each.status()
    assert not lazy._pending
    status = lazy.status()
    assert status["spend"]["total"]["requests"] == sum(
        1 for r in reports if r.provider is not None and r.outcome.upstream_status is not None
    )
    assert status["spend"]["total"]["priced"] == sum(
        1 for r in reports if r.outcome.usage is not None
    )
    requests = status["recent"]["by_provider"]["openai"]["requests"]
    errors = status["recent"]["by_provider"]["openai"]["errors"]
    assert sum(requests) == len(reports) - 1
    assert sum(errors) == sum(
        1 for r in reports[:-1] if r.outcome.status >= 400 or r.outcome.error_kind
    )


def test_a_fold_runs_once_that_many_kinds_are_pending() -> None:
    accounts = _accounts()
    for number in range(FOLD_AT - 1):
        accounts.count(Report(Outcome(200, upstream_status=200), "openai", "/x", f"m{number}"))
    assert len(accounts._pending) == FOLD_AT - 1
    assert accounts.spend.total.requests == 0
    accounts.count(Report(Outcome(200, upstream_status=200), "openai", "/x", "one-more"))
    assert accounts._pending == {}
    assert accounts.spend.total.requests == FOLD_AT
    # The same kind again is one count more, not one entry more.
    for _ in range(5):
        accounts.count(Report(Outcome(200, upstream_status=200), "openai", "/x", "m0"))
    assert list(accounts._pending.values()) == [5]


def test_status_counts_requests_that_no_sink_reads(make_proxy: Callable[..., ProxyApp]) -> None:
    # No sink, no guards, no prices, the access log's level off: the lazy path.
    proxy = make_proxy(access_log=False)
    with serve(proxy) as server:
        for headers in ({}, {}, {"x-fake-status": "500"}):
            response = httpx.post(
                server.url + "/openai/chat/completions", json=CHAT, headers=headers, timeout=10
            )
            assert response.status_code == int(headers.get("x-fake-status", 200))
        status: Any = httpx.get(server.url + "/status", timeout=10).json()
    spend = status["spend"]
    assert spend["total"]["requests"] == 3
    assert spend["by_provider"]["openai"]["requests"] == 3
    assert sum(line["requests"] for line in spend["by_model"].values()) == 3
    assert spend["by_client"]["none"]["requests"] == 3
    recent = status["recent"]["by_provider"]["openai"]
    assert (sum(recent["requests"]), sum(recent["errors"])) == (3, 1)
    assert status["requests"]["by_status"] == {"200": 2, "500": 1}
