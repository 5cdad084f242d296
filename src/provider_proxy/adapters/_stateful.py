"""`StatefulAdapter`: an OpenAI Chat facade over an upstream that keeps the conversation.

Clients are stateless: every request carries the whole history. Some upstreams
(web chat services) keep the conversation on their side and take only the new
turn, with the id of the message it follows. A subclass says how to speak to
such an upstream (open a conversation, send one turn, read the answer); this
module does the rest, the same for every such upstream:

- the request (OpenAI Chat Completions, after the transforms, so tools taught
  by :class:`~provider_proxy.transforms.XmlToolCalls` arrive as text) is split
  into the conversation so far (system prompt and every message before the new
  turn) and the new turn (the messages after the last assistant message);
- the conversation so far is hashed (:func:`conversation_hash`) and looked up
  in the app's session store, per adapter and client identity: a hit continues
  the upstream conversation with the new turn alone; a miss opens a new one and
  sends the whole conversation replayed as text (:attr:`Turn.text`);
- the answer is relayed as OpenAI Chat (streamed as it comes, or whole), and
  once complete the upstream's ids are kept under the hash of the conversation
  including it, ready for the client's next request;
- an upstream that says the stored ids are no longer valid
  (:class:`StaleConversation`, before anything was answered) makes it open a
  fresh conversation and send the turn again, once.
"""

from __future__ import annotations

import abc
import hashlib
import inspect
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import httpx

from .._adapter import RequestContext
from .._exceptions import BadRequest, InvalidJSON, ProxyError
from .._json import dumps, loads
from ..dialects import Dialect, OpenAIChat
from ..dialects.canonical import (
    Codec,
    Finish,
    FinishReason,
    Message,
    MessageStart,
    Reasoning,
    ReasoningDelta,
    Request,
    Response,
    StreamError,
    Text,
    TextDelta,
    Unsupported,
    Usage,
    UsageReport,
)
from ._base import BaseAdapter

#: The largest error or JSON answer of a stateful upstream that is read.
MAX_UPSTREAM_ANSWER = 4 * 1024 * 1024
_CHAT = OpenAIChat()


def _chat_codec() -> Codec:
    codec = _CHAT.codec
    assert codec is not None  # OpenAI Chat has one
    return codec


_CODEC = _chat_codec()


class StaleConversation(Exception):
    """The upstream no longer knows the stored conversation ids (expired, deleted)."""


class UpstreamRefused(ProxyError):
    """The stateful upstream refused or failed the conversation (502, naming why)."""

    status_code = 502
    kind = "upstream_error"


class Sessions(Protocol):
    """Where conversation sessions are kept: the app's
    :class:`~provider_proxy.state.SessionStore` (any object with these methods)."""

    async def find(
        self, adapter: str, identity: str | None, history: str
    ) -> Mapping[str, Any] | None: ...

    async def keep(
        self, adapter: str, identity: str | None, history: str, ids: Mapping[str, Any]
    ) -> None: ...

    async def restarted(self, adapter: str, identity: str | None, history: str) -> None: ...


AnswerEvent = TextDelta | ReasoningDelta | UsageReport | Finish | StreamError


class AnswerReader(abc.ABC):
    """Reads one streamed answer of the upstream; sans-I/O.

    :meth:`feed` turns raw bytes into answer events (text, reasoning, usage, a
    finish, an error); it may raise :class:`StaleConversation` (before any text)
    or a :class:`~provider_proxy.ProxyError` (before any text: the client's
    error answer; after: a streamed error event, and no session is kept).
    :attr:`next_ids` are the ids the conversation continues from once the
    answer is complete.
    """

    @abc.abstractmethod
    def feed(self, data: bytes) -> list[AnswerEvent]:
        """The events these bytes complete."""

    @abc.abstractmethod
    def end(self) -> list[AnswerEvent]:
        """The events still held when the answer ends."""

    @property
    @abc.abstractmethod
    def next_ids(self) -> Mapping[str, Any] | None:
        """Where the conversation continues after this answer (``None``: unknown yet)."""


@dataclass(frozen=True, slots=True)
class Turn:
    """What one client request asks of the upstream."""

    model: str
    #: The system prompt's text ("" without one).
    system: str
    #: The conversation before the new turn, as ``(role, text)``.
    history: tuple[tuple[str, str], ...]
    #: The new turn's text (the user's message, or tool results rendered as text).
    new: str
    #: Whether this turn opens a new upstream conversation (so it must replay the history).
    fresh: bool
    #: The whole request, decoded (for options such as reasoning).
    request: Request

    @property
    def text(self) -> str:
        """What to send upstream: the new turn, or for a fresh conversation
        the system prompt and the whole conversation replayed before it."""
        if not self.fresh or (not self.system and not self.history):
            return self.new
        parts = [self.system] if self.system else []
        if self.history:
            lines = [f"{role.capitalize()}: {text}" for role, text in self.history]
            parts.append("The conversation so far:\n\n" + "\n\n".join(lines))
            parts.append(f"User: {self.new}")
        else:
            parts.append(self.new)
        return "\n\n".join(parts)


class Upstream:
    """The app's pooled transport, for a stateful adapter's own requests to its upstream.

    Requests carry the adapter's headers and credentials and the app's
    timeouts; answers are never compressed (so errors can be read).
    """

    def __init__(
        self,
        adapter: BaseAdapter,
        transport: httpx.AsyncBaseTransport,
        extensions: Mapping[str, Any],
        request_id: str,
    ) -> None:
        self._adapter = adapter
        self._transport = transport
        self._extensions = dict(extensions)
        self.request_id = request_id

    async def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request below the adapter's base URL; the answer's body is not read yet."""
        url = self._adapter.join(path)
        if params:
            url = url.copy_merge_params(dict(params))
        content = None if json is None else dumps(json)
        request = httpx.Request(method, url, content=content)
        if content is not None:
            request.headers["content-type"] = "application/json"
        for name, value in (headers or {}).items():
            request.headers[name] = value
        return await self.send_request(request)

    async def send_request(self, request: httpx.Request) -> httpx.Response:
        """Send a prebuilt request (the adapter's ``models_request()``) with the adapter's
        headers and credentials (headers it sets itself win over the defaults)."""
        adapter = self._adapter
        context = RequestContext(
            adapter.name, request.method, request.url.path, b"", [], self.request_id
        )
        auth = adapter.auth_headers(context)
        if inspect.isawaitable(auth):
            auth = await auth
        given = dict(request.headers)
        merged: dict[str, str] = {**adapter.default_headers, **adapter.headers, **auth}
        for name, value in merged.items():
            if name.lower() not in given:
                request.headers[name] = value
        request.headers["accept-encoding"] = "identity"
        request.headers["x-request-id"] = self.request_id
        request.extensions = {**request.extensions, **self._extensions}
        return await self._transport.handle_async_request(request)

    async def read(self, response: httpx.Response, limit: int = MAX_UPSTREAM_ANSWER) -> bytes:
        """The answer's body (at most ``limit`` bytes: an answer over it is refused); closes it."""
        parts: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > limit:
                    raise UpstreamRefused(
                        f"The {self._adapter.name!r} upstream sent an answer over {limit} bytes."
                    )
                parts.append(chunk)
        finally:
            await response.aclose()
        return b"".join(parts)


class StatefulAdapter(BaseAdapter):
    """An adapter whose upstream keeps the conversation; clients speak OpenAI Chat to it.

    Subclasses implement :meth:`open_conversation`, :meth:`send_turn` and
    :meth:`answer_reader`; the engine calls :meth:`conversation_transport`
    for each request, which maps the stateless client to the stateful upstream
    through the app's session store.
    """

    dialects: ClassVar[tuple[Dialect, ...]] = (_CHAT,)
    endpoints: ClassVar[tuple[str, ...]] = (
        "POST /chat/completions",
        "POST /v1/chat/completions",
        "GET /models",
        "GET /v1/models",
    )
    #: Request fields the upstream cannot be given; they are dropped and named in
    #: ``x-proxy-dropped-fields``. Anything else the upstream cannot take is refused.
    ignored_fields: ClassVar[tuple[str, ...]] = (
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "user",
        "parallel_tool_calls",
    )

    # -- what a subclass implements ------------------------------------------------

    async def open_conversation(self, upstream: Upstream, turn: Turn) -> Mapping[str, Any]:
        """Open a conversation upstream; the ids the first turn is sent with."""
        raise NotImplementedError

    async def send_turn(
        self, upstream: Upstream, ids: Mapping[str, Any], turn: Turn
    ) -> httpx.Response:
        """Send ``turn`` into the conversation ``ids`` name; the upstream's streamed answer.

        :raises StaleConversation: the upstream no longer knows ``ids``.
        :raises ProxyError: the upstream refused (credentials, a challenge page).
        """
        raise NotImplementedError

    def answer_reader(self, ids: Mapping[str, Any], turn: Turn) -> AnswerReader:
        """A reader for the answer to ``turn``, sent into the conversation ``ids``."""
        raise NotImplementedError

    # -- what the engine calls -------------------------------------------------------

    def conversation_transport(
        self,
        transport: httpx.AsyncBaseTransport,
        sessions: Sessions,
        identity: str | None,
    ) -> httpx.AsyncBaseTransport:
        """The transport for one request: it holds the conversation the client's history names."""
        return _ConversationTransport(self, transport, sessions, identity)

    def gateway_path(self, dialect: Dialect, operation: str) -> str | None:
        return "/chat/completions" if dialect is _CHAT and operation == "generate" else None


# -- the conversation ---------------------------------------------------------------------


def _normalised(text: str) -> str:
    # Whitespace is not compared: clients trim and re-render what they send back.
    return "".join(text.split())


def conversation_hash(system: str, messages: Sequence[tuple[str, str]]) -> str:
    """The session key of a conversation: its system prompt and ``(role, text)`` turns.

    Whitespace is left out, so an answer a client sends back trimmed or
    re-rendered (tool calls as XML) still names the same conversation.
    """
    turns: list[list[str]] = []
    for role, text in messages:  # a turn of several messages counts as one
        if turns and turns[-1][0] == role:
            turns[-1][1] += _normalised(text)
        else:
            turns.append([role, _normalised(text)])
    return hashlib.sha256(dumps([_normalised(system), turns])).hexdigest()


def _text_of(message: Message, index: int) -> str:
    texts: list[str] = []
    for number, part in enumerate(message.parts):
        if isinstance(part, Text):
            texts.append(part.text)
        elif isinstance(part, Reasoning):
            continue
        else:
            kind = type(part).__name__.lower()
            raise Unsupported(
                f"messages[{index}].content[{number}]",
                f"this upstream takes text only, not a {kind} (tool turns need the "
                "XmlToolCalls transform)",
            )
    return "".join(texts)


def _turn_of(request: Request) -> tuple[str, list[tuple[str, str]], str]:
    """The system text, the conversation before the new turn, and the new turn's text."""
    if request.tools:
        raise Unsupported(
            "tools", "this upstream has no tool calling; attach the XmlToolCalls transform"
        )
    messages: list[tuple[str, str]] = [
        (m.role, _text_of(m, i)) for i, m in enumerate(request.messages)
    ]
    last_assistant = max(
        (i for i, (role, _) in enumerate(messages) if role == "assistant"), default=-1
    )
    new = messages[last_assistant + 1 :]
    if not new:
        raise BadRequest("The last message must be the user's: there is no new turn to send.")
    system = "\n\n".join(part.text for part in request.system)
    return system, messages[: last_assistant + 1], "\n\n".join(text for _, text in new)


class _ConversationTransport(httpx.AsyncBaseTransport):
    """One request's conversation: found or opened, the turn sent, the answer relayed."""

    def __init__(
        self,
        adapter: StatefulAdapter,
        transport: httpx.AsyncBaseTransport,
        sessions: Sessions,
        identity: str | None,
    ) -> None:
        self._adapter = adapter
        self._transport = transport
        self._sessions = sessions
        self._identity = identity

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # the endpoints allow only the model list
            return await self._models(request)
        adapter = self._adapter
        try:
            body = loads(await request.aread())
        except ValueError as exc:
            raise InvalidJSON(f"The request body is not valid JSON ({exc}).") from None
        if not isinstance(body, dict):
            raise InvalidJSON("The request body must be a JSON object.")
        dropped = tuple(name for name in adapter.ignored_fields if body.get(name) is not None)
        body = {k: v for k, v in body.items() if k not in adapter.ignored_fields}
        decoded, also_dropped = _CODEC.decode_request(body)
        dropped = (*dropped, *also_dropped)
        system, history, new = _turn_of(decoded)
        request_id = request.headers.get("x-request-id", "")
        upstream = Upstream(adapter, self._transport, request.extensions, request_id)
        asked = conversation_hash(system, history) if history else None
        ids = None
        if asked is not None:
            ids = await self._sessions.find(adapter.name, self._identity, asked)
        turn = Turn(decoded.model, system, tuple(history), new, ids is None, decoded)
        try:
            started = await self._start(upstream, turn, ids)
        except StaleConversation:
            if asked is None or turn.fresh:
                raise _lost(adapter) from None
            # A fresh conversation, the history replayed, once; the lost one is forgotten.
            await self._sessions.restarted(adapter.name, self._identity, asked)
            turn = Turn(decoded.model, system, tuple(history), new, True, decoded)
            try:
                started = await self._start(upstream, turn, None)
            except StaleConversation:
                raise _lost(adapter) from None
        answer = _Answer(self, turn, history, *started)
        headers: list[tuple[str, str]] = []
        if dropped:
            headers.append(("x-proxy-dropped-fields", ", ".join(dropped)))
        if decoded.stream:
            headers.append(("content-type", "text/event-stream"))
            return httpx.Response(200, headers=headers, stream=answer)
        content = await answer.whole()
        headers.append(("content-type", "application/json"))
        return httpx.Response(200, headers=headers, content=content)

    async def _models(self, request: httpx.Request) -> httpx.Response:
        """The upstream's models as OpenAI lists them (clients configured with the
        adapter's URL as their base URL ask for it)."""
        adapter = self._adapter
        own = adapter.models_request()
        upstream = Upstream(
            adapter, self._transport, request.extensions, request.headers.get("x-request-id", "")
        )
        response = await upstream.send_request(own)
        raw = await upstream.read(response)
        try:
            listed = loads(raw).get("data") if response.status_code == 200 else None
        except (ValueError, AttributeError):
            listed = None
        if not isinstance(listed, list):
            raise UpstreamRefused(
                f"The {adapter.name!r} upstream did not list its models ({response.status_code})."
            )
        data = [
            {"id": info.id, "object": "model", "created": 0, "owned_by": adapter.name}
            for info in (adapter.model_info(item) for item in listed if isinstance(item, dict))
        ]
        body = dumps({"object": "list", "data": data})
        return httpx.Response(200, headers=[("content-type", "application/json")], content=body)

    async def _start(
        self, upstream: Upstream, turn: Turn, ids: Mapping[str, Any] | None
    ) -> tuple[httpx.Response, AsyncIterator[bytes], AnswerReader, list[AnswerEvent]]:
        """Send the turn (into a new conversation without ``ids``) and read up to its first
        content, so a stale conversation shows before any byte goes to the client."""
        adapter = self._adapter
        if ids is None:
            ids = await adapter.open_conversation(upstream, turn)
        response = await adapter.send_turn(upstream, ids, turn)
        chunks = response.aiter_raw()
        try:
            reader = adapter.answer_reader(ids, turn)
            events: list[AnswerEvent] = []
            async for chunk in chunks:
                events += reader.feed(chunk)
                if any(isinstance(e, _CONTENT) for e in events):
                    return response, chunks, reader, events
            events += reader.end()
        except BaseException:
            await response.aclose()
            raise
        await response.aclose()
        return response, chunks, reader, events

    async def keep(self, history: str, ids: Mapping[str, Any]) -> None:
        await self._sessions.keep(self._adapter.name, self._identity, history, ids)


def _lost(adapter: StatefulAdapter) -> UpstreamRefused:
    return UpstreamRefused(
        f"The {adapter.name!r} upstream did not know a conversation it had just opened."
    )


_CONTENT = (TextDelta, ReasoningDelta, Finish, StreamError)


class _Answer(httpx.AsyncByteStream):
    """The upstream's answer as OpenAI Chat; the session kept once it is complete."""

    def __init__(
        self,
        owner: _ConversationTransport,
        turn: Turn,
        history: list[tuple[str, str]],
        response: httpx.Response,
        chunks: AsyncIterator[bytes],
        reader: AnswerReader,
        first: list[AnswerEvent],
    ) -> None:
        self._owner = owner
        self._turn = turn
        self._history = history
        self._response = response
        self._chunks = chunks
        self._reader = reader
        self._first = first
        self._id = f"chatcmpl-{uuid.uuid4().hex[:24]}"

    async def _events(self) -> AsyncIterator[AnswerEvent]:
        for event in self._first:
            yield event
        if self._response.is_closed:
            return
        async for chunk in self._chunks:
            for event in self._reader.feed(chunk):
                yield event
        for event in self._reader.end():
            yield event

    async def __aiter__(self) -> AsyncIterator[bytes]:
        request = self._turn.request
        encoder = _CODEC.stream_encoder(request)
        yield encoder.feed(MessageStart(self._id, request.model))
        text: list[str] = []
        finished = failed = False
        events = self._events()
        while not failed:
            try:
                event = await anext(events)
            except StopAsyncIteration:
                break
            except ProxyError as error:  # the answer has started: an error event ends it
                event = StreamError(error.status_code, "server_error", error.message)
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, Finish):
                finished = True
            elif isinstance(event, StreamError):
                failed = True
            out = encoder.feed(event)
            if out:
                yield out
        if not failed:
            if not finished:
                yield encoder.feed(Finish(FinishReason.STOP))
            await self._complete("".join(text))
        yield encoder.close()

    async def whole(self) -> bytes:
        text: list[str] = []
        reasoning: list[str] = []
        usage = Usage()
        finish = FinishReason.STOP
        try:
            async for event in self._events():
                if isinstance(event, TextDelta):
                    text.append(event.text)
                elif isinstance(event, ReasoningDelta):
                    reasoning.append(event.text)
                elif isinstance(event, UsageReport):
                    usage = usage.merge(event.usage)
                elif isinstance(event, Finish):
                    finish = event.reason
                elif isinstance(event, StreamError):
                    raise UpstreamRefused(event.message)
        finally:
            await self._response.aclose()
        parts: list[Any] = [Reasoning("".join(reasoning))] if reasoning else []
        parts.append(Text("".join(text)))
        await self._complete("".join(text))
        response = Response(self._id, self._turn.request.model, tuple(parts), finish, usage)
        return dumps(_CODEC.encode_response(response))

    async def _complete(self, answer: str) -> None:
        ids = self._reader.next_ids
        if ids is None:
            return
        turn = self._turn
        conversation = [*self._history, ("user", turn.new), ("assistant", answer)]
        await self._owner.keep(conversation_hash(turn.system, conversation), ids)

    async def aclose(self) -> None:
        await self._response.aclose()
