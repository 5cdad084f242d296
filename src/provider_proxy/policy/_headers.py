"""Header policy: which headers cross the proxy, in either direction.

Pure functions over ASGI-style header lists (``list[tuple[bytes, bytes]]`` with
lower-cased names), so they are cheap and testable without an event loop.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterable, Mapping

import httpx

RawHeaders = list[tuple[bytes, bytes]]

#: Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ``keep-alive`` and
#: ``proxy-connection`` that clients still send): they describe one connection
#: and are never forwarded.
HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

#: HTTP's own credential headers (RFC 9110 §11.6.2, RFC 6265): never forwarded
#: upstream, whatever the adapter. The headers each API format carries keys in
#: are its dialect's, added by the engine (:meth:`HeaderPolicy.never_forwarding`).
CLIENT_CREDENTIALS: frozenset[bytes] = frozenset({b"authorization", b"cookie"})

REQUEST_ID = b"x-request-id"
UPSTREAM_REQUEST_ID = b"x-upstream-request-id"

#: Headers that would change the method after the endpoint policy checked it.
METHOD_OVERRIDES: frozenset[bytes] = frozenset(
    {b"x-http-method-override", b"x-http-method", b"x-method-override"}
)

#: Headers that describe the network path to the proxy: end users' addresses
#: and internal host names, which are no provider's business.
TOPOLOGY: frozenset[bytes] = frozenset(
    {
        b"forwarded",
        b"via",
        b"x-real-ip",
        b"true-client-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"cf-connecting-ip",
        b"fastly-client-ip",
    }
)

#: Headers that some servers honour to route a request elsewhere than its path,
#: after the endpoint policy checked that path.
URL_OVERRIDES: frozenset[bytes] = frozenset(
    {
        b"x-original-url",
        b"x-original-uri",
        b"x-rewrite-url",
        b"x-override-url",
        b"x-forwarded-prefix",
        b"x-forwarded-uri",
    }
)

#: Every ``x-forwarded-*`` header is one or the other (``-for``, ``-host``, ``-proto``...).
FORWARDED_PREFIX = b"x-forwarded-"

#: Dropped from requests besides hop-by-hop and credentials: ``host`` is the
#: upstream's, ``content-length`` is set again for the body actually sent, the
#: request id is set by the proxy, and ``origin`` is the client's page, not the
#: proxy's (providers treat a request with one as a browser's and may refuse it).
_REQUEST_DROP: frozenset[bytes] = (
    HOP_BY_HOP
    | CLIENT_CREDENTIALS
    | METHOD_OVERRIDES
    | TOPOLOGY
    | URL_OVERRIDES
    | {b"host", b"content-length", REQUEST_ID, b"expect", b"origin"}
)

#: The limit headers the proxy sets, and the standard names of the same facts
#: (the IETF ``RateLimit`` drafts): when the proxy sets its own, the provider's
#: of these names go to the client as ``x-upstream-ratelimit-*`` instead.
LIMIT_HEADERS: frozenset[bytes] = frozenset(
    {
        b"x-ratelimit-limit",
        b"x-ratelimit-remaining",
        b"x-ratelimit-reset",
        b"ratelimit",
        b"ratelimit-policy",
        b"ratelimit-limit",
        b"ratelimit-remaining",
        b"ratelimit-reset",
    }
)

#: Dropped from responses besides hop-by-hop: the upstream's cookies belong to
#: the provider's domain, not to the host app's clients; ``date`` and ``server``
#: are set by the server the client talks to (uvicorn adds its own, and a second
#: ``date`` would be invalid); CORS is the proxy's (``cors=``) or the host's
#: policy, and a provider's own ``Access-Control-*`` would override or
#: duplicate it.
_RESPONSE_DROP: frozenset[bytes] = HOP_BY_HOP | {
    b"set-cookie",
    b"set-cookie2",
    b"date",
    b"server",
    b"access-control-allow-origin",
    b"access-control-allow-credentials",
    b"access-control-allow-methods",
    b"access-control-allow-headers",
    b"access-control-expose-headers",
    b"access-control-max-age",
}

_REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def connection_named(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names listed in ``Connection`` (RFC 9110 §7.6.1): hop-by-hop too."""
    return _listed(value for name, value in headers if name == b"connection")


def _listed(values: Iterable[bytes]) -> frozenset[bytes]:
    """The header names these ``Connection`` values list."""
    names: set[bytes] = set()
    for value in values:
        names.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return frozenset(names)


class HeaderPolicy:
    """An adapter's choices over the client's headers, within the fixed rules.

    :param forward: topology or URL-override headers (lower-case) to forward
        anyway, for an upstream of the operator's that needs them.
    :param drop_prefixes: beyond ``x-forwarded-``, name prefixes (lower-case) of
        client headers never forwarded (a client identity's ``x-stainless-``).
    :raises ValueError: ``forward`` names a header that is not one of those.
    """

    __slots__ = ("drop", "forward", "prefixes")

    def __init__(
        self, forward: str | Iterable[str] = (), drop_prefixes: Iterable[str] = ()
    ) -> None:
        given = (forward,) if isinstance(forward, str) else forward
        names = frozenset(name.strip().lower().encode("latin-1") for name in given)
        for name in sorted(names):
            if name not in TOPOLOGY | URL_OVERRIDES and not name.startswith(FORWARDED_PREFIX):
                raise ValueError(
                    f"forward_headers: {name.decode('latin-1')!r} is not a topology or "
                    "URL-override header; other headers pass unless the proxy never "
                    "forwards them (credentials, hop-by-hop)."
                )
        prefixes = [prefix.lower().encode("latin-1") for prefix in drop_prefixes]
        if not all(prefixes):
            raise ValueError("drop_prefixes: an empty prefix would drop every header.")
        #: Names never forwarded, less those forwarded anyway.
        self.drop: frozenset[bytes] = _REQUEST_DROP - names
        self.forward: frozenset[bytes] = names
        self.prefixes: tuple[bytes, ...] = (FORWARDED_PREFIX, *prefixes)

    def never_forwarding(self, names: frozenset[bytes]) -> HeaderPolicy:
        """This policy, also dropping ``names`` (a format's credential and account headers)."""
        extended = copy.copy(self)
        extended.drop = self.drop | names
        return extended

    def __repr__(self) -> str:
        forward = sorted(name.decode("latin-1") for name in self.forward)
        prefixes = [prefix.decode("latin-1") for prefix in self.prefixes]
        return f"HeaderPolicy(forward={forward!r}, drop_prefixes={prefixes!r})"


#: Nothing forwarded beyond the fixed rules.
DEFAULT_POLICY = HeaderPolicy()


def request_headers_for_upstream(
    headers: Iterable[tuple[bytes, bytes]],
    policy: HeaderPolicy = DEFAULT_POLICY,
    *,
    also_drop: frozenset[bytes] = frozenset(),
) -> RawHeaders:
    """The client's headers that may go upstream.

    ``headers`` must have lower-case names, as ASGI servers give them. One pass
    (this runs on every request); the headers a ``Connection`` header names
    are dropped in a second one, only when there is such a header.
    """
    drop = policy.drop | also_drop if also_drop else policy.drop
    prefixes, forward = policy.prefixes, policy.forward
    kept: RawHeaders = []
    connection: list[bytes] = []
    for item in headers:
        name = item[0]
        if name in drop:
            if name == b"connection":
                connection.append(item[1])
        elif not name.startswith(prefixes) or name in forward:
            kept.append(item)
    if connection:
        named = _listed(connection)
        kept = [item for item in kept if item[0] not in named]
    return kept


def response_headers_for_client(headers: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """The upstream's headers that may go back to the client (names lower-cased).

    One pass, as :func:`request_headers_for_upstream`.
    """
    kept: RawHeaders = []
    connection: list[bytes] = []
    for name, value in headers:
        name = name.lower()
        if name in _RESPONSE_DROP:
            if name == b"connection":
                connection.append(value)
        else:
            kept.append((name, value))
    if connection:
        named = _listed(connection)
        kept = [item for item in kept if item[0] not in named]
    return kept


def upstream_limits_renamed(headers: RawHeaders) -> RawHeaders:
    """``headers`` with the provider's :data:`LIMIT_HEADERS` renamed ``x-upstream-*``,
    as they go out when the proxy sets limit headers of its own."""
    if not any(name in LIMIT_HEADERS for name, _ in headers):
        return headers
    renamed: RawHeaders = []
    for name, value in headers:
        if name in LIMIT_HEADERS:
            name = b"x-upstream-" + name.removeprefix(b"x-")
        renamed.append((name, value))
    return renamed


def apply_headers(
    headers: RawHeaders,
    replace: Mapping[str, str] = {},
    defaults: Mapping[str, str] = {},
) -> RawHeaders:
    """Set ``replace`` (dropping the client's values of those names) and ``defaults``
    (only where the client sent none). Returns ``headers``, changed in place."""
    if replace:
        # One value per name, whatever its case: the last one given wins.
        lowered: dict[bytes, bytes] = {}
        for name, value in replace.items():
            lowered[name.lower().encode("latin-1")] = value.encode("latin-1")
        headers[:] = [item for item in headers if item[0] not in lowered]
        headers.extend(lowered.items())
    if defaults:
        present = dict(headers)  # (by name; built in C, unlike a set comprehension)
        for name, value in defaults.items():
            key = name.lower().encode("latin-1")
            if key not in present:
                headers.append((key, value.encode("latin-1")))
    return headers


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's ``x-request-id`` when it is safe to echo, else a new one."""
    for name, value in headers:
        if name == REQUEST_ID and _REQUEST_ID_RE.fullmatch(value):
            return value.decode("ascii")
    return new_request_id()


def new_request_id() -> str:
    """A random request id: 32 hex digits.

    Ids only need to be unique, not unguessable, so they skip the system's
    entropy source (a system call per request); the bytes' ``hex()`` is a third
    cheaper than formatting the number.
    """
    return random.getrandbits(128).to_bytes(16, "big").hex()


# httpx normalises every header it is given; ours are already lower-case bytes.
_FAST_HEADERS = isinstance(getattr(httpx.Headers(), "_list", None), list)


def httpx_headers(raw: RawHeaders) -> httpx.Headers:
    """``httpx.Headers`` from lower-case byte pairs, without httpx's per-header checks."""
    headers = httpx.Headers()
    if _FAST_HEADERS:
        headers._list = [(name, name, value) for name, value in raw]
        return headers
    return httpx.Headers(raw)  # pragma: no cover - an httpx without the internal list


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of ``name`` (lower-case) in ``headers``, or ``None``."""
    for key, value in headers:
        if key == name:
            return value
    return None
