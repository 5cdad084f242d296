"""What the shipped transports must do alike, against real loopback servers.

Each test runs on the http1, aiohttp and reqwest transports; what only one of
them has (aiohttp's connector and pool internals, its exceptions as the cause)
is checked for that one. Each transport's own behaviour stays in
``test_http1_transport.py``, ``test_aiohttp_transport.py`` and
``test_reqwest_transport.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anyio
import httpx
import pytest

from provider_proxy.transports import RawTransport
from provider_proxy.transports._aiohttp import AiohttpTransport
from provider_proxy.transports._http1 import Http1Transport
from provider_proxy.transports._reqwest import ReqwestTransport

from .servers import ServerThread
from .test_aiohttp_transport import (
    Body,
    RawServer,
    _connector,
    _header_names,
    _ok,
    _pooled,
    _read_chunked,
    _read_head,
    _request,
    _streaming,
    uvicorn_server,
)

pytestmark = pytest.mark.anyio

__all__ = ["uvicorn_server"]  # a fixture, used by name

Maker = Callable[..., Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


_MAKERS: dict[str, Maker] = {
    "aiohttp": AiohttpTransport,
    "http1": Http1Transport,
    "reqwest": ReqwestTransport,
}


@pytest.fixture(params=sorted(_MAKERS))
def make(request: pytest.FixtureRequest) -> Maker:
    """The transport class under test (called with the test's options)."""
    return _MAKERS[request.param]


@contextlib.asynccontextmanager
async def _open(transport: RawTransport) -> AsyncIterator[Any]:
    try:
        yield transport
    finally:
        await transport.aclose()


async def test_environment_proxies_are_ignored(
    make: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with RawServer(_ok) as url, _open(make()) as transport:
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"


async def test_no_redirects_followed(make: Maker) -> None:
    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()

    server = RawServer(redirect)
    async with server as url, _open(make()) as transport:
        response = await transport.handle_async_request(_request(url))
        await response.aclose()
        assert response.status_code == 302
        assert response.headers["location"] == "/elsewhere"
        assert server.connections == 1


async def test_streamed_body_is_sent_chunked_as_it_comes(make: Maker) -> None:
    got_first = asyncio.Event()
    heads: list[bytes] = []
    received: list[bytes] = []

    async def reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_head(reader))
        size = int((await reader.readline()).strip(), 16)
        received.append((await reader.readexactly(size + 2))[:-2])
        got_first.set()
        received.extend(await _read_chunked(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        # Only produced once the server holds the first piece.
        await asyncio.wait_for(got_first.wait(), 5)
        yield b""
        yield b"second"

    async with RawServer(reading) as url, _open(make()) as transport:
        request = _request(
            url, "POST", headers={"transfer-encoding": "chunked"}, stream=Body(chunks)
        )
        response = await transport.handle_async_request(request)
        assert await response.aread() == b"ok"
    assert received == [b"first", b"second"]
    if make is not ReqwestTransport:  # reqwest adds its Accept and User-Agent
        assert _header_names(heads[0]) == ["host", "transfer-encoding"]
    assert heads[0].lower().count(b"chunked") == 1


async def test_streamed_body_with_content_length_is_not_chunked(make: Maker) -> None:
    received: list[bytes] = []

    async def reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _read_head(reader)
        assert b"transfer-encoding" not in head.lower()
        received.append(await reader.readexactly(10))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"01234"
        yield b"56789"

    async with RawServer(reading) as url, _open(make()) as transport:
        request = _request(url, "PUT", headers={"content-length": "10"}, stream=Body(chunks))
        response = await transport.handle_async_request(request)
        await response.aclose()
    assert response.status_code == 204
    assert received == [b"0123456789"]


async def test_events_are_not_held_back(
    make: Maker,
    uvicorn_server: tuple[ServerThread, threading.Event],
) -> None:
    server, second_sent = uvicorn_server
    second_sent.clear()
    async with _open(make()) as transport:
        response = await transport.handle_async_request(_request(server.url + "/sse"))
        chunks = []
        async for chunk in response.stream:  # type: ignore[union-attr]
            if not chunks:
                # The server is still sleeping between the two events.
                assert chunk == b"data: one\n\n"
                assert not second_sent.is_set()
            chunks.append(chunk)
        await response.aclose()
    assert second_sent.is_set()
    assert b"".join(chunks) == b"data: one\n\ndata: two\n\n"


async def test_connection_reused_only_after_a_full_read(make: Maker) -> None:
    server = RawServer(_ok)
    async with server as url, _open(make()) as transport:
        for _ in range(2):
            response = await transport.handle_async_request(_request(url))
            assert await response.aread() == b"ok"
        assert server.connections == 1
        if isinstance(transport, AiohttpTransport):
            assert len(_pooled(transport)) == 1

        # Closed before its whole body arrived: that connection is dropped.
        response = await transport.handle_async_request(_request(url + "/partial"))
        await response.aclose()
        if isinstance(transport, AiohttpTransport):
            assert _pooled(transport) == []
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"
        assert server.connections == 2


async def test_no_leak_after_200_half_read_streams(
    make: Maker,
    uvicorn_server: tuple[ServerThread, threading.Event],
) -> None:
    server, _ = uvicorn_server
    async with _open(make()) as transport:
        responses = [
            await transport.handle_async_request(_request(server.url + "/stream"))
            for _ in range(200)
        ]
        assert transport.in_use == 200
        for response in responses:
            stream = response.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            async for chunk in stream:
                assert chunk == b"data: 0\n\n"
                break
            await response.aclose()
        assert transport.in_use == 0
        if isinstance(transport, AiohttpTransport):
            assert _connector(transport)._acquired == set()
            assert _pooled(transport) == []


async def test_pool_timeout_and_slots_freed_once(make: Maker) -> None:
    async with (
        RawServer(_streaming) as url,
        _open(make(limits=httpx.Limits(max_connections=2))) as transport,
    ):
        held = [await transport.handle_async_request(_request(url)) for _ in range(2)]
        assert transport.in_use == 2
        request = _request(url, timeouts={"pool": 0.1})
        with pytest.raises(httpx.PoolTimeout) as info, anyio.fail_after(5):
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert transport.in_use == 2
        for response in held:
            stream = response.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            await stream.aclose()
            await stream.aclose()  # closing twice frees one slot, once
            await response.aclose()
        assert transport.in_use == 0
        response = await transport.handle_async_request(_request(url))
        assert transport.in_use == 1
        await response.aclose()
        assert transport.in_use == 0


async def test_connect_timeout(make: Maker) -> None:
    # A listener that never accepts, its backlog full: further handshakes hang.
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(4):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(address)
        await asyncio.sleep(0.05)
        async with _open(make()) as transport:
            request = _request(f"http://127.0.0.1:{address[1]}/", timeouts={"connect": 0.2})
            with pytest.raises(httpx.ConnectTimeout) as info:
                await transport.handle_async_request(request)
            assert info.value.request is request
            if isinstance(transport, AiohttpTransport):
                assert isinstance(info.value.__cause__, aiohttp.ConnectionTimeoutError)
            assert transport.in_use == 0


async def test_gap_between_chunks_is_read_timeout(make: Maker) -> None:
    async with RawServer(_streaming) as url, _open(make()) as transport:
        request = _request(url, timeouts={"read": 0.2})
        response = await transport.handle_async_request(request)
        received = []
        with pytest.raises(httpx.ReadTimeout) as info:
            async for chunk in response.stream:  # type: ignore[union-attr]
                received.append(chunk)
        await response.aclose()
        assert received == [b"hello"]
        assert info.value.request is request
        assert transport.in_use == 0
        if isinstance(transport, AiohttpTransport):
            assert info.value.__cause__ is not None
            assert _connector(transport)._acquired == set()


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\nonly part\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_truncated_body_is_remote_protocol_error(make: Maker, reply: bytes) -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(reply)
        await writer.drain()

    async with RawServer(truncated) as url, _open(make()) as transport:
        request = _request(url)
        response = await transport.handle_async_request(request)
        received = b""
        with pytest.raises(httpx.RemoteProtocolError) as info:
            async for chunk in response.stream:  # type: ignore[union-attr]
                received += chunk
        await response.aclose()
        assert received == b"only part"
        assert info.value.request is request
        if isinstance(transport, AiohttpTransport):
            assert isinstance(info.value.__cause__, aiohttp.ClientPayloadError)
        assert transport.in_use == 0


async def test_malformed_response_is_remote_protocol_error(make: Maker) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async with RawServer(garbage) as url, _open(make()) as transport:
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await transport.handle_async_request(_request(url))
        assert info.value.__cause__ is not None
        assert transport.in_use == 0


async def test_write_timeout_counts_only_time_spent_writing(make: Maker) -> None:
    async def reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        chunks = await _read_chunked(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(b"".join(chunks)))
        await writer.drain()
        await reader.read()

    async def slow_client() -> AsyncIterator[bytes]:
        # A client slower than the write timeout: waiting for it is not writing.
        for piece in (b"one", b"two"):
            yield piece
            await asyncio.sleep(0.4)

    async with RawServer(reading) as url, _open(make()) as transport:
        request = _request(url, "POST", timeouts={"write": 0.2}, stream=Body(slow_client))
        response = await transport.handle_async_request(request)
        assert response.status_code == 200
        assert response.headers["content-length"] == "6"
        await response.aclose()


async def test_a_body_ends_at_its_declared_length_and_a_head_answer_has_none(
    make: Maker,
) -> None:
    async def declared(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await _read_head(reader)
            except asyncio.IncompleteReadError:
                return
            if head.startswith(b"HEAD "):  # the length of the body a GET would get
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
            else:  # in two writes, then the connection stays open
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabc")
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b"def")
            await writer.drain()

    server = RawServer(declared)
    async with server as url, _open(make()) as transport:
        for method in ("GET", "HEAD", "GET"):
            response = await transport.handle_async_request(_request(url, method))
            body = await asyncio.wait_for(response.aread(), 5)
            assert body == (b"" if method == "HEAD" else b"abcdef")
        assert server.connections == 1  # each answer ended whole: the connection was reused


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_requests_go_through_on_asyncio_and_on_uvloop(make: Maker, loop_kind: str) -> None:
    """``provider-proxy serve`` runs on uvloop, the engine tests on asyncio's loop."""
    import uvloop

    async def twice() -> list[bytes]:
        server = RawServer(_ok)
        async with server as url, _open(make()) as transport:
            bodies = []
            for _ in range(2):
                response = await transport.handle_async_request(_request(url))
                bodies.append(await response.aread())
            assert server.connections == 1
            return bodies

    new_loop = uvloop.new_event_loop if loop_kind == "uvloop" else asyncio.new_event_loop
    loop = new_loop()
    try:
        assert loop.run_until_complete(twice()) == [b"ok", b"ok"]
    finally:
        loop.close()


# (reqwest resolves names in Rust, out of reach of the loop's resolver.)
@pytest.mark.parametrize("make", [AiohttpTransport, Http1Transport], ids=["aiohttp", "http1"])
async def test_a_name_with_several_addresses_reaches_the_one_that_answers(make: Maker) -> None:
    loop = asyncio.get_running_loop()
    resolve = loop.getaddrinfo
    asked: list[str] = []

    async def two_addresses(host: Any, port: Any, **options: Any) -> Any:
        asked.append(host)
        if host != "several.test":
            return await resolve(host, port, **options)
        (answering,) = await resolve("127.0.0.1", port, **options)
        dead = (*answering[:4], ("127.0.0.2", port))  # nothing listens there
        return [dead, answering]

    loop.getaddrinfo = two_addresses  # type: ignore[method-assign]
    try:
        async with RawServer(_ok) as url, _open(make()) as transport:
            request = _request(url.replace("127.0.0.1", "several.test"))
            response = await transport.handle_async_request(request)
            assert await response.aread() == b"ok"
    finally:
        del loop.getaddrinfo
    assert "several.test" in asked
