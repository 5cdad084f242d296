"""Answers rewritten for a transform: a ``send`` that runs an
:class:`~provider_proxy.AnswerRewriter` over the provider's answer.

A streamed answer (``text/event-stream``) is rewritten chunk by chunk as it
arrives, its head sent at once without a ``Content-Length``; a whole answer is
collected (at most :data:`MAX_WHOLE_ANSWER` bytes, else relayed unchanged) and
sent with the length of its new body. Error statuses, encoded bodies and
answers the rewriter does not want pass through untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._adapter import AnswerRewriter
from ..policy import RawHeaders, header_value
from ..types import Message, Send

#: The largest whole answer collected to be rewritten (bigger ones go on as they are).
MAX_WHOLE_ANSWER = 32 * 1024 * 1024


def rewriting_send(send: Send, rewriters: Sequence[AnswerRewriter]) -> Send:
    """``send`` with ``rewriters`` applied to the answer, the last one first."""
    for rewriter in rewriters:
        send = _RewritingSend(send, rewriter)
    return send


class _RewritingSend:
    __slots__ = ("_head", "_mode", "_parts", "_rewriter", "_send", "_size")

    def __init__(self, send: Send, rewriter: AnswerRewriter) -> None:
        self._send = send
        self._rewriter = rewriter
        #: None: pass through; "stream" or "whole": rewrite.
        self._mode: str | None = None
        self._head: Message | None = None
        self._parts: list[bytes] = []
        self._size = 0

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self._start(message)
            return
        if kind != "http.response.body" or self._mode is None:
            await self._send(message)
            return
        data: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self._mode == "stream":
            out = self._rewriter.chunk(data) if data else b""
            if not more:
                out += self._rewriter.end()
            if out or not more:
                await self._send({"type": "http.response.body", "body": out, "more_body": more})
            return
        self._parts.append(data)
        self._size += len(data)
        if self._size > MAX_WHOLE_ANSWER:  # too big to hold: relay it as it is
            await self._release(b"".join(self._parts), more, rewritten=False)
            return
        if not more:
            await self._release(self._rewriter.whole(b"".join(self._parts)), False, rewritten=True)

    async def _start(self, message: Message) -> None:
        headers: RawHeaders = message.get("headers", [])
        content_type = (header_value(headers, b"content-type") or b"").decode("latin-1").lower()
        encoding = header_value(headers, b"content-encoding")
        if (encoding not in (None, b"identity")) or not self._rewriter.wants(
            message["status"], content_type
        ):
            await self._send(message)
            return
        if content_type.startswith("text/event-stream"):
            self._mode = "stream"
            await self._send(dict(message, headers=_without_length(headers)))
        else:
            self._mode = "whole"
            self._head = message

    async def _release(self, body: bytes, more: bool, *, rewritten: bool) -> None:
        head = self._head
        assert head is not None
        self._mode = None  # what follows passes through
        headers = list(head.get("headers", []))
        if rewritten:
            headers = [*_without_length(headers), (b"content-length", str(len(body)).encode())]
        await self._send(dict(head, headers=headers))
        await self._send({"type": "http.response.body", "body": body, "more_body": more})


def _without_length(headers: RawHeaders) -> list[tuple[bytes, bytes]]:
    return [item for item in headers if item[0].lower() != b"content-length"]
