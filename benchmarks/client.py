"""``python -m benchmarks.client MODE JSON``: the measuring clients, in a process of their own.

A raw asyncio HTTP/1.1 client on uvloop and httptools, with every request
prebuilt as bytes, so the client is not what limits a measurement. Modes:

``load``
    closed loop over N keep-alive connections: throughput and latency (the
    load generator when ``wrk`` is not installed).
``stream``
    streamed chat completions: time to first byte, and each chunk's delay from
    the time the upstream stamped in it to the time it arrived here.
``hold``
    open N streams, print ``OPEN``, keep them open until a line on stdin,
    then close them all.
``aborts``
    many requests over concurrent connections, every Kth a stream the client
    drops after its first chunk.

Each mode prints ``RESULT <json>`` when done.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools

from .tcp import no_delay

#: The upstream's send stamp: a ``"t"`` field (OpenAI chunks), or ``[t<ns>]`` in the
#: text of an Anthropic delta, which translation into another format carries along.
_STAMP = re.compile(rb'"t":(\d+)|\[t(\d+)\]')


def percentiles(
    values: Sequence[float], points: Sequence[float] = (50, 90, 99)
) -> dict[str, float]:
    """Nearest-rank percentiles of ``values`` (``p50``...), with ``max``, ``mean`` and ``n``."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    result: dict[str, float] = {
        f"p{point:g}": ordered[min(len(ordered) - 1, max(0, round(point / 100 * len(ordered)) - 1))]
        for point in points
    }
    result.update(max=ordered[-1], mean=sum(ordered) / len(ordered), n=len(ordered))
    return result


@dataclass(frozen=True)
class Target:
    """Where requests go, and the bytes of one request."""

    host: str
    port: int
    request: bytes

    @classmethod
    def build(cls, url: str, body: bytes, headers: dict[str, str] | None = None) -> Target:
        parts = urlsplit(url)
        lines = [
            f"POST {parts.path} HTTP/1.1",
            f"host: {parts.netloc}",
            "content-type: application/json",
            "authorization: Bearer client-token",
            f"content-length: {len(body)}",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, head + body)


class Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time; timestamps every arrival."""

    def __init__(self, on_event: Callable[[int, int], None] | None = None) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._done: asyncio.Future[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self.on_event = on_event
        self._events = b""
        self.now = 0
        self.status = 0
        self.first_byte_ns = 0
        #: Stamped events received in the current response.
        self.events = 0
        self.keep_alive = True
        self.lost = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(
        cls, target: Target, on_event: Callable[[int, int], None] | None = None
    ) -> Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: cls(on_event), target.host, target.port)
        return protocol

    @property
    def open_(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, request: bytes) -> asyncio.Future[None]:
        """Write ``request``; the future is done when the whole response has arrived."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._first = loop.create_future()
        self.status = self.first_byte_ns = self.events = 0
        self._events = b""
        assert self._transport is not None
        self._transport.write(request)
        return self._done

    async def first_chunk(self) -> None:
        """Wait for the first body bytes of the current response."""
        assert self._first is not None
        await self._first

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = no_delay(transport)

    def data_received(self, data: bytes) -> None:
        self.now = time.perf_counter_ns()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(exc or ConnectionResetError("the server closed the connection"))
        if not self.lost.done():
            self.lost.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        for future in (self._first, self._done):
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: a dropped stream is expected in some modes

    # -- httptools callbacks ---------------------------------------------------------

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if not self.first_byte_ns:
            self.first_byte_ns = self.now
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
        if self.on_event is not None:
            events = self._events + body
            *complete, self._events = events.split(b"\n\n")
            for event in complete:
                match = _STAMP.search(event)
                if match:
                    self.events += 1
                    self.on_event(self.now, int(match[1] or match[2]))

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)


# -- modes -------------------------------------------------------------------------------


async def load(
    url: str, body: bytes, connections: int, duration: float, headers: dict[str, str]
) -> dict[str, Any]:
    """Closed loop over ``connections`` for ``duration`` seconds: throughput and latency."""
    target = Target.build(url, body, headers)
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors
        conn = await Connection.open(target)
        while time.perf_counter() < stop_at:
            start = time.perf_counter_ns()
            try:
                await conn.send(target.request)
            except ConnectionError:
                errors += 1
                conn = await Connection.open(target)
                continue
            latencies.append((time.perf_counter_ns() - start) / 1e6)
            if conn.status >= 400:
                errors += 1
            if not conn.keep_alive:
                conn.close()
                conn = await Connection.open(target)
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "errors": errors,
        "duration_s": elapsed,
        "rps": len(latencies) / elapsed,
        "latency_ms": percentiles(latencies),
    }


async def stream(
    url: str, body: bytes, concurrency: int, duration: float, chunks: int, gap_ms: float
) -> dict[str, Any]:
    """Streams on ``concurrency`` connections, on a fixed schedule: TTFB and per-chunk delay.

    Worker ``k`` starts a stream every ``chunks * gap + 100 ms``, offset by
    ``k * gap / concurrency``, so no two requests or chunks reach the server at
    the same moment: the numbers are the relay's own delay, not queueing
    behind each other (the 64-connection scenario measures load).
    """
    target = Target.build(url, body, {"x-bench-stream": f"{chunks},{gap_ms:g}"})
    warm_up = Target.build(url, body, {"x-bench-stream": "1,0"})
    ttfb: list[float] = []
    delays: list[float] = []
    short = 0
    period = (chunks * gap_ms + 100) / 1000
    started = time.perf_counter() + 0.2
    stop_at = started + duration

    def on_event(received: int, sent: int) -> None:
        delays.append((received - sent) / 1e6)

    async def worker(index: int) -> None:
        nonlocal short
        conn = await Connection.open(target)
        await conn.send(warm_up.request)  # so the server's upstream pool is warm
        conn.on_event = on_event
        next_at = started + index * gap_ms / 1000 / concurrency
        while next_at < stop_at:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += period
            start = time.perf_counter_ns()
            await conn.send(target.request)
            ttfb.append((conn.first_byte_ns - start) / 1e6)
            short += conn.events != chunks
        conn.close()

    await asyncio.gather(*(worker(index) for index in range(concurrency)))
    return {
        "streams": len(ttfb),
        "incomplete": short,
        "ttfb_ms": percentiles(ttfb),
        "chunk_delay_ms": percentiles(delays),
    }


async def hold(url: str, body: bytes, count: int, gap_ms: float) -> dict[str, Any]:
    """Open ``count`` long streams, report, wait for stdin, then close them all."""
    target = Target.build(url, body, {"x-bench-stream": f"1000000,{gap_ms:g}"})
    conns: list[Connection] = []
    failed = 0
    started = time.perf_counter()
    for offset in range(0, count, 100):  # in batches, so the listen backlog never overflows
        batch = await asyncio.gather(
            *(Connection.open(target) for _ in range(min(100, count - offset))),
            return_exceptions=True,
        )
        for conn in batch:
            if isinstance(conn, BaseException):
                failed += 1
                continue
            conn.send(target.request)
            conns.append(conn)
        waits = await asyncio.gather(
            *(c.first_chunk() for c in conns[-len(batch) :]), return_exceptions=True
        )
        failed += sum(isinstance(w, BaseException) for w in waits)
    print(f"OPEN {len(conns) - failed} {failed} {time.perf_counter() - started:.3f}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for conn in conns:
        conn.close()
    await asyncio.gather(*(c.lost for c in conns))
    return {"opened": len(conns) - failed, "failed": failed}


async def aborts(url: str, body: bytes, total: int, concurrency: int, every: int) -> dict[str, Any]:
    """``total`` requests; every ``every``-th is a stream dropped after its first chunk."""
    plain = Target.build(url, body)
    streamed = Target.build(url, body, {"x-bench-stream": "50,20"})
    counts = {"ok": 0, "aborted": 0, "errors": 0}
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        conn: Connection | None = None
        while next_index < total:
            index = next_index
            next_index += 1
            try:
                if index % every == every - 1:
                    dropped = await Connection.open(streamed)
                    dropped.send(streamed.request)
                    await dropped.first_chunk()
                    dropped.close()  # mid-stream: the proxy must let the upstream go
                    counts["aborted"] += 1
                    continue
                if conn is None or not conn.open_:
                    conn = await Connection.open(plain)
                await conn.send(plain.request)
                counts["ok" if conn.status < 400 else "errors"] += 1
            except (ConnectionError, OSError):
                counts["errors"] += 1
                conn = None
        if conn is not None:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {**counts, "duration_s": time.perf_counter() - started}


MODES: dict[str, Callable[..., Any]] = {
    "load": load,
    "stream": stream,
    "hold": hold,
    "aborts": aborts,
}


def main() -> None:
    import uvloop

    from .procs import raise_fd_limit

    raise_fd_limit()
    mode, arguments = sys.argv[1], json.loads(sys.argv[2])
    arguments["body"] = Path(arguments.pop("body_file")).read_bytes()
    result = uvloop.run(MODES[mode](**arguments))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
