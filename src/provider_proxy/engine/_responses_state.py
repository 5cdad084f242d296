"""Conversations kept for stateful clients of a provider without server-side state.

A client format whose answers can be continued by id (the codec is a
:class:`~provider_proxy.dialects.canonical.StoredAnswers`) asks for its
conversation to be kept (``Request.store``) and continues a kept one
(``Request.continues``). When the gateway translates such a request, the
provider keeps nothing, so the proxy does: each answer gets an id the proxy
issues, and the conversation up to and with that answer is kept in the app's
store under the client's identity and that id, for :attr:`StoredResponses.ttl`
seconds. A request that continues it gets the kept turns put before its own.

Isolation: the key holds a digest of the client's identity (the guards'), so
one client can never read, continue or delete another's answers. Limits: each
kept conversation is at most :attr:`StoredResponses.max_bytes`, and a client
keeps at most :attr:`StoredResponses.per_client` at once (a slot per answer,
held as a lease in the store for the answer's lifetime, so it is shared by
every instance on one Redis); a request past either is refused before it is
sent, so nothing is billed for an answer that could not be kept.
"""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._exceptions import BodyTooLarge, ProxyError, RateLimited
from .._json import dumps, loads
from ..dialects.canonical import (
    CacheControl,
    Citation,
    Cited,
    Document,
    Finish,
    FinishReason,
    Image,
    Message,
    MessageStart,
    OutputFormat,
    Part,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    ReasoningSignature,
    RedactedReasoning,
    RedactedReasoningBlock,
    Refusal,
    RefusalDelta,
    Request,
    Response,
    SearchResult,
    StoredAnswers,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    Usage,
    UsageReport,
    UserLocation,
    WebSearch,
    WebSearchCall,
    WebSearchDone,
)
from ..state import Store

logger = logging.getLogger("provider_proxy")

#: The id and creation time of the answer about to begin, when they were issued
#: before it (a background response answers with its id before it is run).
issued: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "provider_proxy.issued_answer", default=None
)

#: What is done with an answer that finished (a conversation takes its items).
Finished = Callable[[Response], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StoredResponses:
    """How the gateway keeps conversations for stateful clients (the Responses API's
    ``store`` and ``previous_response_id``) when it translates for a provider.

    :param ttl: seconds a kept answer can be continued, fetched or deleted.
    :param max_bytes: the largest conversation kept (its canonical JSON).
    :param per_client: how many answers one client identity keeps at once.
    """

    ttl: float = 3600.0
    max_bytes: int = 4 * 1024 * 1024
    per_client: int = 1000

    def __post_init__(self) -> None:
        if self.ttl <= 0 or self.max_bytes <= 0 or self.per_client <= 0:
            raise ValueError("StoredResponses needs a positive ttl, max_bytes and per_client.")


class AnswerNotFound(ProxyError):
    """No kept answer of this client has that id (never kept, expired, deleted, or another's)."""

    status_code = 404
    kind = "not_found"


class TooManyStored(RateLimited):
    """The client keeps as many answers as it may: it must delete some, or not store."""

    kind = "too_many_stored"


class ConversationTooLarge(BodyTooLarge):
    """The conversation is larger than a kept one may be."""

    kind = "conversation_too_large"


class AnswerStore:
    """Kept conversations in ``store``, per client identity (see the module docstring)."""

    def __init__(self, store: Store, config: StoredResponses | None = None) -> None:
        self._store = store
        self.config = config or StoredResponses()

    @staticmethod
    def _who(identity: str | None) -> str:
        return hashlib.sha256((identity or "").encode()).hexdigest()[:24]

    def _key(self, identity: str | None, answer_id: str) -> str:
        return f"pp:answers:{self._who(identity)}:{answer_id}"

    def _slots(self, identity: str | None) -> str:
        return f"pp:answers:slots:{self._who(identity)}"

    async def _record(self, identity: str | None, answer_id: str) -> dict[str, Any]:
        raw = await self._store.get(self._key(identity, answer_id))
        if not raw:  # absent, expired, or deleted (an empty tombstone)
            raise AnswerNotFound(f"No stored response with id {answer_id!r} was found.")
        record: dict[str, Any] = loads(raw)
        return record

    async def has(self, identity: str | None, answer_id: str) -> bool:
        """Whether this client has a kept answer ``answer_id``."""
        return bool(await self._store.get(self._key(identity, answer_id)))

    async def fetch(self, identity: str | None, answer_id: str) -> Response:
        """The kept answer ``answer_id`` of this client."""
        return (await self.fetch_dated(identity, answer_id))[0]

    async def fetch_dated(
        self, identity: str | None, answer_id: str
    ) -> tuple[Response, int | None, Request | None]:
        """The kept answer ``answer_id`` of this client, when it was created (Unix
        seconds) and the settings of its request (its messages left out), to be
        echoed; ``None`` for either when the answer was kept before they were."""
        record = await self._record(identity, answer_id)
        response = from_plain(record["response"])
        assert isinstance(response, Response)
        created = record.get("created_at")
        settings = from_plain(record["request"]) if "request" in record else None
        assert settings is None or isinstance(settings, Request)
        return response, created if isinstance(created, int) else None, settings

    async def conversation(
        self, identity: str | None, answer_id: str
    ) -> tuple[tuple[Text, ...], tuple[Message, ...]]:
        """The kept system texts and the turns before the answer ``answer_id``: its input."""
        record = await self._record(identity, answer_id)
        system, turns = from_plain(record["system"]), from_plain(record["messages"])
        assert isinstance(system, tuple)
        assert isinstance(turns, tuple)
        return system, turns[:-1]

    async def delete(self, identity: str | None, answer_id: str) -> None:
        """Forget the answer ``answer_id`` of this client, and free its slot."""
        await self._record(identity, answer_id)
        # The Store protocol has no delete: an empty value is a tombstone.
        await self._store.set(self._key(identity, answer_id), b"", self.config.ttl)
        await self._store.release(self._slots(identity), answer_id)

    async def begin(
        self, identity: str | None, request: Request, codec: StoredAnswers
    ) -> tuple[Request, Keeping]:
        """``request`` with the turns it continues put first, and the answer's keeping.

        :raises AnswerNotFound: it continues an answer this client does not have.
        :raises TooManyStored: it asks to be kept and the client's slots are taken.
        :raises ConversationTooLarge: it asks to be kept and is too large to be.
        """
        if request.continues is not None:
            record = await self._record(identity, request.continues)
            earlier, kept_system = from_plain(record["messages"]), from_plain(record["system"])
            assert isinstance(earlier, tuple)
            assert isinstance(kept_system, tuple)
            own = request.transient_system
            request = dataclasses.replace(
                request,
                messages=(*earlier, *request.messages),
                # This request's instructions, then the kept system messages, then its own.
                system=(*request.system[:own], *kept_system, *request.system[own:]),
            )
        given = issued.get()
        if given is not None:
            answer_id, created = given
        else:
            answer_id, created = codec.issue_id(secrets.token_hex(16)), int(time.time())
        keeping = Keeping(self, identity, answer_id, request, created)
        if request.store:
            if len(dumps(to_plain(request.messages))) > self.config.max_bytes:
                raise ConversationTooLarge(
                    f"The conversation is larger than a stored one may be "
                    f"({self.config.max_bytes} bytes); send it with store set to false."
                )
            slots, cap = self._slots(identity), self.config.per_client
            if not await self._store.acquire(slots, answer_id, cap, self.config.ttl):
                raise TooManyStored(
                    f"This client already stores {cap} responses; delete some "
                    "(DELETE /v1/responses/{id}) or send store set to false."
                )
            keeping.reserved = True
        return request, keeping

    async def _keep(self, keeping: Keeping, response: Response) -> bool:
        request = keeping.request
        messages = (*request.messages, Message("assistant", response.parts))
        system = request.system[request.transient_system :]
        record = dumps(
            {
                "messages": to_plain(messages),
                "system": to_plain(system),
                "response": to_plain(response),
                "created_at": keeping.created,
                "request": to_plain(settings_of(request)),
            }
        )
        if len(record) > self.config.max_bytes:
            logger.warning(
                "the response %s is not stored: the conversation is %d bytes, above %d",
                keeping.answer_id,
                len(record),
                self.config.max_bytes,
            )
            return False
        await self._store.set(
            self._key(keeping.identity, keeping.answer_id), record, self.config.ttl
        )
        return True

    async def _release(self, keeping: Keeping) -> None:
        await self._store.release(self._slots(keeping.identity), keeping.answer_id)


class Keeping:
    """One answer on its way: its issued id, and what it says as it is translated.

    The translator renames the provider's answer to :attr:`answer_id` and feeds
    it here (:meth:`feed` for a stream, :meth:`whole` for a whole answer); the
    gateway calls :meth:`end` when the exchange is over, which keeps a finished
    answer that asked to be kept and frees the slot of any other.
    """

    def __init__(
        self,
        answers: AnswerStore,
        identity: str | None,
        answer_id: str,
        request: Request,
        created: int = 0,
    ) -> None:
        self._answers = answers
        self.identity = identity
        self.answer_id = answer_id
        self.request = request
        #: When the answer was created (Unix seconds), as its fetch shows it.
        self.created = created
        self.reserved = False
        #: Called with the answer once it finished (kept or not).
        self.finished: Finished | None = None
        self._ended = False
        self._collector = AnswerCollector(answer_id)
        self._response: Response | None = None

    def rename(self, event: StreamEvent) -> StreamEvent:
        """A stream event with the issued id in place of the provider's; collected too."""
        if isinstance(event, MessageStart):
            event = MessageStart(self.answer_id, event.model)
        self._collector.feed(event)
        return event

    def whole(self, response: Response) -> Response:
        """A whole answer under the issued id."""
        self._response = dataclasses.replace(response, id=self.answer_id)
        return self._response

    async def end(self) -> None:
        """Keep the answer if it finished and asked to be; else free its slot.
        Then hand a finished answer to :attr:`finished`. Once: the translator calls
        it before the answer's end reaches the client, the gateway again after."""
        if self._ended or (not self.reserved and self.finished is None):
            return
        self._ended = True
        response = self._response or self._collector.response()
        kept = False
        try:
            if self.reserved:
                if response is not None:
                    kept = await self._answers._keep(self, response)
                if not kept:
                    await self._answers._release(self)
            if self.finished is not None and response is not None:
                await self.finished(response)
        except Exception:  # the answer was served: a store failure is only logged
            logger.warning("could not store the response %s", self.answer_id, exc_info=True)


class AnswerCollector:
    """Canonical stream events in; the whole answer they made, once it finished."""

    __slots__ = (
        "_calls",
        "_cites",
        "_failed",
        "_finish",
        "_id",
        "_model",
        "_parts",
        "_text",
        "_usage",
    )

    def __init__(self, answer_id: str) -> None:
        self._id = answer_id
        self._model = ""
        self._parts: list[Part] = []
        #: The open run: its kind (``text``, ``refusal``, ``reasoning``) and pieces.
        self._text: tuple[str, list[str]] | None = None
        #: Each tool call's position among the parts, and its arguments' pieces.
        self._calls: dict[int, tuple[int, list[str]]] = {}
        self._usage = Usage()
        self._finish: FinishReason | None = None
        self._failed = False
        #: The citations of the open text run.
        self._cites: list[Citation] = []

    def feed(self, event: StreamEvent) -> None:
        """Take one event into the answer."""
        if isinstance(event, MessageStart):
            self._model = event.model
        elif isinstance(event, TextDelta):
            self._run("text", event.text)
        elif isinstance(event, RefusalDelta):
            self._run("refusal", event.text)
        elif isinstance(event, ReasoningDelta):
            self._run("reasoning", event.text)
        elif isinstance(event, ReasoningSignature):  # it ends the reasoning streamed before it
            text = ""
            if self._text is not None and self._text[0] == "reasoning":
                text, self._text = "".join(self._text[1]), None
            self._close()
            self._parts.append(Reasoning(text, event.signature))
        elif isinstance(event, RedactedReasoningBlock):
            self._close()
            self._parts.append(RedactedReasoning(event.data))
        elif isinstance(event, ToolCallStart):
            self._close()
            self._calls[event.index] = (len(self._parts), [])
            self._parts.append(ToolCall(event.id, event.name, ""))
        elif isinstance(event, ToolCallDelta) and event.index in self._calls:
            self._calls[event.index][1].append(event.arguments)
        elif isinstance(event, UsageReport):
            self._usage = self._usage.merge(event.usage)
        elif isinstance(event, Finish):
            self._close()
            self._finish = event.reason
        elif isinstance(event, StreamError):
            self._failed = True
        elif isinstance(event, WebSearchDone):
            self._close()
            self._parts.append(event.call)
        elif isinstance(event, Cited) and self._text is not None and self._text[0] == "text":
            self._cites.append(event.citation)

    def _run(self, kind: str, text: str) -> None:
        if self._text is None or self._text[0] != kind:
            self._close()
            self._text = (kind, [])
        self._text[1].append(text)

    def _close(self) -> None:
        if self._text is None:
            return
        kind, pieces = self._text
        self._text = None
        text = "".join(pieces)
        cites, self._cites = tuple(self._cites), []
        part: Part = (
            Text(text, citations=cites)
            if kind == "text"
            else Refusal(text)
            if kind == "refusal"
            else Reasoning(text)
        )
        self._parts.append(part)

    def response(self) -> Response | None:
        """The answer, or ``None`` when it failed or never finished."""
        if self._failed or self._finish is None:
            return None
        self._close()
        parts = list(self._parts)
        for position, pieces in self._calls.values():
            call = parts[position]
            assert isinstance(call, ToolCall)
            parts[position] = dataclasses.replace(call, arguments="".join(pieces) or "{}")
        return Response(self._id, self._model, tuple(parts), self._finish, self._usage)


# -- canonical values as JSON -------------------------------------------------------------

_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        CacheControl,
        Document,
        Image,
        Message,
        OutputFormat,
        Reasoning,
        ReasoningConfig,
        RedactedReasoning,
        Refusal,
        Request,
        Response,
        Text,
        Tool,
        ToolCall,
        ToolChoice,
        ToolResult,
        Usage,
        UserLocation,
        Citation,
        SearchResult,
        WebSearch,
        WebSearchCall,
    )
}


def settings_of(request: Request) -> Request:
    """``request`` without its conversation: what its answer echoes (its instructions,
    tools, formats and options), kept with the answer."""
    return dataclasses.replace(
        request, messages=(), system=request.system[: request.transient_system]
    )


#: The tag of a wrapped mapping (see :func:`to_plain`): no canonical type is named so.
_MAPPING = "{}"


def to_plain(value: Any) -> Any:
    """Canonical values as JSON-ready data, each dataclass tagged with its type (a
    mapping of the client's own, such as a schema, holding that tag is wrapped)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"~": type(value).__name__, **fields}
    if isinstance(value, Mapping):
        plain = {k: to_plain(v) for k, v in value.items()}
        return {"~": _MAPPING, "items": plain} if "~" in plain else plain
    if isinstance(value, tuple | list):
        return [to_plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def from_plain(value: Any) -> Any:
    """The inverse of :func:`to_plain` (arrays are tuples, as canonical values hold them)."""
    if isinstance(value, list):
        return tuple(from_plain(item) for item in value)
    if isinstance(value, dict) and (value.get("~") == _MAPPING or "~" not in value):
        return _json(value)  # a mapping of the client's: plain JSON, its arrays lists
    if isinstance(value, dict) and "~" in value:
        cls = _TYPES[value["~"]]
        fields = {k: from_plain(v) for k, v in value.items() if k != "~"}
        if cls is Response:
            fields["finish"] = FinishReason(fields["finish"])
        return cls(**fields)
    return value


def _json(value: Any) -> Any:
    """A mapping's value kept by :func:`to_plain`, as the client's JSON it was."""
    if isinstance(value, dict) and value.get("~") == _MAPPING:
        value = value["items"]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(item) for item in value]
    return value
