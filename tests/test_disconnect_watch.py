"""The disconnect watch: a client leaving cancels only the exchange it watches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from provider_proxy import BodyTooLarge, ClientDisconnected
from provider_proxy.engine import _body
from provider_proxy.engine._body import RequestBody
from provider_proxy.engine._watch import DisconnectWatch as _DisconnectWatch

pytestmark = pytest.mark.anyio


def _complete_body() -> RequestBody:
    body = RequestBody(_never, None)
    body.more = False
    return body


async def _never() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def _receive_after(event: asyncio.Event) -> Any:
    async def receive() -> dict[str, Any]:
        await event.wait()
        return {"type": "http.disconnect"}

    return receive


async def _exchange(
    gone: asyncio.Event, *, leave: bool, watches: list[_DisconnectWatch] | None = None
) -> str:
    """Wait like an exchange waiting for upstream headers; report how it ended.

    The watch is added to ``watches`` (when given) for the test to inspect.
    """
    watch = _DisconnectWatch(_complete_body(), _receive_after(gone))
    if watches is not None:
        watches.append(watch)
    try:
        try:
            if leave:
                gone.set()
            await asyncio.sleep(30)
            return "finished"
        finally:
            watch.stop()
    except asyncio.CancelledError:
        if not watch.absorb():
            raise
    watch.settle()
    return "client left" if watch.disconnected else "not reached"


async def test_a_disconnect_ends_the_exchange_and_leaves_no_cancellation_behind() -> None:
    task = asyncio.ensure_future(_exchange(asyncio.Event(), leave=True))
    assert await asyncio.wait_for(task, 5) == "client left"
    assert task.cancelling() == 0


async def test_a_disconnect_after_the_exchange_cancels_nothing() -> None:
    gone = asyncio.Event()

    async def quick() -> str:
        watch = _DisconnectWatch(_complete_body(), _receive_after(gone))
        try:
            await asyncio.sleep(0)
        finally:
            watch.stop()
        gone.set()
        await asyncio.sleep(0.05)  # would raise CancelledError if the watch still fired
        return "ok"

    assert await asyncio.wait_for(quick(), 5) == "ok"


async def test_a_cancellation_from_elsewhere_still_cancels() -> None:
    watches: list[_DisconnectWatch] = []
    task = asyncio.ensure_future(_exchange(asyncio.Event(), leave=False, watches=watches))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (watch,) = watches
    assert not watch.fired
    assert not watch.disconnected  # the client never left


async def test_a_cancellation_from_elsewhere_wins_over_a_simultaneous_disconnect() -> None:
    gone = asyncio.Event()
    watches: list[_DisconnectWatch] = []
    task = asyncio.ensure_future(_exchange(gone, leave=False, watches=watches))
    await asyncio.sleep(0.01)
    (watch,) = watches
    assert not watch.fired
    gone.set()
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
