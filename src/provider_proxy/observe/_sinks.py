"""Delivering :class:`~provider_proxy.ProxyEvent` to sinks, and the ready-made sinks.

A sink is any callable taking the event. :class:`EventDispatcher` isolates
them from the response and from each other:

* a sync sink runs inline, when the response is already done, so it delays
  no byte; it should be quick (it runs on the event loop);
* an ``async`` sink (a callable returning an awaitable) runs as a background
  task, held in a set until it ends and awaited on :meth:`EventDispatcher.aclose`;
* a sink that raises is logged once, with its traceback, and keeps getting
  events; its later failures are counted, not logged, so a broken sink cannot
  flood the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import threading
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .._json import dumps
from ._events import EventSink, ProxyEvent

logger = logging.getLogger("provider_proxy")

#: The version of :class:`NdjsonUsageSink`'s line format; raised when a field
#: changes meaning or goes away (new fields may be added within a version).
USAGE_SCHEMA = 1

#: Async deliveries in flight at most; beyond it an event is not handed to an
#: async sink (and the drop is logged once), so a stuck sink cannot grow memory.
DEFAULT_MAX_PENDING = 10_000

_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "web_searches",
)


def event_fields(event: ProxyEvent) -> dict[str, Any]:
    """The event as a flat dict: usage as top-level counts, times rounded to microseconds,
    the cost as ``cost_usd`` and its breakdown as ``cost`` (exact decimal strings)."""
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if field.name == "usage":
            for name in _USAGE_FIELDS:
                fields[name] = None if value is None else getattr(value, name)
            fields["total_tokens"] = None if value is None else value.total_tokens
        elif field.name == "cost":
            fields["cost_usd"] = None if value is None else str(value.total)
            fields["cost"] = None if value is None else value.as_dict()
        elif isinstance(value, float):
            fields[field.name] = round(value, 6)
        else:
            fields[field.name] = value
    return fields


class EventDispatcher:
    """Hands each event to every sink, so that none can delay or break a response.

    :param sinks: callables taking a :class:`ProxyEvent`, sync or async.
    :param max_pending: async deliveries in flight at most.
    """

    def __init__(
        self, sinks: Sequence[EventSink], *, max_pending: int = DEFAULT_MAX_PENDING
    ) -> None:
        self.sinks = tuple(sinks)
        self.max_pending = max_pending
        #: Failures (exceptions and dropped deliveries) by sink index.
        self.failures = [0] * len(self.sinks)
        self._pending: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"EventDispatcher(sinks={len(self.sinks)}, pending={len(self._pending)})"

    @property
    def pending(self) -> int:
        """Async deliveries not finished yet."""
        return len(self._pending)

    def emit(self, event: ProxyEvent) -> None:
        """Deliver ``event``: sync sinks now, async ones as background tasks. Never raises."""
        for index, sink in enumerate(self.sinks):
            try:
                result = sink(event)
            except Exception:
                self._failure(index, "raised")
                continue
            if result is not None and inspect.isawaitable(result):
                self._schedule(index, result)

    def _schedule(self, index: int, result: Awaitable[None]) -> None:
        why = None
        if len(self._pending) >= self.max_pending:
            why = f"had {self.max_pending} deliveries pending; an event was dropped"
        else:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                why = "is async but no asyncio event loop is running; an event was dropped"
            else:
                task = loop.create_task(self._deliver(index, result))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
                return
        if inspect.iscoroutine(result):
            result.close()  # it will never run: no "never awaited" warning
        self._failure(index, why, trace=False)

    async def _deliver(self, index: int, result: Awaitable[None]) -> None:
        try:
            await result
        except Exception:
            self._failure(index, "raised")

    def _failure(self, index: int, why: str, *, trace: bool = True) -> None:
        self.failures[index] += 1
        if self.failures[index] == 1:
            logger.error(
                "event sink %r %s; its further failures are counted, not logged",
                self.sinks[index],
                why,
                exc_info=trace,
            )

    async def aclose(self, timeout: float = 5.0) -> None:
        """Wait, ``timeout`` seconds at most, for async deliveries; cancel the rest."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=timeout)
        if late:
            for task in late:
                task.cancel()
            await asyncio.wait(late, timeout=1.0)  # let them unwind
            logger.warning("%d event deliveries did not finish in time; cancelled", len(late))


class JsonLogSink:
    """One JSON line per request on a standard :mod:`logging` logger.

    The line holds every field of the event, usage as top-level counts
    (``input_tokens``, ``output_tokens``, ``cache_read_tokens``,
    ``cache_write_tokens``, ``total_tokens``); never a body or a credential,
    which events do not hold. The record also carries the event itself as
    ``record.proxy_event``, for handlers that format their own way. Nothing is
    computed when the logger is not enabled for ``level``.
    """

    def __init__(
        self, logger_name: str = "provider_proxy.access", level: int = logging.INFO
    ) -> None:
        self.logger = logging.getLogger(logger_name)
        self.level = level

    def __repr__(self) -> str:
        return f"JsonLogSink({self.logger.name!r})"

    def enabled(self) -> bool:
        """Whether the logger would emit the line now."""
        return self.logger.isEnabledFor(self.level)

    def __call__(self, event: ProxyEvent) -> None:
        if self.logger.isEnabledFor(self.level):
            line = dumps(event_fields(event)).decode("utf-8")
            self.logger.log(self.level, line, extra={"proxy_event": event})


class NdjsonUsageSink:
    """Appends one JSON line to ``path`` for each request that reported token usage.

    Meant for accounting: one file per process (lines of one process never
    interleave; several processes appending to one file is up to the OS).
    The file is opened on the first line, in append mode, line-buffered so
    each line reaches the OS at once; :meth:`close` closes it (a later event
    reopens it, which also suits log rotation).

    Each line is an object with these keys (schema :data:`USAGE_SCHEMA`, ``1``):

    ``schema``
        The format version, ``1``.
    ``time``
        When the request arrived, seconds since the epoch (UTC), to the millisecond.
    ``request_id``, ``provider``, ``method``, ``path``
        Which request: the id the client got in ``x-request-id``, the provider's
        name, the HTTP method and the path below the provider's name.
    ``model``
        The model asked for (or named by the response), or ``null``.
    ``identity``
        The client's identity under client authentication, else ``null``.
    ``status``, ``streamed``
        The status the client got; whether the answer was a stream of events.
    ``input_tokens``, ``output_tokens``, ``cache_read_tokens``, ``cache_write_tokens``
        The counts as :class:`~provider_proxy.Usage` has them (input includes
        the cached tokens), ``null`` where the provider did not say.
    ``reasoning_tokens``
        How many of the output tokens were reasoning, ``null`` where not said.
    ``cost_usd``, ``cost``, ``cost_unknown``
        What the request cost in USD as an exact decimal string, its breakdown
        (``input``, ``cache_read``, ``cache_write``, ``output``, ``reasoning``,
        ``total`` and the price's ``source``), or ``null`` and the reason.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: TextIO | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"NdjsonUsageSink({str(self.path)!r})"

    def __call__(self, event: ProxyEvent) -> None:
        usage = event.usage
        if usage is None:
            return
        record = {
            "schema": USAGE_SCHEMA,
            "time": round(event.started_at, 3),
            "request_id": event.request_id,
            "provider": event.provider,
            "method": event.method,
            "path": event.path,
            "model": event.model,
            "identity": event.identity,
            "status": event.status,
            "streamed": event.streamed,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "web_searches": usage.web_searches,
            "cost_usd": None if event.cost is None else str(event.cost.total),
            "cost": None if event.cost is None else event.cost.as_dict(),
            "cost_unknown": event.cost_unknown,
        }
        line = dumps(record).decode("utf-8") + "\n"
        with self._lock:
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8", buffering=1, newline="\n")
            self._file.write(line)

    def close(self) -> None:
        """Close the file (a later event opens it again)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
