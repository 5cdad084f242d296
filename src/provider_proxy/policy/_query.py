"""Query-string edits for adapters: drop credential parameters, add a default one.

Pure functions over the raw (still percent-encoded) query of an
:class:`httpx.URL`. Parameter names are compared as the upstream would read
them: percent-escapes and ``+`` decoded (so ``k%65y`` is ``key``), and case
kept (``Key`` is not ``key``). The rest of the query is passed on byte for
byte, in its order.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import quote, unquote_to_bytes

import httpx


def _name(part: bytes) -> bytes:
    """The decoded name of one ``name=value`` pair."""
    return unquote_to_bytes(part.partition(b"=")[0].replace(b"+", b" "))


def has_param(query: bytes, name: str) -> bool:
    """Whether ``query`` names the parameter ``name`` (with a value or not)."""
    wanted = name.encode("ascii")
    return any(_name(part) == wanted for part in query.split(b"&") if part)


def param_value(query: bytes, names: Collection[str]) -> str | None:
    """The decoded value of the first non-empty parameter named in ``names``, or ``None``."""
    wanted = {name.encode("ascii") for name in names}
    for part in query.split(b"&"):
        if part and _name(part) in wanted:
            raw = part.partition(b"=")[2].replace(b"+", b" ")
            if raw:
                return unquote_to_bytes(raw).decode("utf-8", "replace")
    return None


def query_without(query: bytes, names: Collection[str]) -> bytes:
    """``query`` without any occurrence of the parameters ``names`` (repeats included).

    Returns ``query`` itself when there is nothing to remove.
    """
    if not query:
        return query
    drop = {name.encode("ascii") for name in names}
    parts = query.split(b"&")
    kept = [part for part in parts if part and _name(part) not in drop]
    if len(kept) == len(parts):
        return query
    return b"&".join(kept)


def without_params(url: httpx.URL, names: Collection[str]) -> httpx.URL:
    """``url`` without any occurrence of the parameters ``names`` (repeats included).

    Returns ``url`` itself when there is nothing to remove.
    """
    query = url.query
    kept = query_without(query, names)
    if kept is query:
        return url
    return url.copy_with(query=kept or None)


def with_default_param(url: httpx.URL, name: str, value: str) -> httpx.URL:
    """``url`` with ``name=value`` appended unless the query already names ``name``."""
    query = url.query
    if has_param(query, name):
        return url
    pair = (quote(name, safe="") + "=" + quote(value, safe="")).encode("ascii")
    return url.copy_with(query=query + b"&" + pair if query else pair)
