"""The disconnect watch: a client leaving cancels only the exchange it watches."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, ClassVar

import httpx
import pytest

from provider_proxy import BodyTooLarge, ClientDisconnected, ProxyApp, ProxyEvent, make_asgi_app
from provider_proxy.adapters import OpenAIAdapter
from provider_proxy.engine import _body, _exchange, _watch
from provider_proxy.engine._body import RequestBody
from provider_proxy.engine._watch import DisconnectWatch as _DisconnectWatch
from provider_proxy.types import Receive

from .conftest import http_scope

pytestmark = pytest.mark.anyio


class _Recorded(_DisconnectWatch):
    """The engine's own watch, kept for the test to look at afterwards."""

    made: ClassVar[list[_DisconnectWatch]] = []

    def __init__(self, body: RequestBody, receive: Receive) -> None:
        super().__init__(body, receive)
        self.made.append(self)


class _Upstream(httpx.AsyncBaseTransport):
    """An upstream that answers at once, or never (the exchange waits for its headers)."""

    def __init__(self, *, answers: bool) -> None:
        self.answers = answers
        self.asked = asyncio.Event()
        self.cancelled = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.asked.set()
        if self.answers:
            return httpx.Response(200, json={"model": "m", "choices": []})
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")


class _Client:
    """One request to the proxy, in process: the body whole, then ``http.disconnect``
    once :attr:`gone` is set."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self._body_sent = False

    async def receive(self) -> dict[str, Any]:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": b'{"model": "m"}', "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


SCOPE = http_scope(
    "/openai/chat/completions", [(b"host", b"proxy"), (b"content-type", b"application/json")]
)


@pytest.fixture
def watches(monkeypatch: pytest.MonkeyPatch) -> list[_DisconnectWatch]:
    made: list[_DisconnectWatch] = []
    monkeypatch.setattr(_Recorded, "made", made)
    monkeypatch.setattr(_exchange, "DisconnectWatch", _Recorded)
    return made


def _proxy(upstream: _Upstream, events: list[ProxyEvent]) -> ProxyApp:
    adapter = OpenAIAdapter(base_url="http://upstream.test/v1", api_key="sk-watch-test-key")
    return make_asgi_app(
        [adapter], transport=upstream, validate_credentials="off", sinks=[events.append]
    )


async def _waiting_for_upstream(
    events: list[ProxyEvent],
) -> tuple[ProxyApp, _Upstream, _Client, asyncio.Task[None]]:
    """A request in its own task, its exchange waiting for an upstream that never answers."""
    upstream, client = _Upstream(answers=False), _Client()
    proxy = _proxy(upstream, events)
    task = asyncio.ensure_future(proxy(SCOPE, client.receive, client.send))
    await asyncio.wait_for(upstream.asked.wait(), 5)
    return proxy, upstream, client, task


async def _started(watch: _DisconnectWatch) -> None:
    """Wait until the watch's task runs (it starts :data:`WATCH_AFTER` into the exchange)."""
    for _ in range(500):
        if watch.watching:
            break
        await asyncio.sleep(0.01)
    assert watch.watching
    await asyncio.sleep(0)  # its first step: it now waits in receive()


async def test_a_disconnect_ends_the_exchange_and_leaves_no_cancellation_behind(
    watches: list[_DisconnectWatch],
) -> None:
    events: list[ProxyEvent] = []
    proxy, upstream, client, task = await _waiting_for_upstream(events)
    client.gone.set()
    await asyncio.wait_for(task, 5)  # ends, cancelled by the watch, without raising
    assert task.cancelling() == 0
    assert upstream.cancelled  # the request upstream was given up
    assert client.sent == []  # nobody to answer
    await proxy.aclose()
    (event,) = events
    assert (event.status, event.error_kind) == (499, "client_disconnected")
    (watch,) = watches
    assert watch.disconnected
    assert not watch.fired


async def test_a_disconnect_after_the_exchange_cancels_nothing(
    watches: list[_DisconnectWatch],
) -> None:
    upstream, client, events = _Upstream(answers=True), _Client(), []
    proxy = _proxy(upstream, events)

    async def request_then_leave() -> str:
        await proxy(SCOPE, client.receive, client.send)
        client.gone.set()
        await asyncio.sleep(0.05)  # would raise CancelledError if the watch still fired
        return "ok"

    assert await asyncio.wait_for(request_then_leave(), 5) == "ok"
    assert client.sent[0]["status"] == 200
    await proxy.aclose()
    (watch,) = watches
    assert not watch.active
    assert not watch.watching  # done before the watch was due: it never started
    assert not watch.fired
    assert not watch.disconnected
    assert [event.error_kind for event in events] == [None]


async def test_a_cancellation_from_elsewhere_still_cancels(
    watches: list[_DisconnectWatch],
) -> None:
    events: list[ProxyEvent] = []
    proxy, upstream, client, task = await _waiting_for_upstream(events)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert upstream.cancelled
    assert client.sent == []
    (watch,) = watches
    assert not watch.active
    assert not watch.fired
    assert not watch.disconnected  # the client never left
    await proxy.aclose()


async def test_a_cancellation_from_elsewhere_wins_over_a_simultaneous_disconnect(
    watches: list[_DisconnectWatch],
) -> None:
    events: list[ProxyEvent] = []
    proxy, upstream, client, task = await _waiting_for_upstream(events)
    (watch,) = watches
    await _started(watch)
    assert not watch.fired
    client.gone.set()
    await asyncio.sleep(0)  # the watch sees the disconnect and cancels the task
    assert watch.fired
    assert task.cancelling() == 1
    task.cancel()  # and so does someone else (a server shutting down)
    assert task.cancelling() == 2
    with pytest.raises(asyncio.CancelledError):
        await task
    # The watch recognised its own cancellation and took it back (the client did
    # leave); the outside one is what ended the task, and is still counted.
    assert not watch.fired
    assert watch.disconnected
    assert task.cancelling() == 1
    assert upstream.cancelled
    await proxy.aclose()


@pytest.mark.parametrize(
    ("last", "reason"),
    [({"type": "http.disconnect"}, ClientDisconnected), (None, BodyTooLarge)],
    ids=["client left", "body too large"],
)
async def test_an_upload_blocked_on_a_write_is_still_watched(
    monkeypatch: pytest.MonkeyPatch, last: dict[str, Any] | None, reason: type[Exception]
) -> None:
    monkeypatch.setattr(_body, "STALL_AFTER", 0.05)
    part = {"type": "http.request", "body": b"x" * (256 * 1024), "more_body": True}
    messages = [part] * 12 + ([last] if last else [part] * 100)
    pending = iter(messages)

    async def receive() -> dict[str, Any]:
        return next(pending)

    body = RequestBody(receive, 3 * 1024 * 1024)
    await body.start()
    watches: list[_DisconnectWatch] = []

    async def blocked_upload() -> None:
        watch = _DisconnectWatch(body, receive)
        watches.append(watch)
        assert watch.watching  # a body still coming is read ahead from the start
        try:
            await asyncio.sleep(30)  # a write the provider never takes: nobody pulls the body
        finally:
            watch.stop()

    task = asyncio.ensure_future(blocked_upload())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    (watch,) = watches
    assert isinstance(watch.reason, reason)
    assert watch.absorb()
    assert watch.disconnected is (reason is ClientDisconnected)


_request_var: contextvars.ContextVar[str] = contextvars.ContextVar("request")


async def test_a_watch_started_late_runs_in_its_own_exchange_s_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_watch, "WATCH_AFTER", 0.01)
    seen: list[str | None] = []

    async def exchange_in(name: str) -> None:
        _request_var.set(name)
        messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            seen.append(_request_var.get(None))
            await asyncio.sleep(30)
            return {"type": "http.disconnect"}

        body = RequestBody(receive, None)
        await body.start()
        with _DisconnectWatch(body, receive) as watch:
            await _started(watch)

    # Started by one tick, armed by the first: each still sees its own request's values.
    await asyncio.wait_for(asyncio.gather(exchange_in("a"), exchange_in("b")), 5)
    assert sorted(seen, key=str) == ["a", "b"]
