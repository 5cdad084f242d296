"""The answer hook XmlToolCalls uses: which answers a rewriter gets, and how their heads change."""

from __future__ import annotations

from typing import Any

import pytest

from provider_proxy import AnswerRewriter
from provider_proxy.engine import _answers
from provider_proxy.engine._answers import rewriting_send

pytestmark = pytest.mark.anyio


class Upper(AnswerRewriter):
    """Upper-cases what it is given; notes what it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def wants(self, status: int, content_type: str) -> bool:
        self.seen.append(f"wants {status} {content_type}")
        return status < 300

    def whole(self, body: bytes) -> bytes:
        self.seen.append("whole")
        return body.upper() + b"!"

    def chunk(self, data: bytes) -> bytes:
        return data.upper()

    def end(self) -> bytes:
        return b"<end>"


async def _run(
    rewriter: AnswerRewriter, status: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> list[Any]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    wrapped = rewriting_send(send, [rewriter])
    await wrapped({"type": "http.response.start", "status": status, "headers": headers})
    for index, chunk in enumerate(chunks):
        more = index < len(chunks) - 1
        await wrapped({"type": "http.response.body", "body": chunk, "more_body": more})
    return sent


def _body(sent: list[Any]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


JSON = [(b"content-type", b"application/json"), (b"content-length", b"7")]


async def test_a_whole_answer_is_rewritten_with_its_new_length() -> None:
    sent = await _run(Upper(), 200, JSON, [b"abc", b"defg", b""])
    assert _body(sent) == b"ABCDEFG!"
    assert (b"content-length", b"8") in sent[0]["headers"]
    assert (b"content-length", b"7") not in sent[0]["headers"]


async def test_a_stream_is_rewritten_chunk_by_chunk_without_a_length() -> None:
    headers = [(b"content-type", b"text/event-stream"), (b"content-length", b"6")]
    sent = await _run(Upper(), 200, headers, [b"abc", b"def", b""])
    assert [m.get("body") for m in sent[1:]] == [b"ABC", b"DEF", b"<end>"]
    assert sent[0]["headers"] == [(b"content-type", b"text/event-stream")]


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (500, JSON),
        (200, [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]),
    ],
    ids=["error", "encoded"],
)
async def test_errors_and_encoded_answers_pass_untouched(
    status: int, headers: list[tuple[bytes, bytes]]
) -> None:
    rewriter = Upper()
    sent = await _run(rewriter, status, headers, [b"abc", b""])
    assert _body(sent) == b"abc"
    assert sent[0]["headers"] == headers
    assert "whole" not in rewriter.seen


async def test_a_whole_answer_too_big_to_hold_goes_on_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_answers, "MAX_WHOLE_ANSWER", 4)
    rewriter = Upper()
    sent = await _run(rewriter, 200, JSON, [b"abc", b"defg", b"hi", b""])
    assert _body(sent) == b"abcdefghi"
    assert sent[0]["headers"] == JSON
    assert "whole" not in rewriter.seen


async def test_rewriters_run_in_the_answers_direction() -> None:
    class Tag(Upper):
        def __init__(self, tag: bytes) -> None:
            super().__init__()
            self.tag = tag

        def whole(self, body: bytes) -> bytes:
            return body + self.tag

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    # Added by the first transform, then the second: the second's runs first.
    wrapped = rewriting_send(send, [Tag(b"-first"), Tag(b"-second")])
    await wrapped({"type": "http.response.start", "status": 200, "headers": JSON})
    await wrapped({"type": "http.response.body", "body": b"x", "more_body": False})
    assert _body(sent) == b"x-second-first"
