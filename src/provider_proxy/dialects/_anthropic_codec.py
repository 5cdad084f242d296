"""Anthropic Messages ⇄ the canonical form: requests, whole responses and errors.

Tool-call ids: Anthropic accepts ids matching ``^[a-zA-Z0-9_-]+$`` only. An
id that matches, and does not start with :data:`ID_PREFIX`, is used as is
both ways (``call_abc`` and ``toolu_01...`` are unchanged). Any other id
(``call.1``, ``fc:7``, an empty one, or one that happens to start with the
prefix) is written as :data:`ID_PREFIX` followed by the unpadded base64url of
its UTF-8 text, and read back by the inverse: a bijection, so an id maps the
same way on every turn and returns to the client exactly as it was.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from typing import Any

from . import _codec_util as u
from . import _output_format as output
from . import _web_search as ws
from ._base import int_count
from .canonical import (
    Document,
    Fidelity,
    FidelityTable,
    FinishReason,
    Image,
    Message,
    Part,
    Reasoning,
    ReasoningConfig,
    RedactedReasoning,
    Refusal,
    Request,
    Response,
    Rule,
    StreamError,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Unsupported,
    UntranslatableResponse,
    Usage,
    WebSearch,
    WebSearchCall,
    all_parts,
    kind_for_status,
)

M, R, D = Fidelity.MAPPED, Fidelity.REFUSED, Fidelity.DROPPED

#: Anthropic requires ``max_tokens``; this is sent when the client gave none.
DEFAULT_MAX_TOKENS = 4096

#: An OpenAI ``reasoning_effort`` as a thinking budget (tokens); ``none``: no thinking.
#: 1024 is the smallest budget Anthropic accepts.
THINKING_BUDGETS: dict[str, int | None] = {
    "none": None,
    "minimal": 1024,
    "low": 4096,
    "medium": 16384,
    "high": 32768,
    "xhigh": 65536,
}

ID_PREFIX = "toolu_pp_"
_VALID_ID = re.compile(r"[A-Za-z0-9_-]+")

#: The fate of every request field an Anthropic Messages client may send (decoding).
REQUEST_FIELDS: FidelityTable = {
    "model": Rule(M),
    "messages": Rule(M),
    "system": Rule(M, "cache_control kept"),
    "max_tokens": Rule(M),
    "temperature": Rule(M),
    "top_p": Rule(M),
    "stop_sequences": Rule(M),
    "stream": Rule(M),
    "tools": Rule(M, "custom tools, schemas intact; web_search_20250305 (see Web search)"),
    "tool_choice": Rule(
        M,
        "disable_parallel_tool_use as parallel_tool_calls; a tool choice naming the"
        " web_search tool forces the search",
    ),
    "thinking": Rule(M, "enabled (budget) or disabled (a budget of 0)"),
    "metadata": Rule(M, "user_id"),
    "top_k": Rule(R),
    "container": Rule(R),
    "mcp_servers": Rule(R),
    "context_management": Rule(R),
    "output_config": Rule(M, "format: a JSON schema (see Structured output); effort refused"),
    "output_format": Rule(M, "the beta's form of output_config.format"),
    "service_tier": Rule(D),
    "inference_geo": Rule(D),
    "speed": Rule(D, "latency only"),
    "cache_control": Rule(D, "prompt caching only changes cost"),
}

#: The fate of canonical content an Anthropic body cannot hold (encoding).
ENCODE_FIELDS: FidelityTable = {
    "reasoning.effort": Rule(M, "to thinking.budget_tokens by THINKING_BUDGETS"),
    "reasoning without signature": Rule(D, "Anthropic ignores earlier unsigned thinking"),
    "refusal": Rule(M, "as text"),
    "stream_usage": Rule(D, "Anthropic always streams usage"),
    "max_tokens": Rule(M, "DEFAULT_MAX_TOKENS (plus any thinking budget) when absent"),
    "output_format": Rule(
        M,
        "a schema as output_config.format, objects closed (see Structured output); "
        "json_object refused",
    ),
    ws.DROPPED_CALL: Rule(
        D, "a search without Anthropic's encrypted results the gateway could restore"
    ),
    ws.DROPPED_CONTEXT_SIZE: Rule(D, "Anthropic has no such setting"),
}

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}
#: The ``stop_reason`` of a long server-tool turn Anthropic paused (decoded as ``paused``).
PAUSE_TURN = "pause_turn"
FINISH_REASONS: dict[FinishReason, str] = {
    FinishReason.STOP: "end_turn",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.TOOL_CALLS: "tool_use",
    FinishReason.CONTENT_FILTER: "refusal",
}

# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_KIND_OF_TYPE = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "request_too_large": "request_too_large",
    "rate_limit_error": "rate_limit",
    "api_error": "server_error",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
}


# -- tool-call ids ----------------------------------------------------------------------


def to_anthropic_id(call_id: str) -> str:
    """A canonical tool-call id as one Anthropic accepts (see the module docstring)."""
    if _VALID_ID.fullmatch(call_id) and not call_id.startswith(ID_PREFIX):
        return call_id
    encoded = base64.urlsafe_b64encode(call_id.encode("utf-8")).decode("ascii").rstrip("=")
    return ID_PREFIX + encoded


def from_anthropic_id(call_id: str) -> str:
    """The inverse of :func:`to_anthropic_id`."""
    if not call_id.startswith(ID_PREFIX):
        return call_id
    encoded = call_id[len(ID_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return call_id  # not one of ours: left as it is


# -- requests ---------------------------------------------------------------------------


def decode_request(body: Any) -> tuple[Request, tuple[str, ...]]:
    """A client's Messages body as a canonical request, with the names dropped."""
    body = u.obj(body, "body")
    dropped: list[str] = []
    for key, value in body.items():
        rule = REQUEST_FIELDS.get(key)
        if rule is None:
            if value is not None:
                raise Unsupported(key, "unknown field")
        elif rule.fate is R and value is not None:
            raise Unsupported(key)
        elif rule.fate is D and value is not None:
            dropped.append(key)
    metadata = u.obj(body.get("metadata") or {}, "metadata")
    u.only(metadata, ("user_id",), "metadata")
    choice, parallel = _decode_tool_choice(body.get("tool_choice"))
    request = Request(
        model=u.text(body.get("model"), "model"),
        messages=tuple(
            _decode_message(m, f"messages[{i}]")
            for i, m in enumerate(u.arr(body.get("messages"), "messages"))
        ),
        system=_decode_system(body.get("system")),
        tools=tuple(
            _decode_tool(t, f"tools[{i}]")
            for i, t in enumerate(u.arr(body.get("tools") or [], "tools"))
            if not _is_search(t)
        ),
        web_search=_decode_web_search(body.get("tools") or ()),
        tool_choice=choice,
        parallel_tool_calls=parallel,
        max_tokens=u.opt_int(body.get("max_tokens"), "max_tokens"),
        temperature=u.opt_float(body.get("temperature"), "temperature"),
        top_p=u.opt_float(body.get("top_p"), "top_p"),
        stop=tuple(
            u.text(s, f"stop_sequences[{i}]")
            for i, s in enumerate(u.arr(body.get("stop_sequences") or [], "stop_sequences"))
        ),
        stream=body.get("stream") is True,
        stream_usage=body.get("stream") is True,
        user=u.opt_str(metadata.get("user_id"), "metadata.user_id"),
        reasoning=_decode_thinking(body.get("thinking")),
        output_format=output.from_anthropic(body.get("output_config"), body.get("output_format")),
    )
    if request.web_search is not None and choice is not None:  # forcing its search tool
        request = dataclasses.replace(
            request, tool_choice=ws.anthropic_choice(choice, request.tools)
        )
    return request, tuple(dropped)


def _decode_thinking(value: Any) -> ReasoningConfig | None:
    if value is None:
        return None
    raw = u.obj(value, "thinking")
    kind = raw.get("type")
    if kind == "disabled":
        u.only(raw, ("type",), "thinking")
        return ReasoningConfig(budget_tokens=0)
    if kind == "enabled":
        u.only(raw, ("type", "budget_tokens"), "thinking")
        return ReasoningConfig(
            budget_tokens=u.opt_int(raw.get("budget_tokens"), "thinking.budget_tokens")
        )
    raise Unsupported("thinking.type", f"thinking of type {kind!r} does not translate")


def _decode_tool_choice(value: Any) -> tuple[ToolChoice | None, bool | None]:
    if value is None:
        return None, None
    raw = u.obj(value, "tool_choice")
    u.only(raw, ("type", "name", "disable_parallel_tool_use"), "tool_choice")
    disable = u.opt_bool(
        raw.get("disable_parallel_tool_use"), "tool_choice.disable_parallel_tool_use"
    )
    parallel = None if disable is None else not disable
    kind = raw.get("type")
    if kind == "tool":
        return ToolChoice("tool", u.text(raw.get("name"), "tool_choice.name")), parallel
    kinds = {"auto": "auto", "any": "required", "none": "none"}
    if kind not in kinds:
        raise Unsupported("tool_choice.type")
    return ToolChoice(kinds[kind]), parallel  # type: ignore[arg-type]


def _is_search(tool: Any) -> bool:
    return isinstance(tool, dict) and tool.get("type") == ws.ANTHROPIC_TYPE


def _decode_web_search(tools: Any) -> WebSearch | None:
    found = [(f"tools[{i}]", t) for i, t in enumerate(tools) if _is_search(t)]
    if len(found) > 1:
        raise Unsupported(f"{found[1][0]}.type", "one web search tool at most")
    return ws.decode_anthropic_tool(found[0][1], found[0][0]) if found else None


def _decode_tool(value: Any, where: str) -> Tool:
    raw = u.obj(value, where)
    if raw.get("type", "custom") != "custom":
        raise Unsupported(f"{where}.type", f"server tool {raw.get('type')!r} does not translate")
    u.only(raw, ("type", "name", "description", "input_schema", "cache_control", "strict"), where)
    return Tool(
        name=u.text(raw.get("name"), f"{where}.name"),
        description=u.opt_str(raw.get("description"), f"{where}.description"),
        parameters=u.obj(raw.get("input_schema"), f"{where}.input_schema"),
        strict=u.opt_bool(raw.get("strict"), f"{where}.strict"),
        cache_control=u.cache_control(raw.get("cache_control"), f"{where}.cache_control"),
    )


def _decode_system(value: Any) -> tuple[Text, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (Text(value),)
    return tuple(
        _decode_text(u.obj(block, f"system[{i}]"), f"system[{i}]")
        for i, block in enumerate(u.arr(value, "system"))
    )


def _decode_text(block: dict[str, Any], where: str) -> Text:
    if block.get("type") != "text":
        raise Unsupported(f"{where}.type", "expected a text block")
    u.only(block, ("type", "text", "cache_control"), where)
    return Text(
        u.text(block.get("text"), f"{where}.text"),
        u.cache_control(block.get("cache_control"), f"{where}.cache_control"),
    )


def _decode_message(value: Any, where: str) -> Message:
    message = u.obj(value, where)
    u.only(message, ("role", "content"), where)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise Unsupported(f"{where}.role")
    content = message.get("content")
    if isinstance(content, str):
        return Message(role, (Text(content),))
    blocks = u.arr(content, f"{where}.content")
    parts = tuple(
        decode_block(u.obj(b, f"{where}.content[{j}]"), f"{where}.content[{j}]")
        for j, b in enumerate(blocks)
    )
    return Message(role, ws.merge_calls(parts))


def decode_block(block: dict[str, Any], where: str) -> Part:
    """One content block (of a request's message or a response) as a canonical part."""
    kind = block.get("type")
    control = block.get("cache_control")
    if control is not None:
        control = u.cache_control(control, f"{where}.cache_control")
    if kind == "text":
        u.only(block, ("type", "text", "cache_control", "citations"), where)
        text = block.get("text")
        if type(text) is not str:
            text = u.text(text, f"{where}.text")
        citations = block.get("citations")
        if not citations:
            return Text(text, control)
        return Text(text, control, ws.decode_anthropic_citations(citations, f"{where}.citations"))
    if kind == "server_tool_use":
        return ws.decode_server_tool_use(block, where)
    if kind == "web_search_tool_result":
        return ws.decode_search_result(block, where)
    if kind == "image":
        u.only(block, ("type", "source", "cache_control"), where)
        return _decode_image(u.obj(block.get("source"), f"{where}.source"), where, control)
    if kind == "document":
        return _decode_document(block, where, control)
    if kind == "tool_use":
        u.only(block, ("type", "id", "name", "input", "cache_control", "caller"), where)
        return ToolCall(
            id=from_anthropic_id(u.text(block.get("id"), f"{where}.id")),
            name=u.text(block.get("name"), f"{where}.name"),
            arguments=u.arguments_text(u.obj(block.get("input", {}), f"{where}.input")),
            cache_control=control,
        )
    if kind == "tool_result":
        return _decode_tool_result(block, where, control)
    if kind == "thinking":
        u.only(block, ("type", "thinking", "signature"), where)
        return Reasoning(
            u.text(block.get("thinking"), f"{where}.thinking"),
            u.opt_str(block.get("signature"), f"{where}.signature") or None,
        )
    if kind == "redacted_thinking":
        u.only(block, ("type", "data"), where)
        return RedactedReasoning(u.text(block.get("data"), f"{where}.data"))
    raise Unsupported(f"{where}.type", f"{kind!r} blocks do not translate")


def _decode_image(source: dict[str, Any], where: str, control: Any) -> Image:
    kind = source.get("type")
    if kind == "base64":
        u.only(source, ("type", "media_type", "data"), f"{where}.source")
        return Image(
            data=u.text(source.get("data"), f"{where}.source.data"),
            media_type=u.text(source.get("media_type"), f"{where}.source.media_type"),
            cache_control=control,
        )
    if kind == "url":
        u.only(source, ("type", "url"), f"{where}.source")
        return Image(url=u.text(source.get("url"), f"{where}.source.url"), cache_control=control)
    raise Unsupported(f"{where}.source.type")


def _decode_document(block: dict[str, Any], where: str, control: Any) -> Document:
    u.only(block, ("type", "source", "cache_control", "title"), where)
    source = u.obj(block.get("source"), f"{where}.source")
    title = u.opt_str(block.get("title"), f"{where}.title")
    kind = source.get("type")
    at = f"{where}.source"
    if kind == "base64":
        u.only(source, ("type", "media_type", "data"), at)
        return Document(
            media_type=u.text(source.get("media_type"), f"{at}.media_type"),
            data=u.text(source.get("data"), f"{at}.data"),
            title=title,
            cache_control=control,
        )
    if kind == "text":
        u.only(source, ("type", "media_type", "data"), at)
        return Document(
            media_type=u.text(source.get("media_type", "text/plain"), f"{at}.media_type"),
            text=u.text(source.get("data"), f"{at}.data"),
            title=title,
            cache_control=control,
        )
    if kind == "url":
        u.only(source, ("type", "url"), at)
        return Document(
            url=u.text(source.get("url"), f"{at}.url"), title=title, cache_control=control
        )
    raise Unsupported(f"{at}.type")


def _decode_tool_result(block: dict[str, Any], where: str, control: Any) -> ToolResult:
    u.only(block, ("type", "tool_use_id", "content", "is_error", "cache_control"), where)
    content = block.get("content")
    parts: tuple[Text | Image | Document, ...]
    if content is None or content == "":
        parts = ()
    elif isinstance(content, str):
        parts = (Text(content),)
    else:
        decoded = []
        for j, item in enumerate(u.arr(content, f"{where}.content")):
            part = decode_block(u.obj(item, f"{where}.content[{j}]"), f"{where}.content[{j}]")
            if not isinstance(part, Text | Image | Document):
                raise Unsupported(f"{where}.content[{j}].type")
            decoded.append(part)
        parts = tuple(decoded)
    return ToolResult(
        call_id=from_anthropic_id(u.text(block.get("tool_use_id"), f"{where}.tool_use_id")),
        content=parts,
        is_error=u.opt_bool(block.get("is_error"), f"{where}.is_error") or False,
        cache_control=control,
    )


#: The parts the encoder may leave out (unsigned reasoning, searches Anthropic cannot take).
_MAY_DROP = (Reasoning, WebSearchCall)


def dropped_by_encoding(request: Request) -> tuple[str, ...]:
    """The :data:`ENCODE_FIELDS` dropped rows that ``request`` carries (the header names them)."""
    found: list[str] = []
    unsigned = unsendable = False
    for p in all_parts(request):
        if not isinstance(p, _MAY_DROP):  # (one check for the plain parts)
            continue
        if isinstance(p, Reasoning):
            unsigned = unsigned or p.signature is None
        else:
            unsendable = unsendable or not ws.can_send_to_anthropic(p)
    if unsigned:
        found.append("reasoning without signature")
    if unsendable:
        found.append(ws.DROPPED_CALL)
    if request.web_search is not None:
        found.extend(ws.dropped_options(request.web_search, "anthropic"))
    # (``stream_usage`` is no drop: the client gets the usage Anthropic always streams.)
    return tuple(found)


def encode_request(request: Request) -> dict[str, Any]:
    """A canonical request as a Messages body."""
    thinking = None if request.reasoning is None else _encode_thinking(request.reasoning)
    budget = thinking.get("budget_tokens") if thinking is not None else None
    # A budget the proxy chose for an effort (not one the client gave) must leave
    # room for the answer: Anthropic needs max_tokens above it.
    chosen = request.reasoning is not None and request.reasoning.budget_tokens is None
    max_tokens = request.max_tokens
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS + (budget or 0)
    elif chosen and budget is not None and max_tokens <= budget:
        raise Unsupported(
            "max_tokens",
            f"it must be above the thinking budget ({budget} tokens) the reasoning "
            "effort asks for; raise max_tokens or lower the effort",
        )
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": max_tokens,
        "messages": [
            {"role": m.role, "content": blocks}
            for m in request.messages
            if (blocks := encode_blocks(m.parts))  # a turn left with nothing is not sent
        ],
    }
    if request.system:
        body["system"] = [encode_block(t) for t in request.system]
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.tools:
        body["tools"] = [_encode_tool(tool) for tool in request.tools]
    if request.web_search is not None:
        body.setdefault("tools", []).append(ws.anthropic_tool(request.web_search))
    if request.tool_choice is not None or request.parallel_tool_calls is not None:
        body["tool_choice"] = _encode_tool_choice(request)
    if thinking is not None:
        body["thinking"] = thinking
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    if request.output_format is not None:
        body["output_config"] = output.to_anthropic(request.output_format)
    if request.stream:
        body["stream"] = True
    return body


def _encode_thinking(config: ReasoningConfig | None) -> dict[str, Any] | None:
    if config is None:
        return None
    budget = config.budget_tokens
    if budget is None and config.effort is not None:
        budget = THINKING_BUDGETS[config.effort]
        if budget is None:
            return {"type": "disabled"}
    if budget == 0:
        return {"type": "disabled"}
    return None if budget is None else {"type": "enabled", "budget_tokens": budget}


def _encode_tool_choice(request: Request) -> dict[str, Any]:
    """(Called when the request sets a tool choice or parallel tool calls.)"""
    choice = request.tool_choice
    ws.forced(choice, request.web_search, "tool_choice")
    kinds = {"auto": "auto", "required": "any", "none": "none", "tool": "tool"}
    kinds["web_search"] = "tool"  # its search is a tool by name
    out: dict[str, Any] = {"type": kinds[choice.kind] if choice is not None else "auto"}
    if choice is not None and choice.kind == "tool":
        out["name"] = choice.name
    elif choice is not None and choice.kind == "web_search":
        out["name"] = "web_search"
    if request.parallel_tool_calls is not None and out["type"] != "none":
        out["disable_parallel_tool_use"] = not request.parallel_tool_calls
    return out


def _encode_tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    out["input_schema"] = dict(tool.parameters)
    if tool.strict is not None:
        out["strict"] = tool.strict
    if tool.cache_control is not None:
        out["cache_control"] = u.cache_control_json(tool.cache_control)
    return out


def encode_blocks(parts: tuple[Part, ...], *, answer: bool = False) -> list[dict[str, Any]]:
    """Canonical parts as content blocks (unsigned reasoning is left out: see ENCODE_FIELDS;
    ``answer``: a client's answer, whose search blocks need not be Anthropic's own)."""
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, WebSearchCall):
            blocks.extend(ws.anthropic_blocks(part, answer=answer))
        elif isinstance(part, Text) and part.citations:
            block = ws.text_block(part, answer=answer)
            if part.cache_control is not None:
                block["cache_control"] = u.cache_control_json(part.cache_control)
            blocks.append(block)
        elif answer or not (isinstance(part, Reasoning) and part.signature is None):
            blocks.append(encode_block(part))
    return blocks


def encode_block(part: Part) -> dict[str, Any]:
    """One canonical part as a content block."""
    if type(part) is Text and part.cache_control is None:  # (most parts: one call less)
        return {"type": "text", "text": part.text}
    block = _block(part)
    control = getattr(part, "cache_control", None)
    if control is not None:
        block["cache_control"] = u.cache_control_json(control)
    return block


def _block(part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, Refusal):
        return {"type": "text", "text": part.text}
    if isinstance(part, Image):
        if part.url is not None:
            return {"type": "image", "source": {"type": "url", "url": part.url}}
        source = {"type": "base64", "media_type": part.media_type, "data": part.data}
        return {"type": "image", "source": source}
    if isinstance(part, Document):
        return _document_block(part)
    if isinstance(part, ToolCall):
        where = f"tool call {part.id!r}"
        return {
            "type": "tool_use",
            "id": to_anthropic_id(part.id),
            "name": part.name,
            "input": u.arguments_object(part.arguments, where),
        }
    if isinstance(part, ToolResult):
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": to_anthropic_id(part.call_id),
        }
        if part.content:
            block["content"] = [encode_block(p) for p in part.content]
        if part.is_error:
            block["is_error"] = True
        return block
    if isinstance(part, Reasoning):
        return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}
    if isinstance(part, WebSearchCall):
        return ws.search_result_block(part)  # (encode_blocks writes the call's two blocks)
    return {"type": "redacted_thinking", "data": part.data}


def _document_block(document: Document) -> dict[str, Any]:
    source: dict[str, Any]
    if document.url is not None:
        source = {"type": "url", "url": document.url}
    elif document.text is not None:
        source = {
            "type": "text",
            "media_type": document.media_type or "text/plain",
            "data": document.text,
        }
    else:
        source = {"type": "base64", "media_type": document.media_type, "data": document.data}
    block: dict[str, Any] = {"type": "document", "source": source}
    if document.title is not None:
        block["title"] = document.title
    return block


# -- responses --------------------------------------------------------------------------


def stop_reason(value: Any) -> FinishReason:
    """An Anthropic ``stop_reason`` as canonical; an unknown one raises (``pause_turn``
    is no finish: the decoders make it ``paused``)."""
    if isinstance(value, str) and value in STOP_REASONS:
        return STOP_REASONS[value]
    raise UntranslatableResponse(f"The provider stopped for an unknown reason: {value!r}.")


def decode_usage(value: Any) -> Usage:
    """Anthropic ``usage`` (``input_tokens`` without the cached ones) as canonical."""
    if not isinstance(value, dict):
        return Usage()
    get = value.get
    usage = Usage.from_anthropic_counts(
        get("input_tokens"),
        get("output_tokens"),
        get("cache_read_input_tokens"),
        get("cache_creation_input_tokens"),
    )
    details, tools = get("output_tokens_details"), get("server_tool_use")
    if details is None and tools is None:  # (most answers: no reasoning count, no search)
        return usage
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    searches = int_count(tools.get("web_search_requests")) if isinstance(tools, dict) else None
    searches = searches or None  # none ran: as the formats without the count say it
    if reasoning is None and searches is None:
        return usage
    return usage.merge(Usage(reasoning_tokens=reasoning, web_searches=searches))


def encode_usage(usage: Usage) -> dict[str, Any]:
    """Canonical usage as Anthropic's ``usage`` object."""
    out: dict[str, Any] = {
        "input_tokens": usage.uncached_input_tokens or 0,
        "output_tokens": usage.output_tokens or 0,
    }
    if usage.cache_read_tokens is not None:
        out["cache_read_input_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens is not None:
        out["cache_creation_input_tokens"] = usage.cache_write_tokens
    if usage.web_searches is not None:
        # The one server tool the gateway translates is the search (no web fetch).
        out["server_tool_use"] = {
            "web_search_requests": usage.web_searches,
            "web_fetch_requests": 0,
        }
    return out


def decode_response(body: Any) -> Response:
    """A Messages answer as a canonical response."""
    if type(body) is not dict:
        body = u.obj(body, "response")
    get = body.get
    parts: list[Part] = []
    blocks = get("content")
    for i, block in enumerate(blocks if type(blocks) is list else u.arr(blocks, "content")):
        where = f"content[{i}]"
        parts.append(decode_block(u.obj(block, where), where))
    reason = get("stop_reason")
    paused = reason == PAUSE_TURN
    return Response(  # id, model, parts, finish, usage, paused: by position, a cheaper call
        str(get("id", "")),
        str(get("model", "")),
        ws.merge_calls(tuple(parts)),
        FinishReason.STOP if paused else stop_reason(reason),
        decode_usage(get("usage")),
        paused,
    )


def encode_response(response: Response) -> dict[str, Any]:
    """A canonical response as a Messages answer."""
    return {
        "id": response.id,
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": encode_blocks(response.parts, answer=True),
        "stop_reason": FINISH_REASONS[response.finish],
        "stop_sequence": None,
        "usage": encode_usage(response.usage),
    }


# -- errors -----------------------------------------------------------------------------


def error_status(status: int, kind: str) -> int:
    """The status an Anthropic client is answered with (overloaded is Anthropic's 529)."""
    return 529 if kind == "overloaded" else status


def encode_error(status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
    """A canonical error as ``(status, body)`` of an Anthropic error answer."""
    status = error_status(status, kind)
    error_type = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return status, {"type": "error", "error": {"type": error_type, "message": message}}


def decode_error(status: int, body: Any) -> StreamError:
    """An Anthropic error answer (or ``error`` event) as a canonical error."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    kind = _KIND_OF_TYPE.get(str(error.get("type")), kind_for_status(status))
    if kind == "overloaded":
        status = 503
    message = error.get("message")
    text = message if isinstance(message, str) else f"The provider answered {status}."
    return StreamError(status, kind, text)
