"""The only I/O to providers: one transport per app, requests sent straight through it.

``httpx.AsyncClient`` is skipped on purpose: prebuilt :class:`httpx.Request`
objects go directly to the transport, which measured about four times faster.
Transport failures become :class:`~provider_proxy.ProxyError` subclasses with
the status that says what happened.
"""

from __future__ import annotations

import socket

import httpx

from ._exceptions import PoolExhausted, ProxyError, UpstreamTimeout, UpstreamUnreachable

#: The official SDKs' timeouts: 10 s to connect, 600 s between reads. Waiting for
#: a free pooled connection is bounded separately, so saturation answers 503 soon.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0, pool=10.0)

#: The official SDKs' pool size: a proxy holds many long streams at once.
DEFAULT_LIMITS = httpx.Limits(
    max_connections=1000, max_keepalive_connections=100, keepalive_expiry=5.0
)

_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def default_transport(limits: httpx.Limits = DEFAULT_LIMITS) -> httpx.AsyncBaseTransport:
    """The fastest transport installed: aiohttp's (the ``fast`` extra), else httpx's own."""
    try:
        from ._aiohttp_transport import AiohttpTransport
    except ImportError:
        return httpx.AsyncHTTPTransport(limits=limits, socket_options=_NODELAY)
    return AiohttpTransport(limits=limits)


def as_proxy_error(exc: httpx.TransportError, host: str) -> ProxyError:
    """The answer for a transport failure before the response started.

    The message names the host and the failure, never headers or credentials.
    """
    detail = str(exc)[:200] or type(exc).__name__
    if isinstance(exc, httpx.PoolTimeout):
        return PoolExhausted(
            "Every upstream connection stayed busy for the whole pool timeout; retry later."
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return UpstreamTimeout(f"Connecting to {host} timed out.")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"{host} did not answer in time ({type(exc).__name__}).")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamUnreachable(f"Could not connect to {host}: {detail}")
    if isinstance(exc, httpx.LocalProtocolError):
        # Its message may quote the request's headers, credentials included.
        return UpstreamUnreachable(f"The request to {host} could not be sent: an invalid request.")
    return UpstreamUnreachable(f"The exchange with {host} failed: {type(exc).__name__}: {detail}")


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
