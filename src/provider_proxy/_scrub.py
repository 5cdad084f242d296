"""Keeps provider credentials out of the proxy's messages and log lines.

Every :class:`~provider_proxy.Secret` registers its value here when it is made
(keys given to adapters, keys returned by key callables, exchanged tokens), so
:func:`scrub` can replace it wherever it shows up, even quoted back by an
upstream in an error. :class:`ScrubFilter` does the same for log records; the
app installs it on the ``provider_proxy`` loggers.
"""

from __future__ import annotations

import logging
import re
import threading

#: What a credential is replaced with.
MASK = "***"

#: Shorter values are not scrubbed: they would match ordinary words of a message.
MIN_SECRET_LENGTH = 8

#: Keys rotate (callables, exchanged tokens); the oldest are forgotten past this many.
MAX_SECRETS = 1024

#: The value of a credential header quoted in a message (an upstream's echo of the
#: request): ``Authorization: Bearer sk-...``, ``x-...-key: ...``, ``'...-key': '...'``,
#: ``?key=...``.
_HEADER_ECHO = re.compile(
    r"(?i)(authorization|api[-_]key|[?&]key|ocp-apim-subscription-key)"
    r"(['\"]?(?:\s*:\s*|=)['\"]?)((?:bearer|basic|token)\s+)?[^\s'\",&\\]+"
)

_secrets: dict[str, None] = {}  # insertion-ordered: the oldest first
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember ``value`` as a credential to scrub (cheap when it is known already)."""
    if value in _secrets or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        _secrets[value] = None
        while len(_secrets) > MAX_SECRETS:
            del _secrets[next(iter(_secrets))]


def scrub_secrets(text: str) -> str:
    """``text`` with every registered credential as ``***``."""
    for value in tuple(_secrets):
        if value in text:
            text = text.replace(value, MASK)
    return text


def scrub(text: str) -> str:
    """:func:`scrub_secrets`, and the values of credential headers quoted in ``text``
    (for text from elsewhere: exception messages, upstream bytes)."""
    return _HEADER_ECHO.sub(_masked_header, scrub_secrets(text))


def _masked_header(match: re.Match[str]) -> str:
    return f"{match[1]}{match[2]}{match[3] or ''}{MASK}"


class ScrubFilter(logging.Filter):
    """Scrubs a record's message, exception and stack text before any handler sees it.

    A record that needed scrubbing keeps only the scrubbed text: its arguments
    and ``exc_info`` are dropped, so no handler can format the originals again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        text = record.exc_text
        if not text and record.exc_info:
            text = _FORMATTER.formatException(record.exc_info)
        if text:
            cleaned = scrub(text)
            if cleaned != text:
                record.exc_info, record.exc_text = None, cleaned
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


_FORMATTER = logging.Formatter()
_FILTER = ScrubFilter()


def install_log_filter(*names: str) -> None:
    """Add the scrubbing filter to the ``provider_proxy`` logger, its existing
    children, and the loggers ``names`` (once each).

    A logger's filters see only the records logged on that very logger, so each
    logger the proxy writes to needs its own.
    """
    existing = [
        name for name in logging.root.manager.loggerDict if name.startswith("provider_proxy.")
    ]
    for name in ("provider_proxy", *existing, *names):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
