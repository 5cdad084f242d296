"""`XmlToolCalls`: tool calling for models without it, in the XML convention of Roo Code and Cline.

The request's OpenAI ``tools`` become a section of the system prompt that
teaches one XML element per call, its parameters as child elements::

    <read_file>
    <path>src/app.py</path>
    </read_file>

Earlier assistant ``tool_calls`` and ``tool`` results are rendered back into
that convention, so the model sees its own calls as it wrote them. The model's
answer is read back out with :class:`XmlCallParser` (incremental, so a stream
keeps streaming: text before a call goes on at once, a call is sent once its
closing tag arrived, and a ``<`` is held back only while what follows could
still open a call of a known tool); what does not parse stays text.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._adapter import JSON, AnswerRewriter, RequestContext
from .._exceptions import BadRequest
from .._json import dumps, loads
from ._compose import Transform
from ._util import CHAT, Cow, posts_to

#: The dialect whose requests and answers this transform reads (OpenAI Chat Completions).
_DIALECT = "openai-chat"
_SYSTEM_ROLES = ("system", "developer")
#: A call held back longer than this (characters) is given up on and sent as text.
MAX_CALL_CHARS = 1_000_000
_PARAM_NAME = re.compile(r"[A-Za-z_][\w.-]*")


class XmlToolsError(BadRequest):
    """A request field the XML convention cannot carry (400, naming the field)."""

    kind = "unsupported_field"

    def __init__(self, field: str, reason: str = "the convention has no equivalent") -> None:
        super().__init__(f"The field {field!r} cannot be used with XML tool calls: {reason}.")
        self.field = field


# -- the parser ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XmlCall:
    """A tool call read from the model's text: the tool and its arguments."""

    name: str
    arguments: dict[str, Any]


Segment = str | XmlCall


class XmlCallParser:
    """Reads XML tool calls out of text fed in pieces; sans-I/O.

    :meth:`feed` returns the text that can be sent now and the calls completed
    so far, in order; :meth:`end` returns what was held back, as text. Any
    split of the same text gives the same calls and the same text in total.

    :param schemas: each tool's JSON schema by name; a parameter typed
        ``integer``, ``number``, ``boolean``, ``array`` or ``object`` is read as
        JSON when its text is, everything else is a string.
    """

    __slots__ = ("_buffer", "_names", "_open", "_schemas")

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]]) -> None:
        self._schemas = dict(schemas)
        self._names = frozenset(schemas)
        self._buffer = ""
        #: The tool whose element is open (its opening tag is at the buffer's start).
        self._open: str | None = None

    def feed(self, text: str) -> list[Segment]:
        """The text and calls that ``text`` (after what came before) settles."""
        self._buffer += text
        out: list[Segment] = []
        while self._buffer:
            if self._open is None:
                if not self._outside(out):
                    break
            elif not self._inside(out):
                break
        return _merged(out)

    def end(self) -> list[Segment]:
        """What is still held back (a call never closed), as text."""
        rest, self._buffer, self._open = self._buffer, "", None
        return [rest] if rest else []

    def _outside(self, out: list[Segment]) -> bool:
        """Send text up to a possible call; whether there is more to look at now."""
        buffer = self._buffer
        start = buffer.find("<")
        if start < 0:
            out.append(buffer)
            self._buffer = ""
            return False
        if start:
            out.append(buffer[:start])
            buffer = self._buffer = buffer[start:]
        close = buffer.find(">")
        name = buffer[1:close] if close > 0 else buffer[1:]
        if close > 0 and name in self._names:
            self._open = name
            return True
        if close < 0 and any(known.startswith(name) for known in self._names):
            return False  # could still become a known tool's tag: wait
        out.append("<")
        self._buffer = buffer[1:]
        return True

    def _inside(self, out: list[Segment]) -> bool:
        """Send a complete call (or what cannot be one, as text); whether to go on now."""
        name = self._open
        assert name is not None
        state, end, arguments = _read_call(self._buffer, name, self._schemas[name])
        if state == "wait" and len(self._buffer) <= MAX_CALL_CHARS:
            return False
        if state == "call":
            out.append(XmlCall(name, arguments))
            self._buffer = self._buffer[end:]
        else:  # not a call after all: its opening tag is text, the rest is read again
            tag = f"<{name}>"
            out.append(tag)
            self._buffer = self._buffer[len(tag) :]
        self._open = None
        return True


def _read_call(text: str, name: str, schema: Mapping[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """Read ``<name><p>v</p>...</name>`` at the start of ``text``.

    ``("call", end, arguments)`` when complete, ``("wait", 0, {})`` while more
    text could complete it, ``("text", 0, {})`` when it cannot be a call.
    """
    close = f"</{name}>"
    position = len(name) + 2
    arguments: dict[str, Any] = {}
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        rest = text[position:]
        if not rest:
            return "wait", 0, {}
        if rest.startswith(close):
            return "call", position + len(close), arguments
        if close.startswith(rest):
            return "wait", 0, {}
        if rest[0] != "<":
            return "text", 0, {}
        tag_end = rest.find(">")
        if tag_end < 0:
            return (
                ("wait", 0, {})
                if _PARAM_NAME.fullmatch(rest[1:]) or rest == "<"
                else (
                    "text",
                    0,
                    {},
                )
            )
        param = rest[1:tag_end]
        if not _PARAM_NAME.fullmatch(param) or param in arguments:
            return "text", 0, {}
        value_start = position + tag_end + 1
        value_end = text.find(f"</{param}>", value_start)
        if value_end < 0:
            return "wait", 0, {}
        declared = properties.get(param) if isinstance(properties, Mapping) else None
        arguments[param] = _value(text[value_start:value_end], declared)
        position = value_end + len(param) + 3


def _value(raw: str, schema: Any) -> Any:
    """A parameter's text as its schema's type (JSON where the type is not a string)."""
    stripped = raw.strip()
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if (
        kinds & {"integer", "number", "boolean", "array", "object", "null"}
        and "string" not in kinds
    ):
        try:
            return loads(stripped)
        except ValueError:
            return stripped
    if "\n" not in stripped:
        return stripped
    # A multi-line value (a file's content) keeps its indentation: only the line
    # breaks around it, which the convention puts there, go.
    if raw.startswith("\r\n"):
        raw = raw[2:]
    elif raw.startswith("\n"):
        raw = raw[1:]
    if raw.endswith("\r\n"):
        raw = raw[:-2]
    elif raw.endswith("\n"):
        raw = raw[:-1]
    return raw


def _merged(segments: list[Segment]) -> list[Segment]:
    """Adjacent text pieces as one."""
    out: list[Segment] = []
    for segment in segments:
        if isinstance(segment, str):
            if not segment:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += segment
                continue
        out.append(segment)
    return out


# -- the prompt and the history ------------------------------------------------------------


def render_call(name: str, arguments: Mapping[str, Any]) -> str:
    """A call in the XML convention, as the model is taught to write it."""
    lines = [f"<{name}>"]
    for key, value in arguments.items():
        text = value if isinstance(value, str) else dumps(value).decode()
        if "\n" in text:
            text = f"\n{text}\n"
        lines.append(f"<{key}>{text}</{key}>")
    lines.append(f"</{name}>")
    return "\n".join(lines)


def tool_prompt(tools: list[dict[str, Any]], choice: Any, parallel: Any) -> str:
    """The system prompt section teaching ``tools`` in the XML convention."""
    first = tools[0]
    example_params = list((first.get("parameters") or {}).get("properties") or {})[:1]
    example = render_call(first["name"], dict.fromkeys(example_params, "..."))
    parts = [
        "TOOL USE",
        "",
        "You can use the tools below. To use one, write the call in XML: the tool's name "
        "as the element, each parameter as a child element holding its value. Write it as "
        "plain text, not in a code block, and end your message after your tool calls; the "
        "results come back in the next message.",
        "",
        "<tool_name>\n<parameter_name>value</parameter_name>\n</tool_name>",
        "",
        "For example:",
        "",
        example,
        "",
        "Values are written as they are, without escaping; a value of type integer, "
        "number, boolean, array or object is written as JSON.",
    ]
    if parallel is False:
        parts.append("Use at most one tool per message.")
    if choice == "required":
        parts.append("You must use one of the tools in this answer.")
    elif isinstance(choice, dict):
        parts.append(f"You must use the {choice['function']['name']} tool in this answer.")
    parts += ["", "# Tools"]
    for tool in tools:
        parts += ["", f"## {tool['name']}"]
        if tool.get("description"):
            parts.append(f"Description: {tool['description']}")
        schema = tool.get("parameters") or {}
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        if properties:
            parts.append("Parameters:")
            for param, spec in properties.items():
                spec = spec if isinstance(spec, dict) else {}
                kind = spec.get("type", "any")
                kind = "|".join(kind) if isinstance(kind, list) else str(kind)
                need = "required" if param in required else "optional"
                text = f"- {param} ({kind}, {need})"
                if spec.get("description"):
                    text += f": {spec['description']}"
                if kind in ("array", "object"):
                    text += f" Schema: {dumps(spec).decode()}"
                elif spec.get("enum"):
                    text += f" One of: {', '.join(map(str, spec['enum']))}."
                parts.append(text)
        else:
            parts.append("Parameters: none")
        parts.append("Usage:\n" + render_call(tool["name"], dict.fromkeys(properties, "...")))
    return "\n".join(parts)


def _functions(tools: Any) -> list[dict[str, Any]]:
    """The request's function tools as ``{"name", "description", "parameters"}``."""
    if not isinstance(tools, list):
        raise XmlToolsError("tools", "it must be a list")
    found: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(function, dict)
        ):
            raise XmlToolsError(f"tools[{index}]", "only function tools can be taught")
        name = function.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.-]*", name):
            raise XmlToolsError(f"tools[{index}].function.name", "it must be an XML name")
        if function.get("strict"):
            raise XmlToolsError(
                f"tools[{index}].function.strict",
                "a model taught in the prompt cannot be held to a schema",
            )
        parameters = function.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise XmlToolsError(f"tools[{index}].function.parameters", "it must be an object")
        found.append(
            {"name": name, "description": function.get("description"), "parameters": parameters}
        )
    return found


def _text_of(content: Any, field: str) -> str:
    """A message's content as text (a string, or text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise XmlToolsError(
                    f"{field}[{index}]", "only text can be rendered into the prompt"
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise XmlToolsError(field, "it must be a string or a list of text parts")


def _rendered_history(messages: list[Any]) -> list[Any]:
    """``messages`` with assistant tool calls as XML text and tool results as user turns."""
    names: dict[str, str] = {}
    out: list[Any] = []
    pending: list[str] = []  # tool results waiting to become one user turn

    def flush() -> None:
        if pending:
            out.append({"role": "user", "content": "\n\n".join(pending)})
            pending.clear()

    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            flush()
            out.append(message)
            continue
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            name = names.get(call_id, "tool") if isinstance(call_id, str) else "tool"
            text = _text_of(message.get("content"), f"messages[{index}].content")
            pending.append(f"[{name}] Result:\n{text}")
            continue
        flush()
        calls = message.get("tool_calls") if role == "assistant" else None
        if not calls:
            out.append(message)
            continue
        rendered = []
        for number, call in enumerate(calls):
            field = f"messages[{index}].tool_calls[{number}]"
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise XmlToolsError(field, "a call needs a function with a name")
            try:
                arguments = loads(function.get("arguments") or "{}")
            except ValueError:
                raise XmlToolsError(f"{field}.function.arguments", "it is not JSON") from None
            if not isinstance(arguments, dict):
                raise XmlToolsError(f"{field}.function.arguments", "it is not a JSON object")
            if isinstance(call.get("id"), str):
                names[call["id"]] = function["name"]
            rendered.append(render_call(function["name"], arguments))
        text = _text_of(message.get("content"), f"messages[{index}].content")
        joined = "\n\n".join([text, *rendered] if text.strip() else rendered)
        assistant = {k: v for k, v in message.items() if k != "tool_calls"}
        assistant["content"] = joined
        out.append(assistant)
    flush()
    return out


def _with_system(messages: list[Any], section: str) -> list[Any]:
    """``messages`` with ``section`` appended to the first system prompt (or as one)."""
    for index, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") in _SYSTEM_ROLES:
            content = message.get("content")
            updated = dict(message)
            if isinstance(content, list):
                updated["content"] = [*content, {"type": "text", "text": "\n\n" + section}]
            else:
                updated["content"] = f"{content}\n\n{section}" if content else section
            return [*messages[:index], updated, *messages[index + 1 :]]
    return [{"role": "system", "content": section}, *messages]


# -- the transform ---------------------------------------------------------------------------


class XmlToolCalls(Transform):
    """Tool calling for a model without it: tools taught as XML, calls read back out.

    Attach it where the model lacks native tools: ``transforms=[XmlToolCalls()]``
    on its adapter, or on the app. It applies to ``POST`` OpenAI Chat
    Completions requests (any provider that speaks that format, and requests
    the gateway translated into it, so an Anthropic client gets ``tool_use``
    blocks) that carry ``tools`` or tool turns in their history. It refuses
    (400, naming the field) what the convention cannot carry: ``n`` above 1,
    a tool with ``strict`` set, a tool that is not a function, the legacy
    ``functions``. ``tool_choice`` becomes an instruction in the prompt (``"none"``
    leaves the tools out of it).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "XmlToolCalls()"

    def applies_to(self, context: RequestContext) -> bool:
        """``POST`` chat completions in OpenAI's format, once routed to a provider."""
        # The gateway runs app-wide transforms once before routing (adapter "",
        # the client's format) to resolve aliases; this one acts once routed.
        return bool(context.adapter) and context.dialect == _DIALECT and posts_to(context, CHAT)

    def __call__(self, body: JSON, context: RequestContext) -> JSON | None:
        if not isinstance(body, dict):
            return None
        messages = body.get("messages")
        tools = body.get("tools")
        has_history = isinstance(messages, list) and any(
            isinstance(m, dict) and (m.get("role") == "tool" or m.get("tool_calls"))
            for m in messages
        )
        if not tools and not has_history:
            return None
        for legacy in ("functions", "function_call"):
            if legacy in body:
                raise XmlToolsError(legacy, "send the tools as 'tools'")
        n = body.get("n")
        if n not in (None, 1):
            raise XmlToolsError("n", "only one choice can be read for calls")
        functions = _functions(tools) if tools else []
        cow = Cow(body)
        root = cow.at()
        for key in ("tools", "tool_choice", "parallel_tool_calls"):
            root.pop(key, None)
        rendered = _rendered_history(messages) if isinstance(messages, list) else []
        choice = body.get("tool_choice")
        if functions and choice != "none":
            if isinstance(choice, dict):
                function = choice.get("function")
                name = function.get("name") if isinstance(function, dict) else None
                if name not in {f["name"] for f in functions}:
                    raise XmlToolsError("tool_choice", "it names no tool of the request")
            section = tool_prompt(functions, choice, body.get("parallel_tool_calls"))
            rendered = _with_system(rendered, section)
            schemas = {f["name"]: f["parameters"] for f in functions}
            context.answer_rewriters.append(XmlAnswerRewriter(schemas))
            # The answer is read, so it must come unencoded.
            context.upstream_headers["accept-encoding"] = "identity"
        root["messages"] = rendered
        return cow.result


# -- the answer -------------------------------------------------------------------------------


def _tool_call(index: int, call: XmlCall) -> dict[str, Any]:
    return {
        "index": index,
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": call.name, "arguments": dumps(call.arguments).decode()},
    }


class XmlAnswerRewriter(AnswerRewriter):
    """An OpenAI Chat answer with the model's XML calls as ``tool_calls``."""

    __slots__ = ("_calls", "_finished", "_parser", "_pending", "_template")

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]]) -> None:
        self._parser = XmlCallParser(schemas)
        self._calls = 0
        self._pending = b""
        self._finished = False
        #: The last chunk seen, to frame text still held when a stream ends early.
        self._template: dict[str, Any] | None = None

    def wants(self, status: int, content_type: str) -> bool:
        return status < 300 and (content_type.startswith(("application/json", "text/event-stream")))

    def whole(self, body: bytes) -> bytes:
        try:
            answer = loads(body)
            choice = answer["choices"][0]
            message = choice["message"]
            content = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return body  # not an answer this can read: passed on as it came
        if not isinstance(content, str):
            return body
        segments = [*self._parser.feed(content), *self._parser.end()]
        calls = [s for s in segments if isinstance(s, XmlCall)]
        if not calls:
            return body
        text = "".join(s for s in segments if isinstance(s, str))
        new_message = dict(message, content=text.strip() or None)
        new_message["tool_calls"] = [
            {k: v for k, v in _tool_call(i, c).items() if k != "index"} for i, c in enumerate(calls)
        ]
        new_choice = dict(choice, message=new_message)
        if choice.get("finish_reason") == "stop":
            new_choice["finish_reason"] = "tool_calls"
        return dumps(dict(answer, choices=[new_choice, *answer["choices"][1:]]))

    def chunk(self, data: bytes) -> bytes:
        self._pending += data
        out: list[bytes] = []
        while True:
            match = _EVENT_END.search(self._pending)
            if match is None:
                break
            event = self._pending[: match.start()]
            self._pending = self._pending[match.end() :]
            out.append(self._event(event))
        return b"".join(out)

    def end(self) -> bytes:
        rest, self._pending = self._pending, b""
        out = self._event(rest) if rest.strip() else b""
        return out + self._flush()

    def _event(self, event: bytes) -> bytes:
        lines = event.splitlines()
        data = [line[5:].lstrip(b" ") for line in lines if line.startswith(b"data:")]
        if not data or any(not line.startswith((b"data:", b":")) for line in lines if line):
            return event + b"\n\n"
        payload = b"\n".join(data)
        if payload.strip() == b"[DONE]":
            return self._flush() + event + b"\n\n"
        try:
            chunk = loads(payload)
        except ValueError:
            return event + b"\n\n"
        return b"".join(_sse(item) for item in self._rewritten(chunk)) or b""

    def _rewritten(self, chunk: Any) -> list[Any]:
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return [chunk]
        if self._finished:
            return [chunk]
        choice = choices[0]
        self._template = chunk
        found = choice.get("delta")
        delta: dict[str, Any] = found if isinstance(found, dict) else {}
        content = delta.get("content")
        finish = choice.get("finish_reason")
        segments = self._parser.feed(content) if isinstance(content, str) and content else []
        if finish is not None:
            segments = _merged([*segments, *self._parser.end()])
            self._finished = True
        others = {k: v for k, v in delta.items() if k != "content"}
        pieces: list[dict[str, Any]] = [self._piece(segment) for segment in segments]
        if pieces:
            pieces[0] = {**others, **pieces[0]}
        elif content == "":
            pieces = [dict(delta)]
        elif others or finish is not None:
            pieces = [others]
        else:
            return []  # everything held back: nothing to send yet
        if finish == "stop" and self._calls:
            finish = "tool_calls"
        out = []
        for number, piece in enumerate(pieces):
            last = number == len(pieces) - 1
            new_choice = dict(choice, delta=piece, finish_reason=finish if last else None)
            item = dict(chunk, choices=[new_choice])
            if not last:
                item.pop("usage", None)
            out.append(item)
        return out

    def _piece(self, segment: Segment) -> dict[str, Any]:
        if isinstance(segment, str):
            return {"content": segment}
        call = _tool_call(self._calls, segment)
        self._calls += 1
        return {"tool_calls": [call]}

    def _flush(self) -> bytes:
        """Text still held when a stream ends without a finishing chunk."""
        if self._finished or self._template is None:
            return b""
        segments = self._parser.end()
        if not segments:
            return b""
        choice = dict(self._template["choices"][0], delta={"content": segments[0]})
        choice["finish_reason"] = None
        return _sse(dict(self._template, choices=[choice]))


_EVENT_END = re.compile(rb"\r?\n\r?\n")


def _sse(payload: Any) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"
