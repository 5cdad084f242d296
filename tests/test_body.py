"""RequestBody: reading the client's body within the limit, without collecting it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from provider_proxy import BodyTooLarge, ClientDisconnected
from provider_proxy.engine import _body
from provider_proxy.engine._body import RequestBody, declared_body_length, declared_length
from provider_proxy.types import Message

pytestmark = pytest.mark.anyio


def _receiver(*messages: Message) -> tuple[list[int], object]:
    pending = list(messages)
    reads: list[int] = []

    async def receive() -> Message:
        reads.append(1)
        return pending.pop(0)

    return reads, receive


def _part(body: bytes, more: bool) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_single_message_body_is_complete_after_start() -> None:
    _, receive = _receiver(_part(b"{}", False))
    body = RequestBody(receive, 10)  # type: ignore[arg-type]
    assert await body.start() == b"{}"
    assert not body.more


async def test_a_body_read_already_is_whole_without_a_receive() -> None:
    # The gateway's rewritten body: ``receive`` is left to the disconnect watch.
    reads, receive = _receiver({"type": "http.disconnect"})
    body = RequestBody.of(b'{"model": "m"}', receive)  # type: ignore[arg-type]
    assert await body.start(14) == b'{"model": "m"}'
    assert await body.read_all() == b'{"model": "m"}'
    assert [chunk async for chunk in body.stream()] == [b'{"model": "m"}']
    assert (body.size, body.more, reads) == (14, False, [])


async def test_stream_yields_each_part_as_read() -> None:
    reads, receive = _receiver(_part(b"a", True), _part(b"b", True), _part(b"c", False))
    body = RequestBody(receive, None)  # type: ignore[arg-type]
    await body.start()
    assert len(reads) == 1  # nothing read ahead
    parts = []
    async for chunk in body.stream():
        parts.append(chunk)
        # Each part is handed on before the next one is read.
        assert len(reads) == len(parts)
    assert parts == [b"a", b"b", b"c"]


async def test_limit_counts_every_part() -> None:
    _, receive = _receiver(_part(b"12345", True), _part(b"67890", True), _part(b"x", False))
    body = RequestBody(receive, 8)  # type: ignore[arg-type]
    await body.start()
    with pytest.raises(BodyTooLarge, match="8 bytes"):
        await body.read_all()
    assert isinstance(body.error, BodyTooLarge)


async def test_disconnect_while_reading() -> None:
    _, receive = _receiver(_part(b"ab", True), {"type": "http.disconnect"})
    body = RequestBody(receive, None)  # type: ignore[arg-type]
    await body.start()
    with pytest.raises(ClientDisconnected):
        await body.read_all()
    assert isinstance(body.error, ClientDisconnected)


@pytest.mark.parametrize(
    ("value", "expected"), [(b"10", 10), (b"0", 0), (None, None), (b"-1", None), (b"1e3", None)]
)
def test_declared_length(value: bytes | None, expected: int | None) -> None:
    assert declared_length(value) == expected


# --- reading ahead of the upload (the disconnect watch's side) ---------------

KiB = 1024


def _parts(count: int, size: int = 256 * KiB) -> list[Message]:
    return [_part(b"x" * size, True) for _ in range(count)]


async def test_read_ahead_keeps_to_its_window_while_the_upload_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_body, "STALL_AFTER", 5.0)
    reads, receive = _receiver(*_parts(20), _part(b"end", False))
    body = RequestBody(receive, None)  # type: ignore[arg-type]
    await body.start()
    body.hand_over()
    reader = asyncio.ensure_future(body.read_ahead())
    await asyncio.sleep(0.05)
    # The first message, then a window's worth: the rest waits for the upload.
    assert len(reads) == 1 + _body.READ_AHEAD_WINDOW // (256 * KiB)
    taken = [chunk async for chunk in body.stream()]
    await asyncio.wait_for(reader, 5)
    assert b"".join(taken) == b"x" * (20 * 256 * KiB) + b"end"
    assert not body.more


async def test_a_stalled_upload_is_read_on_until_the_client_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_body, "STALL_AFTER", 0.05)
    reads, receive = _receiver(*_parts(20), {"type": "http.disconnect"})
    body = RequestBody(receive, None)  # type: ignore[arg-type]
    await body.start()
    body.hand_over()
    # Nobody takes anything (the upload is blocked on a write), yet the client leaving is seen.
    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(body.read_ahead(), 5)
    assert len(reads) == 21
    assert isinstance(body.error, ClientDisconnected)
    # The upload, when it next asks, is told: its body must not end as if complete.
    assert body.more
    with pytest.raises(ClientDisconnected):
        await body.read_all()


async def test_a_stalled_upload_over_the_limit_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_body, "STALL_AFTER", 0.05)
    _, receive = _receiver(*_parts(20))
    body = RequestBody(receive, 2 * 1024 * KiB)  # type: ignore[arg-type]
    await body.start()
    body.hand_over()
    with pytest.raises(BodyTooLarge):
        await asyncio.wait_for(body.read_ahead(), 5)


async def test_read_ahead_holds_no_more_than_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_body, "STALL_AFTER", 0.01)
    monkeypatch.setattr(_body, "READ_AHEAD_CAP", 2 * _body.READ_AHEAD_WINDOW)
    reads, receive = _receiver(*_parts(40), _part(b"", False))
    body = RequestBody(receive, None)  # type: ignore[arg-type]
    await body.start()
    body.hand_over()
    reader = asyncio.ensure_future(body.read_ahead())
    await asyncio.sleep(0.3)
    assert len(reads) == 1 + _body.READ_AHEAD_CAP // (256 * KiB)
    assert len(b"".join([chunk async for chunk in body.stream()])) == 40 * 256 * KiB
    await asyncio.wait_for(reader, 5)


async def test_once_reading_ahead_stops_the_stream_reads_on_itself() -> None:
    reads, receive = _receiver(_part(b"a", True), _part(b"b", True), _part(b"c", False))
    body = RequestBody(receive, None)  # type: ignore[arg-type]
    await body.start()
    body.hand_over()
    body.take_back()  # the watch stopped before it read anything
    assert [chunk async for chunk in body.stream()] == [b"a", b"b", b"c"]
    assert len(reads) == 3


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"content-length", b"12")], 12),
        ([(b"content-length", b"12"), (b"transfer-encoding", b"chunked")], None),
        ([(b"transfer-encoding", b"chunked"), (b"content-length", b"12")], None),
        ([(b"content-type", b"application/json")], None),
    ],
)
def test_declared_body_length_ignores_content_length_beside_chunked(
    headers: list[tuple[bytes, bytes]], expected: int | None
) -> None:
    assert declared_body_length(headers) == expected


async def test_a_stream_that_took_the_last_chunk_before_the_end_arrived_still_ends() -> None:
    # The upload takes the last chunk while the body's end is still to come; the
    # watch then reads the end and stops reading ahead. The stream must end there,
    # not call ``receive`` again (which would wait for the client to leave).
    pending = [_part(b"a", True), _part(b"b", True), _part(b"", False)]
    end_may_come = asyncio.Event()
    after_the_end = 0

    async def receive() -> Message:
        nonlocal after_the_end
        if len(pending) == 1:
            await end_may_come.wait()
        if pending:
            return pending.pop(0)
        after_the_end += 1
        await asyncio.Event().wait()  # nothing more until the client leaves
        raise AssertionError("unreachable")

    body = RequestBody(receive, None)
    assert await body.start() == b"a"
    body.hand_over()
    watch = asyncio.ensure_future(body.read_ahead())
    stream = body.stream()
    taken = [await stream.__anext__(), await stream.__anext__()]
    end_may_come.set()
    await watch  # the end arrived; reading ahead is over
    rest = await asyncio.wait_for(_drain(stream), 2)
    assert taken + rest == [b"a", b"b"]
    assert not body.more
    assert after_the_end == 0


async def _drain(stream: Any) -> list[bytes]:
    return [chunk async for chunk in stream]


async def test_a_declared_body_whose_end_comes_alone_is_complete_after_start() -> None:
    # granian passes the whole declared body with more_body=True, then an empty end.
    reads, receive = _receiver(_part(b"{}", True), _part(b"", False))
    body = RequestBody(receive, 10)  # type: ignore[arg-type]
    assert await body.start(declared=2) == b"{}"
    assert not body.more
    assert len(reads) == 2
    assert await body.read_all() == b"{}"


async def test_a_declared_body_still_arriving_streams_from_its_first_part() -> None:
    reads, receive = _receiver(_part(b"ab", True), _part(b"cd", False))
    body = RequestBody(receive, None)  # type: ignore[arg-type]
    assert await body.start(declared=4) == b"ab"
    assert body.more
    assert len(reads) == 1  # the rest is not waited for
    assert [chunk async for chunk in body.stream()] == [b"ab", b"cd"]


async def test_a_body_without_a_declared_length_streams_from_its_first_part() -> None:
    reads, receive = _receiver(_part(b"ab", True), _part(b"", False))
    body = RequestBody(receive, None)  # type: ignore[arg-type]
    assert await body.start() == b"ab"
    assert body.more
    assert len(reads) == 1
