"""The holdback in process: what it holds, when it commits, and that a stream split at
any byte boundary is judged the same."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from provider_proxy.dialects import AnthropicMessages, OpenAIChat
from provider_proxy.engine._holdback import Abandoned, Holdback

pytestmark = pytest.mark.anyio

SSE = [(b"content-type", b"text/event-stream")]


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


START = _event(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 1, "output_tokens": 0},
        },
    },
)
PING = _event("ping", {"type": "ping"})
ERROR = _event(
    "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
)
TEXT = _event(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
) + _event(
    "content_block_delta",
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
)


class Sink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages)


def holdback(sink: Sink, **options: Any) -> Holdback:
    settings = {"max_bytes": 64 * 1024, "max_seconds": 10.0, **options}
    return Holdback(sink, AnthropicMessages(), **settings)


async def feed(hb: Holdback, status: int, headers: Any, chunks: list[bytes]) -> None:
    await hb({"type": "http.response.start", "status": status, "headers": headers})
    for i, chunk in enumerate(chunks):
        more = i < len(chunks) - 1
        await hb({"type": "http.response.body", "body": chunk, "more_body": more})


@pytest.mark.parametrize("cut", range(len(START + PING + ERROR)))
async def test_an_error_first_stream_fails_wherever_it_is_split(cut: int) -> None:
    stream = START + PING + ERROR
    sink = Sink()
    hb = holdback(sink)
    chunks = [stream[:cut], stream[cut:], b""] if cut else [stream, b""]
    with contextlib.suppress(Abandoned):  # raised into the relay when more would come
        await feed(hb, 200, SSE, chunks)
    assert hb.state == "failed"
    assert hb.error is not None
    assert hb.error.status == 503
    assert sink.messages == []  # the client has received nothing


@pytest.mark.parametrize("cut", range(1, len(START + TEXT)))
async def test_a_content_stream_commits_at_its_first_content_and_loses_nothing(cut: int) -> None:
    stream = START + TEXT
    sink = Sink()
    hb = holdback(sink)
    await hb({"type": "http.response.start", "status": 200, "headers": SSE})
    await hb({"type": "http.response.body", "body": stream[:cut], "more_body": True})
    assert hb.state == "holding"  # the first content event is not complete yet
    await hb({"type": "http.response.body", "body": stream[cut:], "more_body": True})
    assert hb.state == "committed"
    await hb({"type": "http.response.body", "body": b"rest", "more_body": False})
    assert sink.messages[0]["status"] == 200
    assert sink.body == stream + b"rest"


async def test_an_error_answer_is_held_whole_and_sent_on_commit() -> None:
    sink = Sink()
    hb = holdback(sink)
    hb.extra_headers = [(b"x-proxy-attempts", b"3")]
    await feed(hb, 529, [(b"retry-after", b"2")], [b'{"error":', b' "x"}'])
    assert hb.state == "failed"
    assert hb.headers == [(b"retry-after", b"2")]
    assert sink.messages == []
    await hb.commit()
    assert sink.messages[0]["status"] == 529
    assert (b"x-proxy-attempts", b"3") in sink.messages[0]["headers"]
    assert sink.body == b'{"error": "x"}'


async def test_a_whole_success_commits_at_once() -> None:
    sink = Sink()
    hb = Holdback(sink, OpenAIChat(), max_bytes=10, max_seconds=1.0)
    await hb({"type": "http.response.start", "status": 200, "headers": []})
    assert hb.state == "committed"
    assert len(sink.messages) == 1


async def test_holding_is_bounded_in_bytes() -> None:
    sink = Sink()
    hb = holdback(sink, max_bytes=len(START) + 5)
    await feed(hb, 200, SSE, [START, PING, PING])
    assert hb.state == "committed"  # past max_bytes with no content yet
    assert sink.body == START + PING + PING


async def test_holding_is_bounded_in_time() -> None:
    sink = Sink()
    hb = holdback(sink, max_seconds=0.0)
    await hb({"type": "http.response.start", "status": 200, "headers": SSE})
    await hb({"type": "http.response.body", "body": PING, "more_body": True})
    assert hb.state == "committed"


async def test_without_streams_only_errors_are_held() -> None:
    sink = Sink()
    hb = Holdback(sink, AnthropicMessages(), max_bytes=100, max_seconds=1.0, streams=False)
    await hb({"type": "http.response.start", "status": 200, "headers": SSE})
    assert hb.state == "committed"
    failing = Holdback(Sink(), AnthropicMessages(), max_bytes=100, max_seconds=1.0, streams=False)
    await failing({"type": "http.response.start", "status": 429, "headers": []})
    assert failing.state == "failed"
