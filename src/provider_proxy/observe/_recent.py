"""Requests and errors per provider per minute over the last hour, for ``/status``.

A ring of :data:`MINUTES` one-minute counts per provider (adapter names, so a
bounded set), kept in this process's memory; the dashboard plots it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: Minutes kept.
MINUTES = 60


class RecentTraffic:
    """Per provider, requests and errors in each of the last :data:`MINUTES` minutes.

    :param clock: wall-clock seconds (injectable for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.time, minutes: int = MINUTES) -> None:
        self._clock = clock
        self.minutes = minutes
        #: provider -> minute (seconds since the epoch // 60) -> [requests, errors]
        self._counts: dict[str, dict[int, list[int]]] = {}

    def __repr__(self) -> str:
        return f"RecentTraffic(providers={len(self._counts)})"

    def add(
        self, provider: str, failed: bool, requests: int = 1, *, minute: int | None = None
    ) -> None:
        """Count ``requests`` answered requests to ``provider`` (all failed, or none) in
        the current minute, or in ``minute`` (seconds since the epoch // 60)."""
        if minute is None:
            minute = int(self._clock() // 60)
        counts = self._counts.setdefault(provider, {})
        slot = counts.get(minute)
        if slot is None:
            oldest = minute - self.minutes
            for old in [m for m in counts if m <= oldest]:
                del counts[old]
            slot = counts[minute] = [0, 0]
        slot[0] += requests
        if failed:
            slot[1] += requests

    def status(self) -> dict[str, Any]:
        """The last hour, oldest minute first: ``{"since", "minutes", "by_provider": {name:
        {"requests": [...], "errors": [...]}}}`` (``since`` is the first minute's start)."""
        now = int(self._clock() // 60)
        first = now - self.minutes + 1
        by_provider = {}
        for provider, counts in sorted(self._counts.items()):
            slots = [counts.get(minute, (0, 0)) for minute in range(first, now + 1)]
            by_provider[provider] = {
                "requests": [slot[0] for slot in slots],
                "errors": [slot[1] for slot in slots],
            }
        return {"since": first * 60, "minutes": self.minutes, "by_provider": by_provider}
