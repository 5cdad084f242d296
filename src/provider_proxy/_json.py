"""JSON in and out: orjson when installed (the ``fast`` extra), else the standard library.

Both backends fail the same way: ``loads`` raises :class:`ValueError` for
anything it will not read, input nested too deeply included (the standard
library's parser would raise :class:`RecursionError`); ``dumps`` raises
:class:`ValueError` for a value without a JSON form (lone surrogates, nesting
too deep; the standard library's also for NaN and infinities, which orjson
writes as ``null``) and :class:`TypeError` for a value of a type JSON lacks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

dumps: Callable[[Any], bytes]
loads: Callable[[bytes | str], Any]

_TOO_DEEP = "nested too deeply"


def _stdlib_dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON with the standard library; strict JSON only."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise ValueError(f"The value is {_TOO_DEEP} to serialise.") from None
    return text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates


def _stdlib_loads(data: bytes | str) -> Any:
    """The standard library's parser, with too-deep input a :class:`ValueError`."""
    try:
        return json.loads(data)
    except RecursionError:
        # Worded as orjson words it, so both backends say the same.
        raise ValueError(f"depth limit exceeded: the JSON is {_TOO_DEEP}") from None


try:
    import orjson
except ImportError:  # pragma: no cover - exercised when the fast extra is absent
    dumps, loads = _stdlib_dumps, _stdlib_loads
else:

    def dumps(value: Any) -> bytes:
        """orjson's serialiser; what it refuses goes to the standard library's.

        orjson writes neither more than 254 levels of nesting (it reads 1024)
        nor integers beyond 64 bits; the standard library writes those, or says
        why not.
        """
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:
            return _stdlib_dumps(value)

    #: Raises :class:`ValueError` (``orjson.JSONDecodeError`` is one) on invalid input.
    loads = orjson.loads
