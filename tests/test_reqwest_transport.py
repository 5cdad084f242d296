"""The pyreqwest-backed transport on its own, against real loopback servers.

It must look exactly like httpx's transport to the engine: httpx exceptions for
each failure (from the phase that failed, which pyreqwest names only in text),
raw bytes, chunks as they arrive (pyreqwest's read-ahead buffer would hold them
back), a pool limit that raises :class:`httpx.PoolTimeout` and never leaks a
slot, and a request abandoned (its connection closed) when its task is cancelled.
The raw servers and helpers are the aiohttp transport's tests' own; what both
transports must do alike is in ``test_transports_shared.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import trustme

from provider_proxy import reqwest_transport
from provider_proxy.transports._reqwest import USER_AGENT, ReqwestTransport
from provider_proxy.transports._upstream import as_proxy_error

from .test_aiohttp_transport import (
    Body,
    BodyBroke,
    RawServer,
    _endless_upload,
    _header_names,
    _never_reads,
    _ok,
    _read_head,
    _request,
    _silent,
    uvicorn_server,
)

pytestmark = pytest.mark.anyio

__all__ = ["uvicorn_server"]  # a fixture, used by name


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def _open(transport: ReqwestTransport) -> AsyncIterator[ReqwestTransport]:
    try:
        yield transport
    finally:
        await transport.aclose()


class Connections:
    """A raw server's connections: how many were opened and how many the client closed."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed_by_client = asyncio.Event()

    async def hold_after_one_chunk(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.opened += 1
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await reader.read()  # returns when the client closes the connection
        self.closed_by_client.set()

    async def hold_silent(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        await _read_head(reader)
        await reader.read()
        self.closed_by_client.set()


# --- what goes out -----------------------------------------------------------


async def test_raw_bytes_no_cookies_and_only_reqwests_two_defaults_added() -> None:
    heads: list[bytes] = []
    bodies: list[bytes] = []
    body = gzip.compress(b'{"ok": true}')

    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await _read_head(reader)
            except asyncio.IncompleteReadError:
                return
            heads.append(head)
            length = next(
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if b"length" in line
            )
            bodies.append(await reader.readexactly(length))
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\nset-cookie: a=1\r\n"
                b"content-length: %d\r\n\r\n" % len(body) + body
            )
            await writer.drain()

    async with RawServer(gzipped) as url, _open(ReqwestTransport()) as transport:
        for _ in range(2):  # the second request must not carry the cookie
            request = _request(
                url + "/p%2Fq?x=%20",
                "POST",
                headers=[("x-one", "1"), ("x-one", "2"), ("x-utf8", "caf\u00e9".encode())],
                content=b"payload",
            )
            response = await transport.handle_async_request(request)
            raw = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            await response.aclose()
            assert raw == body  # not decompressed
            assert response.headers["content-encoding"] == "gzip"
    assert bodies == [b"payload", b"payload"]
    for head in heads:
        assert head.split(b"\r\n")[0] == b"POST /p%2Fq?x=%20 HTTP/1.1"
        # No Accept-Encoding, no Cookie, no Referer: only reqwest's Accept and the proxy's
        # User-Agent, for a request that had none.
        names = ["accept", "content-length", "host", "user-agent", "x-one", "x-one", "x-utf8"]
        assert _header_names(head) == names
        assert b"\r\nAccept: */*\r\n" in head
        assert b"\r\nUser-Agent: %s\r\n" % USER_AGENT.encode() in head
        assert USER_AGENT.startswith("provider-proxy/")
        assert b"caf\xc3\xa9\r\n" in head


async def test_the_requests_own_user_agent_and_accept_are_kept() -> None:
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_head(reader))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async with RawServer(record) as url, _open(ReqwestTransport()) as transport:
        headers = {"user-agent": "OpenAI/Python 1.0", "accept": "application/json"}
        response = await transport.handle_async_request(_request(url, headers=headers))
        await response.aclose()
    assert b"User-Agent: OpenAI/Python 1.0\r\n" in heads[0]
    assert heads[0].lower().count(b"user-agent") == 1
    assert heads[0].lower().count(b"accept:") == 1
    assert b"application/json" in heads[0]


# --- what comes back ---------------------------------------------------------


async def test_status_headers_and_extensions() -> None:
    async def created(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(
            b"HTTP/1.1 201 Very Created\r\nX-A: 1\r\nx-a: 2\r\nx-bad: caf\xe9\r\n"
            b"content-length: 0\r\n\r\n"
        )
        await writer.drain()

    async with RawServer(created) as url, _open(ReqwestTransport()) as transport:
        request = _request(url)
        response = await transport.handle_async_request(request)
        await response.aclose()
    assert response.status_code == 201
    assert response.request is request
    assert response.headers.get_list("x-a") == ["1", "2"]
    # reqwest cannot hand over a value that is not text: it is left out, not garbled.
    assert "x-bad" not in response.headers
    assert response.reason_phrase == "Created"  # reqwest keeps none: httpx's standard one
    assert response.extensions["http_version"] == b"HTTP/1.1"


async def test_the_head_is_returned_before_any_body_byte() -> None:
    head_seen = asyncio.Event()

    async def head_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        # The body comes only once the client holds the head.
        await asyncio.wait_for(head_seen.wait(), 5)
        writer.write(b"5\r\nhello\r\n0\r\n\r\n")
        await writer.drain()

    async with RawServer(head_first) as url, _open(ReqwestTransport()) as transport:
        with anyio.fail_after(3):
            response = await transport.handle_async_request(_request(url))
        head_seen.set()
        assert await response.aread() == b"hello"


# --- the pool limit ----------------------------------------------------------


# --- failures as httpx exceptions ----------------------------------------------


async def test_connection_refused_is_connect_error_naming_the_os_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with _open(ReqwestTransport()) as transport:
        request = _request(f"http://127.0.0.1:{port}/")
        with pytest.raises(httpx.ConnectError) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        # The OS error behind it, as Python's type: the proxy's 502 says "connection refused".
        assert info.value.__cause__ is not None
        assert isinstance(info.value.__cause__.__cause__, ConnectionRefusedError)
        assert transport.in_use == 0


async def test_dns_failure_is_connect_error() -> None:
    async with _open(ReqwestTransport()) as transport:
        request = _request("http://upstream.invalid/")
        with pytest.raises(httpx.ConnectError) as info:
            await transport.handle_async_request(request)
        assert info.value.__cause__ is not None
        assert isinstance(info.value.__cause__.__cause__, socket.gaierror)
        assert transport.in_use == 0


async def test_no_headers_in_time_is_read_timeout_not_connect_timeout() -> None:
    # pyreqwest calls this a connect timeout; the request did go out, so it is a read one.
    async with RawServer(_silent) as url, _open(ReqwestTransport()) as transport:
        request = _request(url, timeouts={"read": 0.2})
        with pytest.raises(httpx.ReadTimeout) as info:
            await transport.handle_async_request(request)
        assert not isinstance(info.value, httpx.ConnectTimeout)
        assert info.value.request is request
        assert transport.in_use == 0


async def test_each_timeout_pair_has_its_own_pool() -> None:
    async with RawServer(_ok) as url, _open(ReqwestTransport()) as transport:
        for read in (5.0, 6.0, 5.0):
            response = await transport.handle_async_request(_request(url, timeouts={"read": read}))
            assert await response.aread() == b"ok"
        assert sorted(transport._clients) == [(5.0, 5.0), (5.0, 6.0)]
    assert transport._clients == {}


async def test_closed_after_the_request_went_out_is_remote_protocol_error() -> None:
    # reqwest calls it a ConnectError; it is not one (the request was sent: not safe to retry).
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)

    async with RawServer(hang_up) as url, _open(ReqwestTransport()) as transport:
        request = _request(url)
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert transport.in_use == 0


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "ws://127.0.0.1/x"])
async def test_unsupported_scheme(url: str) -> None:
    async with _open(ReqwestTransport()) as transport:
        request = _request(url)
        with pytest.raises(httpx.UnsupportedProtocol) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert transport.in_use == 0


async def test_error_text_never_quotes_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with _open(ReqwestTransport()) as transport:
        request = _request(f"http://127.0.0.1:{port}/v1?key=sk-secret-in-query")
        with pytest.raises(httpx.ConnectError) as info:
            await transport.handle_async_request(request)
    assert "sk-secret" not in str(info.value)
    assert "Connection refused" in str(info.value)


@pytest.mark.parametrize("error", [BodyBroke("too many bytes"), OSError(5, "x")])
async def test_request_body_error_propagates_unchanged(error: Exception) -> None:
    async def reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        await reader.read()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        await asyncio.sleep(0.05)
        raise error

    async with RawServer(reading) as url, _open(ReqwestTransport()) as transport:
        with pytest.raises(type(error)) as info:
            await transport.handle_async_request(_request(url, "POST", stream=Body(chunks)))
        assert info.value is error
        assert transport.in_use == 0


# --- cancellation: the upstream connection is closed at once -----------------


async def test_cancelled_while_waiting_for_headers_frees_its_slot() -> None:
    connections = Connections()
    async with RawServer(connections.hold_silent) as url, _open(ReqwestTransport()) as transport:
        with anyio.move_on_after(0.2) as scope:
            await transport.handle_async_request(_request(url))
        assert scope.cancelled_caught  # the scope's own cancellation, not pyreqwest's
        assert transport.in_use == 0


@pytest.mark.xfail(
    strict=True,
    reason="pyreqwest runs a request on its own runtime: given up before the answer's head, "
    "it goes on until the head comes or the read timeout (a known limit of the transport, "
    "and why it is not the default; see docs/performance.rst)",
)
async def test_cancelled_while_waiting_for_headers_closes_the_connection_at_once() -> None:
    connections = Connections()
    async with RawServer(connections.hold_silent) as url, _open(ReqwestTransport()) as transport:
        with anyio.move_on_after(0.2):
            await transport.handle_async_request(_request(url, timeouts={"read": 60.0}))
        with anyio.fail_after(1):
            await connections.closed_by_client.wait()


async def test_cancelled_mid_body_closes_the_connection() -> None:
    connections = Connections()
    async with (
        RawServer(connections.hold_after_one_chunk) as url,
        _open(ReqwestTransport()) as transport,
    ):
        response = await transport.handle_async_request(_request(url))
        received = []
        with anyio.move_on_after(0.2) as scope:
            async for chunk in response.stream:  # type: ignore[union-attr]
                received.append(chunk)
        assert scope.cancelled_caught
        assert received == [b"hello"]
        await response.aclose()
        assert transport.in_use == 0
        with anyio.fail_after(5):
            await connections.closed_by_client.wait()


@pytest.mark.parametrize("how", ["scope", "task"])
async def test_many_reads_cancelled_mid_stream_all_end(how: str) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        with contextlib.suppress(OSError):
            while True:
                writer.write(b"5\r\nhello\r\n")
                await writer.drain()
                await asyncio.sleep(0.001)

    async def read_all(response: httpx.Response) -> None:
        async for _ in response.stream:  # type: ignore[union-attr]
            pass

    async def read_for(transport: ReqwestTransport, url: str, seconds: float) -> None:
        response = await transport.handle_async_request(_request(url))
        if how == "scope":
            with anyio.move_on_after(seconds) as scope:
                await read_all(response)
            assert scope.cancelled_caught  # the scope's own cancellation came back to it
        else:  # as the engine's disconnect watch does
            reading = asyncio.ensure_future(read_all(response))
            await asyncio.sleep(seconds)
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
        await response.aclose()

    # A cancellation landing as a chunk arrives must still end the read, at once.
    async with RawServer(endless) as url, _open(ReqwestTransport()) as transport:
        with anyio.fail_after(20):
            for _ in range(5):
                async with anyio.create_task_group() as group:
                    for i in range(20):
                        group.start_soon(read_for, transport, url, 0.01 + (i % 7) * 0.001)
        assert transport.in_use == 0


# --- uploads to a peer that stops reading ------------------------------------


@pytest.mark.parametrize("kind", ["streamed", "bytes"])
async def test_stalled_upload_is_write_timeout(kind: str) -> None:
    options: dict[str, Any]
    if kind == "streamed":
        options = {"stream": Body(_endless_upload)}
    else:
        options = {"content": b"x" * (64 * 1024 * 1024)}
    async with RawServer(_never_reads) as url, _open(ReqwestTransport()) as transport:
        request = _request(url, "POST", timeouts={"write": 0.3, "read": 30.0}, **options)
        with anyio.fail_after(5):  # the read timeout (30 s) never starts
            with pytest.raises(httpx.WriteTimeout) as info:
                await transport.handle_async_request(request)
        assert info.value.request is request
        assert transport.in_use == 0


# --- TLS -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _tls_server(ca: trustme.CA) -> AsyncIterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ssl.SSLError):
            await _read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(ok, "127.0.0.1", 0, ssl=context)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()
        await server.wait_closed()


async def test_an_untrusted_certificate_is_refused_and_named() -> None:
    async with _tls_server(trustme.CA()) as url, _open(ReqwestTransport()) as transport:
        with pytest.raises(httpx.ConnectError) as info:
            await transport.handle_async_request(_request(url))
    assert info.value.__cause__ is not None
    assert isinstance(info.value.__cause__.__cause__, ssl.SSLCertVerificationError)
    answer = as_proxy_error(info.value, "127.0.0.1")
    assert answer.status_code == 502
    assert "its TLS certificate was not accepted" in str(answer)


@pytest.mark.parametrize("trust", ["root_certificates", "verify=False"])
async def test_a_trusted_or_unverified_certificate_is_accepted(trust: str) -> None:
    ca = trustme.CA()
    if trust == "verify=False":
        transport = reqwest_transport(verify=False)
    else:
        transport = reqwest_transport(root_certificates=ca.cert_pem.bytes())
    assert isinstance(transport, ReqwestTransport)
    async with _tls_server(ca) as url, _open(transport):
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"


def test_reqwest_transport_says_which_extra_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "provider_proxy.transports._reqwest", None)
    with pytest.raises(ImportError, match=r"provider-proxy\[reqwest\]"):
        reqwest_transport()
