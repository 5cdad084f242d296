"""The standalone service's logs: JSON lines (or text) on stdout, one handler for all.

The access log's records carry their :class:`~provider_proxy.ProxyEvent`, whose
fields become the line; other records become ``{"time", "level", "logger",
"message"}``. Keys never reach a line: the handler itself scrubs every record
(uvicorn's and the HTTP clients' too) of the keys the proxy holds, and the HTTP
clients' debug logs, which may quote headers, stay off.
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Any, TextIO

from .._json import dumps
from .._scrub import ScrubFilter
from ..observe import ProxyEvent
from ..observe._sinks import event_fields


def _time(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        event = getattr(record, "proxy_event", None)
        if isinstance(event, ProxyEvent):
            line["message"] = "request"
            line.update(event_fields(event))
        else:
            line["message"] = record.getMessage()
            fields = getattr(record, "fields", None)
            if isinstance(fields, dict):
                line.update(fields)
            if record.exc_info:
                line["exception"] = self.formatException(record.exc_info)
        return dumps(line).decode("utf-8")


class TextFormatter(logging.Formatter):
    """A line for a person at a terminal; access lines in a fixed short form."""

    def format(self, record: logging.LogRecord) -> str:
        start = f"{_time(record)} {record.levelname:<7} "
        event = getattr(record, "proxy_event", None)
        if isinstance(event, ProxyEvent):
            where = f"/{event.provider}{event.path}" if event.provider else event.path
            tokens = "" if event.usage is None else f" {event.usage.total_tokens} tokens"
            model = f" {event.model}" if event.model else ""
            return (
                f"{start}{event.method} {where} {event.status}{model}"
                f" {event.duration * 1000:.0f} ms{tokens}"
            )
        text = start + f"{record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


#: Loggers that may quote request headers at DEBUG: never below INFO here.
_QUIET = ("httpx", "httpcore", "hpack", "h2", "aiohttp", "urllib3")


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` and above to stdout, as JSON or text."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ScrubFilter())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLevelName(level.upper())))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # A server configured earlier in the process (uvicorn's own logging config)
    # keeps its records to itself: they go through the one handler too.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        server = logging.getLogger(name)
        for old in list(server.handlers):
            server.removeHandler(old)
        server.propagate = True
    logging.captureWarnings(True)
