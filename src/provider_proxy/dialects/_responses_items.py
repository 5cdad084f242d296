"""OpenAI Responses answers ⇄ the canonical form: output items, the response, usage, errors.

The items of an answer (``message``, ``function_call``, ``reasoning``), written
and read the same way in a client's input (an SDK sends an answer's items
back) and in a provider's output; the ``response`` object around them, its
``status`` and ``incomplete_details`` as a finish reason, its ``usage``; and
errors, which are OpenAI's. See :mod:`provider_proxy.dialects._responses_codec`
for the encodings (reasoning, namespaces) both directions share.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from .._exceptions import BadRequest
from . import _codec_util as u
from . import _openai_chat_codec as chat
from . import _output_format as formats
from . import _web_search as ws
from .canonical import (
    Document,
    FinishReason,
    Image,
    Message,
    Part,
    Reasoning,
    RedactedReasoning,
    Refusal,
    Request,
    Response,
    StreamError,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    Unsupported,
    UntranslatableResponse,
    Usage,
    WebSearchCall,
)

_INCOMPLETE: dict[str, FinishReason] = {
    "max_output_tokens": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
}


_INCOMPLETE_REASONS: dict[FinishReason, str] = {
    FinishReason.LENGTH: "max_output_tokens",
    FinishReason.CONTENT_FILTER: "content_filter",
}


# -- items --------------------------------------------------------------------------------

#: Between a namespace and its function's name, in the flat name of a translated tool.
NAMESPACE_SEPARATOR = "--"


def flat_name(namespace: str | None, name: str) -> str:
    """A namespaced function's name for formats without namespaces."""
    return name if namespace is None else f"{namespace}{NAMESPACE_SEPARATOR}{name}"


def split_name(name: str) -> tuple[str | None, str]:
    """The inverse of :func:`flat_name`: ``(namespace, name)``."""
    namespace, separator, rest = name.partition(NAMESPACE_SEPARATOR)
    return (namespace, rest) if separator and namespace and rest else (None, name)


def decode_output(content: Any, where: str) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (Text(content),) if content else ()
    parts: list[Part] = []
    for j, value in enumerate(u.arr(content, where)):
        at = f"{where}[{j}]"
        part = u.obj(value, at)
        kind = part.get("type")
        if kind in ("output_text", "input_text", "text"):
            u.only(part, ("type", "text", "annotations", "logprobs"), at)
            text = u.text(part.get("text"), f"{at}.text")
            cited = ws.decode_url_citations(part.get("annotations"), text, f"{at}.annotations")
            parts.append(Text(text, citations=cited))
        elif kind == "refusal":
            u.only(part, ("type", "refusal"), at)
            parts.append(Refusal(u.text(part.get("refusal"), f"{at}.refusal")))
        else:
            raise Unsupported(f"{at}.type", f"{kind!r} parts do not translate")
    return tuple(parts)


def decode_reasoning_item(item: dict[str, Any], where: str) -> Reasoning | RedactedReasoning:
    """A ``reasoning`` item (input or output) as canonical reasoning."""
    u.only(item, ("type", "id", "summary", "content", "encrypted_content", "status"), where)
    texts: list[str] = []
    has_parts = False
    for key, kinds in (("summary", ("summary_text",)), ("content", ("reasoning_text",))):
        for j, value in enumerate(u.arr(item.get(key) or [], f"{where}.{key}")):
            part = u.obj(value, f"{where}.{key}[{j}]")
            if part.get("type") not in kinds:
                raise Unsupported(f"{where}.{key}[{j}].type")
            texts.append(u.text(part.get("text"), f"{where}.{key}[{j}].text"))
            has_parts = True
        if has_parts:
            break  # the summary, when there is one, is what the client was shown
    encrypted = u.opt_str(item.get("encrypted_content"), f"{where}.encrypted_content")
    if not has_parts and encrypted is not None:
        return RedactedReasoning(encrypted)
    return Reasoning("\n\n".join(texts), encrypted)


def encode_tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    out["parameters"] = dict(tool.parameters)
    if tool.strict is not None:
        out["strict"] = tool.strict
    return out


def encode_output(
    parts: tuple[Part, ...], *, ids: bool = True, prefix: str = ""
) -> list[dict[str, Any]]:
    """An assistant turn (or an answer) as output items, in order.

    Text and refusals that follow each other are one ``message`` item.
    ``ids``: give each item an id (answers have them; input items need none).
    """
    items: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []

    def item_id(kind: str) -> dict[str, str]:
        return {"id": f"{kind}_{prefix}{len(items)}"} if ids else {}

    def flush() -> None:
        if content:
            message = {"type": "message", **item_id("msg"), "role": "assistant"}
            items.append({**message, "status": "completed", "content": list(content)})
            content.clear()

    for part in parts:
        if isinstance(part, Text):
            annotations = [ws.url_citation(c, part.text) for c in part.citations]
            content.append({"type": "output_text", "text": part.text, "annotations": annotations})
        elif isinstance(part, Refusal):
            content.append({"type": "refusal", "refusal": part.text})
        elif isinstance(part, Reasoning):
            flush()
            if part.signature is None and not ids:
                continue  # unsigned reasoning cannot be sent back (dropped_by_encoding says)
            items.append(reasoning_item(part, item_id("rs")))
        elif isinstance(part, RedactedReasoning):
            flush()
            items.append(reasoning_item(part, item_id("rs")))
        elif isinstance(part, WebSearchCall):
            flush()
            items.append(ws.responses_call_item(part))  # its own id: the gateway keys it by that
        elif isinstance(part, ToolCall):
            flush()
            items.append(
                {
                    "type": "function_call",
                    **item_id("fc"),
                    "call_id": part.id,
                    **call_name(part.name),
                    "arguments": part.arguments,
                    "status": "completed",
                }
            )
        else:
            raise Unsupported("input[].content", f"{type(part).__name__} in an assistant turn")
    flush()
    return items


def call_name(name: str) -> dict[str, str]:
    """A call's ``name``, and its ``namespace`` when the flat name has one."""
    namespace, own = split_name(name)
    return {"name": own} if namespace is None else {"name": own, "namespace": namespace}


def reasoning_item(part: Reasoning | RedactedReasoning, item_id: dict[str, str]) -> dict[str, Any]:
    """A ``reasoning`` item (see the module docstring for the encoding)."""
    item: dict[str, Any] = {"type": "reasoning", **item_id}
    if isinstance(part, RedactedReasoning):
        return {**item, "summary": [], "encrypted_content": part.data}
    item["summary"] = [{"type": "summary_text", "text": part.text}]
    if part.signature is not None:
        item["encrypted_content"] = part.signature
    return item


def encode_user(parts: tuple[Part, ...]) -> list[dict[str, Any]]:
    """A user turn as input items: its content as one message, its tool results as outputs."""
    items: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, ToolResult):
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": part.call_id,
                    "output": encode_tool_output(part),
                }
            )
        elif isinstance(part, Text | Image | Document):
            content.append(encode_input_part(part))
        else:
            raise Unsupported("input[].content", f"{type(part).__name__} in a user turn")
    if content:
        items.append({"type": "message", "role": "user", "content": content})
    return items


def encode_tool_output(result: ToolResult) -> str | list[dict[str, Any]]:
    if all(isinstance(p, Text) for p in result.content):
        return "".join(p.text for p in result.content if isinstance(p, Text))
    return [encode_input_part(p) for p in result.content]


def encode_input_part(part: Text | Image | Document) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, Image):
        url = part.url or u.data_url(part.media_type or "image/png", part.data or "")
        return {"type": "input_image", "image_url": url, "detail": "auto"}
    if part.text is not None:
        raise Unsupported("document.text", "Responses files are base64 data or a URL")
    out: dict[str, Any] = {"type": "input_file"}
    if part.url is not None:
        out["file_url"] = part.url
    else:
        out["file_data"] = u.data_url(part.media_type or "application/pdf", part.data or "")
    if part.title is not None:
        out["filename"] = part.title
    return out


# -- the response -------------------------------------------------------------------------


def decode_usage(value: Any, output: Any = None) -> Usage:
    """Responses ``usage`` (``input_tokens`` includes the cached ones) as canonical,
    with the ``web_search_call`` items of the answer's ``output`` (each a billed search)."""
    if not isinstance(value, dict):
        return Usage()
    inputs = value.get("input_tokens_details") or {}
    outputs = value.get("output_tokens_details") or {}
    searches = 0
    if isinstance(output, list):
        searches = sum(
            1 for item in output if isinstance(item, dict) and item.get("type") == "web_search_call"
        )
    return Usage(
        input_tokens=value.get("input_tokens"),
        output_tokens=value.get("output_tokens"),
        cache_read_tokens=inputs.get("cached_tokens"),
        cache_write_tokens=inputs.get("cache_write_tokens"),
        reasoning_tokens=outputs.get("reasoning_tokens"),
        web_searches=searches or None,
    )


def encode_usage(usage: Usage) -> dict[str, Any]:
    """Canonical usage as the Responses ``usage`` object."""
    prompt, completion = usage.input_tokens or 0, usage.output_tokens or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens or 0,
            "cache_write_tokens": usage.cache_write_tokens or 0,
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": prompt + completion,
    }


def finish_of(status: Any, incomplete: Any, parts: tuple[Part, ...]) -> FinishReason:
    """Why the answer stopped, from its ``status`` and ``incomplete_details``."""
    if status == "completed":
        calls = any(isinstance(p, ToolCall) for p in parts)
        return FinishReason.TOOL_CALLS if calls else FinishReason.STOP
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        if reason in _INCOMPLETE:
            return _INCOMPLETE[reason]
        raise UntranslatableResponse(f"The answer is incomplete for an unknown reason: {reason!r}.")
    raise UntranslatableResponse(f"The provider answered with the status {status!r}.")


def decode_response(body: Any) -> Response:
    """A Responses ``response`` object as a canonical response."""
    body = u.obj(body, "response")
    parts: list[Part] = []
    for i, value in enumerate(u.arr(body.get("output") or [], "output")):
        item = u.obj(value, f"output[{i}]")
        kind = item.get("type")
        if kind == "message":
            parts.extend(decode_output(item.get("content"), f"output[{i}].content"))
        elif kind == "function_call":
            namespace = item.get("namespace")
            parts.append(
                ToolCall(
                    str(item.get("call_id", "")),
                    flat_name(
                        namespace if isinstance(namespace, str) else None,
                        str(item.get("name", "")),
                    ),
                    str(item.get("arguments", "")),
                )
            )
        elif kind == "reasoning":
            part = decode_reasoning_item(item, f"output[{i}]")
            if not isinstance(part, Reasoning) or part.text or part.signature is not None:
                parts.append(part)  # not an empty item (reasoning neither shown nor kept)
        elif kind == "web_search_call":
            parts.append(ws.decode_responses_call(item, f"output[{i}]"))
        else:
            raise UntranslatableResponse(f"The answer has an output item of type {kind!r}.")
    return Response(
        id=str(body.get("id", "")),
        model=str(body.get("model", "")),
        parts=tuple(parts),
        finish=finish_of(body.get("status"), body.get("incomplete_details"), tuple(parts)),
        usage=decode_usage(body.get("usage"), body.get("output")),
    )


def response_object(
    response_id: str,
    model: str,
    created: int,
    request: Request | None,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None = None,
    finish: FinishReason | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``response`` object: the answer and the settings it was made with."""
    choice: Any = "auto"
    if request is not None and request.tool_choice is not None:
        kind, name = request.tool_choice.kind, request.tool_choice.name
        choice = {"type": "function", **call_name(name or "")} if kind == "tool" else kind
        if kind == "web_search":
            choice = ws.responses_choice(request.tool_choice)
    incomplete = None
    if finish in _INCOMPLETE_REASONS:
        incomplete = {"reason": _INCOMPLETE_REASONS[finish]}
    effort = None if request is None or request.reasoning is None else request.reasoning.effort
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": _instructions(request),
        "max_output_tokens": None if request is None else request.max_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": True
        if request is None or request.parallel_tool_calls is None
        else request.parallel_tool_calls,
        "previous_response_id": None if request is None else request.continues,
        "reasoning": {"effort": effort, "summary": None},
        "store": False if request is None else request.store,
        "temperature": None if request is None else request.temperature,
        "text": {
            "format": formats.to_responses(None if request is None else request.output_format)
        },
        "tool_choice": choice,
        "tools": [] if request is None else _tools(request),
        "top_p": None if request is None else request.top_p,
        "truncation": "disabled",
        "usage": None if usage is None else encode_usage(usage),
        "user": None if request is None else request.user,
        "metadata": {} if request is None else dict(request.metadata or {}),
        **_conversation(request),
    }


def _instructions(request: Request | None) -> str | None:
    """The request's own instructions (its first, transient, system texts)."""
    if request is None or not request.transient_system:
        return None
    return "\n\n".join(text.text for text in request.system[: request.transient_system])


def _conversation(request: Request | None) -> dict[str, Any]:
    """``conversation`` of an answer made in one (absent otherwise)."""
    if request is None or request.conversation is None:
        return {}
    return {"conversation": {"id": request.conversation}}


def _tools(request: Request) -> list[dict[str, Any]]:
    tools = [encode_tool(t) for t in request.tools]
    if request.web_search is not None:
        tools.append(ws.responses_tool(request.web_search))
    return tools


def encode_response(
    response: Response, created: int = 0, request: Request | None = None
) -> dict[str, Any]:
    """A canonical response as a Responses ``response`` object (``created``: Unix seconds)."""
    status = "incomplete" if response.finish in _INCOMPLETE_REASONS else "completed"
    return response_object(
        response.id,
        response.model,
        created,
        request,
        status=status,
        output=encode_output(response.parts, prefix=item_prefix(response.id)),
        usage=response.usage,
        finish=response.finish,
    )


def item_prefix(response_id: str) -> str:
    """What output item ids of the answer ``response_id`` start with after their kind."""
    return response_id.removeprefix("resp_")[-16:] + "_"


# -- a kept answer's input, listed ----------------------------------------------------------

_ID_KINDS = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
    "web_search_call": "ws",
}


def input_items_page(
    response_id: str, system: tuple[Text, ...], turns: tuple[Message, ...], query: str
) -> dict[str, Any]:
    """The input items of a kept answer as the API lists them (see
    :meth:`~provider_proxy.dialects.OpenAIResponsesCodec.input_items`)."""
    params = parse_qs(query, keep_blank_values=True)
    order = _param(params, "order") or "desc"
    if order not in ("asc", "desc"):
        raise BadRequest(f"order must be 'asc' or 'desc', not {order!r}.")
    raw_limit = _param(params, "limit") or "20"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        raise BadRequest(f"limit must be a number from 1 to 100, not {raw_limit!r}.")
    listed: list[dict[str, Any]] = []
    if system:
        content = [{"type": "input_text", "text": t.text} for t in system]
        listed.append({"type": "message", "role": "developer", "content": content})
    for turn in turns:
        if turn.role == "assistant":
            listed.extend(encode_output(turn.parts, ids=False))
        else:
            listed.extend(encode_user(turn.parts))
    prefix = item_prefix(response_id)
    for index, item in enumerate(listed):
        item["id"] = f"{_ID_KINDS.get(item['type'], 'item')}_{prefix}in{index}"
        if item["type"] != "reasoning":
            item.setdefault("status", "completed")
    if order == "desc":
        listed.reverse()
    after = _param(params, "after")
    if after:
        at = next((i for i, item in enumerate(listed) if item["id"] == after), None)
        if at is None:
            raise BadRequest(f"No input item {after!r} in this response.")
        listed = listed[at + 1 :]
    page = listed[: int(raw_limit)]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(listed) > len(page),
    }


def _param(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


# -- errors -----------------------------------------------------------------------------

#: Errors are OpenAI's: the same body and types as Chat Completions.
encode_error = chat.encode_error
decode_error = chat.decode_error


def decode_stream_error(data: dict[str, Any]) -> StreamError:
    """A streamed ``error`` event, or a ``response.failed`` event's ``response.error``."""
    error = data.get("error")
    if not isinstance(error, dict):
        response = data.get("response")
        error = response.get("error") if isinstance(response, dict) else None
    if not isinstance(error, dict):
        error = data
    code = str(error.get("code") or "")
    message = error.get("message")
    kind = "rate_limit" if "rate_limit" in code else "server_error"
    status = 429 if kind == "rate_limit" else 502
    text = message if isinstance(message, str) else "The provider's answer failed."
    return StreamError(status, kind, text)
