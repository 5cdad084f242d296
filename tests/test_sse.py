"""The incremental SSE parser: any split, any line ending, comments, fields, bounds."""

from __future__ import annotations

import itertools
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider_proxy.observe._sse import SSEEvent, SSEParser

STREAM = (
    b"\xef\xbb\xbf"  # a byte order mark, ignored at the very start
    b": a comment\r\n"
    b"event: message_start\r\n"
    b'data: {"a": 1}\r\n'
    b"\r\n"
    b"data: line one\n"
    b"data:line two\n"
    b"data:  two spaces, one kept\n"
    b"id: 7\n"
    b"\n"
    b"data\r"  # a field without a colon: empty data
    b"\r"
    b"event: ping\n"  # no data: not dispatched, and its name does not carry over
    b"\n"
    b"data: a:b \xc3\xa9\xe2\x82\xac\r\n"  # a colon in the value; UTF-8 of 2 and 3 bytes
    b"retry: 1500\r\n"
    b"unknown: field\r\n"
    b"\r\n"
    b"data: last\n"
    b"id: bad\x00id\n"  # an id with NUL is ignored
    b"\n"
)
EXPECTED = [
    SSEEvent('{"a": 1}', "message_start"),
    SSEEvent("line one\nline two\n two spaces, one kept", "message", "7"),
    SSEEvent("", "message", "7"),
    SSEEvent("a:b é€", "message", "7"),
    SSEEvent("last", "message", "7"),
]


def _parse(chunks: list[bytes], parser: SSEParser | None = None) -> list[SSEEvent]:
    parser = parser or SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_whole_stream() -> None:
    parser = SSEParser()
    assert _parse([STREAM], parser) == EXPECTED
    assert parser.retry == 1500
    assert not parser.overflowed


@pytest.mark.parametrize("split", range(1, len(STREAM)))
def test_split_at_every_byte(split: int) -> None:
    assert _parse([STREAM[:split], STREAM[split:]]) == EXPECTED


def test_one_byte_at_a_time() -> None:
    assert _parse([bytes([b]) for b in STREAM]) == EXPECTED


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]  # empty chunks included
    assert _parse(chunks) == EXPECTED


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        # CRLF split between chunks ends one line, not two (which would dispatch early).
        ([b"data: a\r", b"\ndata: b\r\n\r\n"], [SSEEvent("a\nb")]),
        ([b"data: a\r", b"\n", b"\r", b"\n"], [SSEEvent("a")]),
        # A CR at the end of a chunk followed by a new line's start: the CR ended the line.
        ([b"data: a\r", b"data: b\r\r"], [SSEEvent("a\nb")]),
        # CR CRLF: two line ends, so the event is dispatched.
        ([b"data: a\r", b"\r\n"], [SSEEvent("a")]),
        ([b"data: a\n\n\n\ndata: b\n\n"], [SSEEvent("a"), SSEEvent("b")]),
    ],
)
def test_line_endings_across_chunks(chunks: list[bytes], expected: list[SSEEvent]) -> None:
    assert _parse(chunks) == expected


def test_bom_is_only_ignored_at_the_start() -> None:
    bom = b"\xef\xbb\xbf"
    assert _parse([bom[:1], bom[1:2], bom[2:] + b"data: x\n\n"]) == [SSEEvent("x")]
    assert _parse([bom + b"data: x\n\n"]) == [SSEEvent("x")]
    # Later, the same bytes are part of a line: here the field name, so it is unknown.
    assert _parse([b"data: x\n\n" + bom + b"data: y\n\n"]) == [SSEEvent("x")]
    # Bytes that only begin like a byte order mark are kept.
    assert _parse([b"\xef", b"\xbbX\n\ndata: z\n\n"]) == [SSEEvent("z")]


def test_a_utf8_character_split_between_chunks() -> None:
    euro = "€".encode()
    assert _parse([b"data: " + euro[:1], euro[1:2], euro[2:] + b"\n\n"]) == [SSEEvent("€")]


def test_incomplete_event_is_not_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: partial\n") == []
    assert parser.feed(b"data: more") == []
    assert parser.feed(b"\n\n") == [SSEEvent("partial\nmore")]


def test_event_name_resets_after_each_event_but_id_carries_over() -> None:
    events = _parse([b"event: a\nid: 1\ndata: x\n\ndata: y\n\nid\ndata: z\n\n"])
    # ("id" without a value sets the last id to the empty string.)
    assert events == [SSEEvent("x", "a", "1"), SSEEvent("y", "message", "1"), SSEEvent("z", id="")]


def test_overlong_line_is_dropped_to_its_end_and_flagged() -> None:
    parser = SSEParser(max_size=16)
    assert parser.feed(b"data: " + b"x" * 64) == []
    assert parser.overflowed
    # The rest of that line, however it arrives, is skipped, not read as a new line.
    assert parser.feed(b"data: no") == []
    assert parser.feed(b"\n\ndata: ok\n\n") == [SSEEvent("ok")]


def test_overlong_line_in_one_chunk_is_dropped_too() -> None:
    parser = SSEParser(max_size=16)
    assert parser.feed(b"data: " + b"x" * 64 + b"\n\ndata: ok\n\n") == [SSEEvent("ok")]
    assert parser.overflowed


def test_overlong_event_data_is_dropped() -> None:
    parser = SSEParser(max_size=32)
    many = b"data: 0123456789\n" * 10  # each line fits; together they do not
    assert parser.feed(many + b"\ndata: ok\n\n") == [SSEEvent("ok")]
    assert parser.overflowed


def test_a_line_without_end_does_not_grow_memory() -> None:
    parser = SSEParser(max_size=1024 * 1024)
    piece = b"x" * 65536
    tracemalloc.start()
    try:
        parser.feed(b"data: ")
        for _ in range(320):  # 20 MiB without a newline
            parser.feed(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parser.overflowed
    assert peak < 4 * 1024 * 1024
    assert parser.feed(b"\ndata: after\n\n") == [SSEEvent("after")]


def test_retry_takes_digits_only() -> None:
    parser = SSEParser()
    parser.feed(b"retry: 12x\nretry: \xd9\xa3\n\n")  # not ASCII digits: ignored
    assert parser.retry is None
    parser.feed(b"retry:250\n\n")
    assert parser.retry == 250
