"""RequestBody: reading the client's body within the limit, without collecting it."""

from __future__ import annotations

import pytest

from provider_proxy import BodyTooLarge, ClientDisconnected
from provider_proxy._body import RequestBody, declared_length
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
