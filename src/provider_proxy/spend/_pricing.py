"""Where prices come from: the operator's ``prices=``, else the ``genai-prices`` library.

:class:`Pricing` answers "what does this model cost at this provider" with a
:class:`~provider_proxy.spend.Price`, or with the reason it cannot (never a
guess). The operator's prices win; the library (the ``prices`` extra, a
maintained table bundled with the package, read offline) is asked only for
models the operator did not price. A provider is found in the library by its
base URL first, then by the model's name.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .._adapter import Usage
from ._price import Cost, Price, cost_of, estimate

#: The name :attr:`Cost.source` gives the library's prices.
LIBRARY = "genai-prices"
#: Distinct (base URL, model) look-ups remembered; beyond, the oldest are forgotten.
MAX_REMEMBERED = 1024

#: A price given as a :class:`Price` or a mapping of USD per million tokens.
PriceSpec = Price | Mapping[str, Any]


class Pricing:
    """Prices by model: the operator's first, then the library's.

    :param prices: ``{model: {"input": ..., "output": ..., "cache_read": ...,
        "cache_write": ..., "reasoning": ..., "web_search": ...}}`` in USD per
        million tokens, ``web_search`` in USD per thousand web searches (or
        :class:`Price` values). A key ``"{provider}/{model}"`` prices a model at
        one provider only and wins over the bare model name.
    :param library: whether to ask ``genai-prices`` about other models.
    """

    def __init__(self, prices: Mapping[str, PriceSpec] | None = None, *, library: bool = True):
        self._prices = {
            model.casefold(): Price.of(spec, model) for model, spec in (prices or {}).items()
        }
        self.library = library
        self._known: dict[tuple[str, str], tuple[Any, str | None]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Pricing(prices={len(self._prices)}, library={self.library})"

    def price(
        self, provider: str, model: str | None, base_url: str | None = None, input_tokens: int = 0
    ) -> tuple[Price | None, str, str | None]:
        """The price of ``model`` at ``provider``, its source, and why there is none.

        :param input_tokens: the prompt's size, for prices that step up with it.
        :returns: ``(price, source, None)``, or ``(None, "", reason)``.
        """
        if not model:
            return None, "", "the model is not known"
        own = self._prices.get(f"{provider}/{model}".casefold()) or self._prices.get(
            model.casefold()
        )
        if own is not None:
            return own, "prices", None
        if not self.library:
            return None, "", f"no price for {model!r}: add it to prices="
        found, why = self._library(model, base_url)
        if found is None:
            return None, "", why
        price = _from_library(found, input_tokens)
        if price is None:
            return None, "", f"{LIBRARY} has no price per token for {model!r}"
        return price, LIBRARY, None

    def cost(
        self, provider: str, model: str | None, usage: Usage | None, base_url: str | None = None
    ) -> tuple[Cost | None, str | None]:
        """What ``usage`` of ``model`` cost, or why that is not known."""
        if usage is None:
            return None, "the provider reported no token usage"
        price, source, why = self.price(provider, model, base_url, usage.input_tokens or 0)
        if price is None:
            return None, why
        return cost_of(usage, price, source), None

    def estimate(
        self,
        provider: str,
        model: str | None,
        input_tokens: int,
        output_tokens: int,
        base_url: str | None = None,
    ) -> tuple[Decimal | None, str | None]:
        """An upper bound of a request's cost before it is sent, or why there is none."""
        price, _, why = self.price(provider, model, base_url, input_tokens)
        if price is None:
            return None, why
        return estimate(input_tokens, output_tokens, price), None

    def _library(self, model: str, base_url: str | None) -> tuple[Any, str | None]:
        """The library's prices of ``model`` (its ``ModelPrice``), or why there are none."""
        key = (base_url or "", model)
        known = self._known.get(key)
        if known is not None:
            return known
        try:
            from genai_prices.data_snapshot import get_snapshot
        except ImportError:
            return None, (
                f"no price for {model!r}: pass prices=, or install the 'prices' extra "
                "(pip install 'provider-proxy[prices]')"
            )
        snapshot = get_snapshot()
        found: tuple[Any, str | None] = (None, f"no price for {model!r} in {LIBRARY}")
        for url in (base_url, None):
            try:
                _, info = snapshot.find_provider_model(model, None, None, url)
            except LookupError:
                continue
            now = datetime.datetime.now(datetime.timezone.utc)
            found = (info.get_prices(now), None)
            break
        with self._lock:
            if len(self._known) >= MAX_REMEMBERED:
                self._known.pop(next(iter(self._known)))
            self._known[key] = found
        return found


def _rate(value: Any, input_tokens: int) -> Decimal | None:
    """A library rate: a ``Decimal``, or tiered prices whose step depends on the prompt."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    rate: Decimal = value.base
    for tier in value.tiers:  # a step applies to every token once the prompt passes it
        if input_tokens > tier.start:
            rate = tier.price
    return rate


def _from_library(prices: Any, input_tokens: int) -> Price | None:
    """The library's ``ModelPrice`` as a :class:`Price` for a prompt of ``input_tokens``;
    ``None`` for a model it prices otherwise (per image, per request)."""

    def rate(name: str) -> Decimal | None:
        return _rate(getattr(prices, name, None), input_tokens)

    token_input, token_output = rate("input_mtok"), rate("output_mtok")
    if token_input is None and token_output is None:
        # Priced by the image, the character or the request, or listed without a
        # price (free, or not known: the table does not say which).
        return None
    return Price(
        input=token_input or Decimal(0),
        output=token_output or Decimal(0),
        cache_read=rate("cache_read_mtok"),
        cache_write=rate("cache_write_mtok"),
    )
