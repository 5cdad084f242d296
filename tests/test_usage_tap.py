"""The usage tap's own rules: what it reads, its bounds, and that it never raises."""

from __future__ import annotations

import gzip
import json
import logging
import random
import sys
import tracemalloc
import types
import zlib
from typing import Any

import brotli
import pytest

from provider_proxy import Usage
from provider_proxy.dialects.anthropic_messages import anthropic_usage
from provider_proxy.dialects.openai_chat import openai_usage
from provider_proxy.observe import _usage_tap
from provider_proxy.observe._usage_tap import UsageTap

JSON, SSE = "application/json", "text/event-stream"
BODY = json.dumps(
    {"model": "m-1", "usage": {"prompt_tokens": 3, "completion_tokens": 4}, "pad": "x" * 200}
).encode()


def _model(payload: Any) -> str | None:
    return payload.get("model") if isinstance(payload, dict) else None


def _tap(content_type: str | None = JSON, encoding: str | None = None, **options: Any) -> UsageTap:
    return UsageTap(
        openai_usage, _model, content_type=content_type, content_encoding=encoding, **options
    )


def _event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/problem+json",
        "application/vnd.example+json",
    ],
)
def test_json_media_types_are_read(content_type: str) -> None:
    tap = _tap(content_type)
    tap.feed(BODY)
    assert tap.active
    assert not tap.streamed
    assert tap.result() == (Usage(3, 4), "m-1")


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "application/x-ndjson", "audio/mpeg", "text/html"]
)
def test_other_media_types_are_not_read(content_type: str | None) -> None:
    tap = _tap(content_type)
    assert not tap.active
    tap.feed(BODY)
    assert tap.result() == (None, None)


def test_event_stream_is_marked_streamed() -> None:
    tap = _tap("text/event-stream; charset=utf-8")
    assert tap.streamed
    assert tap.active


@pytest.mark.parametrize("encoding", ["zstd", "compress", "gzip, br", "x-custom"])
def test_unsupported_encodings_leave_the_tap_off(encoding: str) -> None:
    tap = _tap(JSON, encoding)
    assert not tap.active
    tap.feed(BODY)
    assert tap.result() == (None, None)


@pytest.mark.parametrize("encoding", ["identity", " GZIP ", "x-gzip", "Deflate", "BR"])
def test_encoding_names_are_case_and_space_insensitive(encoding: str) -> None:
    name = encoding.strip().lower()
    body = {
        "identity": BODY,
        "gzip": gzip.compress(BODY),
        "x-gzip": gzip.compress(BODY),
        "deflate": zlib.compress(BODY),
        "br": brotli.compress(BODY),
    }[name]
    tap = _tap(JSON, encoding)
    tap.feed(body)
    assert tap.result() == (Usage(3, 4), "m-1")


def test_gzip_with_several_members() -> None:
    half = len(BODY) // 2
    body = gzip.compress(BODY[:half]) + gzip.compress(BODY[half:])
    for split in range(1, len(body)):
        tap = _tap(JSON, "gzip")
        tap.feed(body[:split])
        tap.feed(body[split:])
        assert tap.result() == (Usage(3, 4), "m-1"), split


def test_json_body_over_the_bound_stops_the_tap() -> None:
    tap = _tap(max_bytes=100)
    tap.feed(BODY[:80])
    states = [tap.active]
    tap.feed(BODY[80:])
    states.append(tap.active)
    assert states == [True, False]
    assert tap.result() == (None, None)


BOMB = b'{"usage": {"prompt_tokens": 1}, "pad": "' + b"x" * 20_000_000 + b'"}'
BOMBS = {
    "gzip": gzip.compress(BOMB),
    "deflate": zlib.compress(BOMB),
    "br": brotli.compress(BOMB),
}


@pytest.mark.parametrize("content_type", [JSON, SSE])
@pytest.mark.parametrize("encoding", sorted(BOMBS))
def test_decompression_bomb_stops_the_tap_with_memory_bounded(
    encoding: str, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    bomb = BOMBS[encoding]
    if content_type == SSE:
        bomb = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}[encoding](
            b"data: " + BOMB + b"\n\n"
        )
    tap = _tap(content_type, encoding, max_bytes=1_000_000)
    tracemalloc.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="provider_proxy"):
            for start in range(0, len(bomb), 4096):
                tap.feed(bomb[start : start + 4096])  # never raises
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not tap.active
    assert tap.result() == (None, None)
    assert peak < 6_000_000  # 20 MB of output was never held
    notes = [r for r in caplog.records if "usage" in r.getMessage()]
    assert len(notes) == 1  # logged once, at debug
    assert notes[0].levelno == logging.DEBUG


def test_a_long_stream_is_read_past_max_bytes() -> None:
    # The bound is on what is held at once, not on a stream's length.
    rng = random.Random(6)
    stream = b"".join(
        _event({"model": "m-2", "choices": [{"delta": {"content": rng.randbytes(60).hex()}}]})
        for _ in range(200)
    )
    stream += _event({"choices": [], "usage": {"prompt_tokens": 5}})
    for encoding, body in (("identity", stream), ("gzip", gzip.compress(stream))):
        tap = _tap(SSE, encoding, max_bytes=4096)
        for start in range(0, len(body), 1000):
            tap.feed(body[start : start + 1000])
        assert tap.result() == (Usage(5, None), "m-2"), encoding


def test_a_stream_past_the_total_bound_stops_parsing_and_reports_no_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every event names usage, so every one is parsed until the bound: about 100 of 400.
    parsed: list[Any] = []
    real_loads = _usage_tap.loads

    def counting(data: Any) -> Any:
        parsed.append(data)
        return real_loads(data)

    monkeypatch.setattr(_usage_tap, "loads", counting)
    rng = random.Random(14)
    events = [
        _event({"model": "m-1", "usage": {"prompt_tokens": 1}, "pad": rng.randbytes(40).hex()})
        for _ in range(400)
    ]
    stream = gzip.compress(b"".join(events))
    tap = _tap(SSE, "gzip", max_total_bytes=100 * len(events[0]), max_bytes=1_000_000)
    copies = []
    for start in range(0, len(stream), 100):  # paced: each piece inflates little
        chunk = stream[start : start + 100]
        tap.feed(chunk)  # never raises
        copies.append(chunk)
    assert b"".join(copies) == stream  # what the relay sends is left as it was
    assert not tap.active
    assert 95 <= len(parsed) <= 100
    assert tap.result() == (None, "m-1")  # usage not read, rather than undercounted
    # Within the bound, the same stream is read to the end.
    whole = _tap(SSE, "gzip", max_total_bytes=400 * len(events[0]))
    whole.feed(stream)
    assert whole.active
    assert whole.result() == (Usage(1, None), "m-1")


def test_an_event_over_the_bound_is_skipped_not_fatal() -> None:
    big = _event({"model": "m", "blob": "z" * 5000})
    tap = _tap(SSE, max_bytes=1024)
    tap.feed(big + _event({"model": "m-3", "usage": {"prompt_tokens": 2}}))
    assert tap.active
    assert tap.result() == (Usage(2, None), "m-3")


def test_done_marker_comments_and_non_json_data_are_skipped() -> None:
    tap = _tap(SSE)
    tap.feed(b": keep-alive\n\ndata: ping\n\ndata:\n\n" + _event({"model": "m-4"}))
    tap.feed(b"event: error\ndata: not json\n\ndata: [DONE]\n\n")
    assert tap.active
    assert tap.result() == (None, "m-4")


def test_invalid_json_turns_the_tap_off_and_keeps_what_was_read() -> None:
    tap = _tap(SSE)
    tap.feed(_event({"model": "m-5", "usage": {"prompt_tokens": 7}}))
    tap.feed(b"data: {not json\n\n")
    assert not tap.active
    tap.feed(_event({"usage": {"prompt_tokens": 8, "completion_tokens": 9}}))  # ignored now
    assert tap.result() == (Usage(7, None), "m-5")


def test_invalid_json_body_gives_nothing() -> None:
    tap = _tap()
    tap.feed(b'{"usage": {"prompt_tokens": 1}')
    assert tap.result() == (None, None)
    assert not tap.active


def test_corrupt_compressed_data_turns_the_tap_off() -> None:
    for encoding in ("gzip", "deflate", "br"):
        tap = _tap(JSON, encoding)
        tap.feed(b"\x1f\x8b\x08garbage-that-is-not-compressed" * 4)
        tap.feed(b"more")
        assert not tap.active, encoding
        assert tap.result() == (None, None)


def test_failing_extractors_never_escape(caplog: pytest.LogCaptureFixture) -> None:
    secret_body = {"model": "m", "usage": {"prompt_tokens": 1}, "text": "private words"}

    def broken(payload: Any) -> Usage | None:
        raise KeyError(payload["text"])

    for content_type, body in ((SSE, _event(secret_body)), (JSON, json.dumps(secret_body))):
        tap = UsageTap(broken, _model, content_type=content_type, content_encoding=None)
        with caplog.at_level(logging.DEBUG, logger="provider_proxy"):
            tap.feed(body.encode() if isinstance(body, str) else body)
            assert tap.result() == (None, None)
        assert not tap.active
    # The log says what failed, never what the body held.
    assert "KeyError" in caplog.text
    assert "private words" not in caplog.text


def test_result_is_stable_and_feeding_after_it_is_harmless() -> None:
    tap = _tap()
    tap.feed(BODY)
    assert tap.result() == (Usage(3, 4), "m-1")
    assert tap.result() == (Usage(3, 4), "m-1")


def test_stream_usage_reports_are_merged_in_order() -> None:
    tap = UsageTap(anthropic_usage, _model, content_type=SSE, content_encoding=None)
    tap.feed(_event({"type": "message_start", "message": {"usage": {"input_tokens": 4}}}))
    tap.feed(_event({"type": "message_delta", "usage": {"output_tokens": 2}}))
    tap.feed(_event({"type": "message_delta", "usage": {"output_tokens": 6}}))
    assert tap.result() == (Usage(4, 6), None)


def test_first_model_named_wins() -> None:
    tap = _tap(SSE)
    tap.feed(_event({"model": "first"}) + _event({"model": "second"}))
    assert tap.result() == (None, "first")


def test_brotli_without_a_bounded_decoder_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # Releases before 1.2 cannot bound their output, so a bomb could not be stopped.
    old = types.SimpleNamespace(Decompressor=lambda: types.SimpleNamespace(process=None))
    monkeypatch.setitem(sys.modules, "brotli", old)
    assert not _tap(JSON, "br").active


def test_brotli_missing_leaves_br_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "brotli", None)
    monkeypatch.setitem(sys.modules, "brotlicffi", None)
    tap = _tap(JSON, "br")
    assert not tap.active
    tap.feed(brotli.compress(BODY))
    assert tap.result() == (None, None)
