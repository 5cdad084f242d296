"""The aiohttp-backed transport on its own, against real loopback servers.

It must look exactly like httpx's transport to the engine: httpx exceptions for
each failure, raw bytes, only the request's own headers, chunks as they arrive,
and a pool limit that raises :class:`httpx.PoolTimeout` and never leaks a slot.
Raw ``asyncio`` servers give exact bytes and broken responses; uvicorn serves
the well-behaved streaming app. What both shipped transports must do alike is
in ``test_transports_shared.py``, which runs on this one and the reqwest one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import socket
import ssl
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import anyio
import httpx
import pytest

from provider_proxy.transports._aiohttp import AiohttpTransport

from .servers import ServerThread, serve

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMEOUTS = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}
SSE_GAP = 0.3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RawServer:
    """A raw TCP server on loopback whose connections are all closed on exit."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handler(reader, writer)
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        await asyncio.sleep(0.05)
        await self._server.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def _header_names(head: bytes) -> list[str]:
    lines = head.decode().split("\r\n")[1:]
    return sorted(line.split(":")[0].lower() for line in lines if line)


async def _read_chunked(reader: asyncio.StreamReader) -> list[bytes]:
    chunks = []
    while True:
        size = int((await reader.readline()).strip(), 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return chunks
        chunks.append(data[:-2])


@contextlib.asynccontextmanager
async def _open(transport: AiohttpTransport) -> AsyncIterator[AiohttpTransport]:
    try:
        yield transport
    finally:
        await transport.aclose()


def _request(url: str, method: str = "GET", **options: Any) -> httpx.Request:
    timeouts = {**TIMEOUTS, **options.pop("timeouts", {})}
    return httpx.Request(method, url, extensions={"timeout": timeouts}, **options)


def _connector(transport: AiohttpTransport) -> aiohttp.TCPConnector:
    session = transport._session
    assert session is not None
    connector = session.connector
    assert isinstance(connector, aiohttp.TCPConnector)
    return connector


def _pooled(transport: AiohttpTransport) -> list[Any]:
    return [proto for conns in _connector(transport)._conns.values() for proto, _ in conns]


class Body(httpx.AsyncByteStream):
    def __init__(self, chunks: Callable[[], AsyncIterator[bytes]]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks():
            yield chunk


async def _ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request on the connection with a small body (``/partial``: a part)."""
    while True:
        try:
            head = await _read_head(reader)
        except asyncio.IncompleteReadError:
            return
        if head.startswith(b"GET /partial "):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()


async def _streaming(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One chunk of a chunked body, then silence until the client leaves."""
    await _read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
    await writer.drain()
    await reader.read()


# --- a uvicorn server for the well-behaved streaming endpoints ---------------


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if scope["path"] == "/sse":
        await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
        await asyncio.sleep(SSE_GAP)
        scope["state"]["second_sent"].set()
        await send({"type": "http.response.body", "body": b"data: two\n\n"})
    else:  # /stream: a first event, then nothing until the client goes away
        await send({"type": "http.response.body", "body": b"data: 0\n\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass


@pytest.fixture(scope="module")
def uvicorn_server() -> Iterator[tuple[ServerThread, threading.Event]]:
    second_sent = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["state"] = {"second_sent": second_sent}
        await _app(scope, receive, send)

    with serve(app, lifespan="off") as server:
        yield server, second_sent


# --- construction and session -------------------------------------------------


@pytest.fixture
def built_outside_a_loop() -> AiohttpTransport:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    return AiohttpTransport()


async def test_session_is_lazy_and_recreated_after_aclose(
    built_outside_a_loop: AiohttpTransport,
) -> None:
    transport = built_outside_a_loop
    async with RawServer(_ok) as url, _open(transport):
        assert transport._session is None
        response = await transport.handle_async_request(_request(url))
        await response.aread()
        first = transport._session
        assert first is not None
        assert not first.closed
        await transport.aclose()
        assert first.closed
        assert transport._session is None
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"
        assert transport._session is not None
        assert transport._session is not first


async def test_session_and_connector_options() -> None:
    context = ssl.create_default_context()
    limits = httpx.Limits(max_connections=7, keepalive_expiry=3.5)
    async with RawServer(_ok) as url, _open(AiohttpTransport(limits=limits, verify=context)) as t:
        response = await t.handle_async_request(_request(url))
        await response.aread()
        await response.aclose()
        session = t._session
        assert session is not None
        assert isinstance(session.cookie_jar, aiohttp.DummyCookieJar)
        assert session.auto_decompress is False
        assert session.trust_env is False
        connector = _connector(t)
        assert connector.limit_per_host == 0
        assert connector.limit in (0, 7)
        assert connector._keepalive_timeout == 3.5
        assert connector._ssl is context
        sockets = [proto.transport.get_extra_info("socket") for proto in _pooled(t)]
        assert len(sockets) == 1
        assert sockets[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


# --- what goes out -----------------------------------------------------------


async def test_only_the_requests_headers_and_raw_gzip() -> None:
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

    async with RawServer(gzipped) as url, _open(AiohttpTransport()) as transport:
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
            assert raw == body
            assert response.headers["content-encoding"] == "gzip"
    assert bodies == [b"payload", b"payload"]
    for head in heads:
        assert head.split(b"\r\n")[0] == b"POST /p%2Fq?x=%20 HTTP/1.1"
        assert _header_names(head) == ["content-length", "host", "x-one", "x-one", "x-utf8"]
        assert b"x-utf8: caf\xc3\xa9\r\n" in head


# --- what comes back ---------------------------------------------------------


async def test_status_raw_headers_and_extensions() -> None:
    async def created(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 201 Very Created\r\nX-A: 1\r\nx-a: 2\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()

    async with RawServer(created) as url, _open(AiohttpTransport()) as transport:
        request = _request(url)
        response = await transport.handle_async_request(request)
        await response.aclose()
    assert response.status_code == 201
    assert response.request is request
    assert response.headers.get_list("x-a") == ["1", "2"]
    assert (b"X-A", b"1") in response.headers.raw
    assert response.extensions["reason_phrase"] == b"Very Created"
    assert response.extensions["http_version"] == b"HTTP/1.1"


# --- the pool limit ----------------------------------------------------------


async def test_pool_waits_for_a_slot() -> None:
    done = anyio.Event()

    async def second(transport: AiohttpTransport, url: str) -> None:
        response = await transport.handle_async_request(_request(url))
        await response.aclose()
        done.set()

    async with (
        RawServer(_streaming) as url,
        _open(AiohttpTransport(limits=httpx.Limits(max_connections=1))) as transport,
    ):
        first = await transport.handle_async_request(_request(url))
        async with anyio.create_task_group() as group:
            group.start_soon(second, transport, url)
            await asyncio.sleep(0.1)
            assert not done.is_set()  # it cannot get the only slot while `first` holds it
            await first.aclose()
            with anyio.fail_after(5):
                await done.wait()
        assert transport.in_use == 0


# --- failures as httpx exceptions ----------------------------------------------


async def test_connection_refused_is_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with _open(AiohttpTransport()) as transport:
        request = _request(f"http://127.0.0.1:{port}/")
        with pytest.raises(httpx.ConnectError) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)
        assert transport.in_use == 0


async def test_dns_failure_is_connect_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_such_host(*args: object, **kwargs: object) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_host)
    async with _open(AiohttpTransport()) as transport:
        request = _request("http://upstream.invalid/")
        with pytest.raises(httpx.ConnectError) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)
        assert transport.in_use == 0


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_head(reader)
    await asyncio.sleep(10)


async def test_no_headers_in_time_is_read_timeout() -> None:
    async with RawServer(_silent) as url, _open(AiohttpTransport()) as transport:
        request = _request(url, timeouts={"read": 0.2})
        with pytest.raises(httpx.ReadTimeout) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert isinstance(info.value.__cause__, aiohttp.ServerTimeoutError)
        assert transport.in_use == 0


async def test_reset_mid_body() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart")
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with RawServer(reset) as url, _open(AiohttpTransport()) as transport:
        response = await transport.handle_async_request(_request(url))
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await response.aread()
        await response.aclose()
        assert transport.in_use == 0


async def test_closed_before_response_is_remote_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)

    async with RawServer(hang_up) as url, _open(AiohttpTransport()) as transport:
        request = _request(url)
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert isinstance(info.value.__cause__, aiohttp.ServerDisconnectedError)
        assert transport.in_use == 0


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "ws://127.0.0.1/x", "wss://127.0.0.1/x"])
async def test_unsupported_scheme(url: str) -> None:
    async with _open(AiohttpTransport()) as transport:
        request = _request(url)
        with pytest.raises(httpx.UnsupportedProtocol) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert isinstance(info.value.__cause__, aiohttp.NonHttpUrlClientError)
        assert transport.in_use == 0


class BodyBroke(Exception):
    pass


@pytest.mark.parametrize("error", [BodyBroke("too many bytes"), TimeoutError(), OSError(5, "x")])
async def test_request_body_error_propagates_unchanged(error: Exception) -> None:
    async def reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        await reader.read()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        await asyncio.sleep(0.05)
        raise error

    async with RawServer(reading) as url, _open(AiohttpTransport()) as transport:
        with pytest.raises(type(error)) as info:
            await transport.handle_async_request(_request(url, "POST", stream=Body(chunks)))
        assert info.value is error
        assert transport.in_use == 0
        assert _connector(transport)._acquired == set()


async def test_cancelled_while_waiting_for_headers() -> None:
    async with RawServer(_silent) as url, _open(AiohttpTransport()) as transport:
        with anyio.move_on_after(0.2) as scope:
            await transport.handle_async_request(_request(url))
        assert scope.cancelled_caught
        assert transport.in_use == 0
        assert _connector(transport)._acquired == set()
        assert _pooled(transport) == []


async def test_cancelled_mid_body() -> None:
    async with RawServer(_streaming) as url, _open(AiohttpTransport()) as transport:
        response = await transport.handle_async_request(_request(url))
        received = []
        with anyio.move_on_after(0.2) as scope:
            async for chunk in response.stream:  # type: ignore[union-attr]
                received.append(chunk)
        assert scope.cancelled_caught
        assert received == [b"hello"]
        await response.aclose()
        assert transport.in_use == 0
        assert _connector(transport)._acquired == set()
        assert _pooled(transport) == []


# --- uploads to a peer that stops reading ------------------------------------


async def _never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Take the request head, then read nothing more (what it buffered fills up)."""
    await _read_head(reader)
    await asyncio.sleep(30)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _endless_upload() -> AsyncIterator[bytes]:
    piece = b"x" * 65536
    while True:
        yield piece


@pytest.mark.parametrize("kind", ["streamed", "bytes"])
async def test_stalled_upload_is_write_timeout(kind: str) -> None:
    options: dict[str, Any]
    if kind == "streamed":
        options = {"stream": Body(_endless_upload)}
    else:
        options = {"content": b"x" * (64 * 1024 * 1024)}
    async with RawServer(_never_reads) as url, _open(AiohttpTransport()) as transport:
        fds = _open_fds()
        request = _request(url, "POST", timeouts={"write": 0.3, "read": 30.0}, **options)
        with anyio.fail_after(5):  # the read timeout (30 s) never starts
            with pytest.raises(httpx.WriteTimeout) as info:
                await transport.handle_async_request(request)
        assert info.value.request is request
        assert transport.in_use == 0
        assert _connector(transport)._acquired == set()
        assert _pooled(transport) == []
        # The half-sent connection is dropped at once, not kept until the peer reads:
        # only the server's end of it is left open.
        with anyio.fail_after(5):
            while _open_fds() > fds + 1:
                await asyncio.sleep(0.01)
