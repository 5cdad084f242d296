"""OpenAI Chat Completions ⇄ the canonical form: requests, whole responses and errors.

Request fields are handled as :data:`REQUEST_FIELDS` says. System and
developer messages, wherever they are, become the canonical system prompt;
consecutive ``tool`` messages become one user turn of tool results; an
assistant's ``reasoning_content`` (the de-facto field of DeepSeek, vLLM and
others; OpenRouter's ``reasoning`` is read too) is canonical reasoning, never
answer text. ``cache_control`` on a text part (OpenRouter's extension) is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _codec_util as u
from . import _output_format as output
from . import _web_search as ws
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
    WebSearchCall,
    all_parts,
    kind_for_status,
)

M, R, D = Fidelity.MAPPED, Fidelity.REFUSED, Fidelity.DROPPED

#: The fate of every request field an OpenAI Chat client may send (decoding).
#: A refused field is accepted at its default value (the note says which).
REQUEST_FIELDS: FidelityTable = {
    "model": Rule(M),
    "messages": Rule(M),
    "max_tokens": Rule(M),
    "max_completion_tokens": Rule(M, "wins over max_tokens"),
    "temperature": Rule(M),
    "top_p": Rule(M),
    "stop": Rule(M),
    "stream": Rule(M),
    "stream_options": Rule(M, "include_usage"),
    "tools": Rule(M, "function tools; schemas intact"),
    "tool_choice": Rule(M),
    "parallel_tool_calls": Rule(M),
    "reasoning_effort": Rule(M),
    "user": Rule(M),
    "safety_identifier": Rule(M, "as the user id when user is absent"),
    "n": Rule(R, "unless 1"),
    "logprobs": Rule(R, "unless false"),
    "top_logprobs": Rule(R, "unless 0"),
    "logit_bias": Rule(R, "unless empty"),
    "frequency_penalty": Rule(R, "unless 0"),
    "presence_penalty": Rule(R, "unless 0"),
    "audio": Rule(R),
    "modalities": Rule(R, 'unless ["text"]'),
    "response_format": Rule(M, "text, json_object, json_schema (see Structured output)"),
    "functions": Rule(R, "the legacy form of tools"),
    "function_call": Rule(R, "the legacy form of tool_choice"),
    "verbosity": Rule(R),
    "web_search_options": Rule(M, "the provider's own web search, where it has one"),
    "seed": Rule(D, "best-effort determinism only"),
    "metadata": Rule(D, "for stored completions"),
    "store": Rule(D),
    "service_tier": Rule(D),
    "prediction": Rule(D, "latency only"),
    "prompt_cache_key": Rule(D),
    "prompt_cache_retention": Rule(D),
}

#: Refused fields and the values that are their defaults (accepted as if absent).
_DEFAULTS: dict[str, Callable[[Any], bool]] = {
    "n": lambda v: v == 1,
    "logprobs": lambda v: v is False,
    "top_logprobs": lambda v: v == 0,
    "logit_bias": lambda v: v == {},
    "frequency_penalty": lambda v: v == 0,
    "presence_penalty": lambda v: v == 0,
    "modalities": lambda v: v == ["text"],
}

#: The fate of canonical content an OpenAI Chat body cannot hold (encoding).
ENCODE_FIELDS: FidelityTable = {
    "reasoning.signature": Rule(D, "the gateway keeps it server-side"),
    "redacted_reasoning": Rule(D, "the gateway keeps it server-side"),
    "cache_control": Rule(D, "OpenAI caches prompts by itself"),
    "tool_result.is_error": Rule(D, "the result's text says it"),
    "tool_result.image": Rule(R),
    "document.url": Rule(R),
    "document.text": Rule(R),
    "reasoning.budget_tokens": Rule(M, "to reasoning_effort by EFFORT_FOR_BUDGET"),
    "web_search": Rule(R, "OpenAI Chat providers have no built-in web search"),
    ws.DROPPED_CALL: Rule(D, "an earlier search call (its answer's text stays)"),
}

#: A thinking budget (tokens) as an OpenAI ``reasoning_effort``: the first row whose
#: bound the budget does not exceed. The inverse of Anthropic's ``THINKING_BUDGETS``.
EFFORT_FOR_BUDGET: tuple[tuple[int, str], ...] = (
    (1024, "minimal"),
    (4096, "low"),
    (16384, "medium"),
    (32768, "high"),
)

FINISH_REASONS: dict[str, FinishReason] = {reason.value: reason for reason in FinishReason}
#: Each reason's text (an enum's ``.value`` is a Python-level property).
_FINISH_VALUES: dict[FinishReason, str] = {reason: text for text, reason in FINISH_REASONS.items()}

#: OpenAI error types by HTTP status.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    504: "timeout",
}

_KIND_OF_TYPE = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "rate_limit_error": "rate_limit",
    "insufficient_quota": "rate_limit",
    "server_error": "server_error",
    "timeout": "timeout",
}


# -- requests ---------------------------------------------------------------------------


#: How a scalar field is checked when a body carries it (``null`` is its absence).
_SCALARS: dict[str, Callable[[Any, str], Any]] = {
    "max_tokens": u.opt_int,
    "max_completion_tokens": u.opt_int,
    "temperature": u.opt_float,
    "top_p": u.opt_float,
    "parallel_tool_calls": u.opt_bool,
    "reasoning_effort": u.opt_str,
    "user": u.opt_str,
    "safety_identifier": u.opt_str,
}


def _unmapped(value: Any, where: str) -> None:
    """(Marks a field :data:`_MAPPED` does not hold: never called.)"""


#: Each mapped field's check, by name (``None``: checked where it is decoded), so
#: the fields a body carries cost one lookup each.
_MAPPED: dict[str, Callable[[Any, str], Any] | None] = {
    key: _SCALARS.get(key) for key, rule in REQUEST_FIELDS.items() if rule.fate is M
}

_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


def decode_request(body: Any) -> tuple[Request, tuple[str, ...]]:
    """A client's Chat Completions body as a canonical request, with the names dropped.

    One pass over the fields the body carries checks each (a ``null`` one is
    absent); the request is then built from them.
    """
    if type(body) is not dict:  # (the checks of the hot path are written out: no call)
        body = u.obj(body, "body")
    dropped: list[str] = []
    for key, value in body.items():
        check: Callable[[Any, str], Any] | None = _MAPPED.get(key, _unmapped)
        if check is None or value is None:
            continue
        if check is not _unmapped:
            check(value, key)
            continue
        rule = REQUEST_FIELDS.get(key)
        if rule is None:
            raise Unsupported(key, "unknown field")
        if rule.fate is R:
            if not _DEFAULTS.get(key, _never)(value):
                raise Unsupported(key)
        else:
            dropped.append(key)
    get = body.get
    raw = get("messages")
    system, messages = _decode_messages(
        raw if type(raw) is list else u.arr(raw, "messages"), dropped
    )
    stream_usage = False
    if options := get("stream_options"):
        u.only(u.obj(options, "stream_options"), _STREAM_OPTIONS, "stream_options")
        stream_usage = options.get("include_usage") is True
    max_tokens = get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = get("max_tokens")
    effort = get("reasoning_effort")
    if effort is not None and effort not in _EFFORTS:
        raise Unsupported("reasoning_effort", f"unknown effort {effort!r}")
    user = get("user")
    if user is None:
        user = get("safety_identifier")
    tools = get("tools")
    choice, stop, form, search = (
        get("tool_choice"),
        get("stop"),
        get("response_format"),
        get("web_search_options"),
    )
    # The first fields by position, in Request's order: keywords cost more per call.
    request = Request(
        u.text(get("model"), "model"),
        messages,
        system,
        tuple(_decode_tool(t, f"tools[{i}]") for i, t in enumerate(tools)) if tools else (),
        None if choice is None else _decode_tool_choice(choice),
        get("parallel_tool_calls"),
        max_tokens,
        get("temperature"),
        get("top_p"),
        () if stop is None else _decode_stop(stop),
        get("stream") is True,
        stream_usage,
        user,
        None if effort is None else ReasoningConfig(effort=effort),
        output_format=None if form is None else output.from_chat(form),
        web_search=None if search is None else ws.decode_chat_options(search),
    )
    return request, tuple(dict.fromkeys(dropped)) if dropped else ()


_STREAM_OPTIONS = ("include_usage", "include_obfuscation")


def _never(value: Any) -> bool:
    return False


def _decode_stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(u.text(s, f"stop[{i}]") for i, s in enumerate(u.arr(value, "stop")))


def _decode_tool(value: Any, where: str) -> Tool:
    raw = u.obj(value, where)
    if raw.get("type", "function") != "function":
        raise Unsupported(f"{where}.type", "only function tools translate")
    u.only(raw, ("type", "function"), where)
    function = u.obj(raw.get("function"), f"{where}.function")
    u.only(function, ("name", "description", "parameters", "strict"), f"{where}.function")
    parameters = function.get("parameters")
    return Tool(
        name=u.text(function.get("name"), f"{where}.function.name"),
        description=u.opt_str(function.get("description"), f"{where}.function.description"),
        parameters=u.obj(parameters, f"{where}.function.parameters")
        if parameters is not None
        else {"type": "object", "properties": {}},
        strict=u.opt_bool(function.get("strict"), f"{where}.function.strict"),
    )


def _decode_tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return ToolChoice(value)
    raw = u.obj(value, "tool_choice")
    if raw.get("type") != "function":
        raise Unsupported("tool_choice.type")
    function = u.obj(raw.get("function"), "tool_choice.function")
    return ToolChoice("tool", u.text(function.get("name"), "tool_choice.function.name"))


def _decode_messages(
    raw: list[Any], dropped: list[str]
) -> tuple[tuple[Text, ...], tuple[Message, ...]]:
    system: list[Text] = []
    messages: list[Message] = []
    # A plain message's place (``messages[i]``) is written out only when it is named.
    for i, message in enumerate(raw):
        if type(message) is not dict:
            message = u.obj(message, f"messages[{i}]")
        role = message.get("role")
        if message.get("name") is not None:
            dropped.append("messages[].name")
        if role in ("system", "developer", "user"):
            if not message.keys() <= _PLAIN_MESSAGE:  # (a set comparison, no call)
                u.only(message, _PLAIN_MESSAGE, f"messages[{i}]")
            content = message.get("content")
            if role == "user":
                parts = (
                    (Text(content),)
                    if type(content) is str
                    else _decode_user_content(content, f"messages[{i}]", dropped)
                )
                messages.append(Message("user", parts))
            elif type(content) is str:
                system.append(Text(content))
            else:
                system.extend(_decode_text_parts(content, f"messages[{i}].content"))
        elif role == "assistant":
            where = f"messages[{i}]"
            messages.append(Message("assistant", _decode_assistant(message, where, dropped)))
        elif role == "tool":
            _add_tool_result(messages, message, f"messages[{i}]")
        else:
            raise Unsupported(f"messages[{i}].role", f"role {role!r} does not translate")
    return tuple(system), tuple(messages)


#: The fields of a system, developer or user message.
_PLAIN_MESSAGE = frozenset({"role", "content", "name"})


def _decode_text_parts(content: Any, where: str) -> list[Text]:
    if isinstance(content, str):
        return [Text(content)]
    texts = []
    for j, value in enumerate(u.arr(content, where)):
        part = u.obj(value, f"{where}[{j}]")
        if part.get("type") != "text":
            raise Unsupported(f"{where}[{j}].type", "only text parts here")
        texts.append(_decode_text_part(part, f"{where}[{j}]"))
    return texts


def _decode_text_part(part: dict[str, Any], where: str) -> Text:
    u.only(part, ("type", "text", "cache_control"), where)
    return Text(
        u.text(part.get("text"), f"{where}.text"),
        u.cache_control(part.get("cache_control"), f"{where}.cache_control"),
    )


def _decode_user_content(content: Any, where: str, dropped: list[str]) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (Text(content),)
    parts: list[Part] = []
    for j, value in enumerate(u.arr(content, f"{where}.content")):
        at = f"{where}.content[{j}]"
        part = u.obj(value, at)
        kind = part.get("type")
        if kind == "text":
            parts.append(_decode_text_part(part, at))
        elif kind == "image_url":
            parts.append(_decode_image(part, at, dropped))
        elif kind == "file":
            parts.append(_decode_file(part, at))
        else:
            raise Unsupported(f"{at}.type", f"{kind!r} parts do not translate")
    return tuple(parts)


def _decode_image(part: dict[str, Any], where: str, dropped: list[str]) -> Image:
    u.only(part, ("type", "image_url", "cache_control"), where)
    image = u.obj(part.get("image_url"), f"{where}.image_url")
    u.only(image, ("url", "detail"), f"{where}.image_url")
    if image.get("detail") not in (None, "auto"):
        dropped.append("messages[].content[].image_url.detail")
    url = u.text(image.get("url"), f"{where}.image_url.url")
    control = u.cache_control(part.get("cache_control"), f"{where}.cache_control")
    inline = u.parse_data_url(url)
    if inline is not None:
        return Image(data=inline[1], media_type=inline[0], cache_control=control)
    if url.startswith("data:"):
        raise Unsupported(f"{where}.image_url.url", "only base64 data URLs translate")
    return Image(url=url, cache_control=control)


def _decode_file(part: dict[str, Any], where: str) -> Document:
    u.only(part, ("type", "file", "cache_control"), where)
    file = u.obj(part.get("file"), f"{where}.file")
    u.only(file, ("file_data", "filename"), f"{where}.file")
    inline = u.parse_data_url(u.text(file.get("file_data"), f"{where}.file.file_data"))
    if inline is None:
        raise Unsupported(f"{where}.file.file_data", "expected a base64 data URL")
    return Document(
        media_type=inline[0],
        data=inline[1],
        title=u.opt_str(file.get("filename"), f"{where}.file.filename"),
        cache_control=u.cache_control(part.get("cache_control"), f"{where}.cache_control"),
    )


def _decode_assistant(message: dict[str, Any], where: str, dropped: list[str]) -> tuple[Part, ...]:
    u.only(
        message,
        (
            "role",
            "content",
            "name",
            "refusal",
            "tool_calls",
            "reasoning_content",
            "reasoning",
            "annotations",
        ),
        where,
    )
    if message.get("annotations"):
        dropped.append("messages[].annotations")  # an earlier answer's sources, shown to the user
    parts: list[Part] = []
    reasoning = message.get("reasoning_content", message.get("reasoning"))
    if reasoning:
        parts.append(Reasoning(u.text(reasoning, f"{where}.reasoning_content")))
    content = message.get("content")
    if isinstance(content, str):
        if content:
            parts.append(Text(content))
    elif content is not None:
        for j, value in enumerate(u.arr(content, f"{where}.content")):
            at = f"{where}.content[{j}]"
            part = u.obj(value, at)
            if part.get("type") == "refusal":
                parts.append(Refusal(u.text(part.get("refusal"), f"{at}.refusal")))
            elif part.get("type") == "text":
                parts.append(_decode_text_part(part, at))
            else:
                raise Unsupported(f"{at}.type")
    if message.get("refusal") is not None:
        parts.append(Refusal(u.text(message["refusal"], f"{where}.refusal")))
    for j, call in enumerate(message.get("tool_calls") or ()):
        if isinstance(call, dict) and "index" in call:
            # A streamed call's position, kept by SDKs that send the answer back whole.
            dropped.append("messages[].tool_calls[].index")
            call = {key: value for key, value in call.items() if key != "index"}
        parts.append(_decode_tool_call(call, f"{where}.tool_calls[{j}]"))
    return tuple(parts)


def _decode_tool_call(value: Any, where: str) -> ToolCall:
    call = u.obj(value, where)
    u.only(call, ("id", "type", "function"), where)
    if call.get("type", "function") != "function":
        raise Unsupported(f"{where}.type")
    function = u.obj(call.get("function"), f"{where}.function")
    return ToolCall(
        id=u.text(call.get("id"), f"{where}.id"),
        name=u.text(function.get("name"), f"{where}.function.name"),
        arguments=u.text(function.get("arguments", ""), f"{where}.function.arguments"),
    )


def _add_tool_result(messages: list[Message], message: dict[str, Any], where: str) -> None:
    u.only(message, ("role", "content", "tool_call_id", "name"), where)
    content = message.get("content")
    parts = [] if content == "" else _decode_text_parts(content, f"{where}.content")
    result = ToolResult(u.text(message.get("tool_call_id"), f"{where}.tool_call_id"), tuple(parts))
    last = messages[-1] if messages else None
    if (
        last is not None
        and last.role == "user"
        and all(isinstance(p, ToolResult) for p in last.parts)
    ):
        messages[-1] = Message("user", (*last.parts, result))
    else:
        messages.append(Message("user", (result,)))


def dropped_by_encoding(request: Request) -> tuple[str, ...]:
    """The :data:`ENCODE_FIELDS` dropped rows that ``request`` carries (the header names them)."""
    parts = all_parts(request)
    found: list[str] = []
    if any(isinstance(p, Reasoning) and p.signature is not None for p in parts):
        found.append("reasoning.signature")
    if any(isinstance(p, RedactedReasoning) for p in parts):
        found.append("redacted_reasoning")
    cacheable = (Text, Image, Document, ToolCall, ToolResult)
    if any(isinstance(p, cacheable) and p.cache_control is not None for p in parts) or any(
        tool.cache_control is not None for tool in request.tools
    ):
        found.append("cache_control")
    if any(isinstance(p, ToolResult) and p.is_error for p in parts):
        found.append("tool_result.is_error")
    if any(isinstance(p, WebSearchCall) for p in parts):
        found.append(ws.DROPPED_CALL)
    return tuple(found)


def encode_request(request: Request) -> dict[str, Any]:
    """A canonical request as a Chat Completions body."""
    if request.web_search is not None:
        raise Unsupported(
            "web_search",
            "Chat Completions, the format the gateway speaks to this provider, has no "
            "built-in web search tool",
        )
    body: dict[str, Any] = {"model": request.model, "messages": _encode_messages(request)}
    if request.max_tokens is not None:
        body["max_completion_tokens"] = request.max_tokens
    for key in ("temperature", "top_p", "user", "parallel_tool_calls"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    if request.stop:
        body["stop"] = list(request.stop)
    if request.tools:
        body["tools"] = [_encode_tool(tool) for tool in request.tools]
    if request.tool_choice is not None:
        choice = request.tool_choice
        if choice.kind == "web_search":
            raise Unsupported("tool_choice", "Chat Completions cannot be made to search")
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if choice.kind == "tool"
            else choice.kind
        )
    effort = _effort(request.reasoning)
    if effort is not None:
        body["reasoning_effort"] = effort
    if request.output_format is not None:
        body["response_format"] = output.to_chat(request.output_format)
    if request.stream:
        body["stream"] = True
        # Always asked for: the gateway reads usage; the client sees it only if it asked.
        body["stream_options"] = {"include_usage": True}
    return body


def _effort(config: ReasoningConfig | None) -> str | None:
    if config is None:
        return None
    if config.effort is not None:
        return config.effort
    if not config.budget_tokens:
        return None  # no budget, or thinking disabled (0): the model's default
    for bound, effort in EFFORT_FOR_BUDGET:
        if config.budget_tokens <= bound:
            return effort
    return EFFORT_FOR_BUDGET[-1][1]


def _encode_tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = dict(tool.parameters)
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _encode_messages(request: Request) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": _encode_texts(request.system)})
    for message in request.messages:
        if message.role == "assistant":
            out.append(encode_assistant(message.parts))
        else:
            out.extend(_encode_user(message.parts))
    return out


def _encode_texts(texts: tuple[Text, ...]) -> str | list[dict[str, Any]]:
    if len(texts) == 1:
        return texts[0].text
    return [{"type": "text", "text": t.text} for t in texts]


def _encode_user(parts: tuple[Part, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, ToolResult):
            out.append(_encode_tool_result(part))
        elif isinstance(part, Text):
            rest.append({"type": "text", "text": part.text})
        elif isinstance(part, Image):
            rest.append(_encode_image(part))
        elif isinstance(part, Document):
            rest.append(_encode_document(part))
        else:
            raise Unsupported("messages[].content", f"{type(part).__name__} in a user turn")
    if rest:
        only_text = len(rest) == 1 and rest[0]["type"] == "text"
        out.append({"role": "user", "content": rest[0]["text"] if only_text else rest})
    return out


def _encode_tool_result(result: ToolResult) -> dict[str, Any]:
    texts = []
    for part in result.content:
        if isinstance(part, Image):
            raise Unsupported("tool_result.image", "OpenAI Chat tool results hold text only")
        if not isinstance(part, Text):
            raise Unsupported("tool_result.content", f"{type(part).__name__} in a tool result")
        texts.append(part)
    content: str | list[dict[str, Any]] = _encode_texts(tuple(texts)) if texts else ""
    return {"role": "tool", "tool_call_id": result.call_id, "content": content}


def _encode_image(image: Image) -> dict[str, Any]:
    if image.url is not None:
        url = image.url
    else:
        url = u.data_url(image.media_type or "image/png", image.data or "")
    return {"type": "image_url", "image_url": {"url": url}}


def _encode_document(document: Document) -> dict[str, Any]:
    if document.url is not None:
        raise Unsupported("document.url", "only base64 documents translate to OpenAI Chat")
    if document.text is not None:
        raise Unsupported("document.text", "only base64 documents translate to OpenAI Chat")
    if document.data is None or document.media_type is None:
        raise Unsupported("document", "only base64 documents translate to OpenAI Chat")
    file: dict[str, Any] = {"file_data": u.data_url(document.media_type, document.data)}
    if document.title is not None:
        file["filename"] = document.title
    return {"type": "file", "file": file}


def encode_assistant(parts: tuple[Part, ...]) -> dict[str, Any]:
    """An assistant turn (or a response's message) as a Chat message."""
    texts: list[str] = []
    reasoning: list[str] = []
    refusals: list[str] = []
    calls: list[ToolCall] = []
    for part in parts:  # one pass: a turn's parts are read once
        if isinstance(part, Text):
            texts.append(part.text)
        elif isinstance(part, Reasoning):
            reasoning.append(part.text)
        elif isinstance(part, Refusal):
            refusals.append(part.text)
        elif isinstance(part, ToolCall):
            calls.append(part)
        elif not isinstance(part, (RedactedReasoning, WebSearchCall)):  # kept server-side
            raise Unsupported("messages[].content", f"{type(part).__name__} in an assistant turn")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if refusals:
        message["refusal"] = "".join(refusals)
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    return message


# -- responses --------------------------------------------------------------------------


def finish_reason(value: Any) -> FinishReason:
    """An OpenAI ``finish_reason`` as canonical; an unknown one raises."""
    if isinstance(value, str) and value in FINISH_REASONS:
        return FINISH_REASONS[value]
    raise UntranslatableResponse(f"The provider stopped for an unknown reason: {value!r}.")


def decode_usage(value: Any) -> Usage:
    """OpenAI ``usage`` (``prompt_tokens`` includes the cached tokens) as canonical."""
    if not isinstance(value, dict):
        return Usage()
    prompt = value.get("prompt_tokens_details") or {}
    completion = value.get("completion_tokens_details") or {}
    cached = prompt.get("cached_tokens")
    if cached is None:
        cached = value.get("prompt_cache_hit_tokens")  # DeepSeek
    return Usage(
        input_tokens=value.get("prompt_tokens"),
        output_tokens=value.get("completion_tokens"),
        cache_read_tokens=cached,
        cache_write_tokens=prompt.get("cache_write_tokens"),
        reasoning_tokens=completion.get("reasoning_tokens"),
    )


def encode_usage(usage: Usage) -> dict[str, Any]:
    """Canonical usage as OpenAI's ``usage`` object."""
    prompt, completion = usage.input_tokens or 0, usage.output_tokens or 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    details: dict[str, int] = {}
    if usage.cache_read_tokens is not None:
        details["cached_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens is not None:
        details["cache_write_tokens"] = usage.cache_write_tokens
    if details:
        out["prompt_tokens_details"] = details
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def decode_response(body: Any) -> Response:
    """A Chat Completion as a canonical response."""
    body = u.obj(body, "response")
    choices = u.arr(body.get("choices"), "choices")
    if len(choices) != 1:
        raise UntranslatableResponse(f"Expected one choice, the provider answered {len(choices)}.")
    choice = u.obj(choices[0], "choices[0]")
    message = u.obj(choice.get("message"), "choices[0].message")
    answer = {k: v for k, v in message.items() if k in _ANSWER_KEYS}
    parts = _decode_assistant(answer, "message", [])
    return Response(
        id=str(body.get("id", "")),
        model=str(body.get("model", "")),
        parts=parts,
        finish=finish_reason(choice.get("finish_reason")),
        usage=decode_usage(body.get("usage")),
    )


def _answer_message(parts: tuple[Part, ...]) -> dict[str, Any]:
    message = encode_assistant(parts)
    annotations = ws.chat_annotations(parts)
    if annotations:
        message["annotations"] = annotations
    return message


_ANSWER_KEYS = ("role", "content", "refusal", "tool_calls", "reasoning_content", "reasoning")


def encode_response(response: Response, created: int = 0) -> dict[str, Any]:
    """A canonical response as a Chat Completion (``created``: Unix seconds)."""
    return {
        "id": response.id,
        "object": "chat.completion",
        "created": created,
        "model": response.model,
        "choices": [
            {
                "index": 0,
                "message": _answer_message(response.parts),
                "finish_reason": _FINISH_VALUES[response.finish],
                "logprobs": None,
            }
        ],
        "usage": encode_usage(response.usage),
    }


# -- errors -----------------------------------------------------------------------------


def error_status(status: int, kind: str) -> int:
    """The status an OpenAI client is answered with (OpenAI has no 529: it is 503)."""
    return 503 if status == 529 or kind == "overloaded" else status


def encode_error(status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
    """A canonical error as ``(status, body)`` of an OpenAI error answer."""
    status = error_status(status, kind)
    error_type = ERROR_TYPES.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )
    return status, {"error": {"message": message, "type": error_type, "param": None, "code": kind}}


def decode_error(status: int, body: Any) -> StreamError:
    """An OpenAI error answer (or streamed error object) as a canonical error."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    message = error.get("message")
    kind = _KIND_OF_TYPE.get(str(error.get("type")), kind_for_status(status))
    if status in (503, 529):
        kind = "overloaded"
    text = message if isinstance(message, str) else f"The provider answered {status}."
    return StreamError(status, kind, text)
