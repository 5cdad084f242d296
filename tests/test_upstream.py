"""Transport failures become the proxy's own errors, with statuses that say what happened."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import ssl
import stat
import threading
from collections.abc import Iterator

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
from provider_proxy.adapters import OpenAIAdapter
from provider_proxy.transports._upstream import as_proxy_error

from .conftest import OPENAI_KEY, TRANSPORTS
from .servers import ServerThread, serve

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
        (httpx.ConnectError("x", request=REQUEST), UpstreamUnreachable, 502, "Could not connect"),
        (httpx.RemoteProtocolError("x", request=REQUEST), UpstreamUnreachable, 502, "valid HTTP"),
        (httpx.ReadError("reset", request=REQUEST), UpstreamUnreachable, 502, "ReadError"),
        (httpx.UnsupportedProtocol("x", request=REQUEST), UpstreamUnreachable, 502, "Unsupported"),
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


UPSTREAM_TEXT = (
    "illegal status line: bytearray(b'HTTP/1.1 2OO POST /v1 authorization: Bearer sk-x')"
)


@pytest.mark.parametrize(
    "kind",
    [
        httpx.ConnectError,
        httpx.RemoteProtocolError,
        httpx.ReadError,
        httpx.WriteError,
        httpx.UnsupportedProtocol,
        httpx.ProxyError,
        httpx.ReadTimeout,
        httpx.TransportError,
    ],
)
def test_a_transport_errors_text_goes_to_the_log_not_to_the_client(
    kind: type[httpx.TransportError], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="provider_proxy"):
        error = as_proxy_error(kind(UPSTREAM_TEXT, request=REQUEST), "api.example")
    for part in ("2OO", "bytearray", "POST /v1", "sk-x"):
        assert part not in error.message
    assert kind.__name__ in caplog.text
    assert "illegal status line" in caplog.text
    assert "sk-x" not in caplog.text  # a credential header's value, masked


def _connect_error(cause: BaseException) -> httpx.ConnectError:
    try:
        try:
            raise cause
        except OSError as exc:
            raise httpx.ConnectError(f"[Errno 1] {exc} b'UPSTREAM'", request=REQUEST) from exc
    except httpx.ConnectError as error:
        return error


@pytest.mark.parametrize(
    ("cause", "why"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "(connection refused)"),
        (socket.gaierror(-2, "Name or service not known"), "(its name did not resolve)"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "not accepted"),
        (ssl.SSLError(1, "wrong version number"), "(the TLS handshake failed)"),
        (OSError(99, "something else"), "Could not connect to api.example."),
    ],
)
def test_connect_failures_are_named_by_the_type_of_their_cause(cause: OSError, why: str) -> None:
    message = as_proxy_error(_connect_error(cause), "api.example").message
    assert why in message
    assert "UPSTREAM" not in message
    assert "Errno" not in message


REFLECTED_KEY = "sk-reflected-0123456789abcdef"
UPSTREAM_MARK = b"UPSTREAM-BYTES"


class _Reflector(socketserver.BaseRequestHandler):
    """Answers a malformed status line that quotes the request head it got."""

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            head += chunk
        lines = head.partition(b"\r\n\r\n")[0].split(b"\r\n")
        lines.sort(key=lambda line: not line.lower().startswith(b"authorization"))
        self.request.sendall(b"HTTP/1.1 2OO " + UPSTREAM_MARK + b" ".join(lines) + b"\r\n\r\n")


@contextlib.contextmanager
def _reflecting_upstream() -> Iterator[str]:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Reflector) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            thread.join(10)


def test_an_upstream_reflecting_the_key_in_a_bad_status_line_never_shows_it(
    transport_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _reflecting_upstream() as url:
        proxy = make_asgi_app(
            [OpenAIAdapter(base_url=url + "/v1", api_key=REFLECTED_KEY)],
            transport=TRANSPORTS[transport_kind](),
            validate_credentials="off",
        )
        with caplog.at_level(logging.DEBUG, logger="provider_proxy"), serve(proxy) as server:
            response = httpx.post(
                server.url + "/openai/chat/completions", json={"model": "m", "messages": []}
            )
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_unreachable"
    for part in (REFLECTED_KEY, UPSTREAM_MARK.decode(), "2OO", "user-agent", "/v1/chat"):
        assert part not in response.text
    # The detail is in the log, the key masked out of it (reqwest's parser and
    # llhttp name the fault without quoting the bytes).
    if transport_kind not in ("reqwest", "http1"):
        assert UPSTREAM_MARK.decode() in caplog.text
    assert "the exchange with 127.0.0.1 failed" in caplog.text
    assert REFLECTED_KEY not in caplog.text


def _nodelay_of_sockets_to(port: int) -> list[int]:
    """TCP_NODELAY of this process's sockets connected to ``port`` (for a transport in Rust)."""
    flags = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if not stat.S_ISSOCK(os.fstat(int(fd)).st_mode):
                continue
            with socket.socket(fileno=os.dup(int(fd))) as sock:
                if sock.family == socket.AF_INET and sock.getpeername()[1] == port:
                    flags.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    return flags


def _upstream_sockets(proxy: ProxyApp) -> list[socket.socket]:
    transport = proxy.transport
    if isinstance(transport, httpx.AsyncHTTPTransport):
        streams = [c._connection._network_stream for c in transport._pool.connections]  # type: ignore[union-attr]
        return [s.get_extra_info("socket") for s in streams]
    session = transport._session  # type: ignore[attr-defined]
    protocols = [p for conns in session.connector._conns.values() for p, _ in conns]
    return [p.transport.get_extra_info("socket") for p in protocols]


def test_upstream_sockets_have_tcp_nodelay(upstream: ServerThread, transport_kind: str) -> None:
    proxy = make_asgi_app(
        [OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY)],
        transport=TRANSPORTS[transport_kind](),
    )
    with serve(proxy) as server:
        assert httpx.get(server.url + "/openai/models").status_code == 200

        async def nodelay() -> list[int]:
            if transport_kind in ("reqwest", "http1"):
                return _nodelay_of_sockets_to(int(upstream.url.rsplit(":", 1)[1]))
            return [
                s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                for s in _upstream_sockets(proxy)
            ]

        flags = server.call(nodelay())
    assert flags
    assert all(flags)
