"""Shared state for limits and caches: the :class:`Store` protocol and :class:`MemoryStore`.

The few operations here are each atomic, so several proxies sharing one store
(:class:`~provider_proxy.RedisStore`) enforce one set of limits. Rate limits use
GCRA (the generic cell rate algorithm): one timestamp per key, refilled
continuously, so no window edge lets a client through twice as fast as allowed.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class RateResult:
    """The outcome of one :meth:`Store.rate` call. Times are seconds from now."""

    allowed: bool
    limit: int
    remaining: int
    #: Until the key is back to its full ``limit``.
    reset_after: float
    #: Until a request of the same cost would be allowed (0 when allowed).
    retry_after: float


def gcra(
    tat: float | None, now: float, cost: float, limit: int, window: float, force: bool
) -> tuple[RateResult, float | None]:
    """One GCRA step: the result, and the new theoretical arrival time to store (or ``None``).

    ``limit`` units per ``window`` seconds, a burst of up to ``limit`` at once.
    ``force`` charges the cost even when over the limit (tokens counted after
    a call), pushing the next allowed time further out.
    """
    interval = window / limit
    base = max(tat if tat is not None else now, now)
    new_tat = base + cost * interval
    allow_at = new_tat - window
    allowed = allow_at <= now + 1e-9
    if allowed or force:
        stored: float | None = new_tat
        ahead = new_tat - now
    else:
        stored = None
        ahead = base - now
    remaining = max(0, min(limit, math.floor((window - ahead) / interval + 1e-9)))
    retry = 0.0 if allowed else max(0.0, allow_at - now)
    return RateResult(allowed, limit, remaining, max(0.0, ahead), retry), stored


@runtime_checkable
class Store(Protocol):
    """The atomic operations the guards and caches need."""

    async def get(self, key: str) -> bytes | None:
        """The value under ``key``, or ``None`` when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""
        ...

    async def rate(
        self, key: str, cost: float, limit: int, window: float, *, force: bool = False
    ) -> RateResult:
        """Take ``cost`` units from a GCRA limit of ``limit`` per ``window`` seconds."""
        ...

    async def add(self, key: str, amount: int, ttl: float) -> int:
        """Add ``amount`` to a counter (created with ``ttl`` seconds to live); its new value."""
        ...

    async def acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        """Hold one of ``limit`` slots as ``lease``; an unreleased lease ages out after ``ttl``."""
        ...

    async def reserve(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]:
        """Add ``amount`` to a counter unless that takes it past ``limit``, in one step.

        :returns: whether it was added, and the counter's value now. A new
            counter lives ``ttl`` seconds (give it back later with :meth:`add`).
        """
        ...

    async def release(self, key: str, lease: str) -> None:
        """Give back the slot held under ``lease``."""
        ...

    async def aclose(self) -> None:
        """Release connections, if any."""
        ...


class _Deadline:
    """When the store calls of one request must be done: set by the first call."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at: float | None = None


_deadline: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "provider_proxy.store_deadline", default=None
)


@contextlib.contextmanager
def one_deadline() -> Iterator[None]:
    """Give the store calls made inside one deadline between them.

    A store with a timeout (:class:`~provider_proxy.RedisStore`) starts it at
    the first call, so a hung backend delays a request by at most that timeout,
    however many limits it checks.
    """
    token = _deadline.set(_Deadline())
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left(timeout: float) -> float:
    """Seconds the store call starting now may take: ``timeout``, or what is left
    of the current :func:`one_deadline` (started now with ``timeout``)."""
    deadline = _deadline.get()
    now = time.monotonic()
    if deadline is None:
        return timeout
    if deadline.at is None:
        deadline.at = now + timeout
    return deadline.at - now


class MemoryStore:
    """The default store: one process's memory, nothing to run.

    :param clock: seconds, monotonic (injectable for tests).
    """

    #: Expired entries are swept after this many writes.
    SWEEP_EVERY = 1024

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[float, bytes]] = {}
        # key -> (expiry, tat); a key is back to full at its tat, so both are the same.
        self._tats: dict[str, tuple[float, float]] = {}
        self._counters: dict[str, tuple[float, int]] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._writes = 0

    def __repr__(self) -> str:
        return "MemoryStore()"

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes % self.SWEEP_EVERY == 0:
            self.sweep()

    def sweep(self) -> None:
        """Drop every expired entry (done now and then as keys are written)."""
        now = self._clock()
        for table in (self._values, self._tats, self._counters):
            for key in [k for k, v in table.items() if v[0] <= now]:
                del table[key]
        for key, leases in list(self._leases.items()):
            for lease in [name for name, expiry in leases.items() if expiry <= now]:
                del leases[lease]
            if not leases:
                del self._leases[key]

    def __len__(self) -> int:
        return len(self._values) + len(self._tats) + len(self._counters) + len(self._leases)

    async def get(self, key: str) -> bytes | None:
        entry = self._values.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._values[key] = (self._clock() + ttl, value)
        self._wrote()

    async def rate(
        self, key: str, cost: float, limit: int, window: float, *, force: bool = False
    ) -> RateResult:
        now = self._clock()
        entry = self._tats.get(key)
        tat = entry[1] if entry is not None and entry[0] > now else None
        result, stored = gcra(tat, now, cost, limit, window, force)
        if stored is not None:
            self._tats[key] = (stored, stored)
            self._wrote()
        return result

    async def add(self, key: str, amount: int, ttl: float) -> int:
        now = self._clock()
        entry = self._counters.get(key)
        if entry is None or entry[0] <= now:
            entry = (now + ttl, 0)
        value = entry[1] + amount
        self._counters[key] = (entry[0], value)
        self._wrote()
        return value

    async def acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        now = self._clock()
        leases = self._leases.setdefault(key, {})
        for name in [n for n, expiry in leases.items() if expiry <= now]:
            del leases[name]
        if len(leases) >= limit:
            return False
        leases[lease] = now + ttl
        return True

    async def reserve(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]:
        now = self._clock()
        entry = self._counters.get(key)
        if entry is None or entry[0] <= now:
            entry = (now + ttl, 0)
        if entry[1] + amount > limit:
            return False, entry[1]
        self._counters[key] = (entry[0], entry[1] + amount)
        self._wrote()
        return True, entry[1] + amount

    async def release(self, key: str, lease: str) -> None:
        leases = self._leases.get(key)
        if leases is not None:
            leases.pop(lease, None)
            if not leases:
                del self._leases[key]

    async def aclose(self) -> None:
        """Nothing to release."""
