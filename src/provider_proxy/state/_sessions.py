"""Conversation sessions: the upstream ids of conversations an upstream keeps, in the app's store.

Some upstreams keep the conversation on their side and want only the new turn
plus the id of where it continues, while clients send the whole history every
time. :class:`SessionStore` maps one to the other: a session is found by the
adapter, the client's identity and a hash of the conversation so far (the
adapter computes it), and holds the ids the upstream gave (a JSON object).
A hit is the upstream conversation to continue; a miss (the history was
edited or branched, or the session idled out) means a fresh one.

Sessions live in the app's :class:`~provider_proxy.Store` (memory or Redis),
each for an idle TTL (default :data:`SESSION_TTL`, 30 minutes) that every use
renews; the store drops expired ones (Redis by its own expiry,
:class:`~provider_proxy.MemoryStore` as it sweeps). A store that fails is a
miss, never a failed request: the conversation starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from ._store import Store

logger = logging.getLogger("provider_proxy")

#: How long a session lives without being used (seconds).
SESSION_TTL = 30 * 60.0
#: The sessions this process remembers the expiry of, to count them.
_TRACKED = 100_000


class SessionStore:
    """Upstream conversation ids by adapter, client identity and conversation hash.

    :param store: where sessions are kept (the app's store).
    :param ttl: seconds a session lives after its last use.
    :param clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        store: Store,
        *,
        ttl: float = SESSION_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("session_ttl must be a number of seconds above 0.")
        self._store = store
        self.ttl = ttl
        self._clock = clock
        #: key -> when it idles out, for the sessions this process saved or used.
        self._live: dict[str, float] = {}
        self._counts: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"SessionStore(ttl={self.ttl})"

    @staticmethod
    def key(adapter: str, identity: str | None, history: str) -> str:
        """The store key of a session (the identity hashed: it may be a client key)."""
        who = hashlib.sha256((identity or "").encode()).hexdigest()[:24]
        return f"pp:session:{adapter}:{who}:{history}"

    async def find(
        self, adapter: str, identity: str | None, history: str
    ) -> Mapping[str, Any] | None:
        """The ids of the session, renewing its TTL; ``None`` on a miss."""
        key = self.key(adapter, identity, history)
        try:
            raw = await self._store.get(key)
            if raw is not None:
                await self._store.set(key, raw, self.ttl)  # idle TTL: a use renews it
        except Exception:
            logger.warning("could not read a conversation session of %s", adapter, exc_info=True)
            raw = None
        ids = _decoded(raw)
        self._counts["hits" if ids is not None else "misses"] += 1
        if ids is not None:
            self._track(key)
        return ids

    async def keep(
        self, adapter: str, identity: str | None, history: str, ids: Mapping[str, Any]
    ) -> None:
        """Keep ``ids`` as the session of the conversation ``history`` hashes."""
        key = self.key(adapter, identity, history)
        try:
            await self._store.set(key, json.dumps(dict(ids)).encode(), self.ttl)
        except Exception:
            logger.warning("could not keep a conversation session of %s", adapter, exc_info=True)
            return
        self._counts["saved"] += 1
        self._track(key)

    async def restarted(self, adapter: str, identity: str | None, history: str) -> None:
        """Forget a session the upstream no longer knew (a fresh conversation replaces it)."""
        self._counts["restarted"] += 1
        key = self.key(adapter, identity, history)
        self._live.pop(key, None)
        try:
            await self._store.set(key, b"", 1.0)  # the Store has no delete: an empty value is none
        except Exception:
            logger.warning("could not forget a conversation session of %s", adapter, exc_info=True)

    def _track(self, key: str) -> None:
        now = self._clock()
        if len(self._live) >= _TRACKED:
            self._prune(now)
        if len(self._live) < _TRACKED:
            self._live[key] = now + self.ttl

    def _prune(self, now: float) -> None:
        for key in [k for k, until in self._live.items() if until <= now]:
            del self._live[key]

    def status(self) -> dict[str, Any]:
        """Counts for ``/status`` and metrics: sessions alive (that this process saved
        or used), hits, misses, saved, and restarted after the upstream lost them."""
        self._prune(self._clock())
        return {
            "ttl_seconds": self.ttl,
            "active": len(self._live),
            **{name: self._counts[name] for name in ("hits", "misses", "saved", "restarted")},
        }


def _decoded(raw: bytes | None) -> Mapping[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
