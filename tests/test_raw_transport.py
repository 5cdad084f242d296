"""The transports' raw interface (``send_raw``), which the plain passthrough path uses.

Both shipped transports take an :class:`UpstreamRequest` (raw header pairs,
framing included; bytes or a stream) and answer a :class:`RawResponse` (status,
headers as sent, chunks as they come), with httpx's exceptions, against real
loopback servers; and the engine sends through it, building no ``httpx.Request``,
while any other transport still gets one.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

from provider_proxy import make_asgi_app
from provider_proxy.adapters import OpenAIAdapter
from provider_proxy.testing import FakeUpstream
from provider_proxy.transports import RawResponse, RawTransport, UpstreamRequest
from provider_proxy.transports._aiohttp import AiohttpTransport
from provider_proxy.transports._reqwest import ReqwestTransport

from .servers import ServerThread, serve
from .test_aiohttp_transport import (
    TIMEOUTS,
    RawServer,
    _read_chunked,
    _read_head,
    _silent,
    _streaming,
)

pytestmark = pytest.mark.anyio

KINDS: dict[str, Callable[[], RawTransport]] = {
    "aiohttp": AiohttpTransport,
    "reqwest": ReqwestTransport,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=sorted(KINDS))
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[RawTransport]:
    made = KINDS[request.param]()
    try:
        yield made
    finally:
        await made.aclose()


def _raw(
    url: str,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes | AsyncIterator[bytes] = b"",
) -> UpstreamRequest:
    return UpstreamRequest(method, httpx.URL(url), headers or [], body, {"timeout": dict(TIMEOUTS)})


async def test_whole_body_headers_out_and_the_answer_as_sent(transport: RawTransport) -> None:
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _read_head(reader)
        length = next(
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length")
        )
        seen.append(head + await reader.readexactly(length))
        writer.write(
            b"HTTP/1.1 201 Created\r\nX-Upstream: One\r\nx-upstream: two\r\n"
            b"content-length: 5\r\n\r\nhello"
        )
        await writer.drain()

    async with RawServer(answer) as url:
        headers = [(b"x-one", b"1"), (b"x-one", b"2"), (b"content-length", b"7")]
        response = await transport.send_raw(_raw(url + "/p?q=1", "POST", headers, b"payload"))
        assert isinstance(response, RawResponse)
        assert response.status_code == 201
        names = [name.lower() for name, _ in response.raw_headers]
        assert names.count(b"x-upstream") == 2  # both values, in order
        values = [value for name, value in response.raw_headers if name.lower() == b"x-upstream"]
        assert values == [b"One", b"two"]
        assert b"".join([chunk async for chunk in response]) == b"hello"
        await response.aclose()
        await response.aclose()  # once only
    (sent,) = seen
    assert sent.startswith(b"POST /p?q=1 HTTP/1.1\r\n")
    assert sent.lower().count(b"x-one:") == 2
    assert sent.endswith(b"\r\n\r\npayload")
    assert transport.in_use == 0  # type: ignore[attr-defined]


async def test_a_streamed_body_goes_chunked_as_it_comes(transport: RawTransport) -> None:
    got: list[list[bytes]] = []
    second = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        got.append(await _read_chunked(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        second.set()
        yield b"second"

    async with RawServer(answer) as url:
        headers = [(b"transfer-encoding", b"chunked")]
        response = await transport.send_raw(_raw(url, "POST", headers, body()))
        assert b"".join([chunk async for chunk in response]) == b"ok"
        await response.aclose()
    assert second.is_set()
    assert got == [[b"first", b"second"]]


async def test_chunks_arrive_one_by_one_and_closing_early_drops_the_connection(
    transport: RawTransport,
) -> None:
    async with RawServer(_streaming) as url:
        response = await transport.send_raw(_raw(url))
        chunks = response.__aiter__()
        assert await asyncio.wait_for(chunks.__anext__(), 5) == b"hello"  # not held back
        assert transport.in_use == 1  # type: ignore[attr-defined]
        await response.aclose()
        assert transport.in_use == 0  # type: ignore[attr-defined]


async def test_refused_is_a_connect_error(transport: RawTransport) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        await transport.send_raw(_raw(f"http://127.0.0.1:{port}/"))
    assert transport.in_use == 0  # type: ignore[attr-defined]


async def test_no_head_in_time_is_a_read_timeout(transport: RawTransport) -> None:
    async with RawServer(_silent) as url:
        request = _raw(url)
        request.extensions["timeout"]["read"] = 0.2
        with pytest.raises(httpx.ReadTimeout):
            await transport.send_raw(request)
    assert transport.in_use == 0  # type: ignore[attr-defined]


async def test_cancelled_while_waiting_frees_the_slot(transport: RawTransport) -> None:
    async with RawServer(_silent) as url:
        with anyio.move_on_after(0.2) as scope:
            await transport.send_raw(_raw(url))
        assert scope.cancelled_caught
        assert transport.in_use == 0  # type: ignore[attr-defined]


class _NoHttpx(AiohttpTransport):
    """The aiohttp transport, failing if the engine hands it an ``httpx.Request``."""

    raw_requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError("the plain passthrough built an httpx.Request")

    async def send_raw(self, request: UpstreamRequest) -> RawResponse:
        type(self).raw_requests += 1
        return await super().send_raw(request)


class _Recording(httpx.AsyncBaseTransport):
    """Any other transport: it gets an ``httpx.Request``, with the proxy's headers."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _chat(server: ServerThread, *, stream: bool = False) -> httpx.Response:
    body: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    return httpx.post(
        server.url + "/openai/chat/completions",
        json=body,
        headers={"authorization": "Bearer client-key"},
        timeout=10,
    )


def _sent_body(request: httpx.Request) -> bytes:
    """The body the transport was given (a whole body is an ``httpx.ByteStream``)."""
    assert isinstance(request.stream, httpx.ByteStream)
    return b"".join(request.stream)


def test_the_engine_sends_raw_parts_to_a_raw_transport(upstream: ServerThread) -> None:
    _NoHttpx.raw_requests = 0
    adapter = OpenAIAdapter(base_url=upstream.url + "/v1", api_key="sk-raw-test")
    app = make_asgi_app([adapter], transport=_NoHttpx(), validate_credentials="off")
    with serve(app) as server:
        whole, streamed = _chat(server), _chat(server, stream=True)
    assert whole.status_code == 200
    assert whole.json()["object"] == "chat.completion"
    assert streamed.status_code == 200
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert _NoHttpx.raw_requests == 2


def test_any_other_transport_still_gets_an_httpx_request(
    upstream: ServerThread, fake: FakeUpstream
) -> None:
    recording = _Recording(httpx.AsyncHTTPTransport())
    adapter = OpenAIAdapter(base_url=upstream.url + "/v1", api_key="sk-raw-test")
    app = make_asgi_app([adapter], transport=recording, validate_credentials="off")
    with serve(app) as server:
        answer = _chat(server)
    assert answer.status_code == 200
    (request,) = recording.requests
    assert request.headers["authorization"] == "Bearer sk-raw-test"  # the key, not the client's
    assert request.headers["content-length"] == str(len(_sent_body(request)))
    assert request.url.path == "/v1/chat/completions"


async def test_utf8_headers_go_as_given_and_a_reused_url_is_sent_each_time(
    transport: RawTransport,
) -> None:
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await _read_head(reader):
                seen.append(head)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the client closed the connection

    values = (b"caf\xc3\xa9", b"plain", b"\xe2\x9c\x93 done")
    async with RawServer(answer) as url:
        target = httpx.URL(url + "/same?x=1")  # one URL object, as the engine reuses them
        for value in values:
            request = UpstreamRequest(
                "GET", target, [(b"x-value", value)], b"", {"timeout": dict(TIMEOUTS)}
            )
            response = await transport.send_raw(request)
            assert b"".join([chunk async for chunk in response]) == b"ok"
            await response.aclose()
    assert len(seen) == len(values)
    for head, value in zip(seen, values, strict=True):
        assert head.startswith(b"GET /same?x=1 HTTP/1.1\r\n")
        lines = head.split(b"\r\n")
        assert [line[9:] for line in lines if line.lower().startswith(b"x-value: ")] == [value]
