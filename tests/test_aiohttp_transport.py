"""The aiohttp-backed transport on its own, against raw loopback servers.

It must look exactly like httpx's transport to the engine: httpx exceptions for
each failure, raw bytes, only the request's own headers, and a pool limit that
raises :class:`httpx.PoolTimeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from provider_proxy._aiohttp_transport import AiohttpTransport

from .servers import free_port

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMEOUTS = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}


class RawServer:
    """A raw TCP server on loopback whose connections are all closed on exit."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
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


@contextlib.asynccontextmanager
async def _open(transport: AiohttpTransport) -> AsyncIterator[AiohttpTransport]:
    try:
        yield transport
    finally:
        await transport.aclose()


def _request(url: str, **options: object) -> httpx.Request:
    timeouts = {**TIMEOUTS, **options.pop("timeouts", {})}  # type: ignore[dict-item]
    return httpx.Request("GET", url, extensions={"timeout": timeouts}, **options)  # type: ignore[arg-type]


async def test_connection_refused_is_connect_error() -> None:
    port = free_port()
    transport = AiohttpTransport()
    try:
        with pytest.raises(httpx.ConnectError) as info:
            await transport.handle_async_request(_request(f"http://127.0.0.1:{port}/"))
        assert info.value.request.url.port == port
        assert transport.in_use == 0
    finally:
        await transport.aclose()


async def test_no_headers_in_time_is_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        await asyncio.sleep(2)
        writer.close()

    async with RawServer(silent) as url, _open(AiohttpTransport()) as transport:
        with pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(_request(url, timeouts={"read": 0.2}))
        assert transport.in_use == 0


async def test_truncated_body_is_remote_protocol_error() -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    async with RawServer(truncated) as url, _open(AiohttpTransport()) as transport:
        response = await transport.handle_async_request(_request(url))
        received = b""
        with pytest.raises(httpx.RemoteProtocolError):
            async for chunk in response.stream:  # type: ignore[union-attr]
                received += chunk
        await response.aclose()
        assert received == b"only part"
        assert transport.in_use == 0


async def test_closed_before_response_is_remote_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.close()

    async with RawServer(hang_up) as url, _open(AiohttpTransport()) as transport:
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.handle_async_request(_request(url))


async def test_only_the_requests_headers_and_raw_gzip() -> None:
    heads: list[bytes] = []
    body = gzip.compress(b'{"ok": true}')

    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_head(reader))
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\nset-cookie: a=1\r\n"
            b"content-length: %d\r\n\r\n" % len(body) + body
        )
        await writer.drain()
        writer.close()

    async with RawServer(gzipped) as url, _open(AiohttpTransport()) as transport:
        request = _request(url + "/p%2Fq?x=%20", headers=[("x-one", "1"), ("x-one", "2")])
        response = await transport.handle_async_request(request)
        raw = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        await response.aclose()
    assert raw == body
    assert response.headers["content-encoding"] == "gzip"
    lines = heads[0].decode().split("\r\n")
    assert lines[0] == "GET /p%2Fq?x=%20 HTTP/1.1"
    names = sorted(line.split(":")[0].lower() for line in lines[1:] if line)
    assert names == ["host", "x-one", "x-one"]


async def test_streamed_body_is_sent_chunked_as_it_comes() -> None:
    got_first = asyncio.Event()
    received: list[bytes] = []

    async def reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _read_head(reader)
        assert b"transfer-encoding: chunked" in head.lower()
        while True:
            size = int((await reader.readline()).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            received.append(data[:-2])
            got_first.set()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        # Only produced once the server has the first piece.
        await asyncio.wait_for(got_first.wait(), 5)
        yield b"second"

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in body():
                yield chunk

    async with RawServer(reading) as url, _open(AiohttpTransport()) as transport:
        request = httpx.Request(
            "POST",
            url,
            headers={"transfer-encoding": "chunked"},
            stream=Body(),
            extensions={"timeout": TIMEOUTS},
        )
        response = await transport.handle_async_request(request)
        await response.aread()
    assert response.status_code == 200
    assert received == [b"first", b"second"]


async def test_pool_timeout_and_slots_freed() -> None:
    async def slow_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(5)
        writer.close()

    async with (
        RawServer(slow_stream) as url,
        _open(AiohttpTransport(limits=httpx.Limits(max_connections=2))) as transport,
    ):
        held = [await transport.handle_async_request(_request(url)) for _ in range(2)]
        assert transport.in_use == 2
        with pytest.raises(httpx.PoolTimeout):
            await transport.handle_async_request(_request(url, timeouts={"pool": 0.1}))
        for response in held:
            await response.aclose()
            await response.aclose()  # closing twice frees one slot, once
        assert transport.in_use == 0


async def test_session_recreated_after_close() -> None:
    async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    async with RawServer(ok) as url, _open(AiohttpTransport()) as transport:
        for _ in range(2):
            response = await transport.handle_async_request(_request(url))
            await response.aclose()
            assert response.status_code == 204
            await transport.aclose()
