"""Small helpers the codecs share: typed reads of JSON values that name the field at fault."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from .._json import dumps, loads
from .canonical import CacheControl, Unsupported

_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)", re.S)


def obj(value: Any, where: str) -> dict[str, Any]:
    """``value`` as a JSON object, else :class:`Unsupported` naming ``where``."""
    if not isinstance(value, dict):
        raise Unsupported(where, "expected an object")
    return value


def arr(value: Any, where: str) -> list[Any]:
    """``value`` as a JSON array."""
    if not isinstance(value, list):
        raise Unsupported(where, "expected an array")
    return value


def text(value: Any, where: str) -> str:
    """``value`` as a string."""
    if not isinstance(value, str):
        raise Unsupported(where, "expected a string")
    return value


def opt_str(value: Any, where: str) -> str | None:
    """A string or ``None``."""
    return None if value is None else text(value, where)


def opt_int(value: Any, where: str) -> int | None:
    """A non-negative integer or ``None``."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Unsupported(where, "expected a non-negative integer")
    return value


def opt_float(value: Any, where: str) -> float | None:
    """A number or ``None`` (an integer stays an integer, so it is written back the same)."""
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):  # a tuple: no union built
        raise Unsupported(where, "expected a number")
    return value


def opt_bool(value: Any, where: str) -> bool | None:
    """A boolean or ``None``."""
    if value is None:
        return None
    if not isinstance(value, bool):
        raise Unsupported(where, "expected a boolean")
    return value


def only(mapping: dict[str, Any], allowed: Collection[str], where: str) -> None:
    """Refuse the first key of ``mapping`` that is not ``allowed`` (and not ``null``).

    ``allowed`` is searched as given: a handful of names in a tuple are found
    sooner than a set of them is built.
    """
    for key, value in mapping.items():
        if key not in allowed and value is not None:
            raise Unsupported(f"{where}.{key}")


def cache_control(value: Any, where: str) -> CacheControl | None:
    """Anthropic's ``cache_control`` object."""
    if value is None:
        return None
    raw = obj(value, where)
    only(raw, ("type", "ttl"), where)
    return CacheControl(
        text(raw.get("type", "ephemeral"), f"{where}.type"), opt_str(raw.get("ttl"), f"{where}.ttl")
    )


def cache_control_json(value: CacheControl) -> dict[str, Any]:
    """``cache_control`` as JSON."""
    out: dict[str, Any] = {"type": value.type}
    if value.ttl is not None:
        out["ttl"] = value.ttl
    return out


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64 data)`` of a ``data:...;base64,`` URL, else ``None``."""
    found = _DATA_URL.fullmatch(url)
    return (found["type"], found["data"]) if found else None


def data_url(media_type: str, data: str) -> str:
    """A base64 data URL (RFC 2397)."""
    return f"data:{media_type};base64,{data}"


def arguments_object(arguments: str, where: str) -> dict[str, Any]:
    """A tool call's JSON arguments text as an object (an empty text is ``{}``)."""
    if not arguments.strip():
        return {}
    try:
        value = loads(arguments)
    except ValueError:
        raise Unsupported(where, "tool-call arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise Unsupported(where, "tool-call arguments are not a JSON object")
    return value


def arguments_text(value: Any) -> str:
    """A tool call's input object as compact JSON text."""
    return dumps(value).decode("utf-8")
