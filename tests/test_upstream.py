"""Transport failures become the proxy's own errors, with statuses that say what happened."""

from __future__ import annotations

import socket

import httpx
import pytest

from provider_proxy import (
    PoolExhausted,
    ProxyApp,
    ProxyError,
    UpstreamTimeout,
    UpstreamUnreachable,
    make_asgi_app,
)
from provider_proxy._upstream import as_proxy_error
from provider_proxy.adapters import OpenAIAdapter

from .conftest import OPENAI_KEY, TRANSPORTS
from .servers import ServerThread

REQUEST = httpx.Request("POST", "https://api.example/v1/chat/completions")


def test_an_invalid_request_error_never_quotes_the_request() -> None:
    # h11 names the offending header, value included: that may be a credential.
    exc = httpx.LocalProtocolError("Illegal header value b'Bearer sk-SECRET\\n'", request=REQUEST)
    error = as_proxy_error(exc, "api.example")
    assert error.status_code == 502
    assert "sk-SECRET" not in error.message
    assert "api.example" in error.message


@pytest.mark.parametrize(
    ("exc", "expected", "status", "words"),
    [
        (httpx.PoolTimeout("", request=REQUEST), PoolExhausted, 503, "busy"),
        (httpx.ConnectTimeout("", request=REQUEST), UpstreamTimeout, 504, "Connecting"),
        (httpx.ReadTimeout("", request=REQUEST), UpstreamTimeout, 504, "did not answer"),
        (httpx.WriteTimeout("", request=REQUEST), UpstreamTimeout, 504, "did not answer"),
        (httpx.ConnectError("refused", request=REQUEST), UpstreamUnreachable, 502, "refused"),
        (httpx.RemoteProtocolError("eof", request=REQUEST), UpstreamUnreachable, 502, "eof"),
        (httpx.ReadError("reset", request=REQUEST), UpstreamUnreachable, 502, "ReadError"),
        (httpx.UnsupportedProtocol("x", request=REQUEST), UpstreamUnreachable, 502, "x"),
    ],
)
def test_transport_errors_map_to_statuses(
    exc: httpx.TransportError, expected: type[ProxyError], status: int, words: str
) -> None:
    error = as_proxy_error(exc, "api.example")
    assert type(error) is expected
    assert error.status_code == status
    assert words in error.message
    if expected is not PoolExhausted:
        assert "api.example" in error.message
    assert error.retryable


def _upstream_sockets(proxy: ProxyApp) -> list[socket.socket]:
    transport = proxy.transport
    if isinstance(transport, httpx.AsyncHTTPTransport):
        streams = [c._connection._network_stream for c in transport._pool.connections]  # type: ignore[union-attr]
        return [s.get_extra_info("socket") for s in streams]
    session = transport._session  # type: ignore[attr-defined]
    protocols = [p for conns in session.connector._conns.values() for p, _ in conns]
    return [p.transport.get_extra_info("socket") for p in protocols]


def test_upstream_sockets_have_tcp_nodelay(upstream: ServerThread, transport_kind: str) -> None:
    from .servers import serve

    proxy = make_asgi_app(
        [OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY)],
        transport=TRANSPORTS[transport_kind](),
    )
    with serve(proxy) as server:
        assert httpx.get(server.url + "/openai/models").status_code == 200

        async def nodelay() -> list[int]:
            return [
                s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                for s in _upstream_sockets(proxy)
            ]

        flags = server.call(nodelay())
    assert flags
    assert all(flags)
