"""Upstream transports: the only I/O to providers, and failures mapped to errors."""

from ._upstream import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    TRANSPORT_NAMES,
    HttpxResponse,
    RawResponse,
    RawTransport,
    SharedTransport,
    UpstreamRequest,
    aiohttp_transport,
    as_proxy_error,
    default_transport,
    http1_transport,
    reqwest_transport,
    transport_named,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "TRANSPORT_NAMES",
    "HttpxResponse",
    "RawResponse",
    "RawTransport",
    "SharedTransport",
    "UpstreamRequest",
    "aiohttp_transport",
    "as_proxy_error",
    "default_transport",
    "http1_transport",
    "reqwest_transport",
    "transport_named",
]
