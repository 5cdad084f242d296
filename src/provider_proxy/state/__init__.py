"""State shared by the guards and caches: the in-memory and Redis stores."""

from ._redis import RedisStore
from ._store import MemoryStore, RateResult, Store, one_deadline

__all__ = [
    "MemoryStore",
    "RateResult",
    "RedisStore",
    "Store",
    "one_deadline",
]
