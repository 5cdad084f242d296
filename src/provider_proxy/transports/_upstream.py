"""The only I/O to providers: one transport per app, requests sent straight through it.

``httpx.AsyncClient`` is skipped on purpose: prebuilt :class:`httpx.Request`
objects go directly to the transport, which measured about four times faster.
Transport failures become :class:`~provider_proxy.ProxyError` subclasses with
the status that says what happened, and a fixed message: never the failure's
own text, which may quote upstream bytes.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any

import httpx

from .._exceptions import PoolExhausted, ProxyError, UpstreamTimeout, UpstreamUnreachable
from .._scrub import scrub

logger = logging.getLogger("provider_proxy")

#: The official SDKs' timeouts: 10 s to connect, 600 s between reads. Waiting for
#: a free pooled connection is bounded separately, so saturation answers 503 soon.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0, pool=10.0)

#: The official SDKs' pool size: a proxy holds many long streams at once.
DEFAULT_LIMITS = httpx.Limits(
    max_connections=1000, max_keepalive_connections=100, keepalive_expiry=5.0
)

_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

#: How much of a transport error's text is logged (it may hold a whole reflected request).
_DETAIL_LIMIT = 500
#: How far down an exception's causes a connect failure's reason is looked for.
_CHAIN_DEPTH = 6
#: Reasons for a failed connection, by the type of the exception behind it.
_CONNECT_FAILURES: tuple[tuple[type[BaseException], str], ...] = (
    (socket.gaierror, "its name did not resolve"),
    (ConnectionRefusedError, "connection refused"),
    (ssl.SSLCertVerificationError, "its TLS certificate was not accepted"),
    (ssl.SSLError, "the TLS handshake failed"),
    (ConnectionResetError, "connection reset"),
)


def text_headers(raw_headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Request headers as text for a client that encodes them as UTF-8 (aiohttp's,
    reqwest's): decoding them as UTF-8 sends the same bytes, and a value that is
    not UTF-8 is decoded as latin-1. The framing (``transfer-encoding``) is left
    out: the client frames the body itself."""
    try:  # all of them in one pass, when they are UTF-8
        return [
            (name.decode("latin-1"), value.decode())
            for name, value in raw_headers
            if name.lower() != b"transfer-encoding"
        ]
    except UnicodeDecodeError:
        return [
            (name.decode("latin-1"), _text(value))
            for name, value in raw_headers
            if name.lower() != b"transfer-encoding"
        ]


def request_body(request: httpx.Request, transport: object) -> bytes | AsyncIterable[bytes]:
    """An :class:`httpx.Request`'s body for a transport's ``handle_async_request``:
    whole bytes when httpx holds them, else its async stream."""
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        return b"".join(stream)
    if isinstance(stream, httpx.AsyncByteStream):
        return stream
    raise TypeError(f"{type(transport).__name__} needs a request with an async body stream")


def _text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


class UpstreamRequest:
    """A prebuilt upstream request as raw parts, for a :class:`RawTransport`.

    The plain passthrough path builds this and nothing more: an
    :class:`httpx.Request` is made from it only for a transport that needs one.
    ``headers`` are lower-case byte pairs, framing included (``content-length``
    or ``transfer-encoding: chunked``); ``body`` is whole bytes or a stream.
    """

    __slots__ = ("body", "extensions", "headers", "method", "url")

    def __init__(
        self,
        method: str,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes],
        extensions: dict[str, Any],
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.extensions = extensions

    @property
    def timeouts(self) -> dict[str, float | None]:
        """httpx's ``timeout`` extension: ``connect``, ``read``, ``write`` and ``pool``."""
        timeouts: dict[str, float | None] = self.extensions.get("timeout", {})
        return timeouts


class RawResponse(httpx.AsyncByteStream):
    """An upstream response as raw parts: the status, the headers as sent, the body stream.

    Iterating yields the body's chunks as they arrive (raising httpx's
    exceptions); :meth:`aclose` frees the connection, once.
    """

    status_code: int
    #: The headers as the upstream sent them (names in any case).
    raw_headers: Sequence[tuple[bytes, bytes]]

    def __aiter__(self) -> AsyncIterator[bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def aclose(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class RawTransport(httpx.AsyncBaseTransport):
    """A transport that also sends an :class:`UpstreamRequest` without httpx's objects.

    The engine uses :meth:`send_raw` when the app's transport is one (the
    aiohttp and reqwest transports are); any other :class:`httpx.AsyncBaseTransport`
    gets an :class:`httpx.Request`, as before. Failures raise httpx's exceptions
    either way. (A plain class, not an ABC: the engine checks it per request.)
    """

    async def send_raw(self, request: UpstreamRequest) -> RawResponse:  # pragma: no cover
        """Send ``request``; return as soon as the response's head is in."""
        raise NotImplementedError


class HttpxResponse(RawResponse):
    """An :class:`httpx.Response` seen as a :class:`RawResponse` (any other transport's)."""

    __slots__ = ("_response", "raw_headers", "status_code")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status_code = response.status_code
        self.raw_headers = response.headers.raw

    def __aiter__(self) -> AsyncIterator[bytes]:
        # The transport's own stream, not decoded (``aiter_raw`` would add a layer).
        stream: Any = self._response.stream
        iterator: AsyncIterator[bytes] = stream.__aiter__()
        return iterator

    async def aclose(self) -> None:
        await self._response.aclose()


def default_transport(limits: httpx.Limits = DEFAULT_LIMITS) -> httpx.AsyncBaseTransport:
    """The ``http1`` transport (the ``fast`` extra's httptools) when installed, else
    aiohttp's, else httpx's own.

    Not pyreqwest's, though it costs less CPU than aiohttp's: a request it sends
    cannot be abandoned before its answer's head is in (the provider would go on
    with a request whose client left), and it holds more memory per open stream.
    """
    for choice in (http1_transport, aiohttp_transport):
        try:
            return choice(limits)
        except ImportError:
            continue
    return _httpx_transport(limits)


def _httpx_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """httpx's own transport, with ``TCP_NODELAY``."""
    return httpx.AsyncHTTPTransport(limits=limits, socket_options=_NODELAY)


def transport_named(name: str, limits: httpx.Limits = DEFAULT_LIMITS) -> httpx.AsyncBaseTransport:
    """The transport ``name`` stands for: ``auto`` (:func:`default_transport`),
    ``http1``, ``reqwest``, ``aiohttp`` or ``httpx`` (httpx's own, with ``TCP_NODELAY``).

    :raises ImportError: when that transport's package is not installed.
    :raises ValueError: for another name.
    """
    make = _NAMED.get(name)
    if make is not None:
        return make(limits)
    raise ValueError(f"no transport is named {name!r}: one of {', '.join(TRANSPORT_NAMES)}")


def http1_transport(
    limits: httpx.Limits = DEFAULT_LIMITS, *, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncBaseTransport:
    """The proxy's own HTTP/1.1 client, on asyncio and llhttp (httptools, in the
    ``fast`` extra), for ``transport=``: the least CPU per request of the
    transports shipped. It is :func:`default_transport`'s when httptools is installed.

    :param verify: an :class:`ssl.SSLContext` to use as given, or whether to
        verify the providers' TLS certificates.
    :raises ImportError: when httptools is not installed.
    """
    try:
        from ._http1 import Http1Transport
    except ImportError as exc:
        raise ImportError(
            "the http1 transport needs httptools: pip install 'provider-proxy[fast]'"
        ) from exc
    return Http1Transport(limits=limits, verify=verify)


def aiohttp_transport(limits: httpx.Limits = DEFAULT_LIMITS) -> httpx.AsyncBaseTransport:
    """The transport on aiohttp's client (the ``fast`` extra), for ``transport=``.

    It is :func:`default_transport`'s when aiohttp is installed and httptools is not.

    :raises ImportError: when aiohttp is not installed.
    """
    try:
        from ._aiohttp import AiohttpTransport
    except ImportError as exc:
        raise ImportError(
            "the aiohttp transport needs aiohttp: pip install 'provider-proxy[fast]'"
        ) from exc
    return AiohttpTransport(limits=limits)


def reqwest_transport(
    limits: httpx.Limits = DEFAULT_LIMITS,
    *,
    verify: bool = True,
    root_certificates: bytes | None = None,
) -> httpx.AsyncBaseTransport:
    """The transport on pyreqwest (Rust's reqwest; the ``reqwest`` extra), for ``transport=``.

    It costs less CPU per request than aiohttp's, and holds more memory per
    open stream. A request it sends cannot be abandoned before the answer's
    head is in: a client that leaves while the provider is still working on
    the answer leaves it working until it answers (or the read timeout). See
    ``docs/performance.rst``.

    :param verify: whether to verify the providers' TLS certificates.
    :param root_certificates: PEM certificates to trust besides the system's.
    :raises ImportError: when pyreqwest is not installed.
    """
    try:
        from ._reqwest import ReqwestTransport
    except ImportError as exc:
        raise ImportError(
            "the reqwest transport needs pyreqwest (Python 3.11 or later): "
            "pip install 'provider-proxy[reqwest]'"
        ) from exc
    return ReqwestTransport(limits=limits, verify=verify, root_certificates=root_certificates)


#: The transports by the name a config file gives them.
_NAMED: dict[str, Callable[[httpx.Limits], httpx.AsyncBaseTransport]] = {
    "auto": default_transport,
    "http1": http1_transport,
    "reqwest": reqwest_transport,
    "aiohttp": aiohttp_transport,
    "httpx": _httpx_transport,
}

#: The transports :func:`transport_named` knows, by the name a config file gives.
TRANSPORT_NAMES = tuple(_NAMED)


def as_proxy_error(exc: httpx.TransportError, host: str) -> ProxyError:
    """The answer for a transport failure before the response started.

    The message is fixed by the failure's type (and the adapter's ``host``):
    an exception's text may quote raw upstream bytes, and an upstream can
    reflect the request, key included. That text goes to the log, scrubbed.
    """
    level = logging.DEBUG if isinstance(exc, httpx.PoolTimeout) else logging.WARNING
    if logger.isEnabledFor(level):
        detail = scrub(str(exc))[:_DETAIL_LIMIT]
        logger.log(level, "the exchange with %s failed: %s: %s", host, type(exc).__name__, detail)
    return _error_for(exc, host)


def _error_for(exc: httpx.TransportError, host: str) -> ProxyError:
    if isinstance(exc, httpx.PoolTimeout):
        return PoolExhausted(
            "Every upstream connection stayed busy for the whole pool timeout; retry later."
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return UpstreamTimeout(f"Connecting to {host} timed out.")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"{host} did not answer in time ({type(exc).__name__}).")
    if isinstance(exc, httpx.ConnectError):
        why = _connect_failure(exc)
        return UpstreamUnreachable(f"Could not connect to {host}{f' ({why})' if why else ''}.")
    if isinstance(exc, httpx.LocalProtocolError):
        return UpstreamUnreachable(f"The request to {host} could not be sent: an invalid request.")
    if isinstance(exc, httpx.RemoteProtocolError):
        return UpstreamUnreachable(
            f"The exchange with {host} failed (RemoteProtocolError): it closed the connection "
            "or answered with something that is not valid HTTP."
        )
    return UpstreamUnreachable(f"The exchange with {host} failed ({type(exc).__name__}).")


def _connect_failure(exc: BaseException) -> str | None:
    """Why a connection failed, from the types of the exceptions behind ``exc``."""
    seen: BaseException | None = exc
    for _ in range(_CHAIN_DEPTH):
        if seen is None:
            break
        for kind, why in _CONNECT_FAILURES:
            if isinstance(seen, kind):
                return why
        seen = seen.__cause__ or seen.__context__
    return None


class SharedTransport(httpx.AsyncBaseTransport):
    """The app's transport for its own requests (probes, model lists), left open on close.

    An :class:`httpx.AsyncClient` closes its transport; this lets short-lived
    clients share the app's pool without closing it.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        """Nothing: the app closes its transport itself."""
