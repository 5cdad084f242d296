"""An HTTP/1.1 client on asyncio's protocols and llhttp's parser: the ``http1`` transport.

A passthrough spends a good part of each request in its HTTP client: aiohttp's
builds a request object, a URL, header dicts and a response object around every
exchange, which is more work than the proxy's own. This client does only what a
proxy needs: it writes the head the engine built (framing included) in one
write, parses the answer with llhttp (Node's parser, in C), and hands each body
chunk on as it arrives. Like the other transports it speaks httpx's interface
(``httpx.Request`` in, ``httpx.Response`` out, httpx's exceptions) and moves raw
bytes: no decompression, no redirects, no cookie jar, no proxies from the
environment, no headers the request did not carry; ``TCP_NODELAY`` is asyncio's
own default on every connection.

One connection carries one exchange at a time. A connection goes back to the
pool only when its answer was read to the end and its request written whole;
any other ends it at once (``abort``), so a provider stops on a client that
left, also while it has not answered yet. The pool limit counts open responses,
and waiting for a slot raises :class:`httpx.PoolTimeout`, as httpx's does.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import anyio
import httptools
import httpx

from ._upstream import DEFAULT_LIMITS, RawResponse, RawTransport, UpstreamRequest, request_body

#: The most a response's head may take (status line and headers), as httpx's limit.
MAX_HEAD = 2**16

#: Response bytes held for a reader that is behind before the socket stops being read.
READ_BUFFER = 2**16

#: A whole request body up to this size goes out in the same write as its head,
#: without waiting for the socket; a larger one is written with flow control.
_INLINE_BODY = 2**16

#: How many upstream URLs the transport keeps parsed.
_TARGETS_KEPT = 256

_DEFAULT_PORTS = {"http": 80, "https": 443}

_Key = tuple[str, str, int]  # scheme, host, port


class _Surplus(Exception):
    """Raised into llhttp when the upstream sends more than the one answer asked for."""


class _Connection(asyncio.Protocol):
    """One upstream connection and the state of the exchange it carries (one at a time).

    llhttp calls back into this object as it parses (``on_header``, ``on_body``, ...);
    the reader waits on :attr:`waiter`, which those callbacks wake.
    """

    __slots__ = (
        "active",
        "body_bytes",
        "chunks",
        "closed",
        "complete",
        "error",
        "expects_body",
        "framed",
        "generation",
        "head_bytes",
        "headers",
        "idle_since",
        "in_head",
        "informational",
        "key",
        "parser",
        "pool",
        "reading_paused",
        "reusable",
        "status",
        "transport",
        "waiter",
        "writable",
    )

    def __init__(self, key: _Key, pool: Http1Transport, generation: int) -> None:
        self.key = key
        #: The transport, which counts this connection open until it is lost.
        self.pool: Http1Transport | None = pool
        #: The transport's generation at connect time (a close ends the older ones).
        self.generation = generation
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.expects_body = True
        self.closed = False
        self.idle_since = 0.0
        #: A future to wake when the writes may go on (flow control), or None.
        self.writable: asyncio.Future[None] | None = None
        self.reading_paused = False
        self._reset()

    def _reset(self) -> None:
        """Ready for the next exchange."""
        if not self.expects_body:
            # llhttp would read the next answer as this HEAD answer's body.
            self.parser = httptools.HttpResponseParser(self)
        if self.reading_paused and self.transport is not None:
            # A whole answer the reader left in the buffer: the next one must be read.
            self.transport.resume_reading()
        self.active = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.in_head = True
        self.head_bytes = 0
        self.informational = False
        self.framed = False
        self.expects_body = True
        self.chunks: collections.deque[bytes] = collections.deque()
        self.body_bytes = 0
        self.complete = False
        self.reusable = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self.waiter: asyncio.Future[None] | None = None

    # -- asyncio's callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.pool is not None:
            self.pool._open.add(self)

    def data_received(self, data: bytes) -> None:
        if not self.active or self.complete or self.error is not None:
            # Bytes nobody asked for (after a whole answer, or a failed one): this
            # connection cannot be trusted with another exchange.
            self.reusable = False
            self.abort()
            return
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the upstream switched protocols"))
            return
        except httptools.HttpParserError as exc:
            # llhttp's reason is fixed text (it never quotes the bytes, which may reflect a key).
            error = httpx.RemoteProtocolError(
                f"the upstream's response is not valid HTTP/1.1: {exc}"
            )
            error.__cause__ = exc
            self._fail(error)
            return
        if self.head_bytes > MAX_HEAD:
            if self.in_head or self._head_too_large(data):
                # llhttp may have read it all: refused still, as if it never ended.
                self.in_head = True
                self.complete = False
                self._fail(httpx.RemoteProtocolError("the upstream's response head is too large"))
            else:
                self.head_bytes = 0  # a head that fit, in one read with a long body

    def _head_too_large(self, data: bytes) -> bool:
        """Whether the head that ended within ``data`` (counted whole into
        :attr:`head_bytes`, body bytes too) was itself larger than :data:`MAX_HEAD`."""
        end = data.find(b"\r\n\r\n")
        before = self.head_bytes - len(data)
        return end < 0 or before + end + 4 > MAX_HEAD

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        pool, self.pool = self.pool, None
        if pool is not None:
            pool._lost(self)
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)  # the writer sees the connection closed
        if not self.active or self.complete or self.error is not None:
            return
        if exc is None and not self.in_head and not self.framed and self.expects_body:
            self.complete = True  # a body without a length ends with its connection
            self._wake()
            return
        error: httpx.TransportError
        if isinstance(exc, OSError):
            error = httpx.ReadError(f"the upstream connection failed ({type(exc).__name__})")
            error.__cause__ = exc
        elif self.in_head:
            error = httpx.RemoteProtocolError(
                "the upstream closed the connection without answering"
            )
        else:
            error = httpx.RemoteProtocolError("the upstream closed the connection mid-answer")
        self.error = error
        self._wake()

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # -- llhttp's callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            raise _Surplus  # a second answer in the bytes of the first: stop llhttp
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or lowered == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        if self.complete:
            raise _Surplus
        status = self.parser.get_status_code()
        if status < 200:
            if status != 101:  # (a switch of protocols fails the exchange: see data_received)
                self.informational = True  # 100 Continue, 103 Early Hints: not the answer
                self.headers = []
                self.framed = False
            return
        self.status = status
        self.in_head = False
        if not self.expects_body:  # a HEAD answer: its head is all of it
            self.complete = True
            self.reusable = self.parser.should_keep_alive()
        elif status == 204 or status == 304:
            self.framed = True  # no body to wait for
        self._wake()

    def on_body(self, body: bytes) -> None:
        if not self.expects_body:
            self.reusable = False
            return
        self.chunks.append(body)
        self.body_bytes += len(body)
        if self.body_bytes > READ_BUFFER and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            self.head_bytes = 0
            return
        self.complete = True
        self.reusable = self.expects_body and self.parser.should_keep_alive()
        self._wake()

    # -- the exchange -------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.abort()
        self._wake()

    def abort(self) -> None:
        """End the connection now (a graceful close would wait for a peer that may not read)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def took(self, chunk: bytes) -> None:
        """The reader took ``chunk``: read the socket again once the buffer has room."""
        self.body_bytes -= len(chunk)
        if self.reading_paused and self.body_bytes <= READ_BUFFER // 2:
            self.reading_paused = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()


def _timed_out(waiter: asyncio.Future[None], kind: type[httpx.TimeoutException], what: str) -> None:
    if not waiter.done():
        waiter.set_exception(kind(what))


async def _wait(connection: _Connection, limit: float | None, what: str) -> None:
    """Wait until llhttp has news for the reader, at most ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    waiter = connection.waiter = loop.create_future()
    timer = None
    if limit is not None:
        timer = loop.call_later(limit, _timed_out, waiter, httpx.ReadTimeout, what)
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()
        connection.waiter = None


class _Response(RawResponse):
    """The response body as it arrives; closing it frees the connection and the slot, once."""

    __slots__ = (
        "_connection",
        "_read_timeout",
        "_request",
        "_transport",
        "_upload",
        "raw_headers",
        "status_code",
    )

    def __init__(
        self,
        transport: Http1Transport,
        connection: _Connection,
        read_timeout: float | None,
        upload: asyncio.Task[None] | None,
        request: httpx.Request | None,
    ) -> None:
        self.status_code = connection.status
        self.raw_headers = connection.headers
        self._transport: Http1Transport | None = transport
        self._connection = connection
        self._read_timeout = read_timeout
        self._upload = upload
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._transport is None:  # its connection may carry another exchange by now
            raise httpx.StreamClosed()
        connection = self._connection
        chunks = connection.chunks
        while True:
            if chunks:
                chunk = b"".join(chunks) if len(chunks) > 1 else chunks[0]
                chunks.clear()
                connection.took(chunk)
                yield chunk
            elif connection.complete:
                self.close()  # at once: the connection can serve the next request
                return
            elif connection.error is not None:
                raise _as_httpx(connection.error, self._request)
            else:
                try:
                    await _wait(connection, self._read_timeout, "the upstream stopped sending")
                except httpx.ReadTimeout as exc:
                    connection.abort()
                    raise _as_httpx(exc, self._request) from None

    def close(self) -> None:
        """Pool the connection (answer read whole, request written whole) or end it."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        upload = self._upload
        connection = self._connection
        if upload is not None and not upload.done():
            upload.cancel()
            connection.reusable = False
        transport._finished(connection)

    async def aclose(self) -> None:
        self.close()


def _as_httpx(error: BaseException, request: httpx.Request | None) -> BaseException:
    """``error`` with ``request`` attached when it is httpx's (the engine raises it as is)."""
    if isinstance(error, httpx.RequestError) and request is not None:
        error.request = request
    return error


class Http1Transport(RawTransport):
    """An :class:`httpx.AsyncBaseTransport` of HTTP/1.1 connections on asyncio, parsed by llhttp.

    :param limits: ``max_connections`` bounds the responses open at once (waiting
        for a slot is bounded by the request's ``pool`` timeout);
        ``max_keepalive_connections`` the idle connections kept, and
        ``keepalive_expiry`` how long one is kept (``0``: none is reused).
    :param verify: an :class:`ssl.SSLContext`, or whether to verify certificates.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits = DEFAULT_LIMITS,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._max = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._verify = verify
        self._tls: ssl.SSLContext | None = None
        self._in_use = 0
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._idle: dict[_Key, list[_Connection]] = {}
        self._idle_count = 0
        self._open: set[_Connection] = set()
        self._targets: dict[int, tuple[httpx.URL, _Key, bytes]] = {}
        #: Bumped by :meth:`aclose`: a connection from before it is never pooled again.
        self._generation = 0

    @property
    def in_use(self) -> int:
        """How many responses hold a connection slot now."""
        return self._in_use

    # -- slots ---------------------------------------------------------------------------

    async def _wait_for_slot(self, wait: float | None, request: httpx.Request | None) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._slot_waiters.append(waiter)
        timer = None
        if wait is not None:
            what = "no upstream connection became free within the pool timeout"
            timer = loop.call_later(wait, _timed_out, waiter, httpx.PoolTimeout, what)
        try:
            await waiter  # its result: a slot handed over (counted already)
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release_slot()  # handed a slot as the wait was cancelled
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _release_slot(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on, still counted
                return
        self._in_use -= 1

    # -- connections ---------------------------------------------------------------------

    def _target(self, url: httpx.URL) -> tuple[_Key, bytes]:
        """The pool key and request target of ``url``, kept per URL object (the engine
        reuses the URLs of paths without a query)."""
        known = self._targets.get(id(url))
        if known is not None and known[0] is url:
            return known[1], known[2]
        scheme = url.scheme
        port = _DEFAULT_PORTS.get(scheme)
        if port is None:
            raise httpx.UnsupportedProtocol(f"the URL's scheme is not http or https: {scheme!r}")
        key = (scheme, url.host, url.port or port)
        target = url.raw_path
        if len(self._targets) >= _TARGETS_KEPT:
            self._targets.clear()
        self._targets[id(url)] = (url, key, target)
        return key, target

    def _pooled(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        expiry = self._expiry
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if connection.closed or (expiry is not None and now - connection.idle_since > expiry):
                connection.abort()
                continue
            return connection
        return None

    async def _connect(self, key: _Key, limit: float | None) -> _Connection:
        scheme, host, port = key
        tls = self._tls_context() if scheme == "https" else None
        connection = _Connection(key, self, self._generation)
        try:
            with anyio.fail_after(limit):  # the name's resolution included
                await _open_connection(connection, host, port, tls)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            error = httpx.ConnectError(f"could not connect to {host}:{port} ({type(exc).__name__})")
            raise error from exc
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        tls = self._tls
        if tls is None:
            verify = self._verify
            if isinstance(verify, ssl.SSLContext):
                tls = verify  # the caller's, as given
            else:
                tls = httpx.create_ssl_context(verify=verify)
                tls.set_alpn_protocols(["http/1.1"])
            self._tls = tls
        return tls

    def _lost(self, connection: _Connection) -> None:
        """A connection closed: no longer open, and, closed while idle, no longer
        taking a keep-alive place."""
        self._open.discard(connection)
        if connection.active:
            return
        idle = self._idle.get(connection.key)
        if idle is not None and connection in idle:
            idle.remove(connection)
            self._idle_count -= 1

    def _finished(self, connection: _Connection) -> None:
        """An exchange is over: keep its connection for the next, or end it; free the slot."""
        try:
            if (
                connection.complete
                and connection.reusable
                and not connection.closed
                and connection.generation == self._generation
                and self._expiry != 0
                and (self._max_idle is None or self._idle_count < self._max_idle)
            ):
                connection._reset()
                connection.idle_since = asyncio.get_running_loop().time()
                self._idle.setdefault(connection.key, []).append(connection)
                self._idle_count += 1
            else:
                connection.abort()
        finally:
            self._release_slot()

    # -- the exchange --------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response as soon as its head is in."""
        body = request_body(request, self)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        headers = request.headers.raw
        if "host" not in request.headers:  # httpx leaves it out of a request with a stream
            headers = [(b"host", request.url.netloc), *headers]
        response = await self._send(request.method, request.url, headers, body, timeouts, request)
        try:
            return httpx.Response(
                status_code=response.status_code,
                headers=response.raw_headers,
                stream=response,
                request=request,
                extensions={"http_version": b"HTTP/1.1"},
            )
        except BaseException:
            response.close()
            raise

    def send_raw(self, request: UpstreamRequest) -> Any:
        """Send ``request`` (no httpx objects); return as soon as its head is in."""
        return self._send(
            request.method, request.url, request.headers, request.body, request.timeouts, None
        )

    async def _send(
        self,
        method: str,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes],
        timeouts: dict[str, float | None],
        request: httpx.Request | None,
    ) -> _Response:
        """The exchange both interfaces share; ``request`` is for httpx's exceptions."""
        try:
            key, target = self._target(url)
            chunked = False
            if not isinstance(body, bytes):
                chunked, headers = _framed(headers)
            head = _head(method, target, headers)
        except httpx.RequestError as exc:
            _as_httpx(exc, request)
            raise
        max_slots = self._max
        if max_slots is None or self._in_use < max_slots:
            self._in_use += 1
        else:
            try:
                await self._wait_for_slot(timeouts.get("pool"), request)
            except httpx.PoolTimeout as exc:
                raise _as_httpx(exc, request) from None
        connection: _Connection | None = None
        upload: asyncio.Task[None] | None = None
        try:
            connection = self._pooled(key)
            if connection is None:
                connection = await self._connect(key, timeouts.get("connect"))
            connection.active = True
            connection.expects_body = method != "HEAD"
            transport = connection.transport
            assert transport is not None
            read_timeout = timeouts.get("read")
            if isinstance(body, bytes) and len(body) <= _INLINE_BODY:
                transport.write(head + body if body else head)
            else:
                transport.write(head)
                upload = asyncio.get_running_loop().create_task(
                    _upload(connection, body, chunked, timeouts.get("write"))
                )
                upload.add_done_callback(lambda done: _upload_done(connection, done))
            while connection.in_head:
                if connection.error is not None:
                    raise connection.error
                # The read timeout starts once the request is out (a streamed upload's too).
                waiting = read_timeout if upload is None or upload.done() else None
                await _wait(connection, waiting, "the upstream did not answer in time")
        except BaseException as exc:
            if upload is not None and not upload.done():
                upload.cancel()
            if connection is not None:
                connection.abort()  # a provider stops on a request nobody waits for
            self._release_slot()
            if isinstance(exc, httpx.RequestError) and request is not None:
                exc.request = request
            raise
        return _Response(self, connection, read_timeout, upload, request)

    async def aclose(self) -> None:
        """End every connection, idle or open (an open one's answer then fails);
        a later request opens new ones."""
        self._generation += 1
        self._idle = {}
        self._idle_count = 0
        open_connections = list(self._open)
        for connection in open_connections:
            connection.abort()
        if open_connections:
            await asyncio.sleep(0)  # their sockets close as the loop runs their callbacks


async def _open_connection(
    connection: _Connection, host: str, port: int, tls: ssl.SSLContext | None
) -> None:
    """Connect ``connection`` to ``host``: to its one address directly, or racing its
    addresses (happy eyeballs: a broken IPv6 route does not cost the connect timeout).

    The race only when there is one: cancelled as an attempt connects, asyncio's
    race (3.11) can leave that socket open, and a client that leaves cancels it.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = {str(info[4][0]) for info in infos}
    race: dict[str, Any] = {}
    if len(addresses) > 1 and not type(loop).__module__.startswith("uvloop"):
        race["happy_eyeballs_delay"] = 0.25  # (uvloop tries the addresses in turn)
    await loop.create_connection(
        lambda: connection,
        addresses.pop() if len(addresses) == 1 else host,
        port,
        ssl=tls,
        server_hostname=host if tls is not None else None,
        **race,
    )


def _head(method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request's head as sent; refused when a line break or NUL would split it."""
    lines = [b": ".join(pair) for pair in headers]
    lines.insert(0, b"%s %s HTTP/1.1" % (method.encode("ascii"), target))
    lines.append(b"\r\n")
    head = b"\r\n".join(lines)
    breaks = len(lines)
    if (
        head.count(b"\n") != breaks
        or head.count(b"\r") != breaks
        or b"\0" in head
        or b" " in target
    ):
        raise httpx.LocalProtocolError("a request header or the path holds a line break or a NUL")
    return head


def _framed(headers: list[tuple[bytes, bytes]]) -> tuple[bool, list[tuple[bytes, bytes]]]:
    """Whether a streamed body goes chunked, and the headers that say how it is framed:
    chunked unless the request declares its length."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            return value.lower() == b"chunked", headers
        if lowered == b"content-length":
            return False, headers
    return True, [*headers, (b"transfer-encoding", b"chunked")]


async def _drained(connection: _Connection, limit: float | None) -> None:
    """Wait until the socket takes more (flow control), at most ``limit`` seconds."""
    writable = connection.writable
    if writable is None:
        return
    try:
        await asyncio.wait_for(asyncio.shield(writable), limit)
    except asyncio.TimeoutError:
        raise httpx.WriteTimeout(
            "the upstream did not take the request body within the write timeout"
        ) from None
    if connection.closed:
        raise httpx.WriteError("the upstream closed the connection during the upload")


async def _upload(
    connection: _Connection,
    body: bytes | AsyncIterable[bytes],
    chunked: bool,
    limit: float | None,
) -> None:
    """Write the request's body: each piece must be taken within the write timeout
    (the time spent waiting for the body's source does not count)."""
    transport = connection.transport
    assert transport is not None
    if isinstance(body, bytes):
        view = memoryview(body)
        for start in range(0, len(body), _INLINE_BODY):
            transport.write(view[start : start + _INLINE_BODY])
            await _drained(connection, limit)
        return
    async for chunk in body:
        if not chunk:  # an empty chunk would end a chunked body
            continue
        if connection.closed:
            raise httpx.WriteError("the upstream closed the connection during the upload")
        transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        await _drained(connection, limit)
    if chunked:
        transport.write(b"0\r\n\r\n")


def _upload_done(connection: _Connection, upload: asyncio.Task[None]) -> None:
    """A failed upload fails the exchange with its own error (the body's, as it was)."""
    if upload.cancelled():
        return
    error = upload.exception()
    if error is not None:
        connection._fail(error)
    elif connection.in_head:
        connection._wake()  # the read timeout starts now
