"""Spend: prices, the cost of an exchange, and where prices come from."""

from ._price import PRICE_KEYS, Cost, Price, cost_of, estimate
from ._pricing import LIBRARY, PriceSpec, Pricing
from ._tally import SpendTally

__all__ = [
    "LIBRARY",
    "PRICE_KEYS",
    "Cost",
    "Price",
    "PriceSpec",
    "Pricing",
    "SpendTally",
    "cost_of",
    "estimate",
]
