"""The fake provider's OpenAI Responses API (``POST .../responses``), stateful as OpenAI's.

An answer is written as the Responses API writes one: output items
(``reasoning`` with ``encrypted_content`` when thinking, a ``message``, or
``function_call``\\ s), ``usage`` with ``input_tokens_details``; streamed as
the named events of https://platform.openai.com/docs/api-reference/responses-streaming
with ``sequence_number``\\ s. Answers with ``store`` (the default) are kept,
so ``previous_response_id`` continues them, and an unknown one is refused
with the API's 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .._json import dumps, loads


def previous_missing(payload: dict[str, Any], kept: dict[str, Any]) -> str | None:
    """The error message when the request continues an answer this fake never kept."""
    previous = payload.get("previous_response_id")
    if previous is None or previous in kept:
        return None
    return f"Previous response with id '{previous}' not found."


def conversation_missing(payload: dict[str, Any]) -> str | None:
    """The error message when the request names a conversation: this fake keeps none
    (it serves no Conversations API), so every one is unknown, as OpenAI answers it."""
    named = payload.get("conversation")
    if isinstance(named, dict):
        named = named.get("id")
    if named is None:
        return None
    return f"Conversation with id '{named}' not found."


def response_object(
    answer_id: str,
    model: str,
    text: str,
    reasoning: str,
    signature: str,
    calls: list[tuple[str, str, str]],
    usage: dict[str, Any],
    payload: dict[str, Any],
) -> dict[str, Any]:
    """A whole answer; ``calls`` are ``(call_id, name, arguments)``."""
    output: list[dict[str, Any]] = []
    if reasoning:
        output.append(
            {
                "type": "reasoning",
                "id": f"rs_{answer_id}",
                "summary": [{"type": "summary_text", "text": reasoning}],
                "encrypted_content": signature,
            }
        )
    if text or not calls:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        output.append(
            {
                "type": "message",
                "id": f"msg_{answer_id}",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    for index, (call_id, name, arguments) in enumerate(calls):
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{answer_id}_{index}",
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
                "status": "completed",
            }
        )
    return {
        "id": f"resp_{answer_id}",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": payload.get("instructions"),
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": payload.get("previous_response_id"),
        "store": payload.get("store", True) is not False,
        "text": payload.get("text") or {"format": {"type": "text"}},
        "tool_choice": payload.get("tool_choice", "auto"),
        "tools": payload.get("tools") or [],
        "usage": usage,
    }


def usage_object(prompt: int, output: int, cached: int, reasoning: int) -> dict[str, Any]:
    """Responses usage: ``input_tokens`` counts the cached ones too."""
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + output,
    }


def events(response: dict[str, Any], words: list[str]) -> Iterator[bytes]:
    """The streamed events of ``response``, its text in ``words``' pieces."""
    sequence = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": next(sequence), **fields}
        return b"event: " + kind.encode() + b"\ndata: " + dumps(data) + b"\n\n"

    started = {**response, "status": "in_progress", "output": [], "usage": None}
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    for index, item in enumerate(response["output"]):
        kind = item["type"]
        where = {"item_id": item["id"], "output_index": index}
        if kind == "message":
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            part = item["content"][0]
            empty = {**part, "text": ""}
            yield event("response.content_part.added", **where, content_index=0, part=empty)
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                yield event(
                    "response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[]
                )
            yield event(
                "response.output_text.done",
                **where,
                content_index=0,
                text=part["text"],
                logprobs=[],
            )
            yield event("response.content_part.done", **where, content_index=0, part=part)
        elif kind == "reasoning":
            yield event(
                "response.output_item.added", output_index=index, item={**item, "summary": []}
            )
            summary = item["summary"][0]
            yield event(
                "response.reasoning_summary_part.added",
                **where,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            )
            yield event(
                "response.reasoning_summary_text.delta",
                **where,
                summary_index=0,
                delta=summary["text"],
            )
            yield event(
                "response.reasoning_summary_text.done",
                **where,
                summary_index=0,
                text=summary["text"],
            )
            yield event(
                "response.reasoning_summary_part.done", **where, summary_index=0, part=summary
            )
        else:
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "arguments": "", "status": "in_progress"},
            )
            arguments = item["arguments"]
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                if piece:
                    yield event("response.function_call_arguments.delta", **where, delta=piece)
            yield event("response.function_call_arguments.done", **where, arguments=arguments)
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.completed", response=response)


def input_messages(payload: dict[str, Any], kept: dict[str, Any]) -> list[Any]:
    """The whole conversation the request stands for: the kept turns it continues, then its own."""
    earlier: list[Any] = []
    previous = payload.get("previous_response_id")
    if previous in kept:
        earlier = loads(kept[previous])
    items = payload.get("input")
    own = [{"role": "user", "content": items}] if isinstance(items, str) else list(items or [])
    return [*earlier, *own]
