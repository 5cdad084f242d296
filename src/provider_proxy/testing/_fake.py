"""A fake LLM provider: a tiny ASGI app that answers like OpenAI and Anthropic
(and Gemini's ``generateContent``).

It runs the demo offline and is the upstream of the test suite and the
benchmarks; tests of an app that embeds the proxy can use it too. It records
every request it sees (:attr:`FakeUpstream.requests`), and its behaviour is
set by its constructor's keywords for every request, or by request headers for
one, so even an unmodified SDK (through ``extra_headers``) can ask for a slow,
failing or long stream:

``x-fake-status``
    answer with this error status (OpenAI's or Anthropic's error format).
``x-fake-delay``
    seconds to wait before the response headers.
``x-fake-chunks`` / ``x-fake-gap``
    number of streamed content chunks, and seconds between them.
``x-fake-fail-after``
    abort the connection after this many streamed chunks.

Other routes: ``/echo`` answers the request it got as JSON; ``/stream`` streams
until the client goes away; ``/gzip`` answers a gzip-encoded body.
"""

from __future__ import annotations

import gzip
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._json import dumps, loads
from ..types import Receive, Scope, Send

_WORDS = [
    *("Hello", "from", "the", "fake", "upstream,"),
    *("streamed", "one", "piece", "at", "a", "time."),
]


@dataclass
class RecordedRequest:
    """One request as the fake upstream received it."""

    method: str
    path: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    #: When each body chunk arrived (``time.monotonic()``), to show streaming uploads.
    chunk_times: list[float] = field(default_factory=list)
    #: The fake's settings for headers the request did not send (``x-fake-*``).
    defaults: dict[str, str] = field(default_factory=dict, repr=False)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (or the fake's setting of it), or ``None``."""
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k == key:
                return v.decode("latin-1")
        return self.defaults.get(name.lower())


class FakeAbort(Exception):
    """Raised inside the fake to make the server abort the connection."""


class FakeUpstream:
    """The fake provider (an ASGI app) and what it has seen.

    The keywords set the behaviour of every request; a request's ``x-fake-*``
    header of the same name wins over them.

    :param status: answer every request with this error status.
    :param delay: seconds to wait before the response headers.
    :param chunks: streamed content chunks (and words of a whole answer).
    :param gap: seconds between streamed chunks.
    :param fail_after: abort the connection after this many streamed chunks.
    """

    def __init__(
        self,
        *,
        status: int | None = None,
        delay: float = 0.0,
        chunks: int | None = None,
        gap: float = 0.0,
        fail_after: int | None = None,
    ) -> None:
        self._defaults: dict[str, str] = {
            name: str(value)
            for name, value in (
                ("x-fake-status", status),
                ("x-fake-delay", delay or None),
                ("x-fake-chunks", chunks),
                ("x-fake-gap", gap or None),
                ("x-fake-fail-after", fail_after),
            )
            if value is not None
        }
        self.requests: list[RecordedRequest] = []
        self.open_streams = 0
        self.closed_streams = 0
        self._ids = itertools.count(1)

    @property
    def last(self) -> RecordedRequest:
        """The most recent request."""
        return self.requests[-1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":  # pragma: no cover
            return
        request = await self._record(scope, receive)
        delay = float(request.header("x-fake-delay") or 0)
        if delay:
            await anyio.sleep(delay)
        path = request.path
        anthropic = path.endswith("/messages")
        status = request.header("x-fake-status")
        if status is not None:
            await _error(send, int(status), anthropic)
        elif path.endswith("/echo"):
            await _json(send, 200, _echo(request))
        elif path.endswith("/stream"):
            await self._endless(receive, send, float(request.header("x-fake-gap") or 0.05))
        elif path.endswith("/gzip"):
            body = gzip.compress(dumps({"compressed": True}))
            await _respond(send, 200, body, [(b"content-encoding", b"gzip")])
        elif path.endswith("/models"):
            await _json(
                send, 200, _models(anthropic=request.header("anthropic-version") is not None)
            )
        elif path.endswith("/chat/completions") or anthropic:
            await self._chat(request, send, anthropic)
        elif path.endswith((":generateContent", ":streamGenerateContent")):
            await self._gemini(request, send)
        else:
            await _error(send, 404, anthropic, f"Unknown fake route {path}")

    async def _record(self, scope: Scope, receive: Receive) -> RecordedRequest:
        request = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            raw_path=scope.get("raw_path") or scope["path"].encode(),
            query=scope.get("query_string", b""),
            headers=list(scope["headers"]),
            body=b"",
            defaults=self._defaults,
        )
        self.requests.append(request)
        parts = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            parts.append(message.get("body", b""))
            request.chunk_times.append(time.monotonic())
            more = message.get("more_body", False)
        request.body = b"".join(parts)
        return request

    async def _chat(self, request: RecordedRequest, send: Send, anthropic: bool) -> None:
        payload = loads(request.body) if request.body else {}
        model = str(payload.get("model", "fake-model"))
        number = next(self._ids)
        chunks = int(request.header("x-fake-chunks") or len(_WORDS))
        if not payload.get("stream"):
            text = " ".join(_words(chunks))
            await _json(send, 200, _completion(anthropic, model, number, text))
            return
        gap = float(request.header("x-fake-gap") or 0)
        fail_after = request.header("x-fake-fail-after")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        options = payload.get("stream_options") or {}
        usage = bool(options.get("include_usage"))
        for index, event in enumerate(_events(anthropic, model, number, chunks, usage)):
            if fail_after is not None and index > int(fail_after):
                raise FakeAbort("the fake upstream aborts the stream as asked")
            if index and gap:
                await anyio.sleep(gap)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _gemini(self, request: RecordedRequest, send: Send) -> None:
        """Gemini's ``models/{model}:generateContent``, or its stream as SSE."""
        model = request.path.rpartition("/")[2].partition(":")[0]
        words = list(_words(int(request.header("x-fake-chunks") or len(_WORDS))))
        if not request.path.endswith(":streamGenerateContent"):
            await _json(send, 200, _gemini_chunk(model, " ".join(words), len(words)))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for i, word in enumerate(words):
            text = word if i == 0 else " " + word
            event = b"data: " + dumps(_gemini_chunk(model, text, i + 1)) + b"\r\n\r\n"
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _endless(self, receive: Receive, send: Send, gap: float) -> None:
        """Stream until the client leaves; counts open and closed streams."""
        self.open_streams += 1
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                for index in itertools.count():
                    body = b"data: " + str(index).encode() + b"\n\n"
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    await anyio.sleep(gap)
        finally:
            self.open_streams -= 1
            self.closed_streams += 1


def _words(count: int) -> Iterator[str]:
    return itertools.islice(itertools.cycle(_WORDS), count)


def _completion(anthropic: bool, model: str, number: int, text: str) -> dict[str, Any]:
    if anthropic:
        return {
            "id": f"msg_fake{number}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": len(text.split())},
        }
    return {
        "id": f"chatcmpl-fake{number}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": len(text.split()),
            "total_tokens": 10 + len(text.split()),
        },
    }


def _events(
    anthropic: bool, model: str, number: int, chunks: int, usage: bool = False
) -> Iterator[bytes]:
    """The SSE events of a streamed answer, one network write each.

    With ``usage`` (OpenAI's ``stream_options.include_usage``) a last chunk with
    empty ``choices`` carries the token counts, as OpenAI sends it.
    """
    words = list(_words(chunks))
    if anthropic:
        message = _completion(True, model, number, "")
        message["content"] = []
        message["usage"] = {"input_tokens": 10, "output_tokens": 1}
        yield _sse({"type": "message_start", "message": message}, "message_start")
        yield _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        )
        for i, word in enumerate(words):
            text = word if i == 0 else " " + word
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            }
            yield _sse(delta, "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
            "message_delta",
        )
        yield _sse({"type": "message_stop"}, "message_stop")
        return
    base = {
        "id": f"chatcmpl-fake{number}",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
    }
    for i, word in enumerate(words):
        text = word if i == 0 else " " + word
        delta = {"role": "assistant", "content": text} if i == 0 else {"content": text}
        yield _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        counts = {"prompt_tokens": 10, "completion_tokens": len(words)}
        yield _sse({**base, "choices": [], "usage": {**counts, "total_tokens": 10 + len(words)}})
    yield b"data: [DONE]\n\n"


def _gemini_chunk(model: str, text: str, output_tokens: int) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP"}
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": 10 + output_tokens,
        },
        "modelVersion": model,
    }


def _sse(payload: dict[str, Any], event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + dumps(payload) + b"\n\n"


def _models(*, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {
            "data": [
                {
                    "type": "model",
                    "id": "claude-fake-1",
                    "display_name": "Claude Fake 1",
                    "created_at": "2026-01-01T00:00:00Z",
                }
            ],
            "has_more": False,
            "first_id": "claude-fake-1",
            "last_id": "claude-fake-1",
        }
    return {
        "object": "list",
        "data": [
            {"id": "gpt-fake-1", "object": "model", "created": 1_700_000_000, "owned_by": "fake"},
            {"id": "gpt-fake-2", "object": "model", "created": 1_700_000_000, "owned_by": "fake"},
        ],
    }


def _echo(request: RecordedRequest) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path.decode("latin-1"),
        "query": request.query.decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers],
        "body": request.body.decode("latin-1"),
    }


async def _error(send: Send, status: int, anthropic: bool, message: str | None = None) -> None:
    message = message or f"fake upstream error {status}"
    if anthropic:
        payload: dict[str, Any] = {
            "type": "error",
            "error": {"type": "api_error", "message": message},
        }
    else:
        payload = {
            "error": {"message": message, "type": "fake_error", "param": None, "code": str(status)}
        }
    await _json(send, status, payload)


async def _json(send: Send, status: int, payload: Any) -> None:
    await _respond(send, status, dumps(payload), [(b"content-type", b"application/json")])


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers = [
        *headers,
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", b"upstream-" + str(status).encode()),
        (b"set-cookie", b"upstream_session=1; Path=/"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
