"""Gemini ``streamGenerateContent?alt=sse`` streams ⇄ canonical stream events (sans-I/O).

Each ``data:`` event is a whole ``GenerateContentResponse`` holding the next
parts of the one candidate: text, thought text (``"thought": true``), and
function calls, each whole in one part (Gemini does not stream arguments).
Usage (``usageMetadata``) comes with the chunks, cumulative, and the last
chunk has the ``finishReason``. An error in the middle of a stream is a
``data: {"error": {...}}`` event. Thought signatures and call ids are read and
written as :mod:`._gemini_codec` says.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .._exceptions import ProxyError
from .._json import dumps, loads
from . import _codec_util as u
from . import _gemini_codec as codec
from . import _web_search as ws
from ._gemini_schema import from_gemini_name
from .canonical import (
    Citation,
    Cited,
    Finish,
    FinishReason,
    MessageStart,
    ReasoningDelta,
    ReasoningSignature,
    RedactedReasoningBlock,
    RefusalDelta,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    UsageReport,
    WebSearchCall,
    WebSearchDone,
)


class StreamDecoder:
    """Gemini chunks in, canonical events out: :meth:`feed` each event, :meth:`end` at the end."""

    __slots__ = (
        "_calls",
        "_done",
        "_finished",
        "_grounding",
        "_length",
        "_run",
        "_started",
        "_text",
    )

    def __init__(self) -> None:
        self._started = False
        self._finished = False
        self._done = False
        self._calls = 0
        #: The answer's text so far, its length, and where the text since the last
        #: other event began.
        self._text: list[str] = []
        self._length = 0
        self._run = 0
        #: The latest ``groundingMetadata`` (it comes whole, with the last chunks).
        self._grounding: Any = None

    def feed_text(self, event: str, data: str) -> list[StreamEvent]:
        """One SSE event as received (its ``data`` still JSON text)."""
        try:
            parsed = loads(data)
        except ValueError:
            return [
                StreamError(502, "server_error", "The provider sent an event that is not JSON.")
            ]
        return self.feed(event, parsed)

    def feed(self, event: str, data: Any) -> list[StreamEvent]:
        """One SSE event: its (unused) name and its parsed ``data``."""
        if not isinstance(data, dict) or self._done:
            return []
        if isinstance(data.get("error"), dict):
            self._done = True
            return [codec.decode_error(500, data)]
        try:
            return self._chunk(codec.camel(data))
        except ProxyError as error:
            self._done = True
            return [StreamError(error.status_code, "server_error", error.message)]

    def end(self) -> list[StreamEvent]:
        """The upstream stream ended: an error unless it finished properly."""
        if self._finished or self._done:
            return []
        return [StreamError(502, "server_error", "The provider's stream ended before it finished.")]

    @property
    def finished(self) -> bool:
        """The content ended with a finish reason."""
        return self._finished

    def _chunk(self, data: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._finished:  # after the finish reason only the usage may still change
            if isinstance(data.get("usageMetadata"), dict):
                out.append(self._usage(data["usageMetadata"]))
            return out
        response_id = str(data.get("responseId", ""))
        if not self._started:
            self._started = True
            out.append(MessageStart(response_id, str(data.get("modelVersion", ""))))
        candidates = data.get("candidates") or []
        candidate = codec.camel(candidates[0]) if candidates else {}
        parts = (candidate.get("content") or {}).get("parts") or []
        for k, part in enumerate(u.arr(parts, "candidates[0].content.parts")):
            for item in self._part(codec.camel(u.obj(part, f"parts[{k}]")), response_id):
                if isinstance(item, TextDelta):
                    self._text.append(item.text)
                    self._length += len(item.text)
                else:
                    self._run = self._length
                out.append(item)
        if candidate.get("groundingMetadata") is not None:
            self._grounding = codec.camel(candidate["groundingMetadata"])
        reason = candidate.get("finishReason")
        if reason is not None and self._grounding is not None:
            out.extend(self._searched(response_id))
        if not candidates and (data.get("promptFeedback") or {}).get("blockReason"):
            reason = "SAFETY"
        if reason is not None:
            self._finished = True
            out.append(Finish(codec.finish_reason(reason, self._calls > 0)))
        if isinstance(data.get("usageMetadata"), dict):
            out.append(self._usage(data["usageMetadata"]))
        return out

    def _usage(self, counts: dict[str, Any]) -> UsageReport:
        """The counts so far; a grounded answer is one web search (Google bills the prompt)."""
        usage = codec.decode_usage(counts)
        if self._grounding is not None:
            usage = usage.merge(Usage(web_searches=1))
        return UsageReport(usage)

    def _searched(self, response_id: str) -> list[StreamEvent]:
        """The citations of the text since the last other event, then the search call."""
        call, cited = ws.decode_grounding(
            self._grounding, ["".join(self._text)], ws.gemini_call_id(response_id)
        )
        out: list[StreamEvent] = [
            Cited(replace(c, start=(c.start or 0) - self._run, end=(c.end or 0) - self._run))
            for c in cited[0]
            if (c.start or 0) >= self._run
        ]
        return [*out, WebSearchDone(call)] if call is not None else out

    def _part(self, part: dict[str, Any], response_id: str) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        signature = part.get("thoughtSignature")
        if part.get("thought") is True:
            text = part.get("text")
            if isinstance(text, str) and text:
                out.append(ReasoningDelta(text))
            if isinstance(signature, str) and signature:
                out.append(ReasoningSignature(signature))
            return out
        if isinstance(signature, str) and signature:
            out.append(ReasoningSignature(signature))
        if "text" in part:
            text = part["text"]
            return [*out, TextDelta(text)] if isinstance(text, str) and text else out
        if "functionCall" in part:
            fn = u.obj(part["functionCall"], "functionCall")
            name = from_gemini_name(str(fn.get("name", "")))
            arguments = u.arguments_text(fn.get("args") or {})
            index = self._calls
            self._calls += 1
            given = fn.get("id")
            identifier = (
                given
                if isinstance(given, str) and given
                else codec.call_id(response_id, index, name, arguments)
            )
            return [
                *out,
                ToolCallStart(index, identifier, name),
                ToolCallDelta(index, arguments),
                ToolCallEnd(index),
            ]
        key = next(iter(part), "part")
        raise ProxyError(f"The provider streamed a {key!r} part, which does not translate.")


class StreamEncoder:
    """Canonical events in, Gemini SSE bytes out (a chunk per piece of content).

    A tool call is written whole when it ends; the finish reason and the final
    usage go in the last chunk, written by :meth:`close`.
    """

    __slots__ = (
        "_calls",
        "_cited",
        "_errored",
        "_finish",
        "_id",
        "_length",
        "_model",
        "_run",
        "_searches",
        "_text",
        "_usage",
    )

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._usage = Usage()
        self._finish: FinishReason | None = None
        self._errored = False
        #: The answer's text, where its run since the last other event began, its
        #: citations (offsets into the whole text) and its searches: the last chunk's
        #: ``groundingMetadata``.
        self._text: list[str] = []
        self._length = 0
        self._run = 0
        self._cited: list[Citation] = []
        self._searches: list[WebSearchCall] = []
        #: Open tool calls: index -> (id, name, argument pieces).
        self._calls: dict[int, tuple[str, str, list[str]]] = {}

    def feed(self, event: StreamEvent) -> bytes:
        """The bytes that one canonical event becomes (often none)."""
        if self._errored:
            return b""
        if isinstance(event, MessageStart):
            self._id, self._model = event.id, event.model
            return b""
        if isinstance(event, UsageReport):
            self._usage = self._usage.merge(event.usage)
            return b""
        if isinstance(event, TextDelta | RefusalDelta):
            self._text.append(event.text)
            self._length += len(event.text)
            return self._parts([{"text": event.text}])
        if isinstance(event, Cited):
            start, end = event.citation.start or 0, event.citation.end
            self._cited.append(
                replace(
                    event.citation,
                    start=self._run + start,
                    end=None if end is None else self._run + end,
                )
            )
            return b""
        self._run = self._length
        if isinstance(event, WebSearchDone):
            self._searches.append(event.call)
            return b""
        if isinstance(event, ReasoningDelta):
            return self._parts([{"text": event.text, "thought": True}])
        if isinstance(event, ReasoningSignature):
            part = {"text": "", "thought": True, "thoughtSignature": event.signature}
            return self._parts([part])
        if isinstance(event, RedactedReasoningBlock):
            return b""  # another provider's encrypted reasoning: the gateway keeps it
        if isinstance(event, ToolCallStart):
            self._calls[event.index] = (event.id, event.name, [])
            return b""
        if isinstance(event, ToolCallDelta):
            call = self._calls.get(event.index)
            if call is None:
                return self._error(502, "server_error", "Tool-call arguments arrived out of order.")
            call[2].append(event.arguments)
            return b""
        if isinstance(event, ToolCallEnd):
            return self._end_call(event.index)
        if isinstance(event, Finish):
            out = b"".join(self._end_call(index) for index in list(self._calls))
            self._finish = event.reason
            return out
        assert isinstance(event, StreamError)
        return self._error(event.status, event.kind, event.message)

    def close(self) -> bytes:
        """The last chunk, with the finish reason and usage (after an error: nothing)."""
        if self._errored:
            return b""
        if self._finish is None:
            return self._error(502, "server_error", "The stream ended before the answer finished.")
        candidate: dict[str, Any] = {
            "content": {"role": "model", "parts": []},
            "finishReason": codec.ENCODED_FINISHES[self._finish],
            "index": 0,
        }
        text = Text("".join(self._text), citations=tuple(self._cited))
        grounding = ws.grounding_metadata((*self._searches, text))
        if grounding is not None:
            candidate["groundingMetadata"] = grounding
        return _sse({**self._head(), "candidates": [candidate]}, self._usage)

    def _end_call(self, index: int) -> bytes:
        call = self._calls.pop(index, None)
        if call is None:
            return b""
        identifier, name, pieces = call
        try:
            args = u.arguments_object("".join(pieces), f"tool call {identifier!r}")
        except ProxyError as error:
            return self._error(502, "server_error", error.message)
        return self._parts([{"functionCall": {"id": identifier, "name": name, "args": args}}])

    def _error(self, status: int, kind: str, message: str) -> bytes:
        self._errored = True
        _, body = codec.encode_error(status, kind, message)
        return b"data: " + dumps(body) + b"\r\n\r\n"

    def _head(self) -> dict[str, Any]:
        return {"modelVersion": self._model, "responseId": self._id}

    def _parts(self, parts: list[dict[str, Any]]) -> bytes:
        candidate = {"content": {"role": "model", "parts": parts}, "index": 0}
        return _sse({**self._head(), "candidates": [candidate]}, None)


def _sse(chunk: dict[str, Any], usage: Usage | None) -> bytes:
    if usage is not None:
        chunk["usageMetadata"] = codec.encode_usage(usage)
    return b"data: " + dumps(chunk) + b"\r\n\r\n"
