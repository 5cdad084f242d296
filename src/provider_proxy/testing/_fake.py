"""A fake LLM provider: a tiny ASGI app that answers like OpenAI and Anthropic
(and Gemini's ``generateContent``, with calls and thought signatures as Gemini's,
and OpenAI's Responses API, stateful: :mod:`provider_proxy.testing._fake_responses`).

It runs the demo offline and is the upstream of the test suite and the
benchmarks; tests of an app that embeds the proxy can use it too. It records
every request it sees (:attr:`FakeUpstream.requests`), and its behaviour is
set by its constructor's keywords for every request, or by request headers for
one, so even an unmodified SDK (through ``extra_headers``) can ask for a slow,
failing or long stream:

``x-fake-status``
    answer with this error status (OpenAI's or Anthropic's error format).
``x-fake-delay``
    seconds to wait before the response headers. A client that leaves
    meanwhile gets no answer, as a provider stops working on a request whose
    connection closed: :attr:`FakeUpstream.left_while_waiting` counts them.
``x-fake-chunks`` / ``x-fake-gap``
    number of streamed content chunks, and seconds between them.
``x-fake-fail-after``
    abort the connection after this many streamed chunks.
``x-fake-tools: name1,name2``
    answer with calls of those of the request's tools (the others are ignored),
    several names in parallel; each call's input is a small object with a value
    for each property of the tool's schema (``{}`` without any). Streamed, the
    arguments come in pieces: Anthropic ``tool_use`` blocks with
    ``input_json_delta`` (stop reason ``tool_use``), OpenAI ``tool_calls``
    deltas by ``index`` (finish reason ``tool_calls``).
``x-fake-tools-once: 1``
    with ``x-fake-tools``: call the tools only while the conversation has no
    tool result yet (then answer), so an agent's tool loop ends.
``x-fake-thinking: 1``
    think first: on Anthropic a ``thinking`` block with a ``signature``
    (streamed as ``thinking_delta`` and ``signature_delta``); on OpenAI
    ``reasoning_content``, as DeepSeek and vLLM send it. On Anthropic it also
    refuses (400), as Anthropic does with thinking enabled, a turn whose
    assistant message has a ``tool_use`` but not the signed thinking block it
    was given first.
``x-fake-cached: N``
    usage reports ``N`` prompt tokens read from the cache: OpenAI's
    ``prompt_tokens_details.cached_tokens``, counted in ``prompt_tokens``;
    Anthropic's ``cache_read_input_tokens``, not counted in ``input_tokens``.
``x-fake-pause: N``
    on Anthropic, a web search turn is paused ``N`` times (``stop_reason:
    pause_turn``, one search each) before it is answered; a continuation must
    send the paused content back unchanged (:mod:`provider_proxy.testing._fake_search`).

A request with images (in its user turns) is answered with text naming each
one's media type (inline data) or URL, ``"Images: image/png, https://..."``,
so a test can tell they arrived. A request for JSON output (structured output in
any of the formats) is checked as its API checks it and answered with JSON that fits
its schema: :mod:`provider_proxy.testing._fake_format`. Streams count in
:attr:`FakeUpstream.open_streams` and :attr:`FakeUpstream.closed_streams`, and end
when the client leaves.

Other routes: ``/echo`` answers the request it got as JSON; ``/stream`` streams
until the client goes away; ``/gzip`` answers a gzip-encoded body.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import itertools
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio

from .._json import dumps, loads
from ..types import Receive, Scope, Send
from . import _fake_counts as _counts
from . import _fake_format as _format
from . import _fake_responses as _responses
from . import _fake_search as _search

_WORDS = [
    *("Hello", "from", "the", "fake", "upstream,"),
    *("streamed", "one", "piece", "at", "a", "time."),
]


@dataclass
class RecordedRequest:
    """One request as the fake upstream received it."""

    method: str
    path: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    #: When each body chunk arrived (``time.monotonic()``), to show streaming uploads.
    chunk_times: list[float] = field(default_factory=list)
    #: The fake's settings for headers the request did not send (``x-fake-*``).
    defaults: dict[str, str] = field(default_factory=dict, repr=False)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (or the fake's setting of it), or ``None``."""
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k == key:
                return v.decode("latin-1")
        return self.defaults.get(name.lower())


class FakeAbort(Exception):
    """Raised inside the fake to make the server abort the connection."""


class FakeUpstream:
    """The fake provider (an ASGI app) and what it has seen.

    The keywords set the behaviour of every request; a request's ``x-fake-*``
    header of the same name wins over them.

    :param status: answer every request with this error status.
    :param delay: seconds to wait before the response headers.
    :param chunks: streamed content chunks (and words of a whole answer).
    :param gap: seconds between streamed chunks.
    :param fail_after: abort the connection after this many streamed chunks.
    :param tools: answer with calls of these of the request's tools (a name, or
        several: parallel calls).
    :param thinking: think before answering (Anthropic ``thinking`` blocks, OpenAI
        ``reasoning_content``), and refuse, as Anthropic does, a tool turn sent
        back without its signed thinking block.
    :param cached: report this many prompt tokens as read from the cache.
    """

    def __init__(
        self,
        *,
        status: int | None = None,
        delay: float = 0.0,
        chunks: int | None = None,
        gap: float = 0.0,
        fail_after: int | None = None,
        tools: str | Sequence[str] | None = None,
        thinking: bool = False,
        cached: int = 0,
    ) -> None:
        if tools is not None and not isinstance(tools, str):
            tools = ",".join(tools)
        self._defaults: dict[str, str] = {
            name: str(value)
            for name, value in (
                ("x-fake-status", status),
                ("x-fake-delay", delay or None),
                ("x-fake-chunks", chunks),
                ("x-fake-gap", gap or None),
                ("x-fake-fail-after", fail_after),
                ("x-fake-tools", tools),
                ("x-fake-thinking", "1" if thinking else None),
                ("x-fake-cached", cached or None),
            )
            if value is not None
        }
        self.requests: list[RecordedRequest] = []
        #: The Responses API answers kept (``store``), by id: their conversation as JSON.
        self.responses: dict[str, bytes] = {}
        self.open_streams = 0
        self.closed_streams = 0
        #: Requests whose client (the proxy) left during their ``x-fake-delay``.
        self.left_while_waiting = 0
        #: Guards the counts: tests serve one fake from several server threads at once.
        self._counts = threading.Lock()
        self._ids = itertools.count(1)

    def _stream_opened(self) -> None:
        with self._counts:
            self.open_streams += 1

    def _stream_closed(self) -> None:
        with self._counts:
            self.open_streams -= 1
            self.closed_streams += 1

    async def _left_within(self, receive: Receive, seconds: float) -> bool:
        """Wait ``seconds``; whether the client left meanwhile (then it is counted).

        The body is read by now, so ``receive`` answers only ``http.disconnect``.
        """
        with anyio.move_on_after(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
            with self._counts:
                self.left_while_waiting += 1
            return True
        return False

    @property
    def last(self) -> RecordedRequest:
        """The most recent request."""
        return self.requests[-1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":  # pragma: no cover
            return
        request = await self._record(scope, receive)
        delay = float(request.header("x-fake-delay") or 0)
        if delay and await self._left_within(receive, delay):
            return
        path = request.path
        anthropic = path.endswith("/messages")
        gemini = path.endswith(
            (
                ":generateContent",
                ":streamGenerateContent",
                "EmbedContents",
                ":countTokens",
                ":embedContent",
            )
        )
        status = request.header("x-fake-status")
        if status is not None and gemini:
            await _gemini_error(send, int(status), f"fake upstream error {status}")
        elif status is not None:
            await _error(send, int(status), anthropic)
        elif (problem := _format_problem(request)) is not None and gemini:
            await _gemini_error(send, 400, problem)
        elif problem is not None:
            await _error(send, 400, anthropic, problem, "invalid_request_error")
        elif path.endswith("/echo"):
            await _json(send, 200, _echo(request))
        elif path.endswith("/stream"):
            await self._endless(receive, send, float(request.header("x-fake-gap") or 0.05))
        elif path.endswith("/gzip"):
            body = gzip.compress(dumps({"compressed": True}))
            await _respond(send, 200, body, [(b"content-encoding", b"gzip")])
        elif path.endswith("/v1beta/models"):
            await _json(send, 200, _counts.GEMINI_MODELS)  # Gemini's own list
        elif path.endswith("/models"):
            await _json(
                send, 200, _models(anthropic=request.header("anthropic-version") is not None)
            )
        elif path.endswith(("/messages/count_tokens", ":countTokens", ":embedContent")):
            await _json(send, *_counted(path, loads(request.body) if request.body else None))
        elif path.endswith("/responses"):
            await self._responses(request, send)
        elif path.endswith("/chat/completions") or anthropic:
            await self._chat(request, receive, send, anthropic)
        elif path.endswith(":batchEmbedContents"):
            await _json(send, 200, _gemini_embeddings(request))
        elif path.endswith("/embeddings"):
            await _json(send, 200, _openai_embeddings(request))
        elif gemini:
            await self._gemini(request, send)
        else:
            await _error(send, 404, anthropic, f"Unknown fake route {path}")

    async def _record(self, scope: Scope, receive: Receive) -> RecordedRequest:
        request = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            raw_path=scope.get("raw_path") or scope["path"].encode(),
            query=scope.get("query_string", b""),
            headers=list(scope["headers"]),
            body=b"",
            defaults=self._defaults,
        )
        self.requests.append(request)
        parts = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            parts.append(message.get("body", b""))
            request.chunk_times.append(time.monotonic())
            more = message.get("more_body", False)
        request.body = b"".join(parts)
        return request

    async def _chat(
        self, request: RecordedRequest, receive: Receive, send: Send, anthropic: bool
    ) -> None:
        payload = loads(request.body) if request.body else {}
        if not isinstance(payload, dict):
            payload = {}
        thinking = _flag(request.header("x-fake-thinking"))
        if anthropic and thinking:
            refusal = _thinking_refusal(payload)
            if refusal is not None:
                await _error(send, 400, anthropic, refusal, "invalid_request_error")
                return
        search = _search.search_tool(payload, gemini=False) if anthropic else None
        if search is not None:  # Anthropic's web search server tool
            pauses = int(request.header("x-fake-pause") or 0)
            await _search.answer_anthropic(send, payload, next(self._ids), *search, pauses=pauses)
            return
        answer = _answer(request, payload, next(self._ids), thinking=thinking)
        if not payload.get("stream"):
            await _json(send, 200, _completion(anthropic, answer))
            return
        gap = float(request.header("x-fake-gap") or 0)
        fail_after = request.header("x-fake-fail-after")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        options = payload.get("stream_options") or {}
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        events = _events(anthropic, answer, usage)
        limit = None if fail_after is None else int(fail_after)
        complete: bool | None = None  # stays None when the client leaves first
        self._stream_opened()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
                complete = await _send_events(send, events, gap, limit)
                group.cancel_scope.cancel()
        finally:
            self._stream_closed()
        if complete is None:
            return
        if not complete:
            raise FakeAbort("the fake upstream aborts the stream as asked")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _responses(self, request: RecordedRequest, send: Send) -> None:
        """OpenAI's Responses API, stateful: see :mod:`provider_proxy.testing._fake_responses`."""
        payload = loads(request.body) if request.body else {}
        if not isinstance(payload, dict):
            payload = {}
        missing = _responses.previous_missing(payload, self.responses)
        missing = missing or _responses.conversation_missing(payload)
        if missing is not None:
            await _error(send, 404, False, missing, "invalid_request_error")
            return
        number = next(self._ids)
        answer = _answer(
            request, payload, number, thinking=_flag(request.header("x-fake-thinking"))
        )
        search = _search.responses_tool(payload)
        if search is not None and (refusal := _search.responses_refusal(*search)) is not None:
            await _error(send, 400, False, refusal, "invalid_request_error")
            return
        calls = [(call.id, call.name, call.arguments) for call in answer.calls]
        prompt = _PROMPT_TOKENS + answer.cached
        usage = _responses.usage_object(
            prompt, answer.output_tokens, answer.cached, len(answer.reasoning)
        )
        thought = " ".join(answer.reasoning)
        response = _responses.response_object(
            f"fake{number}", answer.model, " ".join(answer.words), thought,
            answer.signature if thought else "", calls, usage, payload,
        )  # fmt: skip
        if search is not None:  # OpenAI's web search: the call, then the cited text
            response["output"] = _search.responses_output(number, _search.responses_query(payload))
        if payload.get("store", True) is not False:
            conversation = [
                *_responses.input_messages(payload, self.responses),
                *response["output"],
            ]
            self.responses[response["id"]] = dumps(conversation)
        if not payload.get("stream"):
            await _json(send, 200, response)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        streamed = (
            _search.responses_events(response)
            if search is not None
            else _responses.events(response, answer.words)
        )
        for event in streamed:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _gemini(self, request: RecordedRequest, send: Send) -> None:
        """Gemini's ``models/{model}:generateContent``, or its stream as SSE.

        Function calls have no ids, as Gemini's; thinking is a thought part and a
        ``thoughtSignature`` on the first call (or the last text part), and a
        call turn sent back without its signature is refused (400), as Gemini does.
        """
        model = request.path.rpartition("/models/")[2].partition(":")[0]
        payload = loads(request.body) if request.body else {}
        if not isinstance(payload, dict):
            payload = {}
        thinking = _flag(request.header("x-fake-thinking"))
        if thinking and (refusal := _gemini_thinking_refusal(payload)) is not None:
            await _gemini_error(send, 400, refusal)
            return
        search = _search.search_tool(payload, gemini=True)
        if search is not None:  # grounding with Google Search
            streamed = request.path.endswith(":streamGenerateContent")
            number = next(self._ids)
            await _search.answer_gemini(send, payload, number, model, search, stream=streamed)
            return
        answer = _answer(request, payload, next(self._ids), thinking=thinking)
        answer = replace(answer, model=model)
        chunks = _gemini_chunks(answer)
        if not request.path.endswith(":streamGenerateContent"):
            parts = _joined_text([part for chunk in chunks for part in chunk])
            await _json(send, 200, _gemini_chunk(answer, parts, answer.output_tokens, True))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for i, parts in enumerate(chunks):
            chunk = _gemini_chunk(answer, parts, i + 1, i == len(chunks) - 1)
            event = b"data: " + dumps(chunk) + b"\r\n\r\n"
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _endless(self, receive: Receive, send: Send, gap: float) -> None:
        """Stream until the client leaves; counts open and closed streams."""
        self._stream_opened()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                for index in itertools.count():
                    body = b"data: " + str(index).encode() + b"\n\n"
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    await anyio.sleep(gap)
        finally:
            self._stream_closed()


def _words(count: int) -> Iterator[str]:
    return itertools.islice(itertools.cycle(_WORDS), count)


_THOUGHTS = [*("Let", "me", "think", "this", "through,"), *("one", "step", "at", "a", "time.")]

#: What a signature is made of: a digest of the thinking text, so a changed text shows.
_SIGNATURE_KEY = b"provider_proxy fake thinking signature\x00"

#: The prompt tokens of every answer that no cache served.
_PROMPT_TOKENS = 10


@dataclass(frozen=True, slots=True)
class _Call:
    """A tool call of an answer: its id, the tool's name and the JSON text of its input."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class _Answer:
    """What the fake answers, before it is written in a format."""

    id: str
    model: str
    words: list[str]
    reasoning: list[str]
    calls: list[_Call]
    cached: int

    @property
    def signature(self) -> str:
        return _signature(" ".join(self.reasoning))

    @property
    def output_tokens(self) -> int:
        return (
            len(self.words)
            + len(self.reasoning)
            + sum(len(call.arguments) // 4 + 1 for call in self.calls)
        )


def _answer(
    request: RecordedRequest, payload: dict[str, Any], number: int, *, thinking: bool
) -> _Answer:
    """The answer to a chat request, as the knobs shape it."""
    anthropic = request.path.endswith("/messages")
    prefix = ("toolu_fake" if anthropic else "call_fake") + f"{number}_"
    schemas = _tool_schemas(payload.get("tools"))
    names = [n.strip() for n in (request.header("x-fake-tools") or "").split(",")]
    if _flag(request.header("x-fake-tools-once")) and _has_tool_result(payload):
        names = []
    calls = [
        _Call(f"{prefix}{i}", name, dumps(_sample_object(schemas[name])).decode("utf-8"))
        for i, name in enumerate(n for n in names if n in schemas)
    ]
    images = _images(payload.get("messages"))
    want = _wanted(request, payload)
    if calls:
        words: list[str] = []
    elif want is not None:  # JSON, a few words at a time (" ".join gives it back)
        words = _format.answer_text(want).split(" ")
    elif images:
        words = ["Images:", *(f"{image}," for image in images[:-1]), f"{images[-1]}."]
    else:
        words = list(_words(int(request.header("x-fake-chunks") or len(_WORDS))))
    return _Answer(
        id=(f"msg_fake{number}" if anthropic else f"chatcmpl-fake{number}"),
        model=str(payload.get("model", "fake-model")),
        words=words,
        reasoning=list(_THOUGHTS) if thinking else [],
        calls=calls,
        cached=int(request.header("x-fake-cached") or 0),
    )


def _format_api(path: str) -> str | None:
    """Which API's output format a path's body carries (``None``: none)."""
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/responses"):
        return "responses"
    if path.endswith((":generateContent", ":streamGenerateContent")):
        return "gemini"
    return None


def _wanted(request: RecordedRequest, payload: dict[str, Any]) -> _format.Wanted | None:
    """The JSON the request asks for (its format already checked: see :func:`_format_problem`)."""
    api = _format_api(request.path)
    if api is None:
        return None
    try:
        return _format.wanted(api, payload, request.header("anthropic-beta") or "")
    except _format.FormatError:
        return None


#: The body keys an output format is under, in any of the formats.
_FORMAT_KEYS = (
    b'"response_format"',
    b'"text"',
    b'"output_config"',
    b'"output_format"',
    b"eneration",
)


def _format_problem(request: RecordedRequest) -> str | None:
    """Why the real API would refuse the request's output format (``None``: it would not)."""
    api = _format_api(request.path)
    if api is None or not any(key in request.body for key in _FORMAT_KEYS):
        return None  # (a cheap look first: the fake also serves the benchmarks)
    try:
        payload = loads(request.body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    try:
        _format.wanted(api, payload, request.header("anthropic-beta") or "")
    except _format.FormatError as error:
        return str(error)
    return None


def _has_tool_result(payload: dict[str, Any]) -> bool:
    """Whether the conversation carries a tool's result, in any of the fake's formats."""
    turns = payload.get("messages") or payload.get("input")
    for turn in turns if isinstance(turns, list) else ():
        if not isinstance(turn, dict):
            continue
        if turn.get("role") == "tool" or turn.get("type") == "function_call_output":
            return True
        content = turn.get("content")
        if isinstance(content, list) and any(
            isinstance(block, dict) and block.get("type") == "tool_result" for block in content
        ):
            return True
    return False


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no", "off")


def _tool_schemas(tools: Any) -> dict[str, Any]:
    """The request's tools by name: each one's input schema (OpenAI's or Anthropic's form)."""
    schemas: dict[str, Any] = {}
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")
        if isinstance(function, dict):  # OpenAI: {"type": "function", "function": {...}}
            schemas[str(function.get("name"))] = function.get("parameters")
        elif isinstance(tool.get("functionDeclarations"), list):  # Gemini
            for declaration in tool["functionDeclarations"]:
                if isinstance(declaration, dict):
                    schemas[str(declaration.get("name"))] = declaration.get("parameters")
        elif "name" in tool:  # Anthropic's input_schema; the Responses API's parameters
            schemas[str(tool["name"])] = tool.get("input_schema", tool.get("parameters"))
    return schemas


def _sample_object(schema: Any) -> dict[str, Any]:
    """A small object with a value for each property of a JSON schema (``{}`` without any)."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return {}
    return {name: _sample(name, value) for name, value in properties.items()}


def _sample(name: str, schema: Any) -> Any:
    if not isinstance(schema, dict):
        return f"fake-{name}"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    samples: dict[Any, Any] = {"integer": 1, "number": 1.5, "boolean": True, "array": []}
    if kind == "object":
        return _sample_object(schema)
    return samples.get(kind, f"fake-{name}")


def _images(messages: Any) -> list[str]:
    """Each image of the request's user turns: its media type (inline) or its URL."""
    found: list[str] = []
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "image_url":  # OpenAI: a URL or a data URL
                url = str((part.get("image_url") or {}).get("url", ""))
                found.append(url[5:].partition(";")[0] if url.startswith("data:") else url)
            elif part.get("type") == "image":  # Anthropic: a base64 or a URL source
                source = part.get("source") or {}
                found.append(str(source.get("media_type") or source.get("url")))
    return found


def _signature(thinking: str) -> str:
    digest = hashlib.sha256(_SIGNATURE_KEY + thinking.encode("utf-8")).digest()
    return base64.b64encode(b"fake" + digest).decode("ascii")


def _thinking_refusal(payload: dict[str, Any]) -> str | None:
    """Why Anthropic, with thinking enabled, would refuse this conversation, or ``None``.

    In the turn under way (the messages after the last user message that is not
    only tool results), an assistant message with a ``tool_use`` block must start
    with the thinking block it was given, its signature intact.
    """
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return None
    start = 0
    for index, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            blocks = content if isinstance(content, list) else [{"type": "text"}]
            if not all(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks):
                start = index + 1
    for index in range(start, len(messages)):
        message = messages[index]
        content = message.get("content") if isinstance(message, dict) else None
        if message.get("role") != "assistant" or not isinstance(content, list):
            continue
        if not any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content):
            continue
        first = content[0] if isinstance(content[0], dict) else {}
        kind = first.get("type")
        if kind == "redacted_thinking":
            continue
        if kind != "thinking":
            return (
                f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, "
                f"but found `{kind}`. When `thinking` is enabled, a final `assistant` message "
                "must start with a thinking block (preceeding the lastmost set of `tool_use` "
                "and `tool_result` blocks)."
            )
        if first.get("signature") != _signature(str(first.get("thinking", ""))):
            return f"messages.{index}.content.0: Invalid `signature` in `thinking` block"
    return None


def _completion(anthropic: bool, answer: _Answer) -> dict[str, Any]:
    """A whole answer, in Anthropic's format or OpenAI's."""
    text = " ".join(answer.words)
    if anthropic:
        content: list[dict[str, Any]] = []
        if answer.reasoning:
            thought = " ".join(answer.reasoning)
            content.append({"type": "thinking", "thinking": thought, "signature": answer.signature})
        if text or not answer.calls:
            content.append({"type": "text", "text": text})
        content.extend(
            {"type": "tool_use", "id": c.id, "name": c.name, "input": loads(c.arguments)}
            for c in answer.calls
        )
        return {
            "id": answer.id,
            "type": "message",
            "role": "assistant",
            "model": answer.model,
            "content": content,
            "stop_reason": "tool_use" if answer.calls else "end_turn",
            "stop_sequence": None,
            "usage": _anthropic_usage(answer, answer.output_tokens),
        }
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text or None if answer.calls else text,
    }
    if answer.reasoning:
        message["reasoning_content"] = " ".join(answer.reasoning)
    if answer.calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in answer.calls
        ]
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if answer.calls else "stop",
            }
        ],
        "usage": _openai_usage(answer),
    }


def _anthropic_usage(answer: _Answer, output_tokens: int) -> dict[str, Any]:
    """Anthropic's usage: ``input_tokens`` leaves out the tokens read from the cache."""
    usage: dict[str, Any] = {"input_tokens": _PROMPT_TOKENS}
    if answer.cached:
        usage["cache_creation_input_tokens"] = 0
        usage["cache_read_input_tokens"] = answer.cached
    usage["output_tokens"] = output_tokens
    return usage


def _openai_usage(answer: _Answer) -> dict[str, Any]:
    """OpenAI's usage: ``prompt_tokens`` counts the cached ones too."""
    prompt, completion = _PROMPT_TOKENS + answer.cached, answer.output_tokens
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if answer.cached:
        usage["prompt_tokens_details"] = {"cached_tokens": answer.cached}
    if answer.reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": len(answer.reasoning)}
    return usage


def _pieces(text: str, count: int = 3) -> list[str]:
    """``text`` in about ``count`` pieces, as a provider streams a tool call's arguments."""
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _spaced(words: list[str]) -> Iterator[str]:
    for i, word in enumerate(words):
        yield word if i == 0 else " " + word


def _events(anthropic: bool, answer: _Answer, usage: bool = False) -> list[bytes]:
    """The SSE events of a streamed answer, one network write each.

    With ``usage`` (OpenAI's ``stream_options.include_usage``) a last chunk with
    empty ``choices`` carries the token counts, as OpenAI sends it.
    """
    if anthropic:
        return list(_anthropic_events(answer))
    return list(_openai_events(answer, usage))


def _anthropic_events(answer: _Answer) -> Iterator[bytes]:
    """As Anthropic streams: https://docs.anthropic.com/en/api/messages-streaming."""
    message = _completion(True, answer)
    message.update(content=[], stop_reason=None, usage=_anthropic_usage(answer, 1))
    yield _sse({"type": "message_start", "message": message}, "message_start")
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if answer.reasoning:
        deltas = [{"type": "thinking_delta", "thinking": t} for t in _spaced(answer.reasoning)]
        deltas.append({"type": "signature_delta", "signature": answer.signature})
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
    if answer.words or not answer.calls:
        deltas = [{"type": "text_delta", "text": t} for t in _spaced(answer.words)]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for call in answer.calls:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        pieces = _pieces(call.arguments) if call.arguments != "{}" else [""]
        blocks.append((block, [{"type": "input_json_delta", "partial_json": p} for p in pieces]))
    for index, (block, deltas) in enumerate(blocks):
        start = {"type": "content_block_start", "index": index, "content_block": block}
        yield _sse(start, "content_block_start")
        for delta in deltas:
            event = {"type": "content_block_delta", "index": index, "delta": delta}
            yield _sse(event, "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": index}, "content_block_stop")
    stop = "tool_use" if answer.calls else "end_turn"
    yield _sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": answer.output_tokens},
        },
        "message_delta",
    )
    yield _sse({"type": "message_stop"}, "message_stop")


def _openai_events(answer: _Answer, usage: bool) -> Iterator[bytes]:
    """As OpenAI streams, with reasoning as DeepSeek and vLLM stream it (``reasoning_content``)."""
    base = {
        "id": answer.id,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": answer.model,
    }
    deltas: list[dict[str, Any]] = [
        {"content": None, "reasoning_content": t} for t in _spaced(answer.reasoning)
    ]
    deltas.extend({"content": t} for t in _spaced(answer.words))
    for index, call in enumerate(answer.calls):
        function = {"name": call.name, "arguments": ""}
        head = {"index": index, "id": call.id, "type": "function", "function": function}
        deltas.append({"content": None, "tool_calls": [head]})
        pieces = _pieces(call.arguments) if call.arguments != "{}" else ["{}"]
        deltas.extend(
            {"tool_calls": [{"index": index, "function": {"arguments": p}}]} for p in pieces
        )
    if deltas:
        deltas[0] = {"role": "assistant", **deltas[0]}
    for delta in deltas:
        yield _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    finish = "tool_calls" if answer.calls else "stop"
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage:
        yield _sse({**base, "choices": [], "usage": _openai_usage(answer)})
    yield b"data: [DONE]\n\n"


async def _send_events(send: Send, events: list[bytes], gap: float, limit: int | None) -> bool:
    """Send the events of a stream; ``False`` when it stopped after ``limit`` of them."""
    for index, event in enumerate(events):
        if limit is not None and index > limit:
            return False
        if index and gap:
            await anyio.sleep(gap)
        await send({"type": "http.response.body", "body": event, "more_body": True})
    return True


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def _gemini_chunks(answer: _Answer) -> list[list[dict[str, Any]]]:
    """The parts of each streamed chunk: the thought, each word, each call (whole)."""
    chunks: list[list[dict[str, Any]]] = []
    if answer.reasoning:
        chunks.append([{"text": " ".join(answer.reasoning), "thought": True}])
    chunks.extend([{"text": t}] for t in _spaced(answer.words))
    chunks.extend(
        [{"functionCall": {"name": c.name, "args": loads(c.arguments)}}] for c in answer.calls
    )
    if answer.reasoning:  # the signature goes on the first call, else on the last text
        signed = next((c for c in chunks if "functionCall" in c[0]), chunks[-1])
        signed[0]["thoughtSignature"] = answer.signature
    return chunks or [[{"text": ""}]]


def _joined_text(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A whole answer's parts, each run of plain text one part (as Gemini answers whole)."""
    joined: list[dict[str, Any]] = []
    for part in parts:
        if joined and set(part) == {"text"} and set(joined[-1]) == {"text"}:
            joined[-1] = {"text": joined[-1]["text"] + part["text"]}
        else:
            joined.append(part)
    return joined


def _gemini_chunk(
    answer: _Answer, parts: list[dict[str, Any]], output_tokens: int, last: bool
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if last:
        candidate["finishReason"] = "STOP"
    usage: dict[str, Any] = {
        "promptTokenCount": _PROMPT_TOKENS + answer.cached,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": _PROMPT_TOKENS + answer.cached + output_tokens,
    }
    if answer.cached:
        usage["cachedContentTokenCount"] = answer.cached
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": answer.model,
        "responseId": answer.id,
    }


def _counted(path: str, payload: Any) -> tuple[int, dict[str, Any]]:
    """A token count (Anthropic's or Gemini's) or Gemini's single embedding."""
    if path.endswith(":embedContent"):
        return _counts.gemini_embed(payload, _vector)
    if path.endswith(":countTokens"):
        return _counts.gemini_count(payload)
    return _counts.anthropic_count(payload)


def _vector(text: str, size: int) -> list[float]:
    """A small embedding that depends on the text: its length, then its first bytes / 256."""
    head = [b / 256 for b in text.encode("utf-8")[: size - 1]]
    return [float(len(text)), *head, *([0.0] * (size - 1 - len(head)))][:size]


def _openai_embeddings(request: RecordedRequest) -> dict[str, Any]:
    """OpenAI's embeddings answer: floats, or base64 of float32s when asked."""
    payload = loads(request.body) if request.body else {}
    inputs = payload.get("input", [])
    texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
    size = int(payload.get("dimensions") or 4)
    data = []
    for index, text in enumerate(texts):
        vector: Any = _vector(text, size)
        if payload.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(t.split()) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": payload.get("model", "fake-embedding"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _gemini_embeddings(request: RecordedRequest) -> dict[str, Any]:
    """Gemini's ``batchEmbedContents`` answer: one vector per request, no usage."""
    payload = loads(request.body) if request.body else {}
    vectors = []
    for item in payload.get("requests", []):
        text = "".join(p.get("text", "") for p in item.get("content", {}).get("parts", []))
        vectors.append({"values": _vector(text, int(item.get("outputDimensionality") or 4))})
    return {"embeddings": vectors}


def _gemini_thinking_refusal(payload: dict[str, Any]) -> str | None:
    """Why Gemini, thinking, would refuse this conversation: a call turn of the turn under
    way whose first function call lacks the signature it was given."""
    contents = payload.get("contents")
    if not isinstance(contents, list):
        return None
    start = 0
    for index, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or content.get("role", "user") != "user":
            continue
        if not all(isinstance(p, dict) and "functionResponse" in p for p in parts):
            start = index + 1
    expected = _signature(" ".join(_THOUGHTS))
    for index in range(start, len(contents)):
        content = contents[index]
        parts = content.get("parts") if isinstance(content, dict) else None
        if content.get("role") != "model" or not isinstance(parts, list):
            continue
        calls = [p for p in parts if isinstance(p, dict) and "functionCall" in p]
        if calls and calls[0].get("thoughtSignature") != expected:
            return (
                f"Function call is missing a thought_signature in functionCall parts "
                f"(contents[{index}])."
            )
    return None


async def _gemini_error(send: Send, status: int, message: str) -> None:
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}
    names.update({404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"})
    name = names.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    await _json(send, status, {"error": {"code": status, "message": message, "status": name}})


def _sse(payload: dict[str, Any], event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + dumps(payload) + b"\n\n"


def _models(*, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {
            "data": [
                {
                    "type": "model",
                    "id": "claude-fake-1",
                    "display_name": "Claude Fake 1",
                    "created_at": "2026-01-01T00:00:00Z",
                }
            ],
            "has_more": False,
            "first_id": "claude-fake-1",
            "last_id": "claude-fake-1",
        }
    return {
        "object": "list",
        "data": [
            {"id": "gpt-fake-1", "object": "model", "created": 1_700_000_000, "owned_by": "fake"},
            {"id": "gpt-fake-2", "object": "model", "created": 1_700_000_000, "owned_by": "fake"},
        ],
    }


def _echo(request: RecordedRequest) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path.decode("latin-1"),
        "query": request.query.decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers],
        "body": request.body.decode("latin-1"),
    }


async def _error(
    send: Send,
    status: int,
    anthropic: bool,
    message: str | None = None,
    error_type: str | None = None,
) -> None:
    message = message or f"fake upstream error {status}"
    if anthropic:
        payload: dict[str, Any] = {
            "type": "error",
            "error": {"type": error_type or "api_error", "message": message},
        }
    else:
        payload = {
            "error": {
                "message": message,
                "type": error_type or "fake_error",
                "param": None,
                "code": str(status),
            }
        }
    await _json(send, status, payload)


async def _json(send: Send, status: int, payload: Any) -> None:
    await _respond(send, status, dumps(payload), [(b"content-type", b"application/json")])


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers = [
        *headers,
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", b"upstream-" + str(status).encode()),
        (b"set-cookie", b"upstream_session=1; Path=/"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
