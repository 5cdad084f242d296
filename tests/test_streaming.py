"""Behaviour in time, through real servers on loopback: streaming, disconnects, pools.

Every test runs once per upstream transport (httpx's own and the aiohttp one).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
import pytest

from provider_proxy import ProxyApp
from provider_proxy.testing import FakeUpstream

from .conftest import TRANSPORTS, OwnUpstream
from .servers import ServerThread, serve, wait_until

pytestmark = pytest.mark.anyio


async def test_endless_stream_is_relayed_chunk_by_chunk(
    proxy_server: ServerThread, fake: FakeUpstream
) -> None:
    # The upstream stream never ends: events can only arrive if each is relayed as it comes.
    async with httpx.AsyncClient(base_url=proxy_server.url, timeout=10) as client:
        async with client.stream(
            "GET", "/openai/stream", headers={"x-fake-gap": "0.05"}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            events = []
            async for chunk in response.aiter_raw():
                events.append(chunk)
                if len(events) == 3:
                    break
    assert events[0] == b"data: 0\n\n"
    assert b"".join(events).startswith(b"data: 0\n\ndata: 1\n\n")


async def test_sse_event_arrives_before_the_next_is_sent(proxy_server: ServerThread) -> None:
    gap = 0.4
    async with httpx.AsyncClient(base_url=proxy_server.url, timeout=10) as client:
        async with client.stream(
            "POST",
            "/openai/chat/completions",
            json={"model": "m", "stream": True},
            headers={"x-fake-gap": str(gap), "x-fake-chunks": "3"},
        ) as response:
            arrivals = []
            async for chunk in response.aiter_raw():
                arrivals.append((time.monotonic(), chunk))
    payload = b"".join(chunk for _, chunk in arrivals)
    assert payload.count(b"data: ") == 5  # 3 content chunks, the finish chunk, [DONE]
    assert payload.endswith(b"data: [DONE]\n\n")
    # The fake waits `gap` between events: if the proxy held them back, they would
    # arrive together at the end instead of spread over the whole answer.
    assert arrivals[-1][0] - arrivals[0][0] >= 3 * gap * 0.9


async def test_request_body_streams_to_upstream(
    proxy_server: ServerThread, fake: FakeUpstream
) -> None:
    first_arrived = threading.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 10_000
        # The second piece is only produced once the upstream has the first:
        # a proxy that collected the body first would wait here forever.
        with anyio.fail_after(10):
            while not (len(fake.requests) > before and fake.last.chunk_times):
                await anyio.sleep(0.01)
        first_arrived.set()
        yield b"b" * 10_000

    before = len(fake.requests)
    async with httpx.AsyncClient(base_url=proxy_server.url, timeout=20) as client:
        response = await client.post("/openai/echo", content=body())
    assert response.status_code == 200
    assert first_arrived.is_set()
    assert len(fake.requests) == before + 1
    assert fake.last.body == b"a" * 10_000 + b"b" * 10_000
    assert fake.last.header("transfer-encoding") == "chunked"


async def test_upstream_failure_mid_stream_aborts_the_client(
    proxy_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    received = b""
    async with httpx.AsyncClient(base_url=proxy_server.url, timeout=10) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            async with client.stream(
                "POST",
                "/openai/chat/completions",
                json={"model": "m", "stream": True},
                headers={"x-fake-fail-after": "2"},
            ) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_raw():
                    received += chunk
    # What came before the failure was relayed; the end never came.
    assert received.count(b"data: ") == 3
    assert b"[DONE]" not in received
    assert any("broke mid-response" in record.getMessage() for record in caplog.records)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _pool_in_use(proxy: ProxyApp) -> int:
    transport = proxy.transport
    if isinstance(transport, httpx.AsyncHTTPTransport):
        return sum(1 for c in transport._pool.connections if not c.is_idle())
    return int(transport.in_use)  # type: ignore[attr-defined]


async def _async(function: Callable[[ProxyApp], int], proxy: ProxyApp) -> int:
    return function(proxy)


class TestOnItsOwnUpstream(OwnUpstream):
    """Tests that count the fake's streams, each on a fake of its own."""

    async def test_client_disconnect_closes_upstream_stream(
        self, proxy_server: ServerThread, fake: FakeUpstream
    ) -> None:
        closed_before = fake.closed_streams
        async with httpx.AsyncClient(base_url=proxy_server.url, timeout=10) as client:
            async with client.stream(
                "GET", "/openai/stream", headers={"x-fake-gap": "0.05"}
            ) as response:
                async for _ in response.aiter_raw():
                    break
                assert fake.open_streams == 1
        # The upstream sees its stream closed well before the 10 s guard.
        assert wait_until(lambda: fake.closed_streams == closed_before + 1)
        assert fake.open_streams == 0

    async def test_client_disconnect_while_waiting_for_headers_cancels_upstream(
        self,
        proxy_server: ServerThread,
        fake: FakeUpstream,
        transport_kind: str,
        request: pytest.FixtureRequest,
    ) -> None:
        if transport_kind == "reqwest":  # see docs/performance.rst, "Transports and servers"
            reason = "pyreqwest goes on with a request given up before its answer's head"
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
        async with httpx.AsyncClient(base_url=proxy_server.url, timeout=0.3) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(
                    "/openai/stream", headers={"x-fake-delay": "3", "x-fake-gap": "0.05"}
                )
        # The proxy gave up on the upstream request when the client left (within the
        # disconnect watch's delay), long before the fake's 3 s were up.
        assert wait_until(lambda: fake.left_while_waiting == 1, timeout=2)
        assert fake.open_streams == 0
        assert fake.closed_streams == 0  # no stream was ever started

    async def test_thousand_aborted_streams_leak_nothing(
        self, make_proxy: Callable[..., ProxyApp], fake: FakeUpstream
    ) -> None:
        proxy = make_proxy()
        with serve(proxy) as server:
            limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
            async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=limits) as client:

                async def abort_one() -> None:
                    async with client.stream(
                        "GET", "/openai/stream", headers={"x-fake-gap": "0.01"}
                    ) as response:
                        async for _ in response.aiter_raw():
                            break

                await abort_one()
                assert wait_until(lambda: fake.open_streams == 0)
                fds_before = _open_fds()
                for _ in range(50):
                    async with anyio.create_task_group() as group:
                        for _ in range(20):
                            group.start_soon(abort_one)
            assert wait_until(lambda: fake.open_streams == 0)
            assert wait_until(lambda: server.call(_async(_pool_in_use, proxy)) == 0)
            assert wait_until(lambda: _open_fds() <= fds_before + 5)

    async def test_pool_exhausted_503(
        self, make_proxy: Callable[..., ProxyApp], transport_kind: str, fake: FakeUpstream
    ) -> None:
        transport = TRANSPORTS[transport_kind]
        one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        proxy = make_proxy(
            transport=transport(limits=one),  # type: ignore[call-arg]
            timeout=httpx.Timeout(10.0, pool=0.2),
        )
        with serve(proxy) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                async with client.stream(
                    "GET", "/openai/stream", headers={"x-fake-gap": "0.05"}
                ) as held:
                    # Keep the iterator referenced: a dropped one is finalised and
                    # closes the connection, which would free the pool slot.
                    chunks = held.aiter_raw()
                    assert await chunks.__anext__()
                    response = await client.post("/openai/chat/completions", json={})
                    assert response.status_code == 503
                    assert response.json()["error"]["type"] == "pool_exhausted"
                    assert response.headers["x-should-retry"] == "true"
                # Once the held stream is gone, the slot is free again.
                assert wait_until(lambda: fake.open_streams == 0)
                response = await client.post("/openai/chat/completions", json={})
                assert response.status_code == 200
