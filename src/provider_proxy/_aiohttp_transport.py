"""An httpx transport on aiohttp's client: the ``fast`` extra's upstream transport.

httpx's own transport costs several times more CPU per request than aiohttp's
client, which matters in a proxy that sits in the path of every call. This
adapter keeps the engine on httpx's types (``httpx.Request`` in,
``httpx.Response`` out, httpx's exceptions) and lets aiohttp move the bytes:
raw (no decompression), with no cookie jar, no redirects and no headers the
request did not carry. aiohttp sets ``TCP_NODELAY`` on its connections.

The pool limit is enforced here, with a semaphore taken for the life of each
response, so that waiting for a connection raises :class:`httpx.PoolTimeout`
as httpx's transport does.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import anyio
import httpx
from multidict import CIMultiDict
from yarl import URL

from ._upstream import DEFAULT_LIMITS

# Headers aiohttp would add when the request has none; a proxy sends only the
# headers it was given.
_SKIP_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})

# Framing is aiohttp's job: it chunks a streamed body that has no Content-Length.
_FRAMING = frozenset({b"transfer-encoding"})


@contextmanager
def _mapped_errors(request: httpx.Request, *, reading: bool = False) -> Iterator[None]:
    """Re-raise aiohttp's exceptions as the httpx ones the engine maps to statuses."""
    try:
        yield
    except httpx.HTTPError:
        raise
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except (aiohttp.SocketTimeoutError, asyncio.TimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except aiohttp.ClientResponseError as exc:
        # A malformed response (aiohttp reports the parser error this way).
        raise httpx.RemoteProtocolError(str(exc.message), request=request) from exc
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
    except (aiohttp.ClientConnectionError, OSError) as exc:
        error = httpx.ReadError if reading else httpx.WriteError
        raise error(str(exc) or type(exc).__name__, request=request) from exc


class _ResponseStream(httpx.AsyncByteStream):
    """The response body as it arrives; closing it frees the connection and the slot."""

    def __init__(
        self, response: aiohttp.ClientResponse, request: httpx.Request, release: Any
    ) -> None:
        self._response = response
        self._request = request
        self._release = release
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors(self._request, reading=True):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._response.content.is_eof():
                self._response.release()
            else:
                # A half-read connection must not go back to the pool.
                self._response.close()
        finally:
            self._release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An :class:`httpx.AsyncBaseTransport` backed by an :class:`aiohttp.ClientSession`.

    The session is created on the first request (it needs a running loop) and
    closed by :meth:`aclose`; a later request creates a new one.
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
        size = limits.max_connections
        self._capacity = size
        self._slots = anyio.Semaphore(size) if size is not None else None

    @property
    def in_use(self) -> int:
        """Responses holding a connection slot now."""
        if self._slots is None or self._capacity is None:
            return 0
        return self._capacity - self._slots.value

    def _new_session(self) -> aiohttp.ClientSession:
        ssl_option: ssl.SSLContext | bool = self._verify
        connector = aiohttp.TCPConnector(
            limit=0,  # the semaphore above is the limit
            limit_per_host=0,
            keepalive_timeout=self._limits.keepalive_expiry or 0.0,
            ssl=ssl_option,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def _acquire(self, request: httpx.Request, wait: float | None) -> None:
        if self._slots is None:
            return
        try:
            self._slots.acquire_nowait()
            return
        except anyio.WouldBlock:
            pass
        with anyio.move_on_after(wait):
            await self._slots.acquire()
            return
        raise httpx.PoolTimeout("no free upstream connection in time", request=request)

    def _release(self) -> None:
        if self._slots is not None:
            self._slots.release()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout: dict[str, float | None] = request.extensions.get("timeout", {})
        if self._session is None or self._session.closed:
            self._session = self._new_session()
        await self._acquire(request, timeout.get("pool"))
        try:
            response = await self._send(self._session, request, timeout)
        except BaseException:
            self._release()
            raise
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response, request, self._release),
            request=request,
            extensions=extensions,
        )

    async def _send(
        self,
        session: aiohttp.ClientSession,
        request: httpx.Request,
        timeouts: dict[str, float | None],
    ) -> aiohttp.ClientResponse:
        headers: CIMultiDict[str] = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() not in _FRAMING
        )
        data: bytes | AsyncIterator[bytes] | None
        if isinstance(request.stream, httpx.ByteStream):
            data = b"".join(request.stream) or None
        else:
            data = _body(request)
        with _mapped_errors(request):
            return await session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                compress=None,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=timeouts.get("connect"),
                    sock_read=timeouts.get("read"),
                ),
            )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _body(request: httpx.Request) -> AsyncIterator[bytes]:
    stream = request.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    async for chunk in stream:
        yield chunk
