"""Uploads that go wrong, through real sockets: a provider that stops reading, a client that leaves.

The proxy runs under uvicorn on loopback with each upstream transport; the
"provider" is a raw TCP server that accepts connections and never reads them,
and the client is a raw socket streaming a large body.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from provider_proxy import ProxyApp, ProxyEvent
from provider_proxy.adapters import OpenAIAdapter

from .conftest import ALL, OPENAI_KEY, TRANSPORTS
from .servers import ServerThread, serve, wait_until
from .test_aiohttp_transport import RawServer, _read_chunked, _read_head
from .test_streaming import _async, _pool_in_use

MiB = 1024 * 1024


class StalledProvider:
    """Accepts TCP connections on loopback and never reads from them."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        # A small window, so that the proxy's writes stall soon.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections.append(connection)

    def sees_the_end(self, timeout: float) -> bool:
        """Read the one connection to its end: whether EOF or a reset came within ``timeout``.

        A proxy that still held the connection open would send what it has, then
        wait for more: no end, whatever was read.
        """
        (connection,) = self.connections
        connection.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not connection.recv(MiB):
                    return True
            except ConnectionResetError:
                return True
            except TimeoutError:
                continue
        return False

    def close(self) -> None:
        self._listener.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def stalled() -> Iterator[StalledProvider]:
    provider = StalledProvider()
    try:
        yield provider
    finally:
        provider.close()


class Upload:
    """A raw client socket that declares ``declared`` bytes and sends ``sent`` of them."""

    def __init__(self, url: str, path: str, *, declared: int, sent: int) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)))
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/octet-stream\r\n"
            f"content-length: {declared}\r\n\r\n"
        )
        self.sock.sendall(head.encode())
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._send, args=(sent,), daemon=True)
        self._thread.start()

    def _send(self, size: int) -> None:
        piece = b"x" * (64 * 1024)
        try:
            for _ in range(size // len(piece)):
                self.sock.sendall(piece)
        except OSError:  # the proxy answered and closed, or the test did
            pass
        self.finished.set()

    def status(self, timeout: float) -> int:
        """The answer's status code, read while the body is still being sent."""
        self.sock.settimeout(timeout)
        received = b""
        try:
            while b"\r\n" not in received:
                data = self.sock.recv(4096)
                if not data:
                    break
                received += data
        except ConnectionResetError:
            pass
        return int(received.split(b" ")[1])

    def leave(self) -> None:
        self.sock.close()


def _proxy(
    make_proxy: Callable[..., ProxyApp],
    transport_kind: str,
    base_url: str,
    events: list[ProxyEvent],
    **options: Any,
) -> ProxyApp:
    return make_proxy(
        adapters=[OpenAIAdapter(base_url=base_url, api_key=OPENAI_KEY, allow=[ALL])],
        transport=TRANSPORTS[transport_kind](),
        sinks=[events.append],
        validate_credentials="off",
        **options,
    )


def _slots_free(server: ServerThread, proxy: ProxyApp) -> bool:
    return wait_until(lambda: server.call(_async(_pool_in_use, proxy)) == 0, timeout=5)


def test_stalled_upload_answers_504_within_the_write_timeout(
    make_proxy: Callable[..., ProxyApp], transport_kind: str, stalled: StalledProvider
) -> None:
    write = 0.5
    events: list[ProxyEvent] = []
    # Reads (30 s) would take far longer: only the write timeout can answer in time.
    proxy = _proxy(
        make_proxy, transport_kind, stalled.url, events, timeout=httpx.Timeout(30.0, write=write)
    )
    with serve(proxy) as server:
        upload = Upload(server.url, "/openai/files", declared=16 * MiB, sent=16 * MiB)
        started = time.monotonic()
        try:
            assert upload.status(timeout=10) == 504
        finally:
            upload.leave()
        elapsed = time.monotonic() - started
        assert elapsed < write + 3
        assert _slots_free(server, proxy)
        assert wait_until(lambda: len(events) == 1)
    assert events[0].status == 504
    assert events[0].error_kind == "upstream_timeout"


def test_client_leaving_mid_upload_frees_the_upstream_and_is_499(
    make_proxy: Callable[..., ProxyApp], transport_kind: str, stalled: StalledProvider
) -> None:
    events: list[ProxyEvent] = []
    # No timeout ends this exchange in time: only noticing the client leaving does.
    proxy = _proxy(make_proxy, transport_kind, stalled.url, events, timeout=60.0)
    with serve(proxy) as server:
        upload = Upload(server.url, "/openai/files", declared=16 * MiB, sent=8 * MiB)
        # More than the sockets between them hold: the upload stalls with the
        # client's data still on its way, then the client goes.
        upload.finished.wait(5)
        upload.leave()
        assert wait_until(lambda: len(events) == 1, timeout=5)
        assert _slots_free(server, proxy)
    (event,) = events
    assert event.status == 499
    assert event.error_kind == "client_disconnected"
    assert event.upstream_status is None
    # The proxy closed its upstream connection: the provider sees its end.
    assert stalled.sees_the_end(timeout=5)


def test_client_leaving_while_waiting_for_headers_is_499(
    make_proxy: Callable[..., ProxyApp],
) -> None:
    events: list[ProxyEvent] = []
    with serve(make_proxy(sinks=[events.append])) as server:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                server.url + "/openai/echo",
                content=b"{}",
                headers={"x-fake-delay": "2"},
                timeout=0.3,
            )
        assert wait_until(lambda: len(events) == 1, timeout=5)
    (event,) = events
    assert event.status == 499
    assert event.error_kind == "client_disconnected"


@pytest.mark.anyio
async def test_content_length_beside_chunked_is_not_forwarded(
    make_proxy: Callable[..., ProxyApp],
) -> None:
    heads: list[bytes] = []
    bodies: list[bytes] = []

    async def recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_head(reader))
        bodies.append(b"".join(await _read_chunked(reader)))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async with RawServer(recording) as url:
        adapter = OpenAIAdapter(base_url=url, api_key=OPENAI_KEY, allow=[ALL])
        with serve(
            make_proxy(adapters=[adapter], validate_credentials="off"), http="h11"
        ) as server:
            host, port = server.url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            # A Content-Length (and a wrong one) next to chunked framing.
            writer.write(
                b"POST /openai/upload HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n"
                b"transfer-encoding: chunked\r\n\r\n6\r\nhello \r\n"
            )
            await writer.drain()
            await asyncio.sleep(0.2)  # the second chunk comes later: the body streams
            writer.write(b"5\r\nworld\r\n0\r\n\r\n")
            await writer.drain()
            status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.close()
    assert status.startswith(b"HTTP/1.1 200 ")
    (head,) = heads
    names = [line.split(b":")[0].lower() for line in head.split(b"\r\n")[1:] if line]
    assert b"content-length" not in names
    assert names.count(b"transfer-encoding") == 1
    assert bodies == [b"hello world"]
