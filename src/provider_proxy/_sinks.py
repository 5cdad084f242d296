"""Delivering :class:`~provider_proxy.ProxyEvent` to sinks, and the ready-made sinks.

A sink is any callable taking the event; an ``async`` one runs in the
background. The dispatcher isolates them: a sink that raises is logged once
(not once per event) and keeps receiving events; a slow one delays nothing,
because delivery happens after the response is done and async sinks do not
hold the request's task.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ._events import EventSink, ProxyEvent

logger = logging.getLogger("provider_proxy")

#: The version of the NDJSON usage line format; raised when a field changes meaning.
USAGE_SCHEMA = 1


def event_fields(event: ProxyEvent) -> dict[str, Any]:
    """The event as a flat dict (usage fields prefixed ``usage_``), for logs and files."""
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    usage = fields.pop("usage")
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        fields[name] = None if usage is None else getattr(usage, name)
    return fields


class EventDispatcher:
    """Hands each event to every sink without letting one delay or break the response."""

    def __init__(self, sinks: Sequence[EventSink]) -> None:
        self.sinks = tuple(sinks)
        self._failed: set[int] = set()
        self._pending: set[asyncio.Task[None]] = set()

    def emit(self, event: ProxyEvent) -> None:
        """Deliver ``event``: sync sinks now, async ones as background tasks."""
        for index, sink in enumerate(self.sinks):
            try:
                result = sink(event)
            except Exception:
                self._failure(index, sink)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(self._await(index, sink, result))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

    async def _await(self, index: int, sink: EventSink, result: Any) -> None:
        try:
            await result
        except Exception:
            self._failure(index, sink)

    def _failure(self, index: int, sink: EventSink) -> None:
        if index not in self._failed:
            self._failed.add(index)
            logger.exception(
                "event sink %r failed; further failures of this sink are not logged", sink
            )

    async def aclose(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` seconds) for async sinks still delivering."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=timeout)
        for task in late:
            task.cancel()


class JsonLogSink:
    """One JSON line per request on a standard :mod:`logging` logger (no bodies, no keys).

    Nothing is computed when the logger is not enabled for ``level``.
    """

    def __init__(self, logger_name: str = "provider_proxy.access", level: int = logging.INFO):
        self.logger = logging.getLogger(logger_name)
        self.level = level

    def __repr__(self) -> str:
        return f"JsonLogSink({self.logger.name!r})"

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(self.level)

    def __call__(self, event: ProxyEvent) -> None:
        if self.logger.isEnabledFor(self.level):
            line = json.dumps(event_fields(event), separators=(",", ":"))
            self.logger.log(self.level, line, extra={"proxy_event": event})


class NdjsonUsageSink:
    """Appends one JSON line per request that reported token usage to ``path``.

    Each line: ``schema`` (:data:`USAGE_SCHEMA`), ``time`` (seconds since the
    epoch), ``request_id``, ``provider``, ``model``, ``identity``, ``status``,
    ``streamed``, ``input_tokens``, ``output_tokens``, ``cache_read_tokens``,
    ``cache_write_tokens``.
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
        line = json.dumps(
            {
                "schema": USAGE_SCHEMA,
                "time": round(event.started_at, 3),
                "request_id": event.request_id,
                "provider": event.provider,
                "model": event.model,
                "identity": event.identity,
                "status": event.status,
                "streamed": event.streamed,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cache_read_tokens": usage.cache_read_tokens,
                "cache_write_tokens": usage.cache_write_tokens,
            },
            separators=(",", ":"),
        )
        with self._lock:
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8", buffering=1)
            self._file.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
