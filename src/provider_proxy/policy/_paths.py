"""Path policy: where below the mount point a request goes, and that it stays there.

Pure functions. The client's path is split into the provider name and the rest;
the rest is checked segment by segment and appended to the adapter's base URL,
so host, scheme and port only ever come from the adapter.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes

import httpx

from .._exceptions import PathRefused
from ..types import Scope

# Characters allowed raw in a path (RFC 3986 §3.3 ``pchar`` plus ``/`` and ``%``
# for escapes already present); anything else is percent-encoded on the way.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_PLAIN_PATH = re.compile(rb"[A-Za-z0-9/:@!$&'()*+,;=\-._~%]*")
# The same for a query (RFC 3986 §3.4), where ``?`` is allowed too.
_QUERY_SAFE = "/?:@!$&'()*+,;=-._~%"
_PLAIN_QUERY = re.compile(rb"[A-Za-z0-9/?:@!$&'()*+,;=\-._~%]*")
_ENCODED_SEPARATOR = re.compile(rb"%(2f|5c)", re.IGNORECASE)
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_DOT_SEGMENTS = frozenset({b".", b".."})
# Paths that need no further checks (the common case): non-empty segments of
# plain path characters, none starting with '.', no escapes; one trailing slash.
_SIMPLE_PATH = re.compile(rb"(?:/[A-Za-z0-9:@!$&'()*+,;=\-_~][A-Za-z0-9:@!$&'()*+,;=\-._~]*)+/?")


def path_below_mount(scope: Scope) -> bytes:
    """The raw (still percent-encoded) path of the request below the mount point.

    Servers and routers disagree on whether ``scope["path"]`` still includes
    ``root_path`` (Starlette's ``Mount`` keeps it, older routers strip it), and
    ``raw_path`` may hold the full original target. Both forms are accepted: the
    decoded path has ``root_path`` removed when it starts with it, and the raw
    form is the tail of ``raw_path`` that decodes to that path (so ``%2F`` stays
    distinguishable from ``/``); without a usable ``raw_path`` the decoded path
    is percent-encoded again.
    """
    path: str = scope.get("path") or "/"
    root_path: str = scope.get("root_path") or ""
    if root_path and (path == root_path or path.startswith(root_path.rstrip("/") + "/")):
        path = path[len(root_path.rstrip("/")) :] or "/"
    raw_path = scope.get("raw_path")
    if raw_path:
        tail = _raw_tail_matching(raw_path, path)
        if tail is not None:
            return tail
    return quote(path, safe=_PATH_SAFE).encode("ascii")


def _raw_tail_matching(raw_path: bytes, path: str) -> bytes | None:
    """The suffix of ``raw_path``, starting at a ``/``, that decodes to ``path``.

    Servers decode escapes that are not UTF-8 to U+FFFD; such a path still finds
    its raw tail, so that :func:`confine` sees the client's bytes and refuses them
    rather than forwarding U+FFFD in their place.
    """
    target = path.encode("utf-8")
    lossy = "\ufffd" in path
    if not lossy and b"%" not in raw_path:
        # Nothing to decode (the common case): the tail is the one equal to the path.
        if raw_path.endswith(target) and (len(raw_path) == len(target) or target.startswith(b"/")):
            return raw_path[len(raw_path) - len(target) :]
        return None
    start = 0
    while start != -1:
        tail = raw_path[start:]
        decoded = unquote_to_bytes(tail)
        if decoded == target or (lossy and decoded.decode("utf-8", "replace") == path):
            return tail
        start = raw_path.find(b"/", start + 1)
    return None


def split_provider(raw: bytes) -> tuple[str, bytes]:
    """``/acme/chat/completions`` → ``("acme", b"/chat/completions")``."""
    stripped = raw.lstrip(b"/")
    name, slash, rest = stripped.partition(b"/")
    if b"%" in name:
        name = unquote_to_bytes(name)
    return name.decode("utf-8", "replace"), slash + rest


def confine(raw: bytes) -> bytes:
    """Check a raw path that is to be appended to a base URL; return it normalised.

    Refuses (with :class:`PathRefused`) anything that could leave the base or
    change the host: dot segments, also percent-encoded or followed by ``;``
    parameters (servers that drop them read ``..;`` as ``..``); encoded slashes
    and backslashes; backslashes; empty segments (``//host``, ``a//b``; one
    trailing slash is allowed); control characters, malformed escapes and bytes
    that are not UTF-8 (which servers would read differently). Other bytes
    outside the RFC 3986 path characters are percent-encoded.
    """
    if not raw:
        return b""
    if _SIMPLE_PATH.fullmatch(raw):
        return raw
    if not raw.startswith(b"/"):
        raise PathRefused("The path must start with '/'.")
    if b"\\" in raw or _ENCODED_SEPARATOR.search(raw):
        raise PathRefused("Encoded slashes and backslashes are not allowed in the path.")
    if _BAD_ESCAPE.search(raw):
        raise PathRefused("The path has a malformed percent-escape.")
    segments = raw[1:].split(b"/")
    for index, segment in enumerate(segments):
        if not segment:
            if index == len(segments) - 1:
                continue
            raise PathRefused("Empty path segments ('//') are not allowed.")
        decoded = unquote_to_bytes(segment)
        if decoded.partition(b";")[0] in _DOT_SEGMENTS:
            raise PathRefused(
                "'.' and '..' segments are not allowed in the path, also not with "
                "';' parameters ('..;')."
            )
        if any(byte < 0x20 or byte == 0x7F for byte in decoded):
            raise PathRefused("Control characters are not allowed in the path.")
        if not decoded.isascii() and not _is_utf8(decoded):
            raise PathRefused("The path has bytes (percent-encoded or not) that are not UTF-8.")
    if _PLAIN_PATH.fullmatch(raw):
        return raw
    return quote(raw, safe=_PATH_SAFE).encode("ascii")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def upstream_url(base: httpx.URL, raw_path: bytes, query: bytes) -> httpx.URL:
    """``base`` with the confined ``raw_path`` appended and ``query`` as sent."""
    base_path = base.raw_path.partition(b"?")[0]
    target = base_path.rstrip(b"/") + raw_path if raw_path else base_path
    if query and not _PLAIN_QUERY.fullmatch(query):
        query = quote(query, safe=_QUERY_SAFE).encode("ascii")
    reference = getattr(base, "_uri_reference", None)
    if reference is not None and hasattr(reference, "_replace"):
        # Parsing a URL costs httpx about 80 microseconds; every part here is
        # already valid and percent-encoded, so the parsed form is built directly.
        url = httpx.URL.__new__(httpx.URL)
        url._uri_reference = reference._replace(
            path=(target or b"/").decode("ascii"),
            query=query.decode("ascii") if query else None,
            fragment=None,
        )
        return url
    if query:  # pragma: no cover - an httpx without the parsed form
        target += b"?" + query
    return base.copy_with(raw_path=target or b"/")  # pragma: no cover
