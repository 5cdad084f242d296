"""An httpx transport on pyreqwest (Rust's reqwest and hyper): the ``reqwest`` extra's transport.

It costs less CPU per request than aiohttp's client, because the HTTP work runs
in Rust. Like :mod:`._aiohttp`, it keeps the engine on httpx's types
(``httpx.Request`` in, ``httpx.Response`` out, httpx's exceptions) and moves
raw bytes: no decompression, no redirects, no cookie jar, no proxies from the
environment, ``TCP_NODELAY`` on every connection, HTTP/1.1 only (as httpx's
transport). reqwest does add ``Accept: */*`` to a request that has none (which
means what no ``Accept`` means: any type), and a request without a
``User-Agent`` is sent with :data:`USER_AGENT`. A response header whose value is
not visible ASCII cannot be handed over by pyreqwest: it is left out, and logged.

Four things differ from what pyreqwest does out of the box, and matter here:

- pyreqwest's streamed responses read ahead into a buffer (256 KiB by default)
  and hand it over only when it fills or the body ends, which would hold a
  server-sent event stream back (and the head, until the first body bytes);
  every response here is read with no read-ahead (:data:`READ_AHEAD`), and
  each chunk is handed on as it arrives.
- reqwest's timeouts are set per client, not per request: one client (one
  pool) is kept per distinct ``(connect, read)`` pair the requests ask for.
  The write timeout, which reqwest lacks, and the pool limit (so that waiting
  for a slot raises :class:`httpx.PoolTimeout`) are enforced here, as the
  aiohttp transport does.
- A cancelled pyreqwest coroutine answers with a cancellation of its own,
  which anyio's cancel scopes do not recognise (and, landing as a read
  completes, can wait forever): its coroutines are closed instead (see
  :class:`_Abandoned`). A read so dropped closes its connection at once; a
  request still waiting for its answer's head is not stopped, though:
  pyreqwest runs it on its own runtime until the head comes or the read
  timeout, so the provider goes on with it. That, and more memory per open
  stream, is why this transport is not the default.
- pyreqwest's errors say which phase failed only in their causes' text: they
  are mapped to httpx's types from it, so that a refused connection (never
  sent, safe to retry) is a :class:`httpx.ConnectError` and a connection
  closed after the request went out is a :class:`httpx.RemoteProtocolError`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Generator
from datetime import timedelta
from typing import Any, Generic, TypeVar

import anyio
import httpx
from pyreqwest import exceptions as rq
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response

from ..__version__ import __version__
from ._upstream import (
    DEFAULT_LIMITS,
    RawResponse,
    RawTransport,
    UpstreamRequest,
    request_body,
    text_headers,
)

logger = logging.getLogger("provider_proxy")

_T = TypeVar("_T")

#: How many bytes a streamed response may read ahead of the reader. pyreqwest
#: hands data over only once its buffer is full or the body has ended (the head
#: too waits for it), so none is what lets the head and each event through at once.
READ_AHEAD = 0

#: Request bodies larger than this are sent in pieces of this size, so that the
#: write timeout applies to each piece.
_PIECE = 2**16

#: The ``User-Agent`` of a request that has none (reqwest would send its own):
#: the proxy names itself, as the client it is.
USER_AGENT = f"provider-proxy/{__version__}"

#: A connection pool's reqwest timeouts are off when a request sets none.
_FOREVER = timedelta(days=365)

_OS_ERROR = re.compile(r"\(os error (\d+)\)")

# Where, in pyreqwest's causes, a failure happened.
_CONNECTING = ("client error (Connect)", "tcp connect error", "dns error")
_CUT_SHORT = ("end of file", "unexpected EOF", "closed before message completed")


#: How many upstream URLs the transport keeps as text.
_URLS_KEPT = 256


def _causes(exc: rq.PyreqwestError) -> list[str]:
    details: Any = getattr(exc, "details", None)
    if not isinstance(details, dict):
        return []
    return [cause["message"] for cause in details.get("causes") or ()]


def _said(causes: list[str], phrases: tuple[str, ...]) -> bool:
    return any(phrase in cause for cause in causes for phrase in phrases)


def _mapped_type(
    exc: rq.PyreqwestError, causes: list[str], *, reading: bool
) -> type[httpx.TransportError]:
    """httpx's exception type for a pyreqwest error, from its type and its causes."""
    if isinstance(exc, rq.PoolTimeoutError):
        return httpx.PoolTimeout
    if isinstance(exc, rq.WriteTimeoutError):
        return httpx.WriteTimeout
    if isinstance(exc, rq.RequestTimeoutError):
        # pyreqwest calls a read timeout before the response's head a connect timeout.
        return httpx.ConnectTimeout if _said(causes, _CONNECTING) else httpx.ReadTimeout
    if isinstance(exc, rq.BuilderError):
        if _said(causes, ("scheme",)):
            return httpx.UnsupportedProtocol
        return httpx.LocalProtocolError
    if isinstance(exc, rq.DecodeError):  # not HTTP
        return httpx.RemoteProtocolError
    if isinstance(exc, rq.ConnectError):
        # reqwest's ConnectError also covers a connection closed after the request went out.
        return httpx.ConnectError if _said(causes, _CONNECTING) else httpx.RemoteProtocolError
    if _said(causes, _CUT_SHORT):  # a truncated body, or closed before the head
        return httpx.RemoteProtocolError
    if isinstance(exc, rq.WriteError):
        return httpx.WriteError
    if isinstance(exc, rq.ReadError):
        return httpx.ReadError
    if isinstance(exc, (rq.NetworkError, rq.RequestError)):
        return httpx.ReadError if reading else httpx.WriteError
    return httpx.TransportError


def _root_cause(causes: list[str]) -> BaseException | None:
    """The OS-level failure behind pyreqwest's causes, as Python's own exception type."""
    if _said(causes, ("dns error",)):
        return socket.gaierror(causes[-1])
    if _said(causes, ("certificate", "Certificate")):
        return ssl.SSLCertVerificationError(causes[-1])
    for cause in reversed(causes):
        found = _OS_ERROR.search(cause)
        if found:
            # OSError picks the subclass for the errno: ConnectionRefusedError, ...
            return OSError(int(found.group(1)), cause)
    return None


class _Abandoned(Generic[_T]):
    """Await a pyreqwest coroutine; cancelled, drop it rather than pass the cancellation on.

    Thrown into a pyreqwest coroutine, a cancellation comes back as a
    :class:`asyncio.CancelledError` of pyreqwest's own, which anyio's cancel
    scopes (the engine's disconnect watch among them) do not take as theirs;
    and when it lands as a read completes, the coroutine can wait forever.
    Closing the coroutine instead drops its Rust future at once (a read
    dropped so closes its connection; a request waiting for its head runs
    on, in pyreqwest's runtime), and the task's own cancellation goes on.
    """

    __slots__ = ("_coroutine",)

    def __init__(self, coroutine: Coroutine[Any, Any, _T]) -> None:
        self._coroutine = coroutine

    def __await__(self) -> Generator[Any, Any, _T]:
        coroutine = self._coroutine
        value: Any = None
        while True:
            try:
                waiting = coroutine.send(value)
            except StopIteration as done:
                result: _T = done.value
                return result
            try:
                value = yield waiting
            except BaseException:
                coroutine.close()
                raise


class _Upload:
    """The request's body as sent, remembering the error it raised itself.

    reqwest has no write timeout: each chunk must be taken within the request's
    ``write`` timeout (the next one asked for), or ``on_stall`` abandons the
    exchange and :class:`httpx.WriteTimeout` is raised, as httpx's transport does.
    """

    __slots__ = ("error", "on_stall", "request", "stream", "write_timeout")

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
        self.on_stall: Callable[[], None] | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        limit = self.write_timeout
        loop = asyncio.get_running_loop()
        try:
            async for chunk in self.stream:
                if not chunk:
                    continue
                timer = loop.call_later(limit, self._stalled) if limit is not None else None
                try:
                    yield chunk
                finally:
                    if timer is not None:
                        timer.cancel()
        except Exception as exc:
            self.error = exc
            raise

    def _stalled(self) -> None:
        self.error = httpx.WriteTimeout(
            "the upstream did not take the request body within the write timeout",
            request=self.request,
        )
        if self.on_stall is not None:
            self.on_stall()


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), _PIECE):
        yield bytes(view[start : start + _PIECE])


def _translate(
    exc: Exception, request: httpx.Request | None, upload: _Upload | None, *, reading: bool
) -> Exception:
    """The exception to raise for ``exc``: httpx's, the body's own, or ``exc`` unchanged."""
    if upload is not None and upload.error is not None:
        return upload.error
    if not isinstance(exc, rq.PyreqwestError):
        return exc
    causes = _causes(exc)
    mapped = _mapped_type(exc, causes, reading=reading)
    # The text names the phase and the reason, never the URL (its query may hold a key).
    text = "; ".join(cause for cause in causes if "for url (" not in cause) or exc.message
    error = mapped(text, request=request)
    root = _root_cause(causes)
    if root is not None:
        exc.__cause__ = root
    error.__cause__ = exc
    return error


def _headers(response: Response) -> list[tuple[str, str]]:
    """The response's headers; one whose value is not text is left out, and logged."""
    headers = response.headers
    try:
        return list(headers.items())
    except ValueError:
        pass
    kept: list[tuple[str, str]] = []
    for name in dict.fromkeys(headers.keys()):
        try:
            kept.extend((name, value) for value in headers.getall(name))
        except ValueError:
            logger.warning("an upstream header that is not text was left out: %s", name)
    return kept


class _ResponseStream(RawResponse):
    """The response body as it arrives; closing it frees the connection and the slot."""

    def __init__(
        self,
        sending: StreamRequest,
        response: Response,
        request: httpx.Request | None,
        upload: _Upload | None,
        release: Callable[[], None],
    ) -> None:
        self.status_code = response.status
        self.version = response.version
        self.raw_headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in _headers(response)
        ]
        self._sending = sending
        self._reader = response.body_reader
        length = response.get_header("content-length")
        #: The body's declared length: once that much came, the body is over
        #: without asking the client thread once more (hyper enforces the length).
        self._length = int(length) if length is not None and length.isdigit() else None
        self._request = request
        self._upload = upload
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        error: Exception
        reader = self._reader
        left = self._length
        try:
            while True:
                chunk = await _Abandoned(reader.read_chunk())
                if chunk is None:
                    return
                data = bytes(chunk)
                yield data
                if left is not None:
                    left -= len(data)
                    if left <= 0:
                        return
        except Exception as exc:
            error = _translate(exc, self._request, self._upload, reading=True)
        raise error

    async def aclose(self) -> None:
        """Drop the response (a half-read connection is closed, not pooled), then the slot; once."""
        release, self._release = self._release, None
        if release is None:
            return
        try:
            task = asyncio.current_task()
            # (pyreqwest needs Python 3.11, which has Task.cancelling(); mypy checks 3.10.)
            if task is not None and task.cancelling():  # type: ignore[attr-defined]
                # Shielded: this runs when the client has left, in a cancelled task,
                # and the connection must be dropped all the same.
                with anyio.CancelScope(shield=True):
                    await _Abandoned(self._sending.__aexit__(None, None, None))
            else:  # (no anyio cancel scope on every request: each costs thousands of instructions)
                await _Abandoned(self._sending.__aexit__(None, None, None))
        finally:
            release()


class ReqwestTransport(RawTransport):
    """An :class:`httpx.AsyncBaseTransport` backed by pyreqwest's :class:`~pyreqwest.client.Client`.

    Clients are created on first use, one per distinct ``(connect, read)``
    timeout pair, and closed by :meth:`aclose`; a later request creates new ones.

    :param limits: ``max_connections`` bounds the responses open at once
        (waiting for a slot is bounded by the request's ``pool`` timeout);
        ``max_keepalive_connections`` bounds the idle connections kept per
        host, and ``keepalive_expiry`` how long they are kept.
    :param verify: whether to verify the upstream's TLS certificate.
    :param root_certificates: PEM certificates to trust besides the system's
        (a private CA in front of the providers, say).
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits = DEFAULT_LIMITS,
        verify: bool = True,
        root_certificates: bytes | None = None,
    ) -> None:
        self._limits = limits
        self._verify = verify
        self._roots = root_certificates
        self._clients: dict[tuple[float | None, float | None], Client] = {}
        self._slots = (
            anyio.Semaphore(limits.max_connections) if limits.max_connections is not None else None
        )
        self._in_use = 0
        self._urls: dict[int, tuple[httpx.URL, str]] = {}

    @property
    def in_use(self) -> int:
        """How many responses hold a connection slot now."""
        return self._in_use

    def _text(self, url: httpx.URL) -> str:
        """``str(url)``, remembered per URL object (the engine reuses the URLs of
        paths without a query; httpx builds the text anew each time)."""
        urls = self._urls
        known = urls.get(id(url))
        if known is not None and known[0] is url:
            return known[1]
        text = str(url)
        if len(urls) >= _URLS_KEPT:
            urls.clear()
        urls[id(url)] = (url, text)
        return text

    def _client(self, connect: float | None, read: float | None) -> Client:
        client = self._clients.get((connect, read))
        if client is None:
            client = self._clients[connect, read] = self._new_client(connect, read)
        return client

    def _new_client(self, connect: float | None, read: float | None) -> Client:
        limits = self._limits
        builder = (
            ClientBuilder()
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .follow_redirects(False)
            .default_cookie_store(False)
            .referer(False)
            .no_proxy()
            .http1_only()
            .user_agent(USER_AGENT)
            .tcp_nodelay(True)
            .danger_accept_invalid_certs(not self._verify)
            .connect_timeout(_FOREVER if connect is None else timedelta(seconds=connect))
            .read_timeout(_FOREVER if read is None else timedelta(seconds=read))
        )
        if self._roots is not None:
            builder = builder.add_root_certificate_pem(self._roots)
        expiry = limits.keepalive_expiry
        builder = builder.pool_idle_timeout(None if expiry is None else timedelta(seconds=expiry))
        if limits.max_keepalive_connections is not None:
            builder = builder.pool_max_idle_per_host(limits.max_keepalive_connections)
        client: Client = builder.build()
        return client

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
        """Send ``request`` and return the response as soon as its head is in."""
        body = request_body(request, self)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        stream = await self._send(
            request.method, request.url, request.headers.raw, body, timeouts, request
        )
        try:
            return httpx.Response(
                status_code=stream.status_code,
                headers=stream.raw_headers,
                stream=stream,
                request=request,
                # No reason phrase: reqwest keeps none, and httpx then gives the standard one.
                extensions={"http_version": stream.version.encode("ascii")},
            )
        except BaseException:
            await stream.aclose()
            raise

    def send_raw(self, request: UpstreamRequest) -> Coroutine[Any, Any, RawResponse]:
        """Send ``request`` (no httpx objects); return as soon as its head is in."""
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
        client = self._client(timeouts.get("connect"), timeouts.get("read"))
        builder = client.request(method, self._text(url)).headers(text_headers(raw_headers))
        upload: _Upload | None = None
        write_timeout = timeouts.get("write")
        if isinstance(body, bytes):
            if len(body) > _PIECE:
                upload = _Upload(_pieces(body), request, write_timeout)
                builder = builder.body_stream(upload.chunks())
            elif body:
                builder = builder.body_bytes(body)
        else:
            upload = _Upload(body, request, write_timeout)
            builder = builder.body_stream(upload.chunks())  # chunked unless a Content-Length
        sending = builder.streamed_read_buffer_limit(READ_AHEAD).build_streamed()

        await self._acquire(request, timeouts.get("pool"))
        error: Exception
        try:
            if upload is None:  # whole bytes: no write to time out
                response = await _Abandoned(sending.__aenter__())
            else:
                with anyio.CancelScope() as scope:
                    upload.on_stall = scope.cancel
                    response = await _Abandoned(sending.__aenter__())
                if scope.cancelled_caught:  # the write timeout abandoned the upload
                    assert upload.error is not None
                    raise upload.error
        except Exception as exc:
            self._release()
            error = _translate(exc, request, upload, reading=False)
        except BaseException:
            self._release()
            raise
        else:
            if upload is not None:
                upload.on_stall = None  # past the head: a stall now ends in the read timeout
            try:
                return _ResponseStream(sending, response, request, upload, self._release)
            except BaseException:  # pragma: no cover - building it does not fail
                with anyio.CancelScope(shield=True):
                    await sending.__aexit__(None, None, None)
                self._release()
                raise
        raise error

    async def aclose(self) -> None:
        """Close the clients and their connections; the next request opens new ones."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()
