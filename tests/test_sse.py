"""The incremental SSE parser: any split, any line ending, comments, bounds."""

from __future__ import annotations

import pytest

from provider_proxy._sse import SSEEvent, SSEParser

STREAM = (
    b": a comment\r\n"
    b"event: message_start\r\n"
    b'data: {"a": 1}\r\n'
    b"\r\n"
    b"data: line one\n"
    b"data:line two\n"
    b"id: 7\n"
    b"\n"
    b"data\r"
    b"\r"
    b"event: ping\n"
    b"\n"
)
EXPECTED = [
    SSEEvent('{"a": 1}', "message_start"),
    SSEEvent("line one\nline two", "message", "7"),
    SSEEvent("", "message", "7"),
]


def _parse(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_whole_stream() -> None:
    # "data" without a colon is an empty data field; an event with no data is not dispatched.
    assert _parse([STREAM]) == EXPECTED


@pytest.mark.parametrize("split", range(1, len(STREAM)))
def test_split_at_every_byte(split: int) -> None:
    assert _parse([STREAM[:split], STREAM[split:]]) == EXPECTED


def test_one_byte_at_a_time() -> None:
    assert _parse([bytes([b]) for b in STREAM]) == EXPECTED


def test_leading_bom_is_ignored_even_when_split() -> None:
    body = b"\xef\xbb\xbfdata: x\n\n"
    assert _parse([body[:1], body[1:2], body[2:]]) == [SSEEvent("x")]
    assert _parse([body]) == [SSEEvent("x")]


def test_incomplete_event_is_not_dispatched() -> None:
    assert _parse([b"data: partial\n"]) == []


def test_overlong_line_is_dropped_and_flagged() -> None:
    parser = SSEParser(max_line=16)
    assert parser.feed(b"data: " + b"x" * 64) == []
    assert parser.overflowed
    assert parser.feed(b"\n\ndata: ok\n\n") == [SSEEvent("ok")]
