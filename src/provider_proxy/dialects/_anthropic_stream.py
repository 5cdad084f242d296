"""Anthropic Messages streams ⇄ canonical stream events (sans-I/O).

A Messages stream is named events (https://docs.anthropic.com/en/api/messages-streaming):
``message_start`` (the message, with the input usage), then per content block
``content_block_start`` / ``content_block_delta``\\* / ``content_block_stop``
by ``index`` (deltas: ``text_delta``, ``input_json_delta``, ``thinking_delta``,
``signature_delta``), then ``message_delta`` (``stop_reason``, cumulative
usage) and ``message_stop``; ``ping`` any time, ``error`` on failure.

Canonical tool-call indexes count tool calls only; block indexes count every
block, so the decoder and the encoder each keep the map between them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .._exceptions import ProxyError
from .._json import dumps, loads
from . import _anthropic_codec as codec
from . import _web_search as ws
from .canonical import (
    Citation,
    Cited,
    Finish,
    FinishReason,
    MessageStart,
    Paused,
    ReasoningDelta,
    ReasoningSignature,
    RedactedReasoningBlock,
    RefusalDelta,
    StreamError,
    StreamEvent,
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
    """Messages events in, canonical events out: :meth:`feed` each event, :meth:`end` at the end."""

    __slots__ = ("_cites", "_done", "_finished", "_run", "_searches", "_texts", "_tools")

    def __init__(self) -> None:
        #: Block index -> canonical tool-call index, for the tool_use blocks.
        self._tools: dict[int, int] = {}
        self._finished = False
        self._done = False
        #: Web search calls by block index: their id and the pieces of their input.
        self._searches: dict[int, tuple[str, list[str]]] = {}
        #: The characters of text streamed since the last event that was not text.
        self._run = 0
        #: Text blocks by index: where each began in the run, and its citations.
        self._texts: dict[int, int] = {}
        self._cites: dict[int, list[Citation]] = {}

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
        """One SSE event: its name and its parsed ``data``."""
        if not isinstance(data, dict):
            return []
        kind = data.get("type", event)
        try:
            out = self._event(kind, data)
        except ProxyError as error:
            self._done = True
            return [StreamError(error.status_code, "server_error", error.message)]
        for item in out:
            if isinstance(item, TextDelta):
                self._run += len(item.text)
            elif not isinstance(item, UsageReport | Cited | MessageStart | Finish):
                self._run = 0
        return out

    def end(self) -> list[StreamEvent]:
        """The upstream stream ended: an error unless it finished properly."""
        if self._done:
            return []
        return [StreamError(502, "server_error", "The provider's stream ended before it finished.")]

    @property
    def finished(self) -> bool:
        """The content ended with a stop reason."""
        return self._finished

    def _event(self, kind: str, data: dict[str, Any]) -> list[StreamEvent]:
        if kind == "message_start":
            message = data.get("message") or {}
            out: list[StreamEvent] = [
                MessageStart(str(message.get("id", "")), str(message.get("model", "")))
            ]
            if isinstance(message.get("usage"), dict):
                out.append(UsageReport(codec.decode_usage(message["usage"])))
            return out
        if kind == "content_block_start":
            return self._block_start(data.get("index", 0), data.get("content_block") or {})
        if kind == "content_block_delta":
            return self._delta(data.get("index", 0), data.get("delta") or {})
        if kind == "content_block_stop":
            block = data.get("index", 0)
            if block in self._texts:
                start = self._texts.pop(block)
                cites = self._cites.pop(block, [])
                return [Cited(replace(c, start=start, end=self._run)) for c in cites]
            index = self._tools.get(block)
            return [] if index is None else [ToolCallEnd(index)]
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            self._done = True
            return []
        if kind == "error":
            self._done = True
            return [codec.decode_error(500, data)]
        return []  # ping, and events added later that carry no content

    def _block_start(self, index: int, block: dict[str, Any]) -> list[StreamEvent]:
        kind = block.get("type")
        if kind == "text":
            self._texts[index] = self._run
            self._cites[index] = list(ws.decode_anthropic_citations(block.get("citations"), "text"))
            return [TextDelta(block["text"])] if block.get("text") else []
        if kind == "server_tool_use":
            call = ws.decode_server_tool_use({**block, "input": {"query": ""}}, "server_tool_use")
            self._searches[index] = (call.id, [])
            if block.get("input"):
                self._searches[index][1].append(dumps(block["input"]).decode("utf-8"))
            return []
        if kind == "web_search_tool_result":
            found = ws.decode_search_result(block, "web_search_tool_result")
            return [WebSearchDone(self._searched(found))]
        if kind == "thinking":
            out: list[StreamEvent] = []
            if block.get("thinking"):
                out.append(ReasoningDelta(block["thinking"]))
            if block.get("signature"):
                out.append(ReasoningSignature(block["signature"]))
            return out
        if kind == "redacted_thinking":
            return [RedactedReasoningBlock(str(block.get("data", "")))]
        if kind == "tool_use":
            ordinal = self._tools[index] = len(self._tools)
            call_id = codec.from_anthropic_id(str(block.get("id", "")))
            started: list[StreamEvent] = [
                ToolCallStart(ordinal, call_id, str(block.get("name", "")))
            ]
            if block.get("input"):
                started.append(ToolCallDelta(ordinal, dumps(block["input"]).decode("utf-8")))
            return started
        raise ProxyError(f"The provider streamed a {kind!r} block, which does not translate.")

    def _delta(self, index: int, delta: dict[str, Any]) -> list[StreamEvent]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [TextDelta(delta["text"])] if delta.get("text") else []
        if kind == "input_json_delta" and index in self._searches:
            self._searches[index][1].append(str(delta.get("partial_json", "")))
            return []
        if kind == "input_json_delta":
            piece = delta.get("partial_json")
            return [ToolCallDelta(self._tools[index], piece)] if piece else []
        if kind == "citations_delta" and index in self._cites:
            citation = ws.decode_anthropic_citation(delta.get("citation"), "citation")
            if citation is not None:
                self._cites[index].append(citation)
            return []
        if kind == "thinking_delta":
            return [ReasoningDelta(delta["thinking"])] if delta.get("thinking") else []
        if kind == "signature_delta":
            return [ReasoningSignature(str(delta.get("signature", "")))]
        return []

    def _searched(self, found: WebSearchCall) -> WebSearchCall:
        """The search call whose result ``found`` is, with the query its input streamed."""
        for index, (call_id, pieces) in list(self._searches.items()):
            if call_id == found.id:
                del self._searches[index]
                try:
                    query = loads("".join(pieces) or "{}").get("query")
                except (ValueError, AttributeError):
                    raise ProxyError(
                        "The provider streamed a web search with a bad input."
                    ) from None
                queries = (query,) if isinstance(query, str) else ()
                return replace(found, queries=queries)
        raise ProxyError("The provider streamed a web search result of no search call.")

    def _message_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        reason = (data.get("delta") or {}).get("stop_reason")
        if reason is not None:
            paused = reason == codec.PAUSE_TURN
            out.append(Paused() if paused else Finish(codec.stop_reason(reason)))
            self._finished = True
        counts = data.get("usage")
        if isinstance(counts, dict):
            usage = codec.decode_usage(counts)
            if (
                "cache_read_input_tokens" not in counts
                or "cache_creation_input_tokens" not in counts
            ):
                # Without both cache counts the input total cannot be normalised: keep the earlier.
                usage = Usage(
                    output_tokens=usage.output_tokens,
                    reasoning_tokens=usage.reasoning_tokens,
                    web_searches=usage.web_searches,
                )
            out.append(UsageReport(usage))
        return out


class StreamEncoder:
    """Canonical events in, Messages SSE bytes out.

    ``message_start`` is written with the first event after :class:`MessageStart`
    that is not usage, so it carries the input count when the provider said it
    first; ``message_delta`` waits for :meth:`close`, so it carries the final usage.
    """

    __slots__ = (
        "_block",
        "_cited",
        "_errored",
        "_finish",
        "_kind",
        "_next",
        "_signed",
        "_start",
        "_tool",
        "_usage",
    )

    def __init__(self) -> None:
        self._start: MessageStart | None = None
        self._usage = Usage()
        #: The open block's index and kind (``None``: no block is open).
        self._block: int | None = None
        self._kind = ""
        self._tool: int | None = None
        self._signed = False
        self._next = 0
        self._finish: FinishReason | None = None
        self._errored = False
        self._cited = False

    def feed(self, event: StreamEvent) -> bytes:
        """The bytes that one canonical event becomes (often none)."""
        if isinstance(event, MessageStart):
            self._start = event
            return b""
        if isinstance(event, UsageReport):
            self._usage = self._usage.merge(event.usage)
            return b""
        if self._errored:
            return b""
        return self._flush_start() + self._content(event)

    def close(self) -> bytes:
        """The end of the stream: the open block's stop, ``message_delta``, ``message_stop``."""
        if self._errored:
            return b""
        out = self._flush_start() + self._close_block()
        if self._finish is None:
            self._errored = True
            return out + _error_event("api_error", "The stream ended before the answer finished.")
        usage = codec.encode_usage(self._usage)
        delta = {"stop_reason": codec.FINISH_REASONS[self._finish], "stop_sequence": None}
        out += _event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return out + _event("message_stop", {"type": "message_stop"})

    def _content(self, event: StreamEvent) -> bytes:
        if isinstance(event, TextDelta | RefusalDelta):
            out = self._close_block() if self._cited else b""  # cited text ends its block
            return (
                out
                + self._open("text", {"type": "text", "text": ""})
                + self._block_delta({"type": "text_delta", "text": event.text})
            )
        if isinstance(event, ReasoningDelta):
            out = b"" if self._kind == "thinking" and not self._signed else self._close_block()
            out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            return out + self._block_delta({"type": "thinking_delta", "thinking": event.text})
        if isinstance(event, ReasoningSignature):
            out = self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            self._signed = True
            return out + self._block_delta(
                {"type": "signature_delta", "signature": event.signature}
            )
        if isinstance(event, RedactedReasoningBlock):
            out = self._close_block() + self._open(
                "redacted_thinking", {"type": "redacted_thinking", "data": event.data}
            )
            return out + self._close_block()
        if isinstance(event, ToolCallStart):
            block = {
                "type": "tool_use",
                "id": codec.to_anthropic_id(event.id),
                "name": event.name,
                "input": {},
            }
            out = self._close_block() + self._open("tool_use", block)
            self._tool = event.index
            return out
        if isinstance(event, ToolCallDelta):
            if self._tool != event.index:
                return self._error(502, "server_error", "Tool-call arguments arrived out of order.")
            return self._block_delta({"type": "input_json_delta", "partial_json": event.arguments})
        if isinstance(event, ToolCallEnd):
            return self._close_block() if self._tool == event.index else b""
        if isinstance(event, WebSearchDone):
            return self._search(event.call)
        if isinstance(event, Cited):
            if self._kind != "text":
                return b""
            self._cited = True
            citation = ws.anthropic_citation(event.citation)
            return self._block_delta({"type": "citations_delta", "citation": citation})
        if isinstance(event, Finish):
            self._finish = event.reason
            return self._close_block()
        assert isinstance(event, StreamError)
        return self._error(event.status, event.kind, event.message)

    def _error(self, status: int, kind: str, message: str) -> bytes:
        self._errored = True
        _, body = codec.encode_error(status, kind, message)
        return _event("error", body)

    def _search(self, call: WebSearchCall) -> bytes:
        """The search's ``server_tool_use`` block (its query streamed) and its result block."""
        use, result = ws.anthropic_blocks(call, answer=True)
        out = self._close_block() + self._open("server_tool_use", {**use, "input": {}})
        query = dumps(use["input"]).decode("utf-8")
        out += self._block_delta({"type": "input_json_delta", "partial_json": query})
        out += self._close_block() + self._open("web_search_tool_result", result)
        return out + self._close_block()

    def _flush_start(self) -> bytes:
        start, self._start = self._start, None
        if start is None:
            return b""
        usage = codec.encode_usage(self._usage)
        message: dict[str, Any] = {
            "id": start.id,
            "type": "message",
            "role": "assistant",
            "model": start.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return _event("message_start", {"type": "message_start", "message": message})

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        if self._block is not None and self._kind == kind and kind != "tool_use":
            return b""
        out = self._close_block()
        self._block, self._kind, self._signed = self._next, kind, False
        self._next += 1
        start = {"type": "content_block_start", "index": self._block, "content_block": block}
        return out + _event("content_block_start", start)

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        data = {"type": "content_block_delta", "index": self._block, "delta": delta}
        return _event("content_block_delta", data)

    def _close_block(self) -> bytes:
        if self._block is None:
            return b""
        index, self._block, self._kind, self._tool = self._block, None, "", None
        self._cited = False
        return _event("content_block_stop", {"type": "content_block_stop", "index": index})


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode("ascii") + b"\ndata: " + dumps(data) + b"\n\n"


def _error_event(error_type: str, message: str) -> bytes:
    return _event("error", {"type": "error", "error": {"type": error_type, "message": message}})
