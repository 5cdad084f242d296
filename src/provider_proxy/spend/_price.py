"""Prices and costs: pure arithmetic on normalised token usage, in ``Decimal`` USD.

A :class:`Price` is USD per million tokens for each kind of token; a
:class:`Cost` is what one exchange cost, with its breakdown. Token kinds follow
:class:`~provider_proxy.Usage`: ``input_tokens`` counts every prompt token, of
which ``cache_read_tokens`` were read from a prompt cache and
``cache_write_tokens`` written to one; ``reasoning_tokens`` are part of
``output_tokens``. So each token is billed once, at the rate of its kind.
Web searches a provider ran (:attr:`Usage.web_searches <provider_proxy.Usage.web_searches>`)
are billed per search, at :attr:`Price.web_search` USD per thousand searches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .._adapter import Usage

_MILLION = Decimal(1_000_000)
_THOUSAND = Decimal(1_000)
#: The keys of a price given as a mapping (USD per million tokens; ``web_search``
#: USD per thousand searches).
PRICE_KEYS = ("input", "output", "cache_read", "cache_write", "reasoning", "web_search")


def _usd(value: Any, what: str) -> Decimal:
    """A non-negative price as a ``Decimal`` (floats through their shortest repr)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise TypeError(f"The price {what} must be a number of USD per million tokens.")
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"The price {what} must be a number, not {value!r}.") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"The price {what} must be a finite number >= 0, not {value!r}.")
    return number


@dataclass(frozen=True, slots=True)
class Price:
    """What a model's tokens cost, in USD per million tokens.

    A rate left ``None`` is billed as its parent kind: cached reads and cache
    writes as input, reasoning as output. ``web_search`` is USD per thousand web
    searches, as providers state their search prices; ``None`` bills them nothing.
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None
    web_search: Decimal | None = None

    @classmethod
    def of(cls, value: Price | Mapping[str, Any], model: str = "") -> Price:
        """A price from a mapping of :data:`PRICE_KEYS` to numbers (``input`` and
        ``output`` required), or the price itself."""
        if isinstance(value, Price):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"The price of {model!r} must be a Price or a mapping.")
        unknown = sorted(set(value) - set(PRICE_KEYS))
        if unknown:
            raise ValueError(
                f"Unknown price keys for {model!r}: {', '.join(unknown)} "
                f"(known: {', '.join(PRICE_KEYS)})."
            )
        missing = [key for key in ("input", "output") if key not in value]
        if missing:
            raise ValueError(f"The price of {model!r} needs {' and '.join(missing)}.")
        rates = {
            key: None if value.get(key) is None else _usd(value[key], f"{model}.{key}")
            for key in PRICE_KEYS
        }
        return cls(**rates)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Cost:
    """What one exchange cost, in USD, and how it adds up.

    ``input`` is the uncached prompt tokens, ``cache_read`` and ``cache_write``
    the cached ones, ``output`` the answer's tokens other than reasoning, and
    ``reasoning`` the reasoning tokens, ``web_search`` the web searches; ``total``
    is their sum. ``source`` says where the price came from (``"prices"`` for the
    operator's own, else the price library's name).
    """

    total: Decimal
    input: Decimal
    cache_read: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal
    source: str = "prices"
    web_search: Decimal = Decimal(0)

    def as_dict(self) -> dict[str, str]:
        """The amounts as strings (exact; JSON numbers would round them)."""
        return {
            "total": str(self.total),
            "input": str(self.input),
            "cache_read": str(self.cache_read),
            "cache_write": str(self.cache_write),
            "output": str(self.output),
            "reasoning": str(self.reasoning),
            "web_search": str(self.web_search),
            "source": self.source,
        }


def cost_of(usage: Usage, price: Price, source: str = "prices") -> Cost:
    """The cost of ``usage`` at ``price``; counts the provider did not report are 0.

    A provider that reports more cached than input tokens (which none should)
    is billed for the cached ones, and no uncached input.
    """
    cache_read = usage.cache_read_tokens or 0
    cache_write = usage.cache_write_tokens or 0
    uncached = max(0, (usage.input_tokens or 0) - cache_read - cache_write)
    output = usage.output_tokens or 0
    reasoning = min(usage.reasoning_tokens or 0, output)
    parts = (
        uncached * price.input,
        cache_read * (price.input if price.cache_read is None else price.cache_read),
        cache_write * (price.input if price.cache_write is None else price.cache_write),
        (output - reasoning) * price.output,
        reasoning * (price.output if price.reasoning is None else price.reasoning),
    )
    uncached_usd, read_usd, write_usd, output_usd, reasoning_usd = (
        part / _MILLION for part in parts
    )
    search_usd = (usage.web_searches or 0) * (price.web_search or Decimal(0)) / _THOUSAND
    return Cost(
        uncached_usd + read_usd + write_usd + output_usd + reasoning_usd + search_usd,
        uncached_usd,
        read_usd,
        write_usd,
        output_usd,
        reasoning_usd,
        source,
        search_usd,
    )


def estimate(input_tokens: int, output_tokens: int, price: Price) -> Decimal:
    """An upper bound of a request's cost before it is sent: every input token
    uncached, every output token at the dearer of the output and reasoning rates."""
    output_rate = max(price.output, price.reasoning or price.output)
    input_rate = max(price.input, price.cache_write or price.input)
    return (input_tokens * input_rate + output_tokens * output_rate) / _MILLION
