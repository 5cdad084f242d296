"""State shared by the guards and caches: the in-memory and Redis stores, conversation sessions."""

from ._redis import RedisStore
from ._sessions import SESSION_TTL, SessionStore
from ._store import MemoryStore, RateResult, Store, one_deadline

__all__ = [
    "SESSION_TTL",
    "MemoryStore",
    "RateResult",
    "RedisStore",
    "SessionStore",
    "Store",
    "one_deadline",
]
