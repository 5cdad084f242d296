"""OpenAI Responses ⇄ the canonical form: requests, whole responses and errors.

Request fields are handled as :data:`REQUEST_FIELDS` says. ``instructions``,
and ``system`` and ``developer`` messages wherever they are, become the
canonical system prompt. ``input`` items become turns: consecutive assistant
items (``message``\\ s of role ``assistant``, ``function_call``\\ s,
``reasoning``) are one assistant turn, consecutive ``function_call_output``\\ s
one user turn of tool results.

Reasoning: a ``reasoning`` item with summary (or ``reasoning_text``) parts is
canonical :class:`~provider_proxy.dialects.canonical.Reasoning`, its
``encrypted_content`` the opaque signature; one with no parts but
``encrypted_content`` is :class:`~provider_proxy.dialects.canonical.RedactedReasoning`.
Written back the same way, so Anthropic's signed and redacted thinking make
the round trip through a Responses client intact (an empty signed thought is
written with one empty summary part, so it stays what it was).

Namespaces: a ``namespace`` tool groups function tools under a name, and the
model's calls of them say it (``function_call.namespace``). Formats without
namespaces get each function as a flat tool named
``{namespace}--{name}`` (:data:`NAMESPACE_SEPARATOR`; the namespace's
description comes first in each function's), and a call of such a name comes
back to the client as the namespace's function. So that this is unambiguous,
a function or namespace name containing the separator is refused.

``store`` and ``previous_response_id`` are canonical :attr:`Request.store` and
:attr:`Request.continues`: the gateway keeps the conversation for a provider
without server-side state (``store`` is on unless ``false``, as in the API).
``instructions`` are :attr:`Request.transient_system`: as in the API, a
continued response's instructions are not carried over, its ``system`` and
``developer`` messages are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from . import _codec_util as u
from . import _openai_chat_codec as chat
from . import _output_format as output
from . import _web_search as ws
from ._responses_items import (
    NAMESPACE_SEPARATOR,
    decode_output,
    decode_reasoning_item,
    encode_output,
    encode_tool,
    encode_user,
    flat_name,
)
from .canonical import (
    Document,
    Fidelity,
    FidelityTable,
    Image,
    Message,
    OutputFormat,
    Part,
    Reasoning,
    ReasoningConfig,
    ReasoningEffort,
    Request,
    Role,
    Rule,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Unsupported,
    WebSearch,
    all_parts,
)

M, R, D = Fidelity.MAPPED, Fidelity.REFUSED, Fidelity.DROPPED

#: The fate of every request field a Responses client may send (decoding).
REQUEST_FIELDS: FidelityTable = {
    "model": Rule(M),
    "input": Rule(M, "messages, function_call, function_call_output, reasoning items"),
    "instructions": Rule(M, "as the system prompt"),
    "max_output_tokens": Rule(M),
    "temperature": Rule(M),
    "top_p": Rule(M),
    "stream": Rule(M),
    "tools": Rule(
        M,
        "function tools and namespaces of them; web_search by the provider's own search"
        " (see Web search); other built-in tools refused",
    ),
    "tool_choice": Rule(M, "auto, none, required, a function, or the web_search tool"),
    "parallel_tool_calls": Rule(M),
    "reasoning": Rule(M, "effort; summary: reasoning is returned as summary text"),
    "text": Rule(
        M,
        'format: text, json_object, json_schema (see Structured output); verbosity unless "medium"',
    ),
    "store": Rule(M, "the gateway keeps the conversation"),
    "previous_response_id": Rule(M, "a response the gateway kept"),
    "include": Rule(
        M,
        '"reasoning.encrypted_content", "web_search_call.action.sources" (always returned);'
        " others refused",
    ),
    "user": Rule(M),
    "safety_identifier": Rule(M, "as the user id when user is absent"),
    "stream_options": Rule(M, "include_obfuscation has no effect"),
    "truncation": Rule(R, 'unless "disabled"'),
    "top_logprobs": Rule(R, "unless 0"),
    "max_tool_calls": Rule(R),
    "background": Rule(R, "unless false; the gateway runs it before translating"),
    "conversation": Rule(R, "the gateway sends its items as the input before translating"),
    "prompt": Rule(R),
    "metadata": Rule(D, "not sent to the provider; echoed with the answer and kept with it"),
    "client_metadata": Rule(D, "the client's own (the Codex CLI's)"),
    "service_tier": Rule(D),
    "prompt_cache_key": Rule(D),
    "prompt_cache_retention": Rule(D),
}

#: Refused fields and the values that are their defaults (accepted as if absent).
_DEFAULTS: dict[str, Callable[[Any], bool]] = {
    "truncation": lambda v: v == "disabled",
    "top_logprobs": lambda v: v == 0,
    "background": lambda v: v is False,
}

#: The fate of canonical content a Responses body cannot hold (encoding).
ENCODE_FIELDS: FidelityTable = {
    "reasoning without signature": Rule(
        D, "Responses takes back only reasoning with encrypted_content"
    ),
    "cache_control": Rule(D, "OpenAI caches prompts by itself"),
    "tool_result.is_error": Rule(D, "the result's text says it"),
    "stop": Rule(R, "Responses has no stop sequences"),
    "document.text": Rule(R),
    "reasoning.budget_tokens": Rule(M, "to reasoning.effort by EFFORT_FOR_BUDGET"),
    "stream_usage": Rule(D, "Responses always streams usage"),
    ws.DROPPED_CALL: Rule(M, "as a web_search_call item"),
}

#: Built-in tool types: the provider runs them, so they do not translate.
BUILTIN_TOOLS = frozenset(
    {
        "web_search",
        "web_search_preview",
        "web_search_2025_08_26",
        "web_search_preview_2025_03_11",
        "file_search",
        "computer_use_preview",
        "computer_use",
        "code_interpreter",
        "image_generation",
        "mcp",
        "local_shell",
        "shell",
        "apply_patch",
        "custom",
    }
)

_EFFORTS: tuple[ReasoningEffort, ...] = ("none", "minimal", "low", "medium", "high", "xhigh")

# -- requests ---------------------------------------------------------------------------


def decode_request(body: Any) -> tuple[Request, tuple[str, ...]]:
    """A client's Responses body as a canonical request, with the names dropped."""
    body = u.obj(body, "body")
    dropped: list[str] = []
    for key, value in body.items():
        rule = REQUEST_FIELDS.get(key)
        if rule is None:
            if value is not None:
                raise Unsupported(key, "unknown field")
        elif rule.fate is R and value is not None and not _DEFAULTS.get(key, _never)(value):
            raise Unsupported(key)
        elif rule.fate is D and value is not None:
            dropped.append(key)
    text_format = _check_text(body.get("text"))
    _check_include(body.get("include"))
    options = u.obj(body.get("stream_options") or {}, "stream_options")
    u.only(options, ("include_obfuscation",), "stream_options")
    system: list[Text] = []
    instructions = u.opt_str(body.get("instructions"), "instructions")
    if instructions:
        system.append(Text(instructions))
    messages = _decode_input(body.get("input"), system, dropped)
    user = u.opt_str(body.get("user"), "user")
    if user is None:
        user = u.opt_str(body.get("safety_identifier"), "safety_identifier")
    request = Request(
        model=u.text(body.get("model"), "model"),
        messages=messages,
        system=tuple(system),
        tools=_decode_tools(body.get("tools")),
        web_search=_decode_web_search(body.get("tools")),
        tool_choice=_decode_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=u.opt_bool(body.get("parallel_tool_calls"), "parallel_tool_calls"),
        max_tokens=u.opt_int(body.get("max_output_tokens"), "max_output_tokens"),
        temperature=u.opt_float(body.get("temperature"), "temperature"),
        top_p=u.opt_float(body.get("top_p"), "top_p"),
        stream=body.get("stream") is True,
        stream_usage=body.get("stream") is True,
        user=user,
        reasoning=_decode_reasoning(body.get("reasoning")),
        store=body.get("store") is not False,
        continues=u.opt_str(body.get("previous_response_id"), "previous_response_id"),
        transient_system=1 if instructions else 0,
        output_format=text_format,
        metadata=_decode_metadata(body.get("metadata")),
    )
    ws.forced(request.tool_choice, request.web_search, "tool_choice")
    return request, tuple(dict.fromkeys(dropped))


def _decode_metadata(value: Any) -> dict[str, str] | None:
    """``metadata`` as the API takes it: at most 16 string pairs (keys 64, values 512 long)."""
    if value is None:
        return None
    raw = u.obj(value, "metadata")
    if len(raw) > 16:
        raise Unsupported("metadata", "at most 16 key-value pairs")
    for key, item in raw.items():
        if len(key) > 64 or not isinstance(item, str) or len(item) > 512:
            raise Unsupported(
                f"metadata.{key}", "keys of at most 64 and string values of at most 512 characters"
            )
    return dict(raw)


def _never(value: Any) -> bool:
    return False


def _check_text(value: Any) -> OutputFormat | None:
    if value is None:
        return None
    text = u.obj(value, "text")
    u.only(text, ("format", "verbosity"), "text")
    verbosity = text.get("verbosity")
    if verbosity not in (None, "medium"):
        raise Unsupported("text.verbosity", "the provider has no verbosity setting")
    return output.from_responses(text.get("format"))


def _check_include(value: Any) -> None:
    for i, item in enumerate(u.arr(value or [], "include")):
        if item not in ("reasoning.encrypted_content", "web_search_call.action.sources"):
            raise Unsupported(f"include[{i}]", f"{item!r} does not translate")


def _decode_reasoning(value: Any) -> ReasoningConfig | None:
    if value is None:
        return None
    raw = u.obj(value, "reasoning")
    u.only(raw, ("effort", "summary", "generate_summary"), "reasoning")
    effort = u.opt_str(raw.get("effort"), "reasoning.effort")
    if effort is None:
        return None
    known = next((level for level in _EFFORTS if level == effort), None)
    if known is None:
        raise Unsupported("reasoning.effort", f"unknown effort {effort!r}")
    return ReasoningConfig(effort=known)


def _decode_web_search(value: Any) -> WebSearch | None:
    found = [
        (f"tools[{i}]", raw)
        for i, raw in enumerate(value or ())
        if isinstance(raw, dict) and raw.get("type") in ws.RESPONSES_TYPES
    ]
    if len(found) > 1:
        raise Unsupported(f"{found[1][0]}.type", "one web search tool at most")
    return ws.decode_responses_tool(found[0][1], found[0][0]) if found else None


def _decode_tools(value: Any) -> tuple[Tool, ...]:
    tools: list[Tool] = []
    for i, raw in enumerate(u.arr(value or [], "tools")):
        where = f"tools[{i}]"
        item = u.obj(raw, where)
        if item.get("type") in ws.RESPONSES_TYPES:
            continue  # the provider's own search (_decode_web_search)
        if item.get("type") != "namespace":
            tools.append(_decode_tool(item, where))
            continue
        u.only(item, ("type", "name", "description", "tools"), where)
        namespace = _name(item.get("name"), f"{where}.name")
        about = u.opt_str(item.get("description"), f"{where}.description")
        for j, inner in enumerate(u.arr(item.get("tools"), f"{where}.tools")):
            tool = _decode_tool(inner, f"{where}.tools[{j}]")
            described = "\n\n".join(text for text in (about, tool.description) if text)
            tools.append(
                dataclasses.replace(
                    tool, name=flat_name(namespace, tool.name), description=described or None
                )
            )
    return tuple(tools)


def _name(value: Any, where: str) -> str:
    name = u.text(value, where)
    if NAMESPACE_SEPARATOR in name:
        raise Unsupported(
            where, f"{NAMESPACE_SEPARATOR!r} separates a namespace from its functions' names"
        )
    return name


def _decode_tool(value: Any, where: str) -> Tool:
    raw = u.obj(value, where)
    kind = raw.get("type")
    if kind != "function":
        name = kind if isinstance(kind, str) else "?"
        note = "built-in tools run at the provider" if name in BUILTIN_TOOLS else "unknown type"
        raise Unsupported(f"{where}.type", f"{name!r}: {note}; only function tools translate")
    u.only(raw, ("type", "name", "description", "parameters", "strict"), where)
    parameters = raw.get("parameters")
    return Tool(
        name=_name(raw.get("name"), f"{where}.name"),
        description=u.opt_str(raw.get("description"), f"{where}.description"),
        parameters=u.obj(parameters, f"{where}.parameters")
        if parameters is not None
        else {"type": "object", "properties": {}},
        strict=u.opt_bool(raw.get("strict"), f"{where}.strict"),
    )


def _decode_tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return ToolChoice(value)
    raw = u.obj(value, "tool_choice")
    if raw.get("type") in ws.RESPONSES_TYPES:  # the web search tool, which must run
        u.only(raw, ("type",), "tool_choice")
        return ToolChoice("web_search", raw["type"])
    if raw.get("type") != "function":
        raise Unsupported(
            "tool_choice.type", "only a function or web search tool choice translates"
        )
    u.only(raw, ("type", "name", "namespace"), "tool_choice")
    namespace = u.opt_str(raw.get("namespace"), "tool_choice.namespace")
    return ToolChoice("tool", flat_name(namespace, u.text(raw.get("name"), "tool_choice.name")))


def _decode_input(value: Any, system: list[Text], dropped: list[str]) -> tuple[Message, ...]:
    if isinstance(value, str):
        return (Message("user", (Text(value),)),)
    turns: list[Message] = []
    for i, raw in enumerate(u.arr(value, "input")):
        where = f"input[{i}]"
        item = u.obj(raw, where)
        kind = item.get("type", "message")
        for key in ("id", "status"):
            if item.get(key) is not None and kind != "web_search_call":  # a search's are its own
                dropped.append(f"input[].{key}")
        if kind == "message":
            role = item.get("role")
            if role in ("system", "developer"):
                u.only(item, ("type", "role", "content", "id", "status"), where)
                system.extend(_decode_texts(item.get("content"), f"{where}.content"))
            elif role == "user":
                u.only(item, ("type", "role", "content", "id", "status"), where)
                content = _decode_user(item.get("content"), f"{where}.content", dropped)
                _append(turns, "user", content)
            elif role == "assistant":
                u.only(item, ("type", "role", "content", "id", "status", "phase"), where)
                if item.get("phase") is not None:
                    dropped.append("input[].phase")  # the answer's own label of its text
                _append(turns, "assistant", decode_output(item.get("content"), f"{where}.content"))
            else:
                raise Unsupported(f"{where}.role", f"role {role!r} does not translate")
        elif kind == "function_call":
            u.only(
                item, ("type", "call_id", "name", "namespace", "arguments", "id", "status"), where
            )
            call = ToolCall(
                id=u.text(item.get("call_id"), f"{where}.call_id"),
                name=flat_name(
                    u.opt_str(item.get("namespace"), f"{where}.namespace"),
                    u.text(item.get("name"), f"{where}.name"),
                ),
                arguments=u.text(item.get("arguments", ""), f"{where}.arguments"),
            )
            _append(turns, "assistant", (call,))
        elif kind == "function_call_output":
            u.only(item, ("type", "call_id", "output", "id", "status"), where)
            result = ToolResult(
                u.text(item.get("call_id"), f"{where}.call_id"),
                _decode_tool_output(item.get("output"), f"{where}.output", dropped),
            )
            _append(turns, "user", (result,), tool_results=True)
        elif kind == "reasoning":
            part = decode_reasoning_item(item, where)
            if not isinstance(part, Reasoning) or part.text or part.signature is not None:
                _append(turns, "assistant", (part,))  # an empty item says nothing
        elif kind == "web_search_call":
            _append(turns, "assistant", (ws.decode_responses_call(item, where),))
        else:
            raise Unsupported(f"{where}.type", f"{kind!r} items do not translate")
    return tuple(turns)


def _append(
    turns: list[Message], role: Role, parts: tuple[Part, ...], *, tool_results: bool = False
) -> None:
    """Add ``parts`` to the last turn when it is the same role's run, else as a new turn."""
    last = turns[-1] if turns else None
    joins = last is not None and last.role == role
    if joins and role == "user" and last is not None:
        # Tool results join tool results only: a user's message is its own turn.
        joins = tool_results and all(isinstance(p, ToolResult) for p in last.parts)
    if joins and last is not None:
        turns[-1] = Message(last.role, (*last.parts, *parts))
    else:
        turns.append(Message(role, parts))


def _decode_texts(content: Any, where: str) -> list[Text]:
    if isinstance(content, str):
        return [Text(content)]
    texts = []
    for j, value in enumerate(u.arr(content, where)):
        part = u.obj(value, f"{where}[{j}]")
        if part.get("type") not in ("input_text", "output_text", "text"):
            raise Unsupported(f"{where}[{j}].type", "only text parts here")
        texts.append(Text(u.text(part.get("text"), f"{where}[{j}].text")))
    return texts


def _decode_user(content: Any, where: str, dropped: list[str]) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (Text(content),)
    return tuple(
        _decode_input_part(value, f"{where}[{j}]", dropped)
        for j, value in enumerate(u.arr(content, where))
    )


def _decode_input_part(value: Any, where: str, dropped: list[str]) -> Text | Image | Document:
    part = u.obj(value, where)
    kind = part.get("type")
    if kind in ("input_text", "text"):
        u.only(part, ("type", "text"), where)
        return Text(u.text(part.get("text"), f"{where}.text"))
    if kind == "input_image":
        u.only(part, ("type", "image_url", "detail"), where)
        if part.get("detail") not in (None, "auto"):
            dropped.append("input[].content[].detail")  # the provider has no such setting
        url = u.text(part.get("image_url"), f"{where}.image_url")
        inline = u.parse_data_url(url)
        if inline is not None:
            return Image(data=inline[1], media_type=inline[0])
        if url.startswith("data:"):
            raise Unsupported(f"{where}.image_url", "only base64 data URLs translate")
        return Image(url=url)
    if kind == "input_file":
        u.only(part, ("type", "file_data", "filename", "file_url"), where)
        title = u.opt_str(part.get("filename"), f"{where}.filename")
        if part.get("file_url") is not None:
            return Document(url=u.text(part["file_url"], f"{where}.file_url"), title=title)
        inline = u.parse_data_url(u.text(part.get("file_data"), f"{where}.file_data"))
        if inline is None:
            raise Unsupported(f"{where}.file_data", "expected a base64 data URL")
        return Document(media_type=inline[0], data=inline[1], title=title)
    raise Unsupported(f"{where}.type", f"{kind!r} parts do not translate")


def _decode_tool_output(
    value: Any, where: str, dropped: list[str]
) -> tuple[Text | Image | Document, ...]:
    if isinstance(value, str):
        return (Text(value),) if value else ()
    return tuple(
        _decode_input_part(part, f"{where}[{j}]", dropped)
        for j, part in enumerate(u.arr(value, where))
    )


def dropped_by_encoding(request: Request) -> tuple[str, ...]:
    """The :data:`ENCODE_FIELDS` dropped rows that ``request`` carries."""
    parts = all_parts(request)
    found: list[str] = []
    if any(isinstance(p, Reasoning) and p.signature is None for p in parts):
        found.append("reasoning without signature")
    cacheable = (Text, Image, Document, ToolCall, ToolResult)
    if any(isinstance(p, cacheable) and p.cache_control is not None for p in parts) or any(
        tool.cache_control is not None for tool in request.tools
    ):
        found.append("cache_control")
    if any(isinstance(p, ToolResult) and p.is_error for p in parts):
        found.append("tool_result.is_error")
    return tuple(found)


def encode_request(request: Request) -> dict[str, Any]:
    """A canonical request as a Responses body (``store: false``: the gateway keeps state)."""
    if request.stop:
        raise Unsupported("stop", "the Responses API has no stop sequences")
    body: dict[str, Any] = {"model": request.model, "input": _encode_input(request)}
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    for key in ("temperature", "top_p", "user", "parallel_tool_calls"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    if request.tools:
        body["tools"] = [encode_tool(tool) for tool in request.tools]
    if request.web_search is not None:
        body.setdefault("tools", []).append(ws.responses_tool(request.web_search))
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "name": choice.name}
            if choice.kind == "tool"
            else ws.responses_choice(choice)
            if choice.kind == "web_search"
            else choice.kind
        )
    effort = chat._effort(request.reasoning)
    if effort is not None:
        body["reasoning"] = {"effort": effort, "summary": "auto"}
        body["include"] = ["reasoning.encrypted_content"]
    if request.output_format is not None:
        body["text"] = {"format": output.to_responses(request.output_format)}
    body["store"] = False
    if request.stream:
        body["stream"] = True
    return body


def _encode_input(request: Request) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if request.system:
        content = [{"type": "input_text", "text": t.text} for t in request.system]
        items.append({"type": "message", "role": "system", "content": content})
    for message in request.messages:
        if message.role == "assistant":
            items.extend(encode_output(message.parts, ids=False))
        else:
            items.extend(encode_user(message.parts))
    return items
