"""Gemini ``generateContent`` ⇄ the canonical form: requests, whole responses and errors.

Gemini names the model in the path (``/v1beta/models/{model}:generateContent``):
the gateway puts the path's model in the body's ``model`` before decoding.
Bodies are read in the API's camelCase (what google-genai sends); the
snake_case spelling the API also accepts is read too.

Function calls carry no id in Gemini's answers. The proxy makes one that is
stable: ``call_`` and a digest of the answer's ``responseId``, the call's
position, its name and its arguments (:func:`call_id`), the same for a streamed
and a whole answer. Calls from a Gemini client's history use their ``id`` when
they have one, else ``call_{turn}_{position}``; a ``functionResponse`` answers
the call with its ``id``, else the earliest unanswered call of its name.

Thought signatures: a part's ``thoughtSignature`` signs the thinking before it.
Decoding, consecutive thought parts (``"thought": true``) make one
:class:`~provider_proxy.dialects.canonical.Reasoning`; a signature on a thought
part closes it, one on another part signs the open reasoning or, without one,
is a reasoning of no text placed before that part. Encoding, a signed
reasoning's signature goes on the first function call after it in the turn
(Gemini refuses a call turn whose first call lacks it), else on the next part,
else on an empty text part; its text is left out: Gemini reads the signatures
back, not the thoughts. Tool schemas and names follow :mod:`._gemini_schema`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from typing import Any

from .._json import dumps, loads
from . import _codec_util as u
from . import _output_format as output
from . import _web_search as ws
from ._gemini_schema import from_gemini_name, to_gemini, to_gemini_name, to_json_schema
from .canonical import (
    IMAGE_URL,
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

_URLSAFE = re.compile(r"[A-Za-z0-9_-]+={0,2}")

#: A reasoning effort as Gemini's ``thinkingBudget`` (tokens; 0 turns thinking off).
THINKING_BUDGETS: dict[str, int] = {
    "none": 0,
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 16384,
    "xhigh": 24576,
}

#: The fate of every request field a Gemini client may send (decoding).
REQUEST_FIELDS: FidelityTable = {
    "model": Rule(M, "the path's model"),
    "contents": Rule(M, "text, inlineData, functionCall, functionResponse, thought parts"),
    "systemInstruction": Rule(M, "text parts"),
    "tools": Rule(M, "functionDeclarations; schemas as JSON Schema; googleSearch (see Web search)"),
    "toolConfig": Rule(M, "functionCallingConfig: mode, one allowedFunctionNames"),
    "generationConfig": Rule(M, "as its rows say"),
    "generationConfig.temperature": Rule(M),
    "generationConfig.topP": Rule(M),
    "generationConfig.maxOutputTokens": Rule(M),
    "generationConfig.stopSequences": Rule(M),
    "generationConfig.thinkingConfig": Rule(
        M, "thinkingBudget as a budget (-1: the model's default), thinkingLevel as an effort"
    ),
    "generationConfig.candidateCount": Rule(R, "unless 1"),
    "generationConfig.topK": Rule(R),
    "generationConfig.presencePenalty": Rule(R, "unless 0"),
    "generationConfig.frequencyPenalty": Rule(R, "unless 0"),
    "generationConfig.responseMimeType": Rule(
        M, '"text/plain", or "application/json" (see Structured output)'
    ),
    "generationConfig.responseSchema": Rule(M, "read as JSON Schema"),
    "generationConfig.responseJsonSchema": Rule(M),
    "generationConfig.responseModalities": Rule(R, 'unless ["TEXT"]'),
    "generationConfig.responseLogprobs": Rule(R, "unless false"),
    "generationConfig.logprobs": Rule(R),
    "generationConfig.speechConfig": Rule(R),
    "generationConfig.imageConfig": Rule(R),
    "generationConfig.seed": Rule(D, "best-effort determinism only"),
    "generationConfig.mediaResolution": Rule(D, "input detail and cost only"),
    "cachedContent": Rule(R, "a cache on Gemini's servers"),
    "safetySettings": Rule(D, "Gemini's own filters; other providers have none to set"),
    "labels": Rule(D, "billing labels"),
}

#: Refused fields and the values that are their defaults (accepted as if absent).
_DEFAULTS: dict[str, Callable[[Any], bool]] = {
    "generationConfig.candidateCount": lambda v: v == 1,
    "generationConfig.presencePenalty": lambda v: v == 0,
    "generationConfig.frequencyPenalty": lambda v: v == 0,
    "generationConfig.responseModalities": lambda v: v == ["TEXT"],
    "generationConfig.responseLogprobs": lambda v: v is False,
}

#: The fate of canonical content a Gemini body cannot hold (encoding).
ENCODE_FIELDS: FidelityTable = {
    "reasoning.effort": Rule(M, "to thinkingConfig.thinkingBudget by THINKING_BUDGETS"),
    "reasoning.text": Rule(D, "Gemini reads back its thought signatures, not the thoughts"),
    "reasoning without signature": Rule(D, "Gemini ignores unsigned thoughts"),
    "redacted_reasoning": Rule(D, "another provider's; Gemini cannot read it"),
    "cache_control": Rule(D, "Gemini caches prompts by itself"),
    "user": Rule(D, "Gemini has no end-user field"),
    "tools.strict": Rule(D, "Gemini has no strict mode"),
    "tool schema keywords": Rule(D, "stripped by the schema rule"),
    "tool_result.is_error": Rule(M, 'as {"error": text}'),
    "parallel_tool_calls": Rule(R, "unless true: Gemini cannot be held to one call"),
    "image.url": Rule(R, "an http(s) URL; data URLs are sent inline"),
    "document.url": Rule(R),
    "tool_result.image": Rule(R),
    "output_format": Rule(
        M,
        'responseMimeType "application/json", the schema intact as '
        "responseJsonSchema (see Structured output)",
    ),
    ws.DROPPED_CALL: Rule(D, "an earlier search (Gemini takes back no grounding)"),
    ws.DROPPED_CONTEXT_SIZE: Rule(D, "Gemini has no such setting"),
}

#: Gemini finish reasons that are canonical ones (``STOP`` with a call is ``tool_calls``).
FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "SPII": FinishReason.CONTENT_FILTER,
    "IMAGE_SAFETY": FinishReason.CONTENT_FILTER,
    "IMAGE_PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
}
#: Gemini finish reasons that mean the answer failed: a 502 with this text.
FAILED_FINISHES: dict[str, str] = {
    "MALFORMED_FUNCTION_CALL": "The model produced a malformed function call.",
    "UNEXPECTED_TOOL_CALL": "The model called a tool it was not given.",
    "TOO_MANY_TOOL_CALLS": "The model made too many tool calls.",
}
ENCODED_FINISHES: dict[FinishReason, str] = {
    FinishReason.STOP: "STOP",
    FinishReason.TOOL_CALLS: "STOP",
    FinishReason.LENGTH: "MAX_TOKENS",
    FinishReason.CONTENT_FILTER: "SAFETY",
}

# google.rpc.Code names by HTTP status, and the canonical kind of each.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_KIND_OF_STATUS = {
    "INVALID_ARGUMENT": "invalid_request",
    "FAILED_PRECONDITION": "invalid_request",
    "OUT_OF_RANGE": "invalid_request",
    "UNAUTHENTICATED": "authentication",
    "PERMISSION_DENIED": "permission",
    "NOT_FOUND": "not_found",
    "RESOURCE_EXHAUSTED": "rate_limit",
    "INTERNAL": "server_error",
    "UNKNOWN": "server_error",
    "UNAVAILABLE": "overloaded",
    "DEADLINE_EXCEEDED": "timeout",
}


def camel(value: Any) -> Any:
    """A JSON object's keys in camelCase (``system_instruction`` → ``systemInstruction``)."""
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        head, *rest = str(key).split("_")
        out[head + "".join(w[:1].upper() + w[1:] for w in rest) if rest else key] = item
    return out


def standard_base64(signature: str | None) -> str | None:
    """A signature as standard, padded base64 (RFC 4648 §4), the alphabet providers use.

    Gemini's signatures are bytes, and google-genai sends back the ones it was
    given in the URL-safe alphabet (§5), unpadded: the same bytes, which another
    provider (Anthropic) checks as the text it wrote. Anything else is kept as it is.
    """
    if not signature or not _URLSAFE.fullmatch(signature):
        return signature
    padded = signature + "=" * (-len(signature) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        return signature
    return base64.b64encode(raw).decode("ascii")


def call_id(response_id: str, position: int, name: str, arguments: str) -> str:
    """The stable id of a Gemini function call (see the module docstring)."""
    digest = hashlib.sha256(f"{response_id}\0{position}\0{name}\0{arguments}".encode())
    return "call_" + digest.hexdigest()[:24]


# -- requests ---------------------------------------------------------------------------


def _check_fields(body: dict[str, Any], prefix: str, dropped: list[str]) -> None:
    for key, value in body.items():
        name = f"{prefix}{key}"
        rule = REQUEST_FIELDS.get(name)
        if rule is None:
            if value is not None:
                raise Unsupported(name, "unknown field")
        elif rule.fate is R and value is not None and not _DEFAULTS.get(name, _never)(value):
            raise Unsupported(name)
        elif rule.fate is D and value is not None:
            dropped.append(name)


def _never(value: Any) -> bool:
    return False


def decode_request(body: Any) -> tuple[Request, tuple[str, ...]]:
    """A Gemini client's body (with the path's ``model``) as canonical, and what was dropped."""
    body = camel(u.obj(body, "body"))
    dropped: list[str] = []
    _check_fields(body, "", dropped)
    config = camel(u.obj(body.get("generationConfig") or {}, "generationConfig"))
    _check_fields(config, "generationConfig.", dropped)
    choice = _decode_tool_config(body.get("toolConfig"))
    model = u.text(body.get("model"), "model").removeprefix("models/")
    request = Request(
        model=model,
        messages=_decode_contents(u.arr(body.get("contents"), "contents")),
        system=_decode_system(body.get("systemInstruction")),
        tools=_decode_tools(body.get("tools"), dropped),
        tool_choice=choice,
        max_tokens=u.opt_int(config.get("maxOutputTokens"), "generationConfig.maxOutputTokens"),
        temperature=u.opt_float(config.get("temperature"), "generationConfig.temperature"),
        top_p=u.opt_float(config.get("topP"), "generationConfig.topP"),
        stop=tuple(
            u.text(s, f"generationConfig.stopSequences[{i}]")
            for i, s in enumerate(
                u.arr(config.get("stopSequences") or [], "generationConfig.stopSequences")
            )
        ),
        reasoning=_decode_thinking(config.get("thinkingConfig")),
        output_format=output.from_gemini(config),
        web_search=_decode_google_search(body.get("tools")),
    )
    return request, tuple(dict.fromkeys(dropped))


def _decode_google_search(value: Any) -> WebSearch | None:
    found = [
        (f"tools[{i}].googleSearch", camel(item)["googleSearch"])
        for i, item in enumerate(value or ())
        if isinstance(item, dict) and camel(item).get("googleSearch") is not None
    ]
    if len(found) > 1:
        raise Unsupported(found[1][0], "one google_search tool at most")
    if not found:
        return None
    return ws.decode_gemini_tool(u.obj(camel(found[0][1]), found[0][0]), found[0][0])


def _decode_thinking(value: Any) -> ReasoningConfig | None:
    if value is None:
        return None
    where = "generationConfig.thinkingConfig"
    raw = camel(u.obj(value, where))
    u.only(raw, ("thinkingBudget", "thinkingLevel", "includeThoughts"), where)
    u.opt_bool(raw.get("includeThoughts"), f"{where}.includeThoughts")
    level = raw.get("thinkingLevel")
    if level is not None:
        effort = u.text(level, f"{where}.thinkingLevel").lower()
        if effort not in ("minimal", "low", "medium", "high"):
            raise Unsupported(f"{where}.thinkingLevel", f"unknown level {level!r}")
        return ReasoningConfig(effort=effort)  # type: ignore[arg-type]
    budget = raw.get("thinkingBudget")
    if budget == -1 or budget is None:
        return None  # dynamic thinking: the model's default
    return ReasoningConfig(budget_tokens=u.opt_int(budget, f"{where}.thinkingBudget"))


def _decode_tool_config(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    raw = camel(u.obj(value, "toolConfig"))
    u.only(raw, ("functionCallingConfig",), "toolConfig")
    where = "toolConfig.functionCallingConfig"
    calling = camel(u.obj(raw.get("functionCallingConfig") or {}, where))
    u.only(calling, ("mode", "allowedFunctionNames"), where)
    mode = str(calling.get("mode") or "AUTO").upper()
    names = u.arr(calling.get("allowedFunctionNames") or [], f"{where}.allowedFunctionNames")
    if mode == "ANY" and len(names) == 1:
        return ToolChoice("tool", u.text(names[0], f"{where}.allowedFunctionNames[0]"))
    if names:
        raise Unsupported(f"{where}.allowedFunctionNames", "only one name translates (with ANY)")
    kinds = {"AUTO": "auto", "ANY": "required", "NONE": "none", "MODE_UNSPECIFIED": "auto"}
    if mode not in kinds:
        raise Unsupported(f"{where}.mode", f"mode {mode!r} does not translate")
    return ToolChoice(kinds[mode])  # type: ignore[arg-type]


#: A function declaration's return schema: the other formats have no place for it, and
#: it does not change the call the model makes.
RESPONSE_SCHEMA = "functionDeclarations.response"


def _decode_tools(value: Any, dropped: list[str]) -> tuple[Tool, ...]:
    tools: list[Tool] = []
    for i, item in enumerate(u.arr(value or [], "tools")):
        raw = camel(u.obj(item, f"tools[{i}]"))
        for key, entry in raw.items():
            if key not in ("functionDeclarations", "googleSearch") and entry is not None:
                raise Unsupported(f"tools[{i}].{key}", "only function declarations translate")
        declarations = u.arr(raw.get("functionDeclarations") or [], f"tools[{i}]")
        for j, declaration in enumerate(declarations):
            where = f"tools[{i}].functionDeclarations[{j}]"
            fn = camel(u.obj(declaration, where))
            u.only(
                fn,
                (
                    "name",
                    "description",
                    "parameters",
                    "parametersJsonSchema",
                    "response",
                    "responseJsonSchema",
                ),
                where,
            )
            if fn.get("response") is not None or fn.get("responseJsonSchema") is not None:
                dropped.append(RESPONSE_SCHEMA)
            schema = fn.get("parametersJsonSchema")
            if schema is None and fn.get("parameters") is not None:
                schema = to_json_schema(u.obj(fn["parameters"], f"{where}.parameters"))
            tools.append(
                Tool(
                    name=u.text(fn.get("name"), f"{where}.name"),
                    description=u.opt_str(fn.get("description"), f"{where}.description"),
                    parameters=u.obj(schema, f"{where}.parameters")
                    if schema is not None
                    else {"type": "object", "properties": {}},
                )
            )
    return tuple(tools)


def _decode_system(value: Any) -> tuple[Text, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (Text(value),)
    raw = u.obj(value, "systemInstruction")
    u.only(raw, ("parts", "role"), "systemInstruction")
    texts = []
    for i, part in enumerate(u.arr(raw.get("parts"), "systemInstruction.parts")):
        where = f"systemInstruction.parts[{i}]"
        part = camel(u.obj(part, where))
        u.only(part, ("text",), where)
        texts.append(Text(u.text(part.get("text"), f"{where}.text")))
    return tuple(texts)


class _Calls:
    """The calls of a Gemini client's history, to give each ``functionResponse`` its call."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.open: list[tuple[str, str]] = []  # (id, name), unanswered, oldest first

    def called(self, call: ToolCall) -> None:
        self.names[call.id] = call.name
        self.open.append((call.id, call.name))

    def answer(self, given: str | None, name: str, where: str) -> str:
        for index, (known, called) in enumerate(self.open):
            if (given is not None and known == given) or (given is None and called == name):
                del self.open[index]
                return known
        if given is not None and given in self.names:
            return given
        raise Unsupported(f"{where}.name", f"it answers no earlier function call of {name!r}")


def _decode_contents(contents: list[Any]) -> tuple[Message, ...]:
    calls = _Calls()
    messages: list[Message] = []
    for turn, value in enumerate(contents):
        where = f"contents[{turn}]"
        content = u.obj(value, where)
        u.only(content, ("role", "parts"), where)
        role = content.get("role") or "user"
        if role not in ("user", "model", "function"):
            raise Unsupported(f"{where}.role")
        parts = u.arr(content.get("parts"), f"{where}.parts")
        decoded = decode_parts(parts, f"{where}.parts", calls, turn)
        messages.append(Message("assistant" if role == "model" else "user", decoded))
    return tuple(messages)


def decode_parts(
    parts: list[Any],
    where: str,
    calls: _Calls | None = None,
    turn: int = 0,
    response_id: str | None = None,
) -> tuple[Part, ...]:
    """A turn's parts as canonical ones (``response_id``: an answer's, for stable call ids)."""
    out: list[Part] = []
    thought: list[str] | None = None  # the open run of thought parts

    def close(signature: str | None) -> None:
        nonlocal thought
        if thought is not None or signature is not None:
            out.append(Reasoning("".join(thought or ()), signature or None))
        thought = None

    position = 0
    for k, value in enumerate(parts):
        at = f"{where}[{k}]"
        part = camel(u.obj(value, at))
        signature = standard_base64(
            u.opt_str(part.get("thoughtSignature"), f"{at}.thoughtSignature")
        )
        if part.get("thought") is True:
            u.only(part, ("text", "thought", "thoughtSignature"), at)
            thought = [*(thought or ()), u.text(part.get("text", ""), f"{at}.text")]
            if signature is not None:
                close(signature)
            continue
        close(signature)
        decoded = _decode_part(part, at, calls, turn, position, response_id)
        if isinstance(decoded, ToolCall):
            position += 1
        if decoded is not None:
            out.append(decoded)
    close(None)
    return tuple(out)


def _decode_part(
    part: dict[str, Any],
    at: str,
    calls: _Calls | None,
    turn: int,
    position: int,
    response_id: str | None,
) -> Part | None:
    extra = ("thoughtSignature", "thought")
    if "text" in part:
        u.only(part, ("text", *extra), at)
        text = u.text(part["text"], f"{at}.text")
        return Text(text) if text else None
    if "inlineData" in part:
        u.only(part, ("inlineData", *extra), at)
        blob = camel(u.obj(part["inlineData"], f"{at}.inlineData"))
        u.only(blob, ("mimeType", "data", "displayName"), f"{at}.inlineData")
        media = u.text(blob.get("mimeType"), f"{at}.inlineData.mimeType")
        data = u.text(blob.get("data"), f"{at}.inlineData.data")
        if media.startswith("image/"):
            return Image(data=data, media_type=media)
        if media == "application/pdf":
            return Document(media_type=media, data=data)
        raise Unsupported(f"{at}.inlineData.mimeType", f"{media!r} data does not translate")
    if "functionCall" in part:
        u.only(part, ("functionCall", *extra), at)
        fn = u.obj(part["functionCall"], f"{at}.functionCall")
        u.only(fn, ("id", "name", "args"), f"{at}.functionCall")
        name = from_gemini_name(u.text(fn.get("name"), f"{at}.functionCall.name"))
        arguments = u.arguments_text(u.obj(fn.get("args") or {}, f"{at}.functionCall.args"))
        given = u.opt_str(fn.get("id"), f"{at}.functionCall.id")
        if given:
            identifier = given
        elif response_id is not None:
            identifier = call_id(response_id, position, name, arguments)
        else:
            identifier = f"call_{turn}_{position}"
        call = ToolCall(identifier, name, arguments)
        if calls is not None:
            calls.called(call)
        return call
    if "functionResponse" in part:
        u.only(part, ("functionResponse", *extra), at)
        fn = u.obj(part["functionResponse"], f"{at}.functionResponse")
        u.only(fn, ("id", "name", "response"), f"{at}.functionResponse")
        name = u.text(fn.get("name"), f"{at}.functionResponse.name")
        given = u.opt_str(fn.get("id"), f"{at}.functionResponse.id") or None
        if calls is None:
            raise Unsupported(f"{at}.functionResponse")
        answered = calls.answer(given, name, f"{at}.functionResponse")
        return _decode_result(answered, fn.get("response"), f"{at}.functionResponse.response")
    key = next(iter(part), "part")
    raise Unsupported(f"{at}.{key}", f"{key!r} parts do not translate")


def _decode_result(call: str, response: Any, where: str) -> ToolResult:
    """A ``functionResponse.response`` (an object) as a tool result: the inverse of encoding."""
    value = u.obj(response if response is not None else {}, where)
    if set(value) == {"error"} and isinstance(value["error"], str):
        return ToolResult(call, (Text(value["error"]),), is_error=True)
    output = value.get("output", value.get("result"))
    if len(value) == 1 and isinstance(output, str):
        return ToolResult(call, (Text(output),))
    return ToolResult(call, (Text(dumps(value).decode("utf-8")),))


# -- encoding requests ------------------------------------------------------------------


def dropped_by_encoding(request: Request) -> tuple[str, ...]:
    """The :data:`ENCODE_FIELDS` dropped rows that ``request`` carries (the header names them)."""
    found: list[str] = []
    parts = all_parts(request)
    if any(isinstance(p, Reasoning) and p.signature is not None and p.text for p in parts):
        found.append("reasoning.text")
    if any(isinstance(p, Reasoning) and p.signature is None for p in parts):
        found.append("reasoning without signature")
    if any(isinstance(p, RedactedReasoning) for p in parts):
        found.append("redacted_reasoning")
    if any(getattr(p, "cache_control", None) is not None for p in (*parts, *request.tools)):
        found.append("cache_control")
    if request.user is not None:
        found.append("user")
    if any(isinstance(p, WebSearchCall) for p in parts):
        found.append(ws.DROPPED_CALL)
    found.extend(ws.dropped_options(request.web_search, "gemini"))
    if any(tool.strict is not None for tool in request.tools):
        found.append("tools.strict")
    for i, tool in enumerate(request.tools):
        if to_gemini(tool.parameters, f"tools[{i}].parameters")[1]:
            found.append("tool schema keywords")
            break
    return tuple(found)


def encode_request(request: Request) -> dict[str, Any]:
    """A canonical request as a ``generateContent`` body (the model goes in the path)."""
    if request.parallel_tool_calls is False:
        raise Unsupported("parallel_tool_calls", "Gemini cannot be held to one call per answer")
    names: dict[str, str] = {}
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, ToolCall):
                names[part.id] = part.name
    body: dict[str, Any] = {
        "contents": [
            {
                "role": "model" if m.role == "assistant" else "user",
                "parts": encode_parts(m.parts, names),
            }
            for m in request.messages
        ]
    }
    if request.system:
        body["systemInstruction"] = {"parts": [{"text": t.text} for t in request.system]}
    if request.tools:
        body["tools"] = [{"functionDeclarations": _encode_tools(request.tools)}]
    if request.web_search is not None:
        body.setdefault("tools", []).append(ws.gemini_tool(request.web_search))
    choice = _encode_tool_choice(request)
    if choice is not None:
        body["toolConfig"] = {"functionCallingConfig": choice}
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    thinking = _encode_thinking(request.reasoning)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    if request.output_format is not None:
        config.update(output.to_gemini(request.output_format))
    if config:
        body["generationConfig"] = config
    return body


def _encode_thinking(config: ReasoningConfig | None) -> dict[str, Any] | None:
    if config is None:
        return None
    budget = config.budget_tokens
    if budget is None and config.effort is not None:
        budget = THINKING_BUDGETS[config.effort]
    if budget is None:
        return None
    return {"thinkingBudget": budget, "includeThoughts": budget != 0}


def _encode_tool_choice(request: Request) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice is None:
        return None
    if choice.kind == "web_search":
        raise Unsupported("tool_choice", "Gemini cannot be made to search")
    if choice.kind == "tool":
        name = to_gemini_name(choice.name or "", "tool_choice.name")
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    return {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[choice.kind]}


def _encode_tools(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    declarations: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for i, tool in enumerate(tools):
        name = to_gemini_name(tool.name, f"tools[{i}].name")
        if name in seen:
            raise Unsupported(f"tools[{i}].name", f"two tools are named {seen[name]!r}")
        seen[name] = tool.name
        declaration: dict[str, Any] = {"name": name}
        if tool.description is not None:
            declaration["description"] = tool.description
        parameters, _ = to_gemini(tool.parameters, f"tools[{i}].parameters")
        if parameters is not None:
            declaration["parameters"] = parameters
        declarations.append(declaration)
    return declarations


def encode_parts(parts: tuple[Part, ...], names: dict[str, str]) -> list[dict[str, Any]]:
    """A turn's canonical parts as Gemini parts (``names``: tool-call id → name).

    A signature goes on the first function call after its reasoning (Gemini
    refuses a call turn whose first call lacks it), else on the next part.
    """
    signed: dict[int, str] = {}  # part index -> the signature it carries
    for index, part in enumerate(parts):
        if not isinstance(part, Reasoning) or part.signature is None:
            continue
        later = range(index + 1, len(parts))
        call = next((i for i in later if isinstance(parts[i], ToolCall) and i not in signed), None)
        following = next((i for i in later if not _hidden(parts[i]) and i not in signed), None)
        at = call if call is not None else following
        signed[at if at is not None else len(parts)] = part.signature
    out: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        if _hidden(part):
            continue
        encoded = _encode_part(part, names)
        if index in signed:
            encoded["thoughtSignature"] = signed[index]
        out.append(encoded)
    if len(parts) in signed:
        out.append({"text": "", "thoughtSignature": signed[len(parts)]})
    return out


def _hidden(part: Part) -> bool:
    """Parts a Gemini request leaves out: reasoning (its signature goes on another part)."""
    return isinstance(part, Reasoning | RedactedReasoning | WebSearchCall)


def _encode_part(part: Part, names: dict[str, str]) -> dict[str, Any]:
    if isinstance(part, Text | Refusal):
        return {"text": part.text}
    if isinstance(part, Image):
        if part.url is not None:
            inline = u.parse_data_url(part.url)
            if inline is None:
                raise Unsupported(
                    IMAGE_URL,
                    "Gemini takes images inline, not by http(s) URL (the operator can "
                    "let the proxy fetch them: fetch_images=)",
                )
            return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
        return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
    if isinstance(part, Document):
        if part.url is not None:
            raise Unsupported("document.url", "Gemini takes documents inline, not by URL")
        if part.text is not None:
            return {"text": part.text}
        return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
    if isinstance(part, ToolCall):
        where = f"tool call {part.id!r}"
        return {
            "functionCall": {
                "name": to_gemini_name(part.name, where),
                "args": u.arguments_object(part.arguments, where),
            }
        }
    assert isinstance(part, ToolResult)
    name = names.get(part.call_id)
    if name is None:
        raise Unsupported(
            "tool_result.call_id", f"the result of {part.call_id!r} follows no call of that id"
        )
    response: dict[str, Any]
    texts = []
    for item in part.content:
        if not isinstance(item, Text):
            raise Unsupported("tool_result.image", "Gemini's function responses are JSON")
        texts.append(item.text)
    text = "".join(texts)
    if part.is_error:
        response = {"error": text}
    else:
        parsed = _json_object(text)
        response = parsed if parsed is not None else {"output": text}
    return {"functionResponse": {"name": to_gemini_name(name, "tool_result"), "response": response}}


def _json_object(text: str) -> dict[str, Any] | None:
    """``text`` as a JSON object, when it is one (a tool's JSON answer goes as it is)."""
    try:
        value = loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# -- responses --------------------------------------------------------------------------


def finish_reason(value: Any, called: bool) -> FinishReason:
    """A Gemini ``finishReason`` as canonical (``called``: the answer has a function call)."""
    if isinstance(value, str) and value in FAILED_FINISHES:
        raise UntranslatableResponse(f"{FAILED_FINISHES[value]} (Gemini's {value})")
    if isinstance(value, str) and value in FINISH_REASONS:
        reason = FINISH_REASONS[value]
        return FinishReason.TOOL_CALLS if called and reason is FinishReason.STOP else reason
    raise UntranslatableResponse(f"The provider stopped for an unknown reason: {value!r}.")


def decode_usage(value: Any) -> Usage:
    """Gemini ``usageMetadata`` as canonical (thoughts are output; tool-use prompts input)."""
    if not isinstance(value, dict):
        return Usage()
    counts = camel(value)
    prompt = counts.get("promptTokenCount")
    tools = counts.get("toolUsePromptTokenCount")
    candidates = counts.get("candidatesTokenCount")
    thoughts = counts.get("thoughtsTokenCount")
    return Usage(
        input_tokens=None if prompt is None else prompt + (tools or 0),
        output_tokens=None
        if candidates is None and thoughts is None
        else (candidates or 0) + (thoughts or 0),
        cache_read_tokens=counts.get("cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def encode_usage(usage: Usage) -> dict[str, Any]:
    """Canonical usage as ``usageMetadata``."""
    prompt, output = usage.input_tokens or 0, usage.output_tokens or 0
    thoughts = usage.reasoning_tokens or 0
    out: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": max(0, output - thoughts),
        "totalTokenCount": prompt + output,
    }
    if usage.cache_read_tokens is not None:
        out["cachedContentTokenCount"] = usage.cache_read_tokens
    if usage.reasoning_tokens is not None:
        out["thoughtsTokenCount"] = thoughts
    return out


def decode_response(body: Any) -> Response:
    """A ``generateContent`` answer as a canonical response."""
    body = camel(u.obj(body, "response"))
    response_id = str(body.get("responseId", ""))
    model = str(body.get("modelVersion", ""))
    usage = decode_usage(body.get("usageMetadata"))
    candidates = u.arr(body.get("candidates") or [], "candidates")
    if not candidates:
        feedback = camel(body.get("promptFeedback") or {})
        if feedback.get("blockReason"):
            return Response(response_id, model, (), FinishReason.CONTENT_FILTER, usage)
        raise UntranslatableResponse("The provider answered no candidate.")
    if len(candidates) != 1:
        raise UntranslatableResponse(
            f"Expected one candidate, the provider answered {len(candidates)}."
        )
    candidate = camel(u.obj(candidates[0], "candidates[0]"))
    content = u.obj(candidate.get("content") or {"parts": []}, "candidates[0].content")
    parts = decode_parts(
        u.arr(content.get("parts") or [], "candidates[0].content.parts"),
        "candidates[0].content.parts",
        response_id=response_id,
    )
    called = any(isinstance(p, ToolCall) for p in parts)
    parts = ws.with_grounding(parts, camel(candidate.get("groundingMetadata")), response_id)
    if any(isinstance(p, WebSearchCall) for p in parts):
        usage = usage.merge(Usage(web_searches=1))  # Google bills a grounded prompt
    return Response(
        response_id, model, parts, finish_reason(candidate.get("finishReason"), called), usage
    )


def encode_response(response: Response) -> dict[str, Any]:
    """A canonical response as a ``generateContent`` answer."""
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": encode_answer_parts(response.parts)},
        "finishReason": ENCODED_FINISHES[response.finish],
        "index": 0,
    }
    grounding = ws.grounding_metadata(response.parts)
    if grounding is not None:
        candidate["groundingMetadata"] = grounding
    return {
        "candidates": [candidate],
        "usageMetadata": encode_usage(response.usage),
        "modelVersion": response.model,
        "responseId": response.id,
    }


def encode_answer_parts(parts: tuple[Part, ...]) -> list[dict[str, Any]]:
    """An answer's parts for a Gemini client: reasoning as thought parts, calls with their ids."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, Reasoning):
            thought: dict[str, Any] = {"text": part.text, "thought": True}
            if part.signature is not None:
                thought["thoughtSignature"] = part.signature
            out.append(thought)
        elif isinstance(part, RedactedReasoning | WebSearchCall):
            continue  # another provider's encrypted reasoning (the gateway keeps it); a search
        elif isinstance(part, ToolCall):
            out.append(
                {
                    "functionCall": {
                        "id": part.id,
                        "name": part.name,
                        "args": u.arguments_object(part.arguments, "answer"),
                    }
                }
            )
        else:
            out.append(_encode_part(part, {}))
    return out


# -- errors -----------------------------------------------------------------------------


def encode_error(status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
    """A canonical error as ``(status, body)`` of a Google API error."""
    if status == 529 or kind == "overloaded":
        status = 503
    name = STATUS_NAMES.get(status, "INVALID_ARGUMENT" if status < 500 else "INTERNAL")
    return status, {"error": {"code": status, "message": message, "status": name}}


def decode_error(status: int, body: Any) -> StreamError:
    """A Google API error answer (or streamed error) as a canonical error."""
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    kind = _KIND_OF_STATUS.get(str(error.get("status")), kind_for_status(status))
    message = error.get("message")
    text = message if isinstance(message, str) else f"The provider answered {status}."
    return StreamError(status, kind, text)
