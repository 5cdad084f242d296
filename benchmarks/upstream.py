"""The fake upstream: an asyncio protocol that answers from prebuilt bytes.

It has to cost far less than anything measured through it, so it parses with
httptools, answers every chat completion with one prebuilt response and runs
on uvloop. A request with ``x-bench-stream: CHUNKS,GAP_MS`` gets a server-sent
event stream instead; each event carries the time it was written
(``time.perf_counter_ns``, which is ``CLOCK_MONOTONIC`` and so comparable
across processes), from which the client computes each chunk's delay.
``GET /_stats`` reports the counters the scenarios check.

``POST /v1/messages`` answers as Anthropic's Messages API does: a whole
``message``, or, when the body asks for ``"stream": true``, the documented
event sequence (``message_start``, ``content_block_start``, ``ping``, one
``content_block_delta`` per chunk, ``content_block_stop``, ``message_delta``
with the output usage, ``message_stop``). Its chunk count and gap come from
``x-bench-stream`` when the request carries it, else :data:`DEFAULT_STREAM`
(a client such as LiteLLM forwards no such header). Each delta's text carries
the send stamp as ``[t<ns>]``, so it survives translation into another format.

A ``GET`` with ``Upgrade: websocket`` (any path: ``/v1/realtime?model=...`` is
what the proxy's OpenAI adapter opens) becomes a socket that echoes each text
or binary frame at once, unchanged: answers a ping with a pong and a close
with a close. The frames are parsed by :mod:`benchmarks.ws_frames`, not by a
library, so the echo costs little next to a relay.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import asdict, dataclass

import httptools

from provider_proxy._json import dumps

from .bodies import TRANSFORM_MARKER
from .tcp import no_delay
from .ws_frames import CLOSE, PING, PONG, FrameReader, accept_key, encode

STREAM_HEADER = b"x-bench-stream"

#: Chunks and gap (ms) of an Anthropic stream whose request names none.
DEFAULT_STREAM = b"50,20"

_MESSAGES_PATH = b"/v1/messages"

_COMPLETION = dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the bench upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16},
    }
)
_MODELS = dumps({"object": "list", "data": [{"id": "gpt-bench", "object": "model"}]})
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
_EVENT = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"gpt-bench","t":%d,"choices":[{"index":0,"delta":{"content":" token"},'
    b'"finish_reason":null}]}\n\n'
)

_MESSAGE = dumps(
    {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "Hello from the bench upstream."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 6},
    }
)


def _sse(event: str, data: object) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event.encode("ascii"), dumps(data))


_MESSAGES_OPENING = (
    _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_bench",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
        },
    )
    + _sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    + _sse("ping", {"type": "ping"})
)
_MESSAGES_DELTA = (
    b"event: content_block_delta\ndata: "
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" token[t%d]"}}'
    b"\n\n"
)


def _messages_closing(chunks: int) -> bytes:
    return (
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        + _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            },
        )
        + _sse("message_stop", {"type": "message_stop"})
    )


def _response(body: bytes, *, keep_alive: bool = True) -> bytes:
    connection = b"" if keep_alive else b"connection: close\r\n"
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
        % (len(body), connection, body)
    )


_CHAT_RESPONSE = _response(_COMPLETION)
_MESSAGE_RESPONSE = _response(_MESSAGE)
_MODELS_RESPONSE = _response(_MODELS)


@dataclass
class Stats:
    """What the upstream has seen; read by the scenarios through ``GET /_stats``."""

    requests: int = 0
    transformed: int = 0
    streams: int = 0
    open_streams: int = 0
    max_open_streams: int = 0
    streams_cut: int = 0
    #: WebSocket sessions accepted, open now, and data frames echoed.
    sockets: int = 0
    open_sockets: int = 0
    frames: int = 0


class UpstreamProtocol(asyncio.Protocol):
    """One client connection; requests are answered in order, one at a time."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._stream: bytes | None = None
        self._tail = b""
        #: The whole body, kept for Messages requests only (does it ask for a stream?).
        self._body: bytearray | None = None
        self._task: asyncio.Task[None] | None = None
        #: The handshake's ``Sec-WebSocket-Key``, then the socket's frames once upgraded.
        self._socket_key: bytes | None = None
        self._frames: FrameReader | None = None

    # -- asyncio -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = no_delay(transport)

    def data_received(self, data: bytes) -> None:
        if self._frames is not None:
            self._echo(data)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self._upgraded():
                self._echo(data[upgrade.args[0] :])
            else:
                self._close()  # an upgrade to something else than a socket
        except httptools.HttpParserError:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._frames is not None:
            self._stats.open_sockets -= 1
            self._frames = None
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._stream = None
        self._tail = b""
        self._body = None
        self._socket_key = None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_headers_complete(self) -> None:
        if self._url.startswith(_MESSAGES_PATH) and not self._url.startswith(b"/v1/messages/"):
            self._body = bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == STREAM_HEADER:
            self._stream = value
        elif lowered == b"sec-websocket-key":
            self._socket_key = value

    def on_body(self, body: bytes) -> None:
        # The transform adds its key last, so the marker is in the body's tail.
        self._tail = (self._tail + body[-64:])[-64:]
        if self._body is not None:
            self._body += body

    def on_message_complete(self) -> None:
        if self._socket_key is not None:
            self._upgrade(self._socket_key)
            return
        stats = self._stats
        stats.requests += 1
        if TRANSFORM_MARKER in self._tail:
            stats.transformed += 1
        keep_alive = self._parser.should_keep_alive()
        transport = self._transport
        if transport is None:
            return
        if self._body is not None:
            self._answer_messages(transport, keep_alive)
            return
        if self._stream is not None:
            chunks, _, gap = self._stream.partition(b",")
            self._task = asyncio.get_running_loop().create_task(
                self._send_stream(int(chunks), float(gap or 0) / 1000, keep_alive)
            )
            return
        if self._url.startswith(b"/_stats"):
            transport.write(_response(dumps(asdict(stats)), keep_alive=False))
            keep_alive = False
        elif self._url.endswith(b"/models"):
            transport.write(_MODELS_RESPONSE)
        else:
            transport.write(_CHAT_RESPONSE)
        if not keep_alive:
            transport.close()

    # -- WebSocket -----------------------------------------------------------------------

    def _upgrade(self, key: bytes) -> None:
        """Accept the socket: 101, then every byte that follows is frames."""
        if self._transport is None:
            return
        self._transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
            b"connection: Upgrade\r\nsec-websocket-accept: %s\r\n\r\n" % accept_key(key)
        )
        self._frames = FrameReader()
        self._stats.sockets += 1
        self._stats.open_sockets += 1

    def _upgraded(self) -> bool:
        return self._frames is not None

    def _echo(self, data: bytes) -> None:
        """Send each data frame back as it came (unmasked); pong pings, close on a close."""
        transport, frames = self._transport, self._frames
        if transport is None or frames is None:
            return
        for head, payload in frames.feed(data):
            opcode = head & 0x0F
            if opcode == CLOSE:
                transport.write(encode(payload[:2], CLOSE))
                transport.close()
                return
            if opcode == PING:
                transport.write(encode(payload, PONG))
            elif opcode != PONG:
                self._stats.frames += 1
                transport.write(encode(payload, first=head))

    def _answer_messages(self, transport: asyncio.Transport, keep_alive: bool) -> None:
        """Anthropic's Messages API: a stream when the body asks for one, else a message."""
        body = bytes(self._body or b"")
        if b'"stream":true' in body or b'"stream": true' in body:
            chunks, _, gap = (self._stream or DEFAULT_STREAM).partition(b",")
            self._task = asyncio.get_running_loop().create_task(
                self._send_stream(int(chunks), float(gap or 0) / 1000, keep_alive, anthropic=True)
            )
            return
        transport.write(_MESSAGE_RESPONSE)
        if not keep_alive:
            transport.close()

    async def _send_stream(
        self, chunks: int, gap: float, keep_alive: bool, *, anthropic: bool = False
    ) -> None:
        stats = self._stats
        stats.streams += 1
        stats.open_streams += 1
        stats.max_open_streams = max(stats.max_open_streams, stats.open_streams)
        finished = False
        try:
            transport = self._transport
            if transport is None:
                return
            transport.write(_STREAM_HEAD)
            for index in range(chunks):
                if index and gap:
                    await asyncio.sleep(gap)
                if self._transport is None:
                    return
                if not anthropic:
                    event = _EVENT % time.perf_counter_ns()
                else:
                    event = _MESSAGES_DELTA % time.perf_counter_ns()
                    if index == 0:
                        event = _MESSAGES_OPENING + event
                    if index == chunks - 1:
                        event += _messages_closing(chunks)
                transport.write(b"%x\r\n%s\r\n" % (len(event), event))
            transport.write(b"0\r\n\r\n")
            finished = True
            if not keep_alive:
                transport.close()
        finally:
            stats.open_streams -= 1
            if not finished:
                stats.streams_cut += 1


async def serve(sock: socket.socket) -> None:
    """Serve on the listening socket ``sock`` until cancelled; prints ``READY port``."""
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamProtocol(stats), sock=sock, backlog=4096)
    print(f"READY {sock.getsockname()[1]} upstream", flush=True)
    async with server:
        await server.serve_forever()
