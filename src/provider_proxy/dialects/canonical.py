"""The canonical form: one request, response and stream vocabulary between API formats.

The gateway translates a client's format into these values and these values
into the provider's format (:mod:`provider_proxy.dialects` owns each codec).
Everything here is a slotted dataclass the type checker holds frozen (built by
a plain ``__init__``: see :func:`~provider_proxy._adapter.facts`) or an enum:
plain data, no I/O.

**Lossless or loud.** A decoder maps every field of a client's request, or
raises :class:`Unsupported` naming a field that would change what the model
does but cannot be carried, or drops a field that has no effect and returns
its name. Each codec states the fate of every field in a fidelity table
(:data:`Fidelity` values), which the docs are generated from and the tests
check the codec against.

::

    ProxyError
    └── BadRequest                   400
        └── Unsupported              400  unsupported_field   (.field names it)
    └── UntranslatableResponse       502  untranslatable_response (an unknown stop reason, ...)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import field
from typing import Any, Literal, Protocol, runtime_checkable

from .._adapter import Usage as ProxyUsage
from .._adapter import facts
from .._exceptions import BadRequest, ProxyError

# -- errors -----------------------------------------------------------------------------


class Unsupported(BadRequest):
    """A request field that changes what the model does and cannot be carried.

    :param field: the field's path in the body it came from (``"n"``,
        ``"messages[2].content[0].input_audio"``).
    """

    kind = "unsupported_field"

    def __init__(self, field: str, reason: str = "") -> None:
        message = f"The field {field!r} is not supported when translating this request"
        super().__init__(f"{message}: {reason}" if reason else f"{message}.")
        self.field = field


class UntranslatableResponse(ProxyError):
    """The provider answered something the client's format cannot say (502).

    An unknown stop reason is one: it is never passed off as a plain "stop".
    """

    status_code = 502
    kind = "untranslatable_response"


class Fidelity(str, enum.Enum):
    """What a codec does with one request field (a row of a fidelity table)."""

    MAPPED = "mapped"
    REFUSED = "refused"
    DROPPED = "dropped (no effect)"


@facts
class Rule:
    """One row of a fidelity table: a field, its fate and, where it has one, the condition."""

    fate: Fidelity
    note: str = ""


#: A fidelity table: field path -> its rule.
FidelityTable = Mapping[str, Rule]


# -- content ----------------------------------------------------------------------------


@facts
class CacheControl:
    """A prompt-cache breakpoint (Anthropic's ``cache_control``), kept where a format has it."""

    type: str = "ephemeral"
    ttl: str | None = None


@facts
class Citation:
    """A web page that a stretch of an answer's text cites (a web search's source).

    ``start``/``end`` are character offsets into the :class:`Text` part that
    holds the citation (``None``: the whole part); in a stream, into the text
    streamed since the last event that was not text. ``opaque`` is the
    provider's own handle of the source (Anthropic's ``encrypted_index``),
    sent back to it unchanged.
    """

    url: str
    title: str | None = None
    cited_text: str | None = None
    start: int | None = None
    end: int | None = None
    opaque: str | None = None


@facts
class Text:
    """Plain text (with the web sources it cites, in an answer that searched)."""

    text: str
    cache_control: CacheControl | None = None
    citations: tuple[Citation, ...] = ()


@facts
class Image:
    """An image by ``url`` (http(s)), or inline as base64 ``data`` with its ``media_type``."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    cache_control: CacheControl | None = None


@facts
class Document:
    """A document: base64 ``data`` (a PDF) or plain ``text``, with ``media_type``; or a ``url``."""

    media_type: str | None = None
    data: str | None = None
    text: str | None = None
    url: str | None = None
    title: str | None = None
    cache_control: CacheControl | None = None


@facts
class ToolCall:
    """The model's call of a tool; ``arguments`` is the JSON text of the input object."""

    id: str
    name: str
    arguments: str
    cache_control: CacheControl | None = None


@facts
class ToolResult:
    """What a tool answered to the call ``call_id``."""

    call_id: str
    content: tuple[Text | Image | Document, ...]
    is_error: bool = False
    cache_control: CacheControl | None = None


@facts
class Reasoning:
    """The model's visible reasoning, with the provider's opaque ``signature`` when it gave one."""

    text: str
    signature: str | None = None


@facts
class RedactedReasoning:
    """Reasoning the provider returned encrypted (``data``), to be sent back verbatim."""

    data: str


@facts
class Refusal:
    """The model's refusal to answer, as text."""

    text: str


@facts
class SearchResult:
    """One page a web search found; ``opaque`` is the provider's encrypted copy of it
    (Anthropic's ``encrypted_content``), which only it can read back."""

    url: str
    title: str | None = None
    page_age: str | None = None
    opaque: str | None = None


@facts
class WebSearchCall:
    """The provider ran its built-in web search: the ``queries`` and what it found.

    ``error`` is the provider's code when the search failed (``max_uses_exceeded``, ...).
    """

    id: str
    queries: tuple[str, ...]
    results: tuple[SearchResult, ...] = ()
    error: str | None = None


Part = (
    Text
    | Image
    | Document
    | ToolCall
    | ToolResult
    | Reasoning
    | RedactedReasoning
    | Refusal
    | WebSearchCall
)
Role = Literal["user", "assistant"]


@facts
class Message:
    """One turn of the conversation (system prompts are :attr:`Request.system`)."""

    role: Role
    parts: tuple[Part, ...]


# -- the request ------------------------------------------------------------------------


@facts
class Tool:
    """A function the model may call; ``parameters`` is its JSON schema, passed intact."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    #: Arguments must match the schema exactly (OpenAI's and Anthropic's ``strict``).
    strict: bool | None = None
    cache_control: CacheControl | None = None


@facts
class UserLocation:
    """Where the user roughly is, to localise web search results."""

    city: str | None = None
    region: str | None = None
    country: str | None = None
    timezone: str | None = None


@facts
class WebSearch:
    """The provider's built-in web search, offered to the model (see
    :mod:`provider_proxy.dialects._web_search` for each format's options)."""

    max_uses: int | None = None
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    user_location: UserLocation | None = None
    #: OpenAI's ``search_context_size`` (``low``, ``medium``, ``high``).
    context_size: str | None = None


ToolChoiceKind = Literal["auto", "none", "required", "tool", "web_search"]


@facts
class ToolChoice:
    """Whether the model may, must not, or must call a tool (``"tool"``: the one ``name``d;
    ``"web_search"``: the provider's own search, ``name`` the client's word for it)."""

    kind: ToolChoiceKind
    name: str | None = None


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]


@facts
class ReasoningConfig:
    """How much the model should think: an ``effort`` level or a token ``budget``.

    A decoder fills the one its format has; an encoder to the other converts
    with the codec's documented table.
    """

    effort: ReasoningEffort | None = None
    budget_tokens: int | None = None


OutputKind = Literal["json_object", "json_schema"]


@facts
class OutputFormat:
    """The shape the answer's text must take: any JSON object, or JSON that matches ``schema``.

    Plain text is no format (``Request.output_format`` is ``None``);
    :mod:`provider_proxy.dialects._output_format` maps it to and from each API.
    """

    kind: OutputKind
    #: The format's name (OpenAI's ``json_schema.name``); ``None`` where the client gave none.
    name: str | None = None
    schema: Mapping[str, Any] | None = None
    #: The answer must match the schema exactly (OpenAI's ``strict``; Anthropic's always is).
    strict: bool | None = None
    description: str | None = None
    #: The client's field it came from, so that a refusal names what the client sent.
    source: str = field(default="output_format", compare=False)


@facts
class Request:
    """A generation request, format-neutral."""

    model: str
    messages: tuple[Message, ...]
    system: tuple[Text, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    #: ``False``: at most one tool call per answer; ``None``: the provider's default.
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    #: A streaming client asked to be told the usage (Anthropic's always are).
    stream_usage: bool = False
    #: An end-user id, for the provider's abuse monitoring.
    user: str | None = None
    reasoning: ReasoningConfig | None = None
    #: Keep this conversation and its answer, so a later request can continue it by the
    #: answer's id (a stateful client format on a provider without server-side state).
    store: bool = False
    #: The id of a kept answer whose conversation this request continues.
    continues: str | None = None
    #: How many of the first :attr:`system` texts are for this request only, not kept
    #: with its conversation (the Responses API's ``instructions``).
    transient_system: int = 0
    #: The shape the answer's text must take; ``None``: plain text.
    output_format: OutputFormat | None = None
    #: The provider's built-in web search is offered to the model.
    web_search: WebSearch | None = None
    #: The client's own labels of the request (the Responses API's ``metadata``): never
    #: sent to a provider, echoed with the answer and kept with it.
    metadata: Mapping[str, str] | None = None
    #: The client's conversation this request is a turn of (echoed with the answer).
    conversation: str | None = None


# -- the response -----------------------------------------------------------------------


class FinishReason(str, enum.Enum):
    """Why the model stopped."""

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"


@facts
class Usage:
    """Token counts of one answer; ``None`` where the provider did not say.

    ``input_tokens`` counts every prompt token, those read from and written to
    a cache included; ``output_tokens`` every generated token, reasoning
    included (``reasoning_tokens`` says how many of them). Conversions:

    - OpenAI: ``prompt_tokens`` is ``input_tokens`` (it includes
      ``prompt_tokens_details.cached_tokens``, the ``cache_read_tokens``);
      ``completion_tokens`` is ``output_tokens``
      (``completion_tokens_details.reasoning_tokens`` is ``reasoning_tokens``).
    - Anthropic: ``input_tokens`` excludes cached tokens, so the canonical
      ``input_tokens`` is ``input_tokens + cache_read_input_tokens +
      cache_creation_input_tokens``; the latter two are ``cache_read_tokens``
      and ``cache_write_tokens``.

    ``web_searches`` counts the web searches the provider ran and bills
    (Anthropic's ``server_tool_use.web_search_requests``, Responses
    ``web_search_call`` items, a grounded Gemini answer as one).
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    web_searches: int | None = None

    @property
    def uncached_input_tokens(self) -> int | None:
        """The prompt tokens neither read from nor written to a cache (Anthropic's count)."""
        if self.input_tokens is None:
            return None
        return max(
            0, self.input_tokens - (self.cache_read_tokens or 0) - (self.cache_write_tokens or 0)
        )

    def merge(self, later: Usage) -> Usage:
        """These counts updated by a later (cumulative) report: its known values win."""
        return Usage(
            *(
                new if new is not None else old
                for old, new in (
                    (self.input_tokens, later.input_tokens),
                    (self.output_tokens, later.output_tokens),
                    (self.cache_read_tokens, later.cache_read_tokens),
                    (self.cache_write_tokens, later.cache_write_tokens),
                    (self.reasoning_tokens, later.reasoning_tokens),
                    (self.web_searches, later.web_searches),
                )
            )
        )

    def to_usage(self) -> ProxyUsage:
        """As :class:`provider_proxy.Usage` (the same counts)."""
        return ProxyUsage(
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.web_searches,
        )

    @classmethod
    def from_usage(cls, usage: ProxyUsage) -> Usage:
        """From :class:`provider_proxy.Usage` (same meaning)."""
        return cls(
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
            usage.web_searches,
        )

    @classmethod
    def from_anthropic_counts(
        cls,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read: int | None,
        cache_write: int | None,
    ) -> Usage:
        """From Anthropic's counts, whose ``input_tokens`` leaves the cached tokens out."""
        if input_tokens is None:
            total = None
        else:
            total = input_tokens + (cache_read or 0) + (cache_write or 0)
        return cls(total, output_tokens, cache_read, cache_write)


@facts
class Response:
    """A whole (non-streamed) answer."""

    id: str
    model: str
    parts: tuple[Part, ...]
    finish: FinishReason
    usage: Usage = field(default_factory=Usage)
    #: The provider paused a long turn of its own tools (see :class:`Paused`): the
    #: answer is not over, and ``finish`` says nothing yet.
    paused: bool = False


# -- stream events ----------------------------------------------------------------------


@facts
class MessageStart:
    """The answer began (always the first event)."""

    id: str
    model: str


@facts
class TextDelta:
    """More answer text."""

    text: str


@facts
class RefusalDelta:
    """More refusal text."""

    text: str


@facts
class ReasoningDelta:
    """More reasoning text; a run of them (up to a signature) is one reasoning block."""

    text: str


@facts
class ReasoningSignature:
    """The opaque signature of the reasoning block just streamed (it ends the block)."""

    signature: str


@facts
class RedactedReasoningBlock:
    """A whole block of encrypted reasoning."""

    data: str


@facts
class ToolCallStart:
    """A tool call began; ``index`` counts the answer's tool calls from 0."""

    index: int
    id: str
    name: str


@facts
class ToolCallDelta:
    """More of the JSON text of a tool call's arguments."""

    index: int
    arguments: str


@facts
class ToolCallEnd:
    """The tool call's arguments are complete."""

    index: int


@facts
class UsageReport:
    """Token counts so far (cumulative: merge them with :meth:`Usage.merge`)."""

    usage: Usage


@facts
class Finish:
    """The content ended; usage may still follow."""

    reason: FinishReason


@facts
class StreamError:
    """An error from the provider: in the middle of a stream, or as its error answer.

    ``status`` is the HTTP status it maps to, ``kind`` one of :data:`ERROR_KINDS`.
    """

    status: int
    kind: str
    message: str


@facts
class WebSearchDone:
    """The provider ran a web search (its call, whole)."""

    call: WebSearchCall


@facts
class Cited:
    """The text streamed before this event cites ``citation`` (offsets: see :class:`Citation`)."""

    citation: Citation


@facts
class Paused:
    """The provider paused a long turn of its own tools (a server-side search loop) in
    place of a finish: the answer so far goes back to it, unchanged, for the turn to go
    on (the gateway does that; no client format has it)."""


StreamEvent = (
    MessageStart
    | TextDelta
    | RefusalDelta
    | ReasoningDelta
    | ReasoningSignature
    | RedactedReasoningBlock
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | UsageReport
    | Finish
    | StreamError
    | WebSearchDone
    | Cited
    | Paused
)


def all_parts(request: Request) -> list[Part]:
    """Every content part of ``request``: the system prompt's, the messages', and
    those inside tool results."""
    parts: list[Part] = list(request.system)
    for message in request.messages:
        for part in message.parts:
            parts.append(part)
            if isinstance(part, ToolResult):
                parts.extend(part.content)
    return parts


#: The field a codec refuses for an http(s) image URL its format cannot send (only
#: inline images): the gateway then fetches the image, when the operator allows it.
IMAGE_URL = "image.url"


# -- the codec interface ----------------------------------------------------------------


class EmbeddingTranslation(Protocol):
    """A client format's embeddings request on a provider format that embeds otherwise.

    Embeddings have no canonical form: each translation is between two formats.
    """

    def decode_request(self, body: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The client's body checked (:class:`Unsupported` naming a field), and the dropped."""
        ...

    def encode_request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """The checked body in the provider's format, for ``model``."""
        ...

    def decode_response(self, answer: Any, request: dict[str, Any], model: str) -> dict[str, Any]:
        """The provider's answer to ``request`` in the client's format."""
        ...


class StreamDecoder(Protocol):
    """A provider's (or client's) stream events in, canonical events out."""

    def feed(self, event: str, data: Any) -> list[StreamEvent]:
        """One SSE event: its name and parsed ``data`` (OpenAI's ``[DONE]`` as the string)."""
        ...

    def feed_text(self, event: str, data: str) -> list[StreamEvent]:
        """One SSE event with its ``data`` as received."""
        ...

    def end(self) -> list[StreamEvent]:
        """The stream ended: a :class:`StreamError` unless it finished properly."""
        ...


class StreamEncoder(Protocol):
    """Canonical events in, the bytes of a format's SSE stream out."""

    def feed(self, event: StreamEvent) -> bytes:
        """What one event becomes (often nothing yet)."""
        ...

    def close(self) -> bytes:
        """The stream's last bytes (nothing after an error: it must not look complete)."""
        ...


@runtime_checkable
class StoredAnswers(Protocol):
    """A client format whose answers can be kept, fetched by id and deleted
    (the gateway keeps them; a codec of such a format implements this too)."""

    def continued(self, body: Any) -> str | None:
        """The id of the answer a client's request body continues, if any (a cheap
        read, for the gateway to tell whether it kept that answer)."""
        ...

    def issue_id(self, token: str) -> str:
        """An answer id as this format writes one, made from a random ``token``."""
        ...

    def dated(self, created: int) -> Codec:
        """This format's codec, writing ``created`` (Unix seconds) as its answers'
        creation time: a kept answer says, as it is sent, the time it is kept under."""
        ...

    def deleted_body(self, response_id: str) -> dict[str, Any]:
        """What deleting the kept answer ``response_id`` is answered with."""
        ...

    def input_items(
        self,
        response_id: str,
        system: tuple[Text, ...],
        turns: tuple[Message, ...],
        query: str,
    ) -> dict[str, Any]:
        """The input of the kept answer ``response_id`` (its kept ``system`` texts and the
        ``turns`` before it) as this format lists it, paged as the ``query`` string asks.

        :raises BadRequest: the query asks for a page this format does not have.
        """
        ...


class Codec(Protocol):
    """One API format to and from the canonical form (a dialect's ``codec``)."""

    #: The fate of each field of a client's request in this format.
    request_fields: FidelityTable
    #: The fate of canonical content this format cannot hold, when encoding to it.
    encode_fields: FidelityTable

    def decode_request(self, body: Any) -> tuple[Request, tuple[str, ...]]:
        """A client's body as canonical, and the names of the fields dropped."""
        ...

    def encode_request(self, request: Request) -> dict[str, Any]:
        """A canonical request as this format's body."""
        ...

    def dropped_by_encoding(self, request: Request) -> tuple[str, ...]:
        """The :attr:`encode_fields` rows dropped (no effect here) in encoding ``request``."""
        ...

    def decode_response(self, body: Any) -> Response:
        """A whole answer in this format as canonical."""
        ...

    def encode_response(self, response: Response, request: Request | None = None) -> dict[str, Any]:
        """A canonical answer in this format; ``request`` is the client's request it answers
        (a format whose answer echoes its request, the Responses API's, reads it)."""
        ...

    def stream_decoder(self) -> StreamDecoder:
        """A fresh decoder for one stream."""
        ...

    def stream_encoder(self, request: Request) -> StreamEncoder:
        """A fresh encoder for the stream answering ``request`` (as the client sent it)."""
        ...

    def encode_error(self, status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
        """A canonical error as this format's ``(status, body)``."""
        ...

    def decode_error(self, status: int, body: Any) -> StreamError:
        """This format's error answer (status and parsed body) as canonical."""
        ...


#: The canonical error kinds, and the status each stands for by default.
ERROR_KINDS: Mapping[str, int] = {
    "invalid_request": 400,
    "authentication": 401,
    "permission": 403,
    "not_found": 404,
    "request_too_large": 413,
    "rate_limit": 429,
    "server_error": 500,
    "overloaded": 503,
    "timeout": 504,
}


def kind_for_status(status: int) -> str:
    """The canonical error kind of an HTTP status a provider answered with."""
    by_status = {
        400: "invalid_request",
        401: "authentication",
        403: "permission",
        404: "not_found",
        413: "request_too_large",
        429: "rate_limit",
        503: "overloaded",
        529: "overloaded",
        504: "timeout",
    }
    if status in by_status:
        return by_status[status]
    return "invalid_request" if 400 <= status < 500 else "server_error"


__all__ = [
    "ERROR_KINDS",
    "IMAGE_URL",
    "CacheControl",
    "Citation",
    "Cited",
    "Codec",
    "Document",
    "EmbeddingTranslation",
    "Fidelity",
    "FidelityTable",
    "Finish",
    "FinishReason",
    "Image",
    "Message",
    "MessageStart",
    "OutputFormat",
    "OutputKind",
    "Part",
    "Paused",
    "Reasoning",
    "ReasoningConfig",
    "ReasoningDelta",
    "ReasoningEffort",
    "ReasoningSignature",
    "RedactedReasoning",
    "RedactedReasoningBlock",
    "Refusal",
    "RefusalDelta",
    "Request",
    "Response",
    "Role",
    "Rule",
    "SearchResult",
    "StoredAnswers",
    "StreamDecoder",
    "StreamEncoder",
    "StreamError",
    "StreamEvent",
    "Text",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolChoice",
    "ToolChoiceKind",
    "ToolResult",
    "Unsupported",
    "UntranslatableResponse",
    "Usage",
    "UsageReport",
    "UserLocation",
    "WebSearch",
    "WebSearchCall",
    "WebSearchDone",
    "all_parts",
    "kind_for_status",
]
