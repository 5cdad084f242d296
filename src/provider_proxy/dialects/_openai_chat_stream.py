"""OpenAI Chat Completions streams ⇄ canonical stream events (sans-I/O).

A Chat stream is ``data:`` events of ``chat.completion.chunk`` objects, then
``data: [DONE]``. The first chunk's delta has the role; tool calls stream by
``index``, the first delta of each with its ``id`` and ``function.name``, the
next ones with pieces of ``function.arguments``; the chunk with
``finish_reason`` ends the content, and when the request asked for
``stream_options.include_usage`` a last chunk with empty ``choices`` has the
usage. An error in the middle of a stream is a ``data: {"error": {...}}`` event.
"""

from __future__ import annotations

from typing import Any

from .._json import dumps, loads
from . import _openai_chat_codec as codec
from . import _web_search as ws
from .canonical import (
    Cited,
    Finish,
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
    UntranslatableResponse,
    Usage,
    UsageReport,
    WebSearchDone,
)

DONE = "[DONE]"


class StreamDecoder:
    """Chat chunks in, canonical events out: :meth:`feed` each event, :meth:`end` at the end."""

    __slots__ = ("_done", "_finished", "_open", "_started", "_tool_ids")

    def __init__(self) -> None:
        self._started = False
        self._finished = False
        self._done = False
        #: The tool call whose arguments are streaming (OpenAI streams one at a time).
        self._open: int | None = None
        #: Chat's tool-call index -> seen (ended calls stay, so a late delta is caught).
        self._tool_ids: dict[int, str] = {}

    def feed_text(self, event: str, data: str) -> list[StreamEvent]:
        """One SSE event as received (its ``data`` still JSON text)."""
        if data.strip() == DONE:
            return self.feed(event, DONE)
        try:
            parsed = loads(data)
        except ValueError:
            return [
                StreamError(502, "server_error", "The provider sent an event that is not JSON.")
            ]
        return self.feed(event, parsed)

    def feed(self, event: str, data: Any) -> list[StreamEvent]:
        """One SSE event: its name and its parsed ``data`` (``"[DONE]"`` as the string)."""
        if data == DONE:
            self._done = True
            return self._close_tool()
        if not isinstance(data, dict):
            return []
        if isinstance(data.get("error"), dict):
            self._done = True
            return [codec.decode_error(500, data)]
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(MessageStart(str(data.get("id", "")), str(data.get("model", ""))))
        for choice in data.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out.extend(self._choice(choice))
        if isinstance(data.get("usage"), dict):
            out.append(UsageReport(codec.decode_usage(data["usage"])))
        return out

    def end(self) -> list[StreamEvent]:
        """The upstream stream ended: an error unless it finished properly."""
        if self._finished or self._done:
            return []
        return [StreamError(502, "server_error", "The provider's stream ended before it finished.")]

    @property
    def finished(self) -> bool:
        """The content ended with a finish reason."""
        return self._finished

    def _choice(self, choice: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = delta.get("reasoning_content", delta.get("reasoning"))
            if isinstance(reasoning, str) and reasoning:
                out.append(ReasoningDelta(reasoning))
            content = delta.get("content")
            if isinstance(content, str) and content:
                out.extend(self._close_tool())
                out.append(TextDelta(content))
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                out.append(RefusalDelta(refusal))
            for call in delta.get("tool_calls") or ():
                out.extend(self._tool_call(call))
        reason = choice.get("finish_reason")
        if reason is not None:
            out.extend(self._close_tool())
            self._finished = True
            try:
                out.append(Finish(codec.finish_reason(reason)))
            except UntranslatableResponse as error:  # an unknown reason: never "stop"
                self._done = True
                out.append(StreamError(error.status_code, "server_error", error.message))
        return out

    def _tool_call(self, call: Any) -> list[StreamEvent]:
        if not isinstance(call, dict):
            return []
        index = call.get("index", 0)
        function = call.get("function") or {}
        out: list[StreamEvent] = []
        if index not in self._tool_ids:
            out.extend(self._close_tool())
            call_id, name = call.get("id"), function.get("name")
            self._tool_ids[index] = str(call_id or "")
            self._open = index
            out.append(ToolCallStart(index, str(call_id or ""), str(name or "")))
        elif index != self._open:
            message = "The provider interleaved the arguments of several tool calls."
            return [StreamError(502, "server_error", message)]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(ToolCallDelta(index, arguments))
        return out

    def _close_tool(self) -> list[StreamEvent]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [ToolCallEnd(index)]


class StreamEncoder:
    """Canonical events in, Chat SSE bytes out.

    :param include_usage: the client asked for ``stream_options.include_usage``:
        a usage chunk comes last, before ``[DONE]``.
    :param created: the chunks' ``created`` (Unix seconds; the caller's clock).
    """

    __slots__ = (
        "_argued",
        "_created",
        "_errored",
        "_id",
        "_include_usage",
        "_model",
        "_run",
        "_usage",
        "_written",
    )

    def __init__(self, *, include_usage: bool = False, created: int = 0) -> None:
        self._include_usage = include_usage
        self._created = created
        self._id = ""
        self._model = ""
        self._usage = Usage()
        self._errored = False
        #: The tool calls that have had arguments (one that had none gets ``{}``).
        self._argued: set[int] = set()
        #: The content's length so far, and where the text since the last other event began.
        self._written = 0
        self._run = 0

    def feed(self, event: StreamEvent) -> bytes:
        """The bytes that one canonical event becomes (often none)."""
        if isinstance(event, MessageStart):
            self._id, self._model = event.id, event.model
            return self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, TextDelta):
            self._written += len(event.text)
            return self._chunk({"content": event.text})
        if isinstance(event, Cited):
            return self._cite(event)
        if not isinstance(event, UsageReport | Finish | StreamError):
            self._run = self._written
        if isinstance(event, ReasoningDelta):
            return self._chunk({"reasoning_content": event.text})
        if isinstance(event, RefusalDelta):
            return self._chunk({"refusal": event.text})
        if isinstance(event, ToolCallStart):
            call = {
                "index": event.index,
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return self._chunk({"tool_calls": [call]})
        if isinstance(event, ToolCallDelta):
            self._argued.add(event.index)
            return self._arguments(event.index, event.arguments)
        if isinstance(event, ToolCallEnd):
            if event.index in self._argued:
                return b""
            self._argued.add(event.index)
            return self._arguments(event.index, "{}")
        if isinstance(event, Finish):
            return self._chunk({}, event.reason.value)
        if isinstance(event, UsageReport):
            self._usage = self._usage.merge(event.usage)
            return b""
        if isinstance(event, StreamError):
            self._errored = True
            _, body = codec.encode_error(event.status, event.kind, event.message)
            return _sse(body)
        if isinstance(event, WebSearchDone):
            return b""  # Chat has no search items; the citations are the annotations
        # Reasoning signatures and encrypted reasoning: Chat cannot carry them.
        assert isinstance(event, ReasoningSignature | RedactedReasoningBlock)
        return b""

    def _cite(self, event: Cited) -> bytes:
        """A ``url_citation`` annotation, its offsets into the message's content."""
        run = " " * (self._written - self._run)  # only its length matters
        (annotation,) = ws.chat_annotations((Text(run, citations=(event.citation,)),))
        for key in ("start_index", "end_index"):
            annotation["url_citation"][key] += self._run
        return self._chunk({"annotations": [annotation]})

    def _arguments(self, index: int, arguments: str) -> bytes:
        return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})

    def close(self) -> bytes:
        """The end of the stream: the usage chunk if asked for, then ``[DONE]``.

        After an error, nothing: the stream must not look complete.
        """
        if self._errored:
            return b""
        out = b""
        if self._include_usage:
            out = _sse({**self._head(), "choices": [], "usage": codec.encode_usage(self._usage)})
        return out + b"data: [DONE]\n\n"

    def _head(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**self._head(), "choices": [choice]})


def _sse(data: Any) -> bytes:
    return b"data: " + dumps(data) + b"\n\n"
