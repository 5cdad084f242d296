"""The floors: the least a Python ASGI proxy can do, on the same server as the proxy.

A raw ASGI app that forwards the request to the upstream with one pooled
``aiohttp.ClientSession`` and relays the answer chunk by chunk: no routing,
no header policy, no events. What the proxy does beyond this is its own cost,
so ``proxy / floor`` is the number that holds from one machine to another.
It still streams large bodies, relays chunks as they come and closes the
upstream response when the client goes away, as any proxy must.

:class:`ReqwestFloor` is the same on pyreqwest (the ``reqwest`` extra's client);
served by granian as well, it is the floor of the fastest stack the proxy runs on.
:class:`SocketFloor` is the WebSocket relay's floor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

Scope = dict[str, Any]
Message = dict[str, Any]

_REQUEST_DROP = frozenset(
    {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"authorization"}
)
_RESPONSE_DROP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"date", b"server"})


class Floor:
    """Forwards every request to ``upstream`` + its path, with a fixed key."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if self._session is not None:
                await self._session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        session = self._session
        if session is None:
            session = self._session = self._new_session()

        first: Message = await receive()
        data: bytes | AsyncIterator[bytes] = first.get("body", b"")
        if first.get("more_body", False):
            data = _rest(data, receive)  # type: ignore[arg-type]
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name not in _REQUEST_DROP
        ]
        headers.append(("authorization", "Bearer x"))
        url = self._upstream + scope["raw_path"].decode("ascii")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("ascii")
        response = await session.request(
            scope["method"], url, headers=headers, data=data, allow_redirects=False
        )
        watcher = asyncio.ensure_future(_close_on_disconnect(receive, response))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (name.lower(), value)
                        for name, value in response.raw_headers
                        if name.lower() not in _RESPONSE_DROP
                    ],
                }
            )
            with contextlib.suppress(aiohttp.ClientError):
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            response.release()


async def _rest(first: bytes, receive: Any) -> AsyncIterator[bytes]:
    yield first
    more = True
    while more:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk: bytes = message.get("body", b"")
        if chunk:
            yield chunk
        more = message.get("more_body", False)


async def _close_on_disconnect(receive: Any, response: aiohttp.ClientResponse) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    response.close()


class ReqwestFloor:
    """The floor on pyreqwest (Rust's reqwest) in place of aiohttp, otherwise the same.

    No decompression, no read-ahead (so each chunk is relayed as it arrives), and
    the upstream response dropped when the client goes away.
    """

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self._client: Any = None

    def _new_client(self) -> Any:
        from pyreqwest.client import ClientBuilder

        return (
            ClientBuilder()
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .follow_redirects(False)
            .no_proxy()
            .http1_only()
            .build()
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if self._client is not None:
                await self._client.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        client = self._client
        if client is None:
            client = self._client = self._new_client()

        first: Message = await receive()
        url = self._upstream + scope["raw_path"].decode("ascii")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("ascii")
        builder = client.request(scope["method"], url).headers(
            [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in scope["headers"]
                if name not in _REQUEST_DROP
            ]
            + [("authorization", "Bearer x")]
        )
        body: bytes = first.get("body", b"")
        if first.get("more_body", False):
            builder = builder.body_stream(_rest(body, receive))
        elif body:
            builder = builder.body_bytes(body)
        request = builder.streamed_read_buffer_limit(0).build_streamed()
        response = await request.__aenter__()
        watcher = asyncio.ensure_future(_drop_on_disconnect(receive, request))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (name.encode("latin-1"), value.encode("latin-1"))
                        for name, value in response.headers.items()
                        if name.encode("latin-1") not in _RESPONSE_DROP
                    ],
                }
            )
            reader = response.body_reader
            with contextlib.suppress(Exception):
                while (chunk := await reader.read_chunk()) is not None:
                    await send(
                        {"type": "http.response.body", "body": bytes(chunk), "more_body": True}
                    )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            # The watcher dropped it already when the client left mid-answer.
            with contextlib.suppress(RuntimeError):
                await request.__aexit__(None, None, None)


async def _drop_on_disconnect(receive: Any, request: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    await request.__aexit__(None, None, None)


class SocketFloor:
    """The least a WebSocket relay can do: accept, open the upstream's socket, pipe frames.

    It opens the upstream socket at the client's path with the proxy's own
    client library and options (``websockets``' asyncio client, no proxy, the
    same size limit, keepalive and timeouts) and relays each message both ways
    as it comes, text as text and binary as binary; either side's close ends both.
    No routing, no header policy, no limits, no events.
    """

    def __init__(self, upstream: str) -> None:
        self._upstream = "ws" + upstream.rstrip("/").removeprefix("http")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "websocket":
            return
        from websockets.asyncio.client import connect

        if (await receive())["type"] != "websocket.connect":
            return
        url = self._upstream + scope["raw_path"].decode("ascii")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("ascii")
        upstream = await connect(
            url,
            additional_headers=[("authorization", "Bearer x")],
            user_agent_header=None,
            proxy=None,
            open_timeout=10,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=5,
            max_size=16 * 1024 * 1024,
        )
        await send({"type": "websocket.accept"})

        async def from_client() -> None:
            with contextlib.suppress(Exception):  # the upstream went away: the session ends
                while True:
                    message: Message = await receive()
                    if message["type"] == "websocket.disconnect":
                        await upstream.close(message.get("code", 1000))
                        return
                    text = message.get("text")
                    await upstream.send(text if text is not None else message.get("bytes") or b"")

        async def from_upstream() -> None:
            with contextlib.suppress(Exception):
                async for data in upstream:
                    if isinstance(data, str):
                        await send({"type": "websocket.send", "text": data})
                    else:
                        await send({"type": "websocket.send", "bytes": data})
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": 1000})

        pumps = [asyncio.ensure_future(from_client()), asyncio.ensure_future(from_upstream())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await upstream.close()
