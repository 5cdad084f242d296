"""The late disconnect watch, through real servers on loopback.

A request whose body came whole gets its watcher task only once its exchange
has run for (at most) :data:`~provider_proxy.engine._watch.WATCH_AFTER`: a short exchange
makes none, and a client that leaves a long one still has its upstream closed,
within the delay when it leaves early, at once once the watch runs.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from provider_proxy import ProxyApp
from provider_proxy.engine import _watch
from provider_proxy.types import Receive, Scope, Send

from .servers import ServerThread, serve, wait_until

pytestmark = pytest.mark.anyio

#: What a loaded test machine may add to a close that is due: the bound only
#: guards against an upstream left open (it would answer after 30 s).
MARGIN = 1.0


class _Upstream:
    """A provider that is slow: ``/v1/slow`` answers after 30 s, ``/v1/stream`` streams an
    event every 20 ms for as long; both note when their client (the proxy) leaves."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.streaming = threading.Event()
        self.left_at: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        while (await receive()).get("more_body", False):
            pass
        self.asked.set()
        with anyio.move_on_after(30):
            async with anyio.create_task_group() as group:
                if scope["path"].endswith("/stream"):
                    group.start_soon(self._stream, send)
                if (await receive())["type"] == "http.disconnect":
                    self.left_at = time.monotonic()
                group.cancel_scope.cancel()

    async def _stream(self, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self.streaming.set()
        while True:
            await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
            await anyio.sleep(0.02)


class TestASlowUpstream:
    @pytest.fixture
    def slow(self) -> _Upstream:
        return _Upstream()

    @pytest.fixture
    def upstream(self, slow: _Upstream) -> Iterator[ServerThread]:
        with serve(slow, lifespan="off") as server:
            yield server

    def _leave(self, server: ServerThread, slow: _Upstream, path: str, after: float) -> float:
        """Send a request, and ``after`` seconds after the upstream has it drop the
        connection; when it dropped."""
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as sock:
            body = b'{"model": "m", "messages": []}'
            sock.sendall(
                b"POST " + path.encode() + b" HTTP/1.1\r\nhost: proxy\r\n"
                b"content-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            assert slow.asked.wait(10)
            time.sleep(after)
            sock.shutdown(socket.SHUT_RDWR)
            return time.monotonic()

    # (Not on the reqwest transport: a request it gives up while waiting for the
    # answer's head leaves its connection open, so the upstream never sees it go.)
    @pytest.mark.parametrize("transport_kind", ["aiohttp", "httpx"])
    async def test_a_client_leaving_an_answer_not_yet_due_closes_the_upstream_within_the_delay(
        self, make_proxy: Callable[..., ProxyApp], slow: _Upstream
    ) -> None:
        with serve(make_proxy(validate_credentials="off")) as server:
            # It leaves as soon as the upstream has the request: before the watch starts.
            left = self._leave(server, slow, "/openai/slow", after=0)
            assert wait_until(lambda: slow.left_at is not None)
        assert slow.left_at is not None
        assert slow.left_at - left < _watch.WATCH_AFTER + MARGIN

    async def test_a_client_leaving_mid_stream_closes_the_upstream_at_once(
        self,
        make_proxy: Callable[..., ProxyApp],
        slow: _Upstream,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # A long delay, so that closing "at once" is told apart from closing at its end.
        monkeypatch.setattr(_watch, "WATCH_AFTER", 1.0)
        with serve(make_proxy(validate_credentials="off")) as server:
            left = self._leave(server, slow, "/openai/stream", after=1.5)  # outlives the delay
            assert slow.streaming.is_set()
            assert wait_until(lambda: slow.left_at is not None)
        assert slow.left_at is not None
        assert slow.left_at - left < 0.5  # not another WATCH_AFTER: the watch was running


def _watchers_started(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Note the watcher tasks made on ``loop`` from now on (by their coroutine)."""
    started: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        name = getattr(coro, "__qualname__", "")
        if name == "DisconnectWatch._watch":
            started.append(name)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    return started


async def _count_watchers() -> list[str]:
    return _watchers_started(asyncio.get_running_loop())


async def test_a_short_exchange_starts_no_watcher_task(
    make_proxy: Callable[..., ProxyApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Half a second is "short" on any machine; a slower answer gets the watch.
    monkeypatch.setattr(_watch, "WATCH_AFTER", 0.5)
    with serve(make_proxy()) as server:
        started: list[str] = server.call(_count_watchers())
        chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            for _ in range(10):
                response = await client.post("/openai/chat/completions", json=chat)
                assert response.status_code == 200
            assert started == []
            slow = await client.post(
                "/openai/chat/completions", json=chat, headers={"x-fake-delay": "0.8"}
            )
            assert slow.status_code == 200
            assert started == ["DisconnectWatch._watch"]  # the count sees a watcher made
