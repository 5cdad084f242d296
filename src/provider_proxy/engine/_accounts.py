"""The accounts of answered requests: each one's cost, spend totals and the last hour.

The app hands every finished request's :class:`~provider_proxy.engine._report.Report`
here once: :meth:`Accounts.record` when its event is wanted (what comes back is
its cost, or why there is none), else :meth:`Accounts.count`. ``/status`` shows
the totals and the last hour's traffic.

Most answers carry nothing to price (no usage was read: no sink, guard or
budget wanted it), and then counting one is one dict update, folded into the
totals when ``/status`` reads them (or when that many kinds of answer are
pending): the totals' own bookkeeping is a dozen Python calls per request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from ..adapters import Provider
from ..observe import RecentTraffic
from ..spend import Cost, Pricing, SpendTally
from ._report import Report

#: Kinds of unpriced answer (minute, provider, failed, model, client) counted before
#: they are folded into the totals; a fold also runs whenever ``/status`` reads them.
FOLD_AT = 256

#: A kind of answer without usage: minute, provider, whether it failed, whether the
#: provider answered, and then its model and client.
_Kind = tuple[int, str, bool, bool, "str | None", "str | None"]


class Accounts:
    """Prices each answered request and keeps this process's totals.

    :param adapters: the app's providers by name (their base URLs find library prices).
    :param pricing: where prices come from.
    """

    def __init__(self, adapters: Mapping[str, Provider], pricing: Pricing) -> None:
        self._adapters = adapters
        self.pricing = pricing
        self.spend = SpendTally()
        self.traffic = RecentTraffic()
        self._last_url: tuple[httpx.URL | None, str] = (None, "")
        #: Answers without usage counted since the last fold, by kind.
        self._pending: dict[_Kind, int] = {}
        self._clock = time.time

    def __repr__(self) -> str:
        return f"Accounts({self.pricing!r})"

    def record(self, report: Report) -> tuple[Cost | None, str | None]:
        """Count a finished request; its cost, or why that is not known (``None``
        twice for the proxy's own endpoints)."""
        provider = report.provider
        if provider is None:
            return None, None
        outcome = report.outcome
        self.traffic.add(provider, outcome.status >= 400 or bool(outcome.error_kind))
        cost, unknown = self._cost(report)
        if outcome.upstream_status is not None:
            model = report.model or outcome.model
            self.spend.add(provider, model, report.identity, outcome.usage, cost)
        return cost, unknown

    def count(self, report: Report) -> None:
        """Count a finished request whose cost nobody asks for now: one without
        usage (nothing to price) is one dict update until the next fold."""
        provider = report.provider
        if provider is None:
            return
        outcome = report.outcome
        if outcome.usage is not None:
            self.record(report)
            return
        answered = outcome.upstream_status is not None
        kind = (
            int(self._clock() // 60),
            provider,
            outcome.status >= 400 or bool(outcome.error_kind),
            answered,
            (report.model or outcome.model) if answered else None,
            report.identity if answered else None,
        )
        pending = self._pending
        pending[kind] = pending.get(kind, 0) + 1
        if len(pending) >= FOLD_AT:
            self._fold()

    def _fold(self) -> None:
        """Add the answers counted by kind to the traffic and spend totals."""
        pending, self._pending = self._pending, {}
        for (minute, provider, failed, answered, model, client), requests in pending.items():
            self.traffic.add(provider, failed, requests, minute=minute)
            if answered:
                self.spend.add(provider, model, client, None, None, requests=requests)

    def _cost(self, report: Report) -> tuple[Cost | None, str | None]:
        adapter = self._adapters.get(report.provider or "")
        if adapter is None:
            return None, None
        outcome = report.outcome
        if outcome.upstream_status is None:
            return None, "the provider did not answer"
        if outcome.usage is None and outcome.upstream_status >= 400:
            return None, f"the provider answered {outcome.upstream_status}, with no usage"
        base_url = self._url_text(adapter.serving().base_url)
        model = report.model or outcome.model
        return self.pricing.cost(adapter.name, model, outcome.usage, base_url)

    def _url_text(self, url: httpx.URL) -> str:
        """``str(url)``, remembered for the last URL (httpx builds the text anew each time)."""
        known, text = self._last_url
        if known is not url:
            text = str(url)
            self._last_url = (url, text)
        return text

    def status(self) -> dict[str, Any]:
        """``spend`` (by provider, model and client) and ``recent`` (the last hour)."""
        self._fold()
        return {"spend": self.spend.status(), "recent": self.traffic.status()}
