"""A wrapper that keeps a credential out of reprs, logs and tracebacks."""

from __future__ import annotations

import hmac
import re
from typing import Final

from ._scrub import register_secret

#: Characters no header value may carry (line breaks among them).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class Secret:
    """Holds a credential; ``repr()`` and ``str()`` show only ``'**********'``.

    Call :meth:`reveal` at the one place the value is really needed (building
    the upstream auth header). The value is registered for scrubbing, so it is
    masked too where an upstream quotes it back (see :mod:`provider_proxy._scrub`).
    """

    __slots__ = ("_value",)

    _MASK: Final = "**********"

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        """The credential itself."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self._MASK!r})"

    def __str__(self) -> str:
        return self._MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


def clean_credential(value: str, what: str) -> str:
    """``value`` without surrounding whitespace; refuses control characters inside.

    A key read from a file often ends in a newline: stripped here, it works. One
    with a line break inside would make an invalid header, and HTTP libraries
    quote the offending header, key included, in their error messages.
    :raises ValueError: naming ``what``, never the value.
    """
    cleaned = value.strip()
    if CONTROL_CHARACTERS.search(cleaned):
        raise ValueError(f"{what} contains a line break or another control character.")
    return cleaned
