"""An httpx transport on aiohttp's client: the ``fast`` extra's upstream transport.

httpx's own transport costs several times more CPU per request than aiohttp's
client, which matters in a proxy that sits in the path of every call. This
adapter keeps the engine on httpx's types (``httpx.Request`` in,
``httpx.Response`` out, httpx's exceptions) and lets aiohttp move the bytes:
raw (no decompression), with no cookie jar, no redirects, no proxies from the
environment and no headers the request did not carry. aiohttp sets
``TCP_NODELAY`` on every connection it opens.

The pool limit is enforced here, with a semaphore held for the life of each
response, so that waiting for a connection raises :class:`httpx.PoolTimeout`
as httpx's transport does; aiohttp's connector itself is unlimited.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from functools import lru_cache
from typing import Any

import aiohttp
import anyio
import httpx
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey
from yarl import URL

from ._upstream import (
    DEFAULT_LIMITS,
    RawResponse,
    RawTransport,
    UpstreamRequest,
    request_body,
    text_headers,
)

# Headers aiohttp adds when the request has none; a proxy sends only the headers
# it was given.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")

_HTTP_10 = aiohttp.HttpVersion10

#: How many upstream URLs the transport keeps as aiohttp's.
_TARGETS_KEPT = 256

#: aiohttp waits for the socket to take a write only past this many bytes.
_UNDRAINED = 2**16


class _Connector(aiohttp.TCPConnector):
    # aiohttp would also send ws://, wss:// and tcp:// URLs as plain HTTP requests.
    allowed_protocol_schema_set = frozenset({"http", "https"})

    def _release(
        self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False
    ) -> None:
        transport = protocol.transport
        if should_close and transport is not None and transport.get_write_buffer_size():
            # A half-sent request, to a peer that may have stopped reading: a
            # graceful close would keep the socket open until the peer reads it all.
            transport.abort()
        super()._release(key, protocol, should_close=should_close)


@lru_cache(maxsize=64)
def _client_timeout(connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
    # ``connect`` also bounds DNS resolution, which ``sock_connect`` alone does not.
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=read)


class _Upload:
    """The request's body as sent, remembering the error it raised itself.

    aiohttp has no write timeout, and starts the read timeout only once the body
    is sent: each chunk must be written within the request's ``write`` timeout,
    or the upload is abandoned with :class:`httpx.WriteTimeout`, as httpx's
    transport does.
    """

    __slots__ = ("error", "request", "stream", "write_timeout")

    def __init__(
        self,
        stream: AsyncIterable[bytes],
        request: httpx.Request | None,
        write_timeout: float | None,
    ) -> None:
        self.stream = stream
        self.request = request
        self.write_timeout = write_timeout
        self.error: Exception | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        # This runs in aiohttp's task that writes the body: between a chunk handed
        # over and the next one asked for, that task is writing the chunk.
        writer = asyncio.current_task()
        limit = self.write_timeout
        loop = asyncio.get_running_loop()
        try:
            async for chunk in self.stream:
                if not chunk:  # an empty chunk would end a chunked body
                    continue
                timer = None
                if limit is not None and writer is not None:
                    timer = loop.call_later(limit, self._stalled, writer)
                try:
                    yield chunk
                finally:
                    if timer is not None:
                        timer.cancel()
        except Exception as exc:
            self.error = exc
            raise

    def _stalled(self, writer: asyncio.Task[object]) -> None:
        """The last chunk was not written in time: stop writing (the connection is dropped)."""
        self.error = httpx.WriteTimeout(
            "the upstream did not take the request body within the write timeout",
            request=self.request,
        )
        writer.cancel()


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _translate(
    exc: Exception, request: httpx.Request | None, upload: _Upload | None, *, reading: bool
) -> Exception:
    """The exception to raise for ``exc``: httpx's, the body's own, or ``exc`` unchanged."""
    if upload is not None and upload.error is not None:
        # aiohttp wraps whatever the body raised; the engine wants it as it was.
        return upload.error
    mapped: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        mapped = httpx.ConnectTimeout
    elif isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError, TimeoutError)):
        mapped = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS
        mapped = httpx.ConnectError
    elif isinstance(
        exc,
        (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError),
    ):
        # Closed before or during the response, truncated body, malformed response.
        mapped = httpx.RemoteProtocolError
    elif isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        mapped = httpx.UnsupportedProtocol
    elif isinstance(exc, (aiohttp.ClientConnectionError, OSError)):
        mapped = httpx.ReadError if reading else httpx.WriteError
    elif isinstance(exc, aiohttp.ClientError):
        mapped = httpx.TransportError
    else:
        return exc
    error = mapped(str(exc) or type(exc).__name__, request=request)
    error.__cause__ = exc
    return error


class _ResponseStream(RawResponse):
    """The response body as it arrives; closing it frees the connection and the slot."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        request: httpx.Request | None,
        upload: _Upload | None,
        release: Callable[[], None],
    ) -> None:
        self.status_code = response.status
        self.raw_headers = response.raw_headers
        self.response = response
        self._request = request
        self._upload = upload
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        error: Exception
        try:
            # iter_any: whatever has arrived, at once, so no server-sent event waits.
            async for chunk in self.response.content.iter_any():
                yield chunk
            return
        except Exception as exc:
            error = _translate(exc, self._request, self._upload, reading=True)
        # Raised outside the handler so a body error keeps its own context.
        raise error

    def close(self) -> None:
        """Release the connection (fully read) or drop it (not), then the slot; once."""
        release, self._release = self._release, None
        if release is None:
            return
        try:
            content = self.response.content
            if content.is_eof() and content.exception() is None:
                self.response.release()
            else:
                # A half-read connection must not go back to the pool.
                self.response.close()
        finally:
            release()

    async def aclose(self) -> None:
        self.close()


class AiohttpTransport(RawTransport):
    """An :class:`httpx.AsyncBaseTransport` backed by an :class:`aiohttp.ClientSession`.

    The session is created on the first request (it needs a running loop) and
    closed by :meth:`aclose`; a later request creates a new one.

    :param limits: ``max_connections`` bounds the responses open at once (waiting
        for a slot is bounded by the request's ``pool`` timeout);
        ``keepalive_expiry`` is how long an idle connection is kept.
        ``max_keepalive_connections`` has no aiohttp equivalent and is ignored.
    :param verify: an :class:`ssl.SSLContext`, or whether to verify certificates.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits = DEFAULT_LIMITS,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._limits = limits
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None
        self._slots = (
            anyio.Semaphore(limits.max_connections) if limits.max_connections is not None else None
        )
        self._in_use = 0
        self._targets: dict[int, tuple[httpx.URL, URL]] = {}

    @property
    def in_use(self) -> int:
        """How many responses hold a connection slot now."""
        return self._in_use

    def _new_session(self) -> aiohttp.ClientSession:
        expiry = self._limits.keepalive_expiry
        connector = _Connector(
            limit=0,  # the semaphore is the limit
            limit_per_host=0,
            # aiohttp reads 0 as "never expires"; httpx means "never reuse".
            keepalive_timeout=None if expiry is None else max(expiry, 0.001),
            ssl=self._verify,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def _acquire(self, request: httpx.Request | None, wait: float | None) -> None:
        if self._slots is not None:
            try:
                self._slots.acquire_nowait()  # no checkpoint when a slot is free
            except anyio.WouldBlock:
                with anyio.move_on_after(wait):
                    await self._slots.acquire()
                    self._in_use += 1
                    return
                raise httpx.PoolTimeout(
                    "no upstream connection became free within the pool timeout",
                    request=request,
                ) from None
        self._in_use += 1

    def _release(self) -> None:
        self._in_use -= 1
        if self._slots is not None:
            self._slots.release()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response as soon as its headers are in."""
        body = request_body(request, self)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        stream = await self._send(
            request.method, request.url, request.headers.raw, body, timeouts, request
        )
        try:
            response = stream.response
            return httpx.Response(
                status_code=stream.status_code,
                headers=stream.raw_headers,
                stream=stream,
                request=request,
                extensions={
                    "http_version": b"HTTP/1.0" if response.version == _HTTP_10 else b"HTTP/1.1",
                    "reason_phrase": (response.reason or "").encode("utf-8", "surrogateescape"),
                },
            )
        except BaseException:
            stream.close()
            raise

    def send_raw(self, request: UpstreamRequest) -> Coroutine[Any, Any, RawResponse]:
        """Send ``request`` (no httpx objects); return as soon as its headers are in."""
        return self._send(  # its coroutine as it is: no layer more to resume through
            request.method, request.url, request.headers, request.body, request.timeouts, None
        )

    async def _send(
        self,
        method: str,
        url: httpx.URL,
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes],
        timeouts: dict[str, float | None],
        request: httpx.Request | None,
    ) -> _ResponseStream:
        """The exchange both interfaces share; ``request`` is for httpx's exceptions."""
        session = self._session
        if session is None or session.closed:
            session = self._session = self._new_session()
        target = self._target(url)
        headers = text_headers(raw_headers)
        upload: _Upload | None = None
        data: bytes | AsyncIterator[bytes] | None
        write_timeout = timeouts.get("write")
        if isinstance(body, bytes):
            data = body or None
            if data is not None and len(data) > _UNDRAINED:
                # Sent with its Content-Length; only a body this large waits on the
                # socket (and aiohttp warns about large raw bytes).
                upload = _Upload(_one_chunk(data), request, write_timeout)
                data = upload.chunks()
        else:
            upload = _Upload(body, request, write_timeout)
            data = upload.chunks()  # chunked unless the request has a Content-Length

        await self._acquire(request, timeouts.get("pool"))
        error: Exception
        try:
            response = await session.request(
                method,
                target,
                headers=headers,
                data=data,
                allow_redirects=False,
                compress=None,
                timeout=_client_timeout(timeouts.get("connect"), timeouts.get("read")),
            )
        except Exception as exc:
            self._release()
            error = _translate(exc, request, upload, reading=False)
        except BaseException:
            self._release()
            raise
        else:
            try:
                return _ResponseStream(response, request, upload, self._release)
            except BaseException:  # pragma: no cover - building it does not fail
                response.close()
                self._release()
                raise
        # Raised outside the handler so a body error keeps its own context.
        raise error

    def _target(self, url: httpx.URL) -> URL:
        """``url`` as aiohttp's URL, without userinfo (aiohttp would turn it into an
        ``Authorization`` header); remembered per URL object, as the engine reuses
        the URLs of paths without a query."""
        targets = self._targets
        known = targets.get(id(url))
        if known is not None and known[0] is url:
            return known[1]
        plain = url.copy_with(userinfo=b"") if url.userinfo else url
        target = URL(str(plain), encoded=True)
        if len(targets) >= _TARGETS_KEPT:
            targets.clear()
        targets[id(url)] = (url, target)
        return target

    async def aclose(self) -> None:
        """Close the session and its connections; the next request opens a new one."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
