"""Guards: who the client is, and its rate limits, quotas and concurrency caps."""

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
    "Guards",
    "Quota",
    "RateLimit",
    "Unidentified",
]
