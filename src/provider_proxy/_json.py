"""JSON in and out: orjson when installed (the ``fast`` extra), else the standard library."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

dumps: Callable[[Any], bytes]
loads: Callable[[bytes | str], Any]

try:
    import orjson
except ImportError:  # pragma: no cover - exercised when the fast extra is absent

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON."""
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    loads = json.loads
else:
    dumps = orjson.dumps
    #: Raises :class:`ValueError` (``orjson.JSONDecodeError`` is one) on invalid input.
    loads = orjson.loads
