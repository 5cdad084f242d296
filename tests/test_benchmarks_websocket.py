"""The WebSocket benchmark's pieces, run for a moment: they measure frames that were relayed.

The fake upstream's echo, the measuring client, the hand-written floor and the
proxy's relay run as the scenario runs them (servers in processes of their
own, the client in another), through real sockets on loopback. Nothing here
times anything: the assertions are on counts, payloads and closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from benchmarks import ws_client
from benchmarks.procs import Cores, Server, servers, upstream_stats
from benchmarks.scenarios import (
    SCENARIOS,
    SOCKET_KINDS,
    Settings,
    _socket_client,
    socket_rows,
    socket_url,
)
from benchmarks.ws_frames import BINARY, TEXT, FrameReader, encode
from websockets.asyncio.client import connect

from .servers import wait_until

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def running() -> Iterator[dict[str, Server]]:
    with servers(("floor-ws", "proxy-ws"), Cores.pick()) as by_kind:
        yield by_kind


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        quick=True,
        seconds=1,
        rounds=1,
        warmup=0,
        generator="python",
        cores=Cores.pick(),
        workdir=tmp_path,
    )


def test_the_scenario_is_listed() -> None:
    assert "websocket" in SCENARIOS


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 200_000])
def test_frames_survive_any_split(size: int) -> None:
    """The codec reads each length form, masked or not, however the bytes arrive."""
    payload = bytes(i % 251 for i in range(size))
    for masked in (False, True):
        stream = encode(payload, TEXT, masked=masked) + encode(b"tail", BINARY, masked=masked)
        reader = FrameReader()
        frames = []
        for at in range(0, len(stream), 7_001):
            frames += reader.feed(stream[at : at + 7_001])
        assert frames == [(0x80 | TEXT, payload), (0x80 | BINARY, b"tail")]


def test_the_echo_is_a_websocket_server(running: dict[str, Server]) -> None:
    """A real client library (websockets) gets text and binary echoed, pongs and a clean close."""
    url = running["upstream"].url.replace("http", "ws", 1) + "/v1/realtime?model=m"
    before = upstream_stats(running["upstream"])["frames"]

    async def session() -> tuple[Any, ...]:
        async with connect(url, compression=None) as ws:
            await ws.send("hello")
            text = await ws.recv()
            await ws.send(b"\x00\x01\x02")
            data = await ws.recv()
            await (await ws.ping(b"p"))
            big = "x" * 100_000
            await ws.send(big)
            echoed = await ws.recv()
        return text, data, echoed == big, ws.close_code

    assert asyncio.run(session()) == ("hello", b"\x00\x01\x02", True, 1000)
    assert upstream_stats(running["upstream"])["frames"] - before == 3


@pytest.mark.parametrize("kind", list(SOCKET_KINDS))
def test_frames_go_through_each_target(
    running: dict[str, Server], settings: Settings, kind: str
) -> None:
    """Direct, floor and proxy: sockets open, frames come back as sent, the upstream saw them."""
    upstream = running["upstream"]
    before = upstream_stats(upstream)
    url = socket_url(running[kind], kind)
    result = _socket_client(settings, "frames", url=url, sockets=3, duration=0.5)
    assert result["sockets"] == 3
    assert result["errors"] == 0
    assert result["mismatched"] == 0
    assert result["frames"] > 30
    assert result["fps"] > 0
    assert result["latency_ms"]["n"] == result["frames"]
    shakes = _socket_client(settings, "handshakes", url=url, count=5)
    assert shakes["handshakes"] == 5
    assert shakes["errors"] == 0
    assert shakes["setup_ms"]["p50"] > 0
    after = upstream_stats(upstream)
    # Every frame measured reached the upstream's echo: the relays carried them both ways.
    assert after["frames"] - before["frames"] >= result["frames"]
    assert after["sockets"] - before["sockets"] == 3 + 5
    # The relays close the upstream's socket when the client leaves.
    assert wait_until(lambda: upstream_stats(upstream)["open_sockets"] == 0)


def test_a_refused_handshake_is_an_error() -> None:
    """The client reports a server that does not switch protocols rather than measuring it."""

    async def refused() -> None:
        server = await asyncio.start_server(_answer_404, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await ws_client.Socket.open(f"ws://127.0.0.1:{port}/v1/realtime")

    with pytest.raises(ConnectionError, match="404"):
        asyncio.run(refused())


async def _answer_404(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


def _runs(floor_fps: float, proxy_fps: float, floor_p50: float, proxy_p50: float) -> Any:
    def frames(fps: float, p50: float) -> dict[str, Any]:
        return {"fps": fps, "latency_ms": {"p50": p50, "p99": 2 * p50}}

    def shakes(p50: float) -> dict[str, Any]:
        return {"setup_ms": {"p50": p50, "p99": 2 * p50}}

    return {
        "many": {
            "direct": [frames(9000, 0.1)],
            "floor-ws": [frames(floor_fps, 0.5)],
            "proxy-ws": [frames(proxy_fps, 0.6)],
        },
        "one": {
            "direct": [frames(20000, 0.05)],
            "floor-ws": [frames(5000, floor_p50)],
            "proxy-ws": [frames(4000, proxy_p50)],
        },
        "handshakes": {"direct": [shakes(0.1)], "floor-ws": [shakes(1)], "proxy-ws": [shakes(2)]},
    }


def test_rows_report_the_targets_met_and_missed() -> None:
    rows = {row.metric: row for row in socket_rows(_runs(1000, 850, 0.20, 0.40))}
    assert rows["throughput"].values == {"direct": 9000, "floor": 1000, "proxy": 850}
    assert rows["throughput"].result == "0.85x floor"
    assert rows["throughput"].met is True
    assert rows["round trip p50"].result.startswith("+0.20 ms over floor")
    assert rows["round trip p50"].met is True
    assert rows["round trip p99"].met is None
    assert rows["set-up p50"].result == "+1.90 ms over direct (floor +0.90 ms)"

    missed = {row.metric: row for row in socket_rows(_runs(1000, 700, 0.20, 0.50))}
    assert missed["throughput"].met is False
    assert missed["round trip p50"].met is False
