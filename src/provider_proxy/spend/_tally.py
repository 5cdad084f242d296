"""What this process has spent: totals by provider, model and client, for ``/status``.

Kept in memory (per process, since it started); accounting across instances
belongs to the events' sinks. Each dimension keeps :data:`MAX_KEYS` names at
most, counting later ones as ``"other"``, so a stream of distinct model names
cannot grow it without bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .._adapter import Usage
from ._price import Cost

#: Names kept per dimension (providers, models, clients).
MAX_KEYS = 500


@dataclass(slots=True)
class _Line:
    requests: int = 0
    priced: int = 0
    cost: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0

    def add(self, usage: Usage | None, cost: Cost | None, requests: int = 1) -> None:
        self.requests += requests
        if usage is not None:
            self.input_tokens += (usage.input_tokens or 0) * requests
            self.output_tokens += (usage.output_tokens or 0) * requests
            self.cache_read_tokens += (usage.cache_read_tokens or 0) * requests
        if cost is not None:
            self.priced += requests
            self.cost += cost.total * requests

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "priced": self.priced,
            "cost_usd": str(self.cost),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
        }


class SpendTally:
    """Requests, tokens and USD of answered provider requests, by provider, model, client."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self.total = _Line()
        self._by: dict[str, dict[str, _Line]] = {"provider": {}, "model": {}, "client": {}}

    def __repr__(self) -> str:
        return f"SpendTally(total_usd={self.total.cost})"

    def add(
        self,
        provider: str,
        model: str | None,
        client: str | None,
        usage: Usage | None,
        cost: Cost | None,
        *,
        requests: int = 1,
    ) -> None:
        """Count one answered request (with its usage and cost, when known), or
        ``requests`` of them, each with this usage and cost."""
        self.total.add(usage, cost, requests)
        for dimension, name in (
            ("provider", provider),
            ("model", model or "unknown"),
            ("client", client or "none"),
        ):
            self._line(dimension, name).add(usage, cost, requests)

    def _line(self, dimension: str, name: str) -> _Line:
        lines = self._by[dimension]
        line = lines.get(name)
        if line is None:
            if len(lines) >= self.max_keys:
                name = "other"
                line = lines.get(name)
            if line is None:
                line = lines[name] = _Line()
        return line

    def spent(self, dimension: str) -> Mapping[str, Decimal]:
        """USD by name in one dimension (``"provider"``, ``"model"`` or ``"client"``)."""
        return {name: line.cost for name, line in self._by[dimension].items()}

    def status(self) -> dict[str, Any]:
        """The totals as JSON-ready data (amounts as exact decimal strings)."""
        return {
            "total": self.total.as_dict(),
            **{
                f"by_{dimension}": {name: line.as_dict() for name, line in sorted(lines.items())}
                for dimension, lines in self._by.items()
            },
        }
