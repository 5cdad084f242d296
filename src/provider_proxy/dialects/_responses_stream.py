"""OpenAI Responses streams ⇄ canonical stream events (sans-I/O).

A Responses stream is named SSE events, each ``data`` an object with its
``type`` and a ``sequence_number`` counting from 0: ``response.created`` and
``response.in_progress`` (the ``response`` so far), then for each output item
``response.output_item.added``, its content (``response.content_part.added``,
``response.output_text.delta`` ... ``.done``, ``response.content_part.done``;
``response.function_call_arguments.delta`` ... ``.done``;
``response.reasoning_summary_part.added``,
``response.reasoning_summary_text.delta`` ... ``.done``), and
``response.output_item.done`` with the whole item; last
``response.completed`` (or ``response.incomplete``) with the usage. A failure
is an ``error`` event, then ``response.failed``.
"""

from __future__ import annotations

from typing import Any

from .._json import dumps, loads
from . import _responses_items as items
from . import _web_search as ws
from .canonical import (
    Cited,
    Finish,
    FinishReason,
    MessageStart,
    Part,
    ReasoningDelta,
    ReasoningSignature,
    RedactedReasoning,
    RedactedReasoningBlock,
    RefusalDelta,
    Request,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Unsupported,
    UntranslatableResponse,
    Usage,
    UsageReport,
    WebSearchCall,
    WebSearchDone,
)


class StreamDecoder:
    """Responses events in, canonical events out: :meth:`feed` each, :meth:`end` at the end."""

    __slots__ = ("_calls", "_done", "_part", "_reasoned", "_started", "_tools")

    def __init__(self) -> None:
        self._started = False
        self._done = False
        #: Output index of each function call -> its canonical index, and whether it had deltas.
        self._calls: dict[int, tuple[int, bool]] = {}
        self._tools = 0
        #: Output indexes of reasoning items whose text streamed.
        self._reasoned: set[int] = set()
        #: The text of the output_text part streaming (what its annotations cite).
        self._part: list[str] = []

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
        """One SSE event: its name and its parsed ``data`` (the ``type`` in it wins)."""
        if not isinstance(data, dict) or self._done:
            return []
        kind = data.get("type", event)
        out: list[StreamEvent] = []
        if kind in ("response.created", "response.in_progress", "response.queued"):
            if not self._started:
                self._started = True
                response = data.get("response") or {}
                out.append(
                    MessageStart(str(response.get("id", "")), str(response.get("model", "")))
                )
            return out
        if kind == "error":
            self._done = True
            return [items.decode_stream_error(data)]
        if kind == "response.failed":
            self._done = True
            return [items.decode_stream_error(data)]
        index = data.get("output_index")
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") == "function_call" and isinstance(index, int):
                self._calls[index] = (self._tools, False)
                self._tools += 1
                namespace = item.get("namespace")
                call_id = str(item.get("call_id", ""))
                name = items.flat_name(
                    namespace if isinstance(namespace, str) else None, str(item.get("name", ""))
                )
                out.append(ToolCallStart(self._calls[index][0], call_id, name))
        elif kind == "response.output_text.delta":
            delta = str(data.get("delta", ""))
            out.append(TextDelta(delta))
            self._part.append(delta)
        elif kind == "response.content_part.added":
            self._part = []
        elif kind == "response.refusal.delta":
            out.append(RefusalDelta(str(data.get("delta", ""))))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            if isinstance(index, int):
                self._reasoned.add(index)
            out.append(ReasoningDelta(str(data.get("delta", ""))))
        elif kind == "response.function_call_arguments.delta" and index in self._calls:
            number, _ = self._calls[index]
            self._calls[index] = (number, True)
            out.append(ToolCallDelta(number, str(data.get("delta", ""))))
        elif kind == "response.output_text.annotation.added":
            annotation = data.get("annotation")
            text = "".join(self._part)
            cited = ws.decode_url_citations([annotation], text, "annotation") if annotation else ()
            out.extend(Cited(citation) for citation in cited)
        elif kind == "response.output_item.done":
            out.extend(self._item_done(index, data.get("item") or {}))
        elif kind in ("response.completed", "response.incomplete"):
            out.extend(self._completed(data.get("response") or {}))
        return out

    def _item_done(self, index: Any, item: dict[str, Any]) -> list[StreamEvent]:
        kind = item.get("type")
        out: list[StreamEvent] = []
        if kind == "function_call" and index in self._calls:
            number, argued = self._calls[index]
            if not argued and item.get("arguments"):
                out.append(ToolCallDelta(number, str(item["arguments"])))
            out.append(ToolCallEnd(number))
        elif kind == "web_search_call":
            try:
                out.append(WebSearchDone(ws.decode_responses_call(item, "item")))
            except Unsupported:
                return [StreamError(502, "server_error", "The provider sent a bad search item.")]
        elif kind == "reasoning":
            try:
                part = items.decode_reasoning_item(item, "item")
            except Unsupported:
                return [StreamError(502, "server_error", "The provider sent a bad reasoning item.")]
            if isinstance(part, RedactedReasoning):
                out.append(RedactedReasoningBlock(part.data))
            else:
                if index not in self._reasoned and part.text:
                    out.append(ReasoningDelta(part.text))
                if part.signature is not None:
                    out.append(ReasoningSignature(part.signature))
        return out

    def _completed(self, response: dict[str, Any]) -> list[StreamEvent]:
        self._done = True
        out: list[StreamEvent] = [
            UsageReport(items.decode_usage(response.get("usage"), response.get("output")))
        ]
        calls: tuple[Part, ...] = (ToolCall("", "", ""),) if self._calls else ()
        try:
            reason = items.finish_of(
                response.get("status"), response.get("incomplete_details"), calls
            )
        except UntranslatableResponse as error:
            return [StreamError(error.status_code, "server_error", error.message)]
        out.append(Finish(reason))
        return out

    def end(self) -> list[StreamEvent]:
        """The upstream stream ended: an error unless it finished properly."""
        if self._done:
            return []
        return [StreamError(502, "server_error", "The provider's stream ended before it finished.")]


class StreamEncoder:
    """Canonical events in, Responses SSE bytes out, ``sequence_number``\\ s in order.

    :param request: the client's request (its settings are echoed in the ``response``).
    :param created: the response's ``created_at`` (Unix seconds; the caller's clock).
    """

    __slots__ = (
        "_created",
        "_errored",
        "_finish",
        "_id",
        "_item",
        "_model",
        "_output",
        "_request",
        "_sequence",
        "_started",
        "_text",
        "_usage",
    )

    def __init__(self, request: Request | None = None, *, created: int = 0) -> None:
        self._request = request
        self._created = created
        self._id = ""
        self._model = ""
        self._sequence = 0
        self._usage = Usage()
        self._finish: FinishReason | None = None
        self._errored = False
        self._started = False
        #: The finished output items, in order.
        self._output: list[dict[str, Any]] = []
        #: The open item (``None``: none) and the text of its open part.
        self._item: dict[str, Any] | None = None
        self._text: list[str] = []

    def feed(self, event: StreamEvent) -> bytes:
        """The bytes that one canonical event becomes (often none)."""
        if self._errored:
            return b""
        if isinstance(event, MessageStart):
            self._id, self._model, self._started = event.id, event.model, True
            response = self._response("in_progress", [])
            return self._event("response.created", response=response) + self._event(
                "response.in_progress", response=response
            )
        if isinstance(event, UsageReport):
            self._usage = self._usage.merge(event.usage)
            return b""
        if isinstance(event, StreamError):
            return self._error(event)
        if isinstance(event, TextDelta | RefusalDelta):
            kind = "output_text" if isinstance(event, TextDelta) else "refusal"
            return self._content(kind, event.text)
        if isinstance(event, ReasoningDelta):
            out = self._open("reasoning")
            if self._item is not None and not self._item["summary"]:
                out += self._summary_part_added()
            self._text.append(event.text)
            return out + self._event(
                "response.reasoning_summary_text.delta",
                item_id=self._item_id(),
                output_index=len(self._output),
                summary_index=0,
                delta=event.text,
            )
        if isinstance(event, ReasoningSignature):
            out = self._open("reasoning")
            assert self._item is not None
            self._item["encrypted_content"] = event.signature
            if not self._item["summary"]:  # an empty signed thought stays a signed one
                self._item["summary"] = [{"type": "summary_text", "text": ""}]
            return out + self._close()
        if isinstance(event, RedactedReasoningBlock):
            out = self._close() + self._open("reasoning")
            if self._item is not None:
                self._item["encrypted_content"] = event.data
            return out + self._close()
        if isinstance(event, ToolCallStart):
            out = self._close()
            self._item = {
                "type": "function_call",
                "id": self._new_id("fc"),
                "call_id": event.id,
                **items.call_name(event.name),
                "arguments": "",
                "status": "in_progress",
            }
            return out + self._event(
                "response.output_item.added", output_index=len(self._output), item=self._item
            )
        if isinstance(event, ToolCallDelta):
            if self._item is None or self._item["type"] != "function_call":
                return self._error(
                    StreamError(502, "server_error", "Tool-call arguments arrived out of order.")
                )
            self._item["arguments"] += event.arguments
            return self._event(
                "response.function_call_arguments.delta",
                item_id=self._item_id(),
                output_index=len(self._output),
                delta=event.arguments,
            )
        if isinstance(event, ToolCallEnd):
            return self._close()
        if isinstance(event, WebSearchDone):
            return self._close() + self._search(event.call)
        if isinstance(event, Cited):
            return self._cite(event)
        assert isinstance(event, Finish)
        self._finish = event.reason
        return self._close()

    def close(self) -> bytes:
        """The stream's end: ``response.completed`` (or ``.incomplete``) with the usage.

        After an error, nothing: the stream must not look complete.
        """
        if self._errored:
            return b""
        out = self._close()
        if self._finish is None:
            message = "The stream ended before the answer finished."
            return out + self._error(StreamError(502, "server_error", message))
        incomplete = self._finish in (FinishReason.LENGTH, FinishReason.CONTENT_FILTER)
        status = "incomplete" if incomplete else "completed"
        response = self._response(status, self._output, usage=self._usage, finish=self._finish)
        return out + self._event(f"response.{status}", response=response)

    def _response(self, status: str, output: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        return items.response_object(
            self._id, self._model, self._created, self._request, status=status, output=output,
            **fields,
        )  # fmt: skip

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode("ascii") + b"\ndata: " + dumps(data) + b"\n\n"

    def _error(self, error: StreamError) -> bytes:
        self._errored = True
        _, body = items.encode_error(error.status, error.kind, error.message)
        code = body["error"]["code"]
        out = self._event("error", code=code, message=error.message, param=None)
        if self._started:
            # response.error.code is one of the API's codes: the closest of them.
            failed_code = "rate_limit_exceeded" if error.kind == "rate_limit" else "server_error"
            failed = self._response(
                "failed", self._output, error={"code": failed_code, "message": error.message}
            )
            out += self._event("response.failed", response=failed)
        return out

    def _search(self, call: WebSearchCall) -> bytes:
        """A whole ``web_search_call`` item: added, in progress, searching, completed, done."""
        item = ws.responses_call_item(call)  # its own id: the gateway keys it by that
        where = {"item_id": item["id"], "output_index": len(self._output)}
        out = self._event(
            "response.output_item.added", output_index=len(self._output),
            item={**item, "status": "in_progress"},
        )  # fmt: skip
        for stage in ("in_progress", "searching", "completed"):
            out += self._event(f"response.web_search_call.{stage}", **where)
        out += self._event("response.output_item.done", output_index=len(self._output), item=item)
        self._output.append(item)
        return out

    def _cite(self, event: Cited) -> bytes:
        """A ``url_citation`` on the output text streamed so far (none open: nothing to cite)."""
        item = self._item
        if item is None or item["type"] != "message" or not item["content"]:
            return b""
        index = len(item["content"]) - 1
        part = item["content"][index]
        if part["type"] != "output_text":
            return b""
        annotation = ws.url_citation(event.citation, "".join(self._text))
        part["annotations"] = [*part["annotations"], annotation]
        return self._event(
            "response.output_text.annotation.added",
            item_id=item["id"],
            output_index=len(self._output),
            content_index=index,
            annotation_index=len(part["annotations"]) - 1,
            annotation=annotation,
        )

    def _new_id(self, kind: str) -> str:
        return f"{kind}_{items.item_prefix(self._id)}{len(self._output)}"

    def _item_id(self) -> str:
        assert self._item is not None
        return str(self._item["id"])

    def _open(self, kind: str) -> bytes:
        """The item of ``kind`` open (the one open, or a new one)."""
        item = self._item
        if item is not None and item["type"] == kind and "encrypted_content" not in item:
            return b""  # a signed reasoning item is whole: more reasoning is a new one
        out = self._close()
        if kind == "message":
            item = {
                "type": "message",
                "id": self._new_id("msg"),
                "role": "assistant",
            }
            item.update(status="in_progress", content=[])
        else:
            item = {"type": "reasoning", "id": self._new_id("rs"), "summary": []}
        self._item = item
        return out + self._event(
            "response.output_item.added", output_index=len(self._output), item=dict(item)
        )

    def _content(self, kind: str, text: str) -> bytes:
        out = self._open("message")
        assert self._item is not None
        parts: list[dict[str, Any]] = self._item["content"]
        if not parts or parts[-1]["type"] != kind:
            out += self._close_part()
            part = (
                {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                if kind == "output_text"
                else {"type": "refusal", "refusal": ""}
            )
            parts.append(part)
            out += self._event(
                "response.content_part.added",
                item_id=self._item_id(),
                output_index=len(self._output),
                content_index=len(parts) - 1,
                part=dict(part),
            )
        self._text.append(text)
        name = "response.output_text.delta" if kind == "output_text" else "response.refusal.delta"
        extra: dict[str, Any] = {"logprobs": []} if kind == "output_text" else {}
        return out + self._event(
            name,
            item_id=self._item_id(),
            output_index=len(self._output),
            content_index=len(parts) - 1,
            delta=text,
            **extra,
        )

    def _summary_part_added(self) -> bytes:
        assert self._item is not None
        self._item["summary"] = [{"type": "summary_text", "text": ""}]
        return self._event(
            "response.reasoning_summary_part.added",
            item_id=self._item_id(),
            output_index=len(self._output),
            summary_index=0,
            part={"type": "summary_text", "text": ""},
        )

    def _close_part(self) -> bytes:
        """End the open message part or reasoning summary: its ``...done`` events."""
        item = self._item
        if item is None or not self._text:
            self._text = []
            return b""
        text, self._text = "".join(self._text), []
        where = {"item_id": item["id"], "output_index": len(self._output)}
        if item["type"] == "reasoning":
            part = {"type": "summary_text", "text": text}
            item["summary"] = [part]
            return self._event(
                "response.reasoning_summary_text.done", **where, summary_index=0, text=text
            ) + self._event(
                "response.reasoning_summary_part.done", **where, summary_index=0, part=part
            )
        parts = item["content"]
        index = len(parts) - 1
        if parts[index]["type"] == "output_text":
            parts[index] = {**parts[index], "text": text}
            done = self._event(
                "response.output_text.done", **where, content_index=index, text=text, logprobs=[]
            )
        else:
            parts[index] = {"type": "refusal", "refusal": text}
            done = self._event("response.refusal.done", **where, content_index=index, refusal=text)
        return done + self._event(
            "response.content_part.done", **where, content_index=index, part=parts[index]
        )

    def _close(self) -> bytes:
        """End the open item: its parts' ``...done`` events, then ``output_item.done``."""
        if self._item is None:
            return b""
        out = self._close_part()
        item, self._item = self._item, None
        if item["type"] == "function_call":
            if not item["arguments"]:
                item["arguments"] = "{}"
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=len(self._output),
                name=item["name"],
                arguments=item["arguments"],
            )
        if item["type"] != "reasoning":
            item["status"] = "completed"
        out += self._event("response.output_item.done", output_index=len(self._output), item=item)
        self._output.append(item)
        return out
