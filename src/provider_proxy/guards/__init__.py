"""Guards: who the client is, and its rate limits, quotas, budgets and concurrency caps."""

from ._budget import Budget, BudgetExceeded, Estimate, ModelNotPriced
from ._guards import (
    UNIDENTIFIED,
    Admission,
    Guards,
    Quota,
    RateLimit,
    Unidentified,
)

__all__ = [
    "UNIDENTIFIED",
    "Admission",
    "Budget",
    "BudgetExceeded",
    "Estimate",
    "Guards",
    "ModelNotPriced",
    "Quota",
    "RateLimit",
    "Unidentified",
]
