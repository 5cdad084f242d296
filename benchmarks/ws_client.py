"""``python -m benchmarks.ws_client MODE JSON``: the WebSocket scenario's measuring client.

A raw asyncio protocol on uvloop that speaks just enough WebSocket
(:mod:`benchmarks.ws_frames`) with every frame prebuilt, so the client is not
what limits a measurement. Every frame sent is a 1 KB Realtime-like client
event (``input_audio_buffer.append`` with base64 audio), which carries none
of the words that make the proxy look for a turn in it; the fake upstream
echoes it, and the client checks the echo is the frame it sent. Modes:

``frames``
    N sockets, each sending a frame as soon as the echo of the last one is
    back, for a duration: frames per second and each frame's round trip.
``handshakes``
    open and close sockets one after another: the time from the TCP connect
    to the ``101`` answer.

Each mode prints ``RESULT <json>`` when done.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .client import percentiles
from .tcp import no_delay
from .ws_frames import CLOSE, PING, PONG, TEXT, FrameReader, close_frame, encode

#: The size of a frame's payload, in bytes (text, JSON).
FRAME_BYTES = 1024


def payload(size: int = FRAME_BYTES) -> bytes:
    """A Realtime ``input_audio_buffer.append`` event of ``size`` bytes."""
    head, tail = b'{"type":"input_audio_buffer.append","audio":"', b'"}'
    audio = base64.b64encode(bytes(range(256)) * (size // 256 + 1))
    return head + audio[: size - len(head) - len(tail)] + tail


def handshake(url: str) -> tuple[str, int, bytes]:
    """The host, port and bytes of the upgrade request for ``ws://host:port/path?query``."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [
        f"GET {target} HTTP/1.1",
        f"host: {parts.netloc}",
        "upgrade: websocket",
        "connection: Upgrade",
        f"sec-websocket-key: {key}",
        "sec-websocket-version: 13",
        "authorization: Bearer client-token",
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return parts.hostname or "127.0.0.1", parts.port or 80, request


class Socket(asyncio.Protocol):
    """One client socket: the handshake, then one frame in flight at a time."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._frames: FrameReader | None = None
        self.opened: asyncio.Future[int] = loop.create_future()
        self._echo: asyncio.Future[bytes] | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self._closing = False

    @classmethod
    async def open(cls, url: str) -> Socket:
        """Connect and shake hands; raises ``ConnectionError`` unless the server said 101."""
        host, port, request = handshake(url)
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        assert protocol._transport is not None
        protocol._transport.write(request)
        status = await protocol.opened
        if status != 101:
            protocol.abort()
            raise ConnectionError(f"the server answered the handshake with {status}")
        return protocol

    def send(self, frame: bytes) -> asyncio.Future[bytes]:
        """Write ``frame``; the future has the payload of the next data frame back."""
        self._echo = asyncio.get_running_loop().create_future()
        if self._transport is None:
            self._echo.set_exception(ConnectionResetError("the socket is closed"))
        else:
            self._transport.write(frame)
        return self._echo

    async def close(self) -> None:
        """Close the session as RFC 6455 asks: a close frame, the server's back, then TCP."""
        if self._transport is not None:
            self._closing = True
            self._transport.write(close_frame(masked=True))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), 5)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = no_delay(transport)

    def data_received(self, data: bytes) -> None:
        if self._frames is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            data, self._frames = self._head[end + 4 :], FrameReader()
            status = int(self._head.split(b" ", 2)[1])
            self.opened.set_result(status)
            if status != 101:
                return
        for head, body in self._frames.feed(data):
            opcode = head & 0x0F
            if opcode == PING:
                self._write(encode(body, PONG, masked=True))
            elif opcode == CLOSE:
                self._fail(ConnectionResetError("the server closed the socket"))
                if self._transport is not None:
                    if not self._closing:  # the server's close: answer it
                        self._transport.write(encode(body[:2], CLOSE, masked=True))
                    self._transport.close()
            elif opcode != PONG and self._echo is not None and not self._echo.done():
                self._echo.set_result(body)

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(exc or ConnectionResetError("the server closed the connection"))
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        for future in (self.opened, self._echo):
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: the caller may be gone


# -- modes -------------------------------------------------------------------------------


async def frames(
    url: str, sockets: int, duration: float, size: int = FRAME_BYTES
) -> dict[str, Any]:
    """``sockets`` sockets sending back to back for ``duration`` s: frames/s and round trips."""
    body = payload(size)
    frame = encode(body, TEXT, masked=True)
    latencies: list[float] = []
    errors = mismatched = 0
    opened: list[Socket] = []
    for offset in range(0, sockets, 100):  # in batches, so the listen backlog never overflows
        batch = await asyncio.gather(
            *(Socket.open(url) for _ in range(min(100, sockets - offset))), return_exceptions=True
        )
        opened += [s for s in batch if isinstance(s, Socket)]
        errors += sum(isinstance(s, BaseException) for s in batch)
    stop_at = time.perf_counter() + duration

    async def worker(sock: Socket) -> None:
        nonlocal errors, mismatched
        clock = time.perf_counter_ns
        while time.perf_counter() < stop_at:
            start = clock()
            try:
                echoed = await sock.send(frame)
            except ConnectionError:
                errors += 1
                return
            latencies.append((clock() - start) / 1e6)
            mismatched += echoed != body
        await sock.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(sock) for sock in opened))
    elapsed = time.perf_counter() - started
    return {
        "sockets": len(opened),
        "frames": len(latencies),
        "errors": errors,
        "mismatched": mismatched,
        "duration_s": elapsed,
        "fps": len(latencies) / elapsed,
        "latency_ms": percentiles(latencies),
    }


async def handshakes(url: str, count: int) -> dict[str, Any]:
    """Open (timed) and close (untimed) ``count`` sockets, one at a time."""
    times: list[float] = []
    errors = 0
    for _ in range(count):
        start = time.perf_counter_ns()
        try:
            sock = await Socket.open(url)
        except (ConnectionError, OSError):
            errors += 1
            continue
        times.append((time.perf_counter_ns() - start) / 1e6)
        await sock.close()
    return {"handshakes": len(times), "errors": errors, "setup_ms": percentiles(times)}


MODES: dict[str, Callable[..., Any]] = {"frames": frames, "handshakes": handshakes}


def main() -> None:
    import uvloop

    from .procs import raise_fd_limit

    raise_fd_limit()
    mode, arguments = sys.argv[1], json.loads(sys.argv[2])
    result = uvloop.run(MODES[mode](**arguments))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
