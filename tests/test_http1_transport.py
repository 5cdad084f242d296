"""The ``http1`` transport on its own, against real loopback servers.

Raw ``asyncio`` servers give exact bytes, broken answers and peers that stop
reading; each test names what the transport must do and fails if it does not.
What every shipped transport does alike is in ``test_transports_shared.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import trustme

from provider_proxy.transports import _http1
from provider_proxy.transports._http1 import MAX_HEAD, READ_BUFFER, Http1Transport
from provider_proxy.transports._upstream import UpstreamRequest, as_proxy_error

from .test_aiohttp_transport import (
    Body,
    BodyBroke,
    RawServer,
    _never_reads,
    _ok,
    _read_chunked,
    _read_head,
    _request,
    _silent,
)

pytestmark = pytest.mark.anyio

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter

#: "At once", with room for a loaded machine.
AT_ONCE = 2.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def _open(transport: Http1Transport) -> AsyncIterator[Http1Transport]:
    try:
        yield transport
    finally:
        await transport.aclose()


def _idle(transport: Http1Transport) -> int:
    return sum(len(connections) for connections in transport._idle.values())


async def _body(response: httpx.Response) -> bytes:
    return b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]


class Watch:
    """A server that records each connection's end as the client closes it."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.closed = asyncio.Event()

    async def until_closed(self, reader: Reader) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        self.closed.set()

    async def silent(self, reader: Reader, writer: Writer) -> None:
        self.heads.append(await _read_head(reader))
        await self.until_closed(reader)

    async def one_chunk(self, reader: Reader, writer: Writer) -> None:
        self.heads.append(await _read_head(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await self.until_closed(reader)

    async def reads_upload(self, reader: Reader, writer: Writer) -> None:
        self.heads.append(await _read_head(reader))
        await self.until_closed(reader)


# --- cancellation --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["task", "cancel scope"])
async def test_cancelled_waiting_for_the_head_closes_the_connection_at_once(how: str) -> None:
    watch = Watch()
    async with RawServer(watch.silent) as url, _open(Http1Transport()) as transport:
        if how == "task":
            task = asyncio.ensure_future(transport.handle_async_request(_request(url)))
            while not watch.heads:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            with anyio.move_on_after(0.2) as scope:
                await transport.handle_async_request(_request(url))
            assert scope.cancelled_caught
        with anyio.fail_after(AT_ONCE):
            await watch.closed.wait()
        assert transport.in_use == 0
        assert _idle(transport) == 0


async def test_cancelled_during_a_streamed_upload_closes_the_connection_at_once() -> None:
    watch = Watch()
    produced = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        produced.set()
        await asyncio.sleep(30)
        yield b"never"

    async with RawServer(watch.reads_upload) as url, _open(Http1Transport()) as transport:
        request = _request(url, "POST", stream=Body(chunks))
        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(transport.handle_async_request, request)
                await produced.wait()
                await asyncio.sleep(0.05)
                group.cancel_scope.cancel()
        assert not scope.cancelled_caught
        with anyio.fail_after(AT_ONCE):
            await watch.closed.wait()
        assert transport.in_use == 0
        assert _idle(transport) == 0
        await asyncio.sleep(0)
        upload_tasks = [t for t in asyncio.all_tasks() if "_upload" in repr(t.get_coro())]
        assert upload_tasks == []


async def test_cancelled_mid_body_closes_the_connection_at_once() -> None:
    watch = Watch()
    async with RawServer(watch.one_chunk) as url, _open(Http1Transport()) as transport:
        response = await transport.handle_async_request(_request(url))
        received = []
        with anyio.move_on_after(0.2) as scope:
            async for chunk in response.stream:  # type: ignore[union-attr]
                received.append(chunk)
        assert scope.cancelled_caught
        assert received == [b"hello"]
        await response.aclose()
        with anyio.fail_after(AT_ONCE):
            await watch.closed.wait()
        assert transport.in_use == 0
        assert _idle(transport) == 0


# --- connection reuse ------------------------------------------------------------------


def _replying(reply: bytes, then_close: bool = False) -> Any:
    """A server that answers each request on a connection with ``reply``."""

    async def handler(reader: Reader, writer: Writer) -> None:
        while True:
            try:
                await _read_head(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(reply)
            await writer.drain()
            if then_close:
                return

    return handler


async def test_a_keep_alive_answer_read_whole_is_reused() -> None:
    server = RawServer(_ok)
    async with server as url, _open(Http1Transport()) as transport:
        for _ in range(2):
            response = await transport.handle_async_request(_request(url))
            assert await response.aread() == b"ok"
            assert _idle(transport) == 1
        assert server.connections == 1


@pytest.mark.parametrize(
    ("reply", "then_close"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\n\r\nok", True),
    ],
    ids=["connection-close", "http-1.0", "ends-with-the-connection"],
)
async def test_answers_that_end_their_connection_are_not_reused(
    reply: bytes, then_close: bool
) -> None:
    server = RawServer(_replying(reply, then_close))
    async with server as url, _open(Http1Transport()) as transport:
        for _ in range(2):
            response = await transport.handle_async_request(_request(url))
            assert await response.aread() == b"ok"
            assert _idle(transport) == 0
        assert server.connections == 2


async def test_a_half_read_answer_is_not_reused() -> None:
    server = RawServer(_ok)
    async with server as url, _open(Http1Transport()) as transport:
        response = await transport.handle_async_request(_request(url + "/partial"))
        await response.aclose()  # 2 of its 10 bytes came
        assert _idle(transport) == 0
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"
        assert server.connections == 2


async def test_keepalive_expiry_zero_never_reuses() -> None:
    server = RawServer(_ok)
    limits = httpx.Limits(keepalive_expiry=0)
    async with server as url, _open(Http1Transport(limits=limits)) as transport:
        for _ in range(3):
            response = await transport.handle_async_request(_request(url))
            assert await response.aread() == b"ok"
            assert _idle(transport) == 0
        assert server.connections == 3


async def test_an_expired_idle_connection_is_not_reused() -> None:
    server = RawServer(_ok)
    limits = httpx.Limits(keepalive_expiry=0.1)
    async with server as url, _open(Http1Transport(limits=limits)) as transport:
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"
        (expired,) = transport._idle[("http", "127.0.0.1", int(url.rsplit(":", 1)[1]))]
        await asyncio.sleep(0.2)
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"
        assert server.connections == 2
        assert expired.closed


async def test_max_keepalive_connections_bounds_the_idle_ones() -> None:
    server = RawServer(_ok)
    limits = httpx.Limits(max_keepalive_connections=2)
    async with server as url, _open(Http1Transport(limits=limits)) as transport:
        responses = [await transport.handle_async_request(_request(url)) for _ in range(4)]
        for response in responses:
            assert await response.aread() == b"ok"
        assert server.connections == 4
        assert _idle(transport) == 2


async def test_a_pooled_connection_the_server_closed_is_not_used() -> None:
    server = RawServer(_replying(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", True))
    async with server as url, _open(Http1Transport()) as transport:
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"
        assert _idle(transport) == 1  # it said keep-alive, then hung up
        with anyio.fail_after(AT_ONCE):
            while _idle(transport):  # it leaves the pool as the close comes in
                await asyncio.sleep(0.01)
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"
        assert server.connections == 2


async def test_idle_connections_closed_by_one_host_leave_room_for_another() -> None:
    closing = RawServer(_replying(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", True))
    staying = RawServer(_ok)
    limits = httpx.Limits(max_keepalive_connections=1)
    async with closing as first, staying as second, _open(Http1Transport(limits=limits)) as t:
        response = await t.handle_async_request(_request(first))
        assert await response.aread() == b"ok"
        await asyncio.sleep(0.1)  # the first host's close arrives
        for _ in range(2):
            response = await t.handle_async_request(_request(second))
            assert await response.aread() == b"ok"
        assert staying.connections == 1


async def test_a_whole_answer_left_unread_in_the_buffer_does_not_stall_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A small buffer, so that one read holds a whole answer past it.
    monkeypatch.setattr(_http1, "READ_BUFFER", 10)
    big = b"x" * 1000
    reply = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(big), big)
    server = RawServer(_replying(reply))
    async with server as url, _open(Http1Transport()) as transport:
        response = await transport.handle_async_request(_request(url))
        stream: Any = response.stream
        with anyio.fail_after(AT_ONCE):
            while not stream._connection.complete:
                await asyncio.sleep(0.01)
        assert stream._connection.reading_paused
        await response.aclose()  # read whole, taken by nobody: pooled
        response = await transport.handle_async_request(_request(url, timeouts={"read": 3}))
        assert await response.aread() == big
        assert server.connections == 1


async def test_aclose_with_a_response_open_does_not_pool_it_afterwards() -> None:
    server = RawServer(_ok)
    async with server as url:
        transport = Http1Transport()
        response = await transport.handle_async_request(_request(url))
        await transport.aclose()
        assert await response.aread() == b"ok"  # it still reads to its end
        assert _idle(transport) == 0
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"
        assert _idle(transport) == 1
        await transport.aclose()
        assert _idle(transport) == 0


async def test_a_closed_response_never_reads_the_next_exchanges_answer() -> None:
    server = RawServer(_ok)
    async with server as url, _open(Http1Transport()) as transport:
        first = await transport.send_raw(_raw(url))
        assert b"".join([chunk async for chunk in first]) == b"ok"
        second = await transport.send_raw(_raw(url))  # on the same connection
        assert server.connections == 1
        with pytest.raises(httpx.StreamClosed):
            async for _ in first:
                pass
        assert b"".join([chunk async for chunk in second]) == b"ok"


# --- what comes back ------------------------------------------------------------------


async def test_a_head_answer_ends_at_its_head_and_the_next_answer_is_its_own() -> None:
    async def handler(reader: Reader, writer: Writer) -> None:
        while True:
            try:
                head = await _read_head(reader)
            except asyncio.IncompleteReadError:
                return
            if head.startswith(b"HEAD "):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\nx-n: 2\r\n\r\nsecnd")
            await writer.drain()

    server = RawServer(handler)
    async with server as url, _open(Http1Transport()) as transport:
        response = await transport.handle_async_request(_request(url, "HEAD"))
        assert response.headers["content-length"] == "100"
        assert await asyncio.wait_for(response.aread(), AT_ONCE) == b""
        response = await transport.handle_async_request(_request(url))
        assert response.status_code == 201
        assert response.headers["x-n"] == "2"
        assert await response.aread() == b"secnd"
        assert server.connections == 1


@pytest.mark.parametrize(
    "informational",
    [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n"],
    ids=["100", "103"],
)
async def test_informational_answers_are_skipped(informational: bytes) -> None:
    async def handler(reader: Reader, writer: Writer) -> None:
        await _read_head(reader)
        writer.write(informational)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(informational + b"HTTP/1.1 200 OK\r\nx-real: 1\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    async with RawServer(handler) as url, _open(Http1Transport()) as transport:
        response = await transport.handle_async_request(_request(url))
        assert response.status_code == 200
        assert [name for name, _ in response.headers.raw] == [b"x-real", b"content-length"]
        assert await response.aread() == b"ok"


async def test_switching_protocols_is_remote_protocol_error() -> None:
    reply = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
    async with RawServer(_replying(reply)) as url, _open(Http1Transport()) as transport:
        request = _request(url)
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert transport.in_use == 0
        assert _idle(transport) == 0


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_answers_end_at_their_head(status: int) -> None:
    reply = b"HTTP/1.1 %d X\r\netag: a\r\n\r\n" % status
    server = RawServer(_replying(reply))
    async with server as url, _open(Http1Transport()) as transport:
        for _ in range(2):
            response = await transport.handle_async_request(_request(url))
            assert response.status_code == status
            assert await asyncio.wait_for(response.aread(), AT_ONCE) == b""
        assert server.connections == 1


async def test_a_body_that_ends_with_its_connection_is_read_whole() -> None:
    async def handler(reader: Reader, writer: Writer) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nfirst,")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"second")
        await writer.drain()

    async with RawServer(handler) as url, _open(Http1Transport()) as transport:
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"first,second"
        assert transport.in_use == 0


def _reset_after(reply: bytes) -> Any:
    async def handler(reader: Reader, writer: Writer) -> None:
        await _read_head(reader)
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    return handler


@pytest.mark.parametrize(
    "reply",
    [b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart", b"HTTP/1.1 200 OK\r\n\r\npart"],
    ids=["content-length", "ends-with-the-connection"],
)
async def test_a_reset_mid_body_is_read_error(reply: bytes) -> None:
    async with RawServer(_reset_after(reply)) as url, _open(Http1Transport()) as transport:
        request = _request(url)
        response = await transport.handle_async_request(request)
        received = b""
        with pytest.raises(httpx.ReadError) as info:
            async for chunk in response.stream:  # type: ignore[union-attr]
                received += chunk
        await response.aclose()
        assert received == b"part"
        assert info.value.request is request
        assert isinstance(info.value.__cause__, ConnectionResetError)
        assert transport.in_use == 0


@pytest.mark.parametrize("pieces", [1, 40], ids=["one-write", "many-writes"])
async def test_a_head_larger_than_max_head_is_refused_and_dropped(pieces: int) -> None:
    watch = Watch()
    header = b"x-big: " + b"a" * (MAX_HEAD // pieces + 1) + b"\r\n"

    async def handler(reader: Reader, writer: Writer) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(pieces):
            writer.write(header)
            await writer.drain()
        writer.write(b"content-length: 2\r\n\r\nok")
        await writer.drain()
        await watch.until_closed(reader)

    async with RawServer(handler) as url, _open(Http1Transport()) as transport:
        request = _request(url)
        with pytest.raises(httpx.RemoteProtocolError, match="too large") as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        with anyio.fail_after(AT_ONCE):
            await watch.closed.wait()
        assert transport.in_use == 0
        assert _idle(transport) == 0


async def test_a_head_just_under_max_head_with_a_long_body_in_one_read_is_accepted() -> None:
    body = b"b" * (MAX_HEAD * 2)
    head = b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (MAX_HEAD - 200) + b"\r\n"
    reply = head + b"content-length: %d\r\n\r\n" % len(body) + body
    async with RawServer(_replying(reply)) as url, _open(Http1Transport()) as transport:
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == body


async def test_bytes_sent_to_an_idle_connection_make_it_unusable() -> None:
    async def handler(reader: Reader, writer: Writer) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)  # the client has pooled the connection
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale")
        await writer.drain()
        await reader.read()

    server = RawServer(handler)
    async with server as url, _open(Http1Transport()) as transport:
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"
        await asyncio.sleep(0.2)
        assert _idle(transport) == 0
        server._handler = _ok
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"
        assert server.connections == 2


async def test_a_second_answer_in_the_bytes_of_the_first_is_not_taken_for_it() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nx-first: 1\r\ncontent-length: 2\r\n\r\nok"
        b"HTTP/1.1 500 Bad\r\nx-second: 1\r\ncontent-length: 5\r\n\r\nstale"
    )
    server = RawServer(_replying(reply))
    async with server as url, _open(Http1Transport()) as transport:
        response = await transport.send_raw(_raw(url))
        assert response.status_code == 200
        assert list(response.raw_headers) == [(b"x-first", b"1"), (b"content-length", b"2")]
        assert b"".join([chunk async for chunk in response]) == b"ok"
        assert _idle(transport) == 0  # not trusted with another exchange


# --- what goes out ----------------------------------------------------------------------


def _raw(
    url: str,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> UpstreamRequest:
    port = url.rsplit(":", 1)[1].split("/")[0]
    headers = [(b"host", b"127.0.0.1:" + port.encode())] if headers is None else headers
    timeouts = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}
    return UpstreamRequest(method, httpx.URL(url), headers, body, {"timeout": timeouts})


async def test_send_raw_sends_exactly_the_requests_head_and_passes_headers_through() -> None:
    received: list[bytes] = []
    reply = (
        b"HTTP/1.1 200 OK\r\nX-Mixed-Case: 1\r\nset-cookie: a=1\r\nZ-Last: z\r\n"
        b"Set-Cookie: b=2\r\ncontent-length: 2\r\n\r\nok"
    )

    async def handler(reader: Reader, writer: Writer) -> None:
        received.append(await reader.readuntil(b"body"))
        writer.write(reply)
        await writer.drain()
        await reader.read()

    async with RawServer(handler) as url, _open(Http1Transport()) as transport:
        headers = [(b"host", b"up"), (b"X-Case", b"v"), (b"x-two", b"1"), (b"content-length", b"4")]
        response = await transport.send_raw(_raw(url + "/a%2Fb?q=1", "POST", headers, b"body"))
        assert b"".join([chunk async for chunk in response]) == b"ok"
        await response.aclose()
    assert received == [
        b"POST /a%2Fb?q=1 HTTP/1.1\r\nhost: up\r\nX-Case: v\r\nx-two: 1\r\n"
        b"content-length: 4\r\n\r\nbody"
    ]
    assert list(response.raw_headers) == [
        (b"X-Mixed-Case", b"1"),
        (b"set-cookie", b"a=1"),
        (b"Z-Last", b"z"),
        (b"Set-Cookie", b"b=2"),
        (b"content-length", b"2"),
    ]


class _RawPathURL:
    """A URL whose path is taken as given (httpx.URL would quote a space or a CR)."""

    def __init__(self, url: httpx.URL, raw_path: bytes) -> None:
        self.scheme, self.host, self.port, self.raw_path = url.scheme, url.host, url.port, raw_path


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/x", [(b"x-a", b"1\r\nx-injected: 1")]),
        ("/x", [(b"x-a", b"1\nx-injected: 1")]),
        ("/x", [(b"x-a", b"1\rx")]),
        ("/x", [(b"x-a", b"1\0")]),
        ("/x", [(b"x-a\r\nx-b", b"1")]),
        ("/x", [(b"x-\0", b"1")]),
        ("/x%20y HTTP/1.1\r\nx: /../z", [(b"host", b"h")]),
        ("/a b", [(b"host", b"h")]),
    ],
    ids=[
        "crlf-value",
        "lf-value",
        "cr-value",
        "nul-value",
        "crlf-name",
        "nul-name",
        "crlf-path",
        "space-path",
    ],
)
async def test_request_splitting_is_refused_before_anything_is_sent(
    path: str, headers: list[tuple[bytes, bytes]]
) -> None:
    received: list[bytes] = []

    async def handler(reader: Reader, writer: Writer) -> None:
        received.append(await reader.read())

    server = RawServer(handler)
    async with server as url, _open(Http1Transport()) as transport:
        request = _raw(url, headers=headers)
        if path != "/x":  # httpx.URL quotes these: a URL built some other way
            request.url = _RawPathURL(request.url, path.encode())  # type: ignore[assignment]
        with pytest.raises(httpx.LocalProtocolError):
            await transport.send_raw(request)
        assert transport.in_use == 0
        checked = _request(url)
        checked.headers = httpx.Headers([(b"host", b"h"), *headers])
        if b" " not in path.encode() and b"\r" not in path.encode():
            with pytest.raises(httpx.LocalProtocolError) as info:
                await transport.handle_async_request(checked)
            assert info.value.request is checked
        await asyncio.sleep(0.1)
    assert server.connections == 0
    assert received == []


async def test_chunked_upload_framing_is_byte_exact() -> None:
    received: list[bytes] = []

    async def handler(reader: Reader, writer: Writer) -> None:
        await _read_head(reader)
        received.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    async def chunks() -> AsyncIterator[bytes]:
        for piece in (b"a", b"", b"b" * 26, b""):
            yield piece

    async with RawServer(handler) as url, _open(Http1Transport()) as transport:
        response = await transport.handle_async_request(_request(url, "POST", stream=Body(chunks)))
        assert await response.aread() == b"ok"
    assert received == [b"1\r\na\r\n1a\r\n" + b"b" * 26 + b"\r\n0\r\n\r\n"]


async def test_a_streamed_body_with_content_length_is_sent_raw() -> None:
    received: list[bytes] = []

    async def handler(reader: Reader, writer: Writer) -> None:
        head = await _read_head(reader)
        received.append(head)
        received.append(await reader.readexactly(9))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    async def chunks() -> AsyncIterator[bytes]:
        for piece in (b"abc", b"", b"defghi"):
            yield piece

    async with RawServer(handler) as url, _open(Http1Transport()) as transport:
        headers = [(b"host", b"h"), (b"content-length", b"9")]
        request = UpstreamRequest("PUT", httpx.URL(url + "/"), headers, Body(chunks), {})
        response = await transport.send_raw(request)
        assert b"".join([chunk async for chunk in response]) == b"ok"
        await response.aclose()
    assert received == [b"PUT / HTTP/1.1\r\nhost: h\r\ncontent-length: 9\r\n\r\n", b"abcdefghi"]


async def test_a_large_whole_body_goes_out_in_pieces_and_whole() -> None:
    body = bytes(range(256)) * 1024  # 256 KiB
    received: list[bytes] = []

    async def handler(reader: Reader, writer: Writer) -> None:
        await _read_head(reader)
        received.append(await reader.readexactly(len(body)))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    async with RawServer(handler) as url, _open(Http1Transport()) as transport:
        response = await transport.handle_async_request(_request(url, "POST", content=body))
        assert await response.aread() == b"ok"
    assert received == [body]


async def test_a_large_whole_body_to_a_peer_that_does_not_read_is_write_timeout() -> None:
    watch = Watch()

    async def handler(reader: Reader, writer: Writer) -> None:
        await _read_head(reader)
        await asyncio.sleep(3)  # reads nothing: the buffers fill
        await watch.until_closed(reader)

    async with RawServer(handler) as url, _open(Http1Transport()) as transport:
        request = _request(url, "POST", content=b"x" * (32 * 2**20), timeouts={"write": 0.3})
        with anyio.fail_after(5), pytest.raises(httpx.WriteTimeout) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert transport.in_use == 0
        assert _idle(transport) == 0
        with anyio.fail_after(5):
            await watch.closed.wait()


async def test_an_upload_sources_own_exception_is_raised_as_is() -> None:
    error = BodyBroke("the client sent too much")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        await asyncio.sleep(0.05)
        raise error

    watch = Watch()
    async with RawServer(watch.reads_upload) as url, _open(Http1Transport()) as transport:
        with pytest.raises(BodyBroke) as info:
            await transport.handle_async_request(_request(url, "POST", stream=Body(chunks)))
        assert info.value is error
        assert transport.in_use == 0
        with anyio.fail_after(AT_ONCE):
            await watch.closed.wait()


async def test_an_early_answer_during_the_upload_reaches_the_caller_and_is_not_pooled() -> None:
    watch = Watch()

    async def handler(reader: Reader, writer: Writer) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 413 Too Large\r\ncontent-length: 3\r\n\r\nbig")
        await writer.drain()
        await watch.until_closed(reader)

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 1024
            await asyncio.sleep(0.01)

    async with RawServer(handler) as url, _open(Http1Transport()) as transport:
        with anyio.fail_after(5):
            request = _request(url, "POST", stream=Body(chunks))
            response = await transport.handle_async_request(request)
            assert response.status_code == 413
            assert await response.aread() == b"big"
        assert _idle(transport) == 0
        assert transport.in_use == 0
        with anyio.fail_after(AT_ONCE):
            await watch.closed.wait()


async def test_a_large_whole_body_stops_at_a_peer_that_hangs_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(reader: Reader, writer: Writer) -> None:
        await _read_head(reader)
        await reader.readexactly(10)
        writer.write(b"HTTP/1.1 413 Too Large\r\ncontent-length: 3\r\n\r\nbig")
        await writer.drain()

    async with RawServer(handler) as url, _open(Http1Transport()) as transport:
        request = _request(url, "POST", content=b"x" * (16 * 2**20))
        with anyio.fail_after(5):
            outcome: httpx.Response | BaseException
            try:
                outcome = await transport.handle_async_request(request)
            except httpx.TransportError as exc:  # the hang-up came in before the answer
                outcome = exc
            if isinstance(outcome, httpx.Response):
                assert outcome.status_code == 413
                await outcome.aclose()
            else:
                assert isinstance(outcome, (httpx.WriteError, httpx.ReadError))
            await asyncio.sleep(0.1)
        assert transport.in_use == 0
    assert [r for r in caplog.records if "socket.send() raised" in r.getMessage()] == []


# --- backpressure ----------------------------------------------------------------------------


async def test_a_slow_reader_stops_the_socket_being_read_and_gets_every_byte() -> None:
    total = READ_BUFFER * 64  # 4 MiB, far more than the socket buffers hold
    body = bytes(range(256)) * (total // 256)
    sent = 0
    blocked = asyncio.Event()

    async def handler(reader: Reader, writer: Writer) -> None:
        nonlocal sent
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
        for start in range(0, total, 16384):
            writer.write(body[start : start + 16384])
            sent = start + 16384
            try:
                await asyncio.wait_for(writer.drain(), 0.2)
            except asyncio.TimeoutError:
                blocked.set()  # the client stopped reading
                await writer.drain()
        await reader.read()

    async with RawServer(handler) as url, _open(Http1Transport()) as transport:
        response = await transport.handle_async_request(_request(url))
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        chunks = aiter(stream)
        received = [await anext(chunks)]
        with anyio.fail_after(5):
            await blocked.wait()
        connection = stream._connection  # type: ignore[attr-defined]
        assert connection.body_bytes <= READ_BUFFER + 2**18  # one read past the mark at most
        assert sent < total
        async for chunk in chunks:
            received.append(chunk)
        assert b"".join(received) == body
        assert transport.in_use == 0


# --- the pool ------------------------------------------------------------------------------


async def test_a_waiter_cancelled_as_a_slot_is_handed_to_it_does_not_leak_it() -> None:
    async with (
        RawServer(_ok) as url,
        _open(Http1Transport(limits=httpx.Limits(max_connections=1))) as transport,
    ):
        first = await transport.handle_async_request(_request(url + "/partial"))
        waiting = asyncio.ensure_future(transport.handle_async_request(_request(url)))
        await asyncio.sleep(0.05)
        assert transport._slot_waiters
        await first.aclose()  # the slot passes to the waiter...
        waiting.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert transport.in_use == 0
        response = await transport.handle_async_request(_request(url, timeouts={"pool": 1}))
        assert await response.aread() == b"ok"
        assert transport.in_use == 0


async def test_pool_timeout_carries_the_request_and_frees_nothing_it_did_not_take() -> None:
    async with (
        RawServer(_silent) as url,
        _open(Http1Transport(limits=httpx.Limits(max_connections=1))) as transport,
    ):
        holder = asyncio.ensure_future(transport.handle_async_request(_request(url)))
        await asyncio.sleep(0.05)
        request = _request(url, timeouts={"pool": 0.1})
        with pytest.raises(httpx.PoolTimeout) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert transport.in_use == 1
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
        assert transport.in_use == 0


# --- TLS -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _tls_server(ca: trustme.CA, alpn: list[str]) -> AsyncIterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(["http/1.1"])
    ca.issue_cert("127.0.0.1").configure_cert(context)

    async def ok(reader: Reader, writer: Writer) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ssl.SSLError):
            await _read_head(reader)
            alpn.append(str(writer.get_extra_info("ssl_object").selected_alpn_protocol()))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(ok, "127.0.0.1", 0, ssl=context)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_ca_trusted_through_the_callers_context_is_accepted_and_left_as_given() -> None:
    ca = trustme.CA()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    before = (context.verify_mode, context.check_hostname, context.options)
    alpn: list[str] = []
    async with _tls_server(ca, alpn) as url, _open(Http1Transport(verify=context)) as transport:
        response = await transport.handle_async_request(_request(url))
        assert await response.aread() == b"ok"
    assert before == (
        context.verify_mode,
        context.check_hostname,
        context.options,
    )
    assert alpn == ["None"]  # no ALPN set on the caller's context


async def test_an_untrusted_certificate_is_connect_error_and_named() -> None:
    async with _tls_server(trustme.CA(), []) as url, _open(Http1Transport()) as transport:
        request = _request(url)
        with pytest.raises(httpx.ConnectError) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        assert transport.in_use == 0
    answer = as_proxy_error(info.value, "127.0.0.1")
    assert answer.status_code == 502
    assert "its TLS certificate was not accepted" in str(answer)


async def test_verify_false_accepts_any_certificate_and_offers_http_1_1() -> None:
    alpn: list[str] = []
    async with _tls_server(trustme.CA(), alpn) as url, _open(Http1Transport(verify=False)) as t:
        response = await t.handle_async_request(_request(url))
        assert await response.aread() == b"ok"
    assert alpn == ["http/1.1"]


# --- failures to connect -----------------------------------------------------------------


async def test_a_refused_connection_is_connect_error_naming_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with _open(Http1Transport()) as transport:
        request = _request(f"http://127.0.0.1:{port}/")
        with pytest.raises(httpx.ConnectError) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert isinstance(info.value.__cause__, ConnectionRefusedError)
        assert transport.in_use == 0
    assert "connection refused" in str(as_proxy_error(info.value, "127.0.0.1"))


async def test_an_unresolvable_host_is_connect_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_such_host(*args: object, **kwargs: object) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_host)
    async with _open(Http1Transport()) as transport:
        request = _request("http://upstream.invalid/")
        with pytest.raises(httpx.ConnectError) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert isinstance(info.value.__cause__, socket.gaierror)
        assert transport.in_use == 0
    assert "its name did not resolve" in str(as_proxy_error(info.value, "upstream.invalid"))


@pytest.mark.parametrize("scheme", ["ws", "wss", "ftp"])
async def test_an_unsupported_scheme_is_refused_before_anything_is_sent(scheme: str) -> None:
    server = RawServer(_never_reads)
    async with server as url, _open(Http1Transport()) as transport:
        request = _request(url.replace("http", scheme, 1))
        with pytest.raises(httpx.UnsupportedProtocol) as info:
            await transport.handle_async_request(request)
        assert info.value.request is request
        assert transport.in_use == 0
        await asyncio.sleep(0.05)
    assert server.connections == 0


# --- the head the server receives ----------------------------------------------------------


async def test_no_header_added_and_chunked_once() -> None:
    heads: list[bytes] = []

    async def handler(reader: Reader, writer: Writer) -> None:
        heads.append(await _read_head(reader))
        assert await _read_chunked(reader) == [b"abc"]
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"abc"

    async with RawServer(handler) as url, _open(Http1Transport()) as transport:
        request = UpstreamRequest(
            "POST", httpx.URL(url + "/u"), [(b"host", b"h")], Body(chunks), {}
        )
        response = await transport.send_raw(request)
        assert b"".join([chunk async for chunk in response]) == b"ok"
        await response.aclose()
    assert heads == [b"POST /u HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n"]
