"""The vocabulary every layer shares: a request's context, token usage, credential
checks and model listings.

The contract with a provider, :class:`~provider_proxy.ProviderAdapter`, is in
:mod:`provider_proxy.adapters`; the API formats are :mod:`provider_proxy.dialects`.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from typing_extensions import dataclass_transform

_T = TypeVar("_T")

#: A parsed JSON request body.
JSON = Any


#: The model ids of a provider, by provider name (from the app's cached catalog).
ModelLookup = Callable[[str], Awaitable[Sequence[str]]]


@dataclass_transform(frozen_default=True)
def facts(cls: type[_T]) -> type[_T]:
    """A slotted dataclass that the type checker holds frozen, made by a plain ``__init__``.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``,
    a Python-level call per field, and the engine and the gateway's translation make
    many of these (hashable, compared by value, ``dataclasses.replace``-able as
    before) per request. Nothing assigns to their fields: ``mypy --strict`` refuses
    it, as for a frozen one.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)


@facts
class RequestContext:
    """What a transform or an adapter may know about the request being forwarded.

    Made once per request, so a plain ``__init__`` builds it (see :func:`facts`);
    type checkers hold it frozen: a changed context is ``dataclasses.replace(context, ...)``.
    """

    adapter: str
    method: str
    #: The path below the provider's name, still percent-encoded (``/chat/completions``).
    path: str
    #: The query string as sent, without ``?``.
    query: bytes
    #: The client's headers (lower-case names), as received.
    headers: Sequence[tuple[bytes, bytes]]
    request_id: str
    #: The client's identity when client authentication is configured.
    identity: str | None = None
    #: Headers a transform adds to the upstream request (name -> value); they
    #: replace same-named client headers, so a transform that merges a list
    #: (a beta-flags header) reads the client's value from ``headers`` first.
    upstream_headers: dict[str, str] = field(default_factory=dict)
    #: The model ids a provider lists (by provider name), from the app's model
    #: catalog; ``None`` when the request is not served by an app with one.
    models: ModelLookup | None = None
    #: The model the path names (``/models/{model}:generateContent``, a deployment),
    #: which is the model served whatever the body says; ``None`` when it names none.
    path_model: str | None = None
    #: The name of the path's API format (its :class:`~provider_proxy.dialects.Dialect`).
    dialect: str = ""
    #: Rewriters a transform adds for the answer to this request (the provider's,
    #: before the client or the gateway's translation sees it); the last added is
    #: applied first, as the answer travels back through the transforms.
    answer_rewriters: list[AnswerRewriter] = field(default_factory=list)


class AnswerRewriter(abc.ABC):
    """Rewrites the provider's answer to one request; a transform makes one per request.

    The request side of a transform cannot say everything: a transform that
    teaches a model a convention in the prompt (tool calls as XML) must read
    the convention back out of the answer. The engine asks :meth:`wants` with
    the answer's status and content type (an error or an encoded body is never
    rewritten), then gives it the whole body, or a stream chunk by chunk.
    Rewriters never raise: what they cannot read they pass on unchanged.
    """

    __slots__ = ()

    @abc.abstractmethod
    def wants(self, status: int, content_type: str) -> bool:
        """Whether to rewrite an answer of this status and (lower-case) content type."""

    @abc.abstractmethod
    def whole(self, body: bytes) -> bytes:
        """The new body of a whole (not streamed) answer."""

    @abc.abstractmethod
    def chunk(self, data: bytes) -> bytes:
        """What to send for the next chunk of a streamed answer (may be empty: held back)."""

    @abc.abstractmethod
    def end(self) -> bytes:
        """What is still held back when the stream ends."""


#: Rewrites a parsed request body; returns the new body, or ``None`` for "unchanged".
#: May be a coroutine function. A :class:`~provider_proxy.transforms.Transform`
#: also says which requests it concerns: when every configured transform says
#: no, the body is never read and streams through untouched.
BodyTransform = Callable[[JSON, RequestContext], "JSON | Awaitable[JSON | None] | None"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one exchange, normalised across providers.

    ``input_tokens`` counts every prompt token, cached or not, so
    ``input_tokens + output_tokens`` is the total; ``cache_read_tokens`` and
    ``cache_write_tokens`` say how many of the input tokens were read from or
    written to a prompt cache; ``reasoning_tokens`` how many of the output
    tokens were reasoning. ``web_searches`` counts the web searches the provider
    ran and bills for the answer (each dialect's usage reader says how its format
    reports them). ``None`` means the provider did not say.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    web_searches: int | None = None

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (0 for what is unknown)."""
        return (self.input_tokens or 0) + (self.output_tokens or 0)

    def merge(self, later: Usage) -> Usage:
        """These counts updated by a later report: the later value wins where it has one."""
        return Usage(
            later.input_tokens if later.input_tokens is not None else self.input_tokens,
            later.output_tokens if later.output_tokens is not None else self.output_tokens,
            later.cache_read_tokens
            if later.cache_read_tokens is not None
            else self.cache_read_tokens,
            later.cache_write_tokens
            if later.cache_write_tokens is not None
            else self.cache_write_tokens,
            later.reasoning_tokens if later.reasoning_tokens is not None else self.reasoning_tokens,
            later.web_searches if later.web_searches is not None else self.web_searches,
        )


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether an adapter can serve requests, and if not, why (never a secret)."""

    enabled: bool
    reason: str | None = None


class CredentialState(str, enum.Enum):
    """The outcome of a credential probe."""

    VALID = "valid"
    AUTH_REJECTED = "auth_rejected"
    INCONCLUSIVE = "inconclusive"
    NETWORK_ERROR = "network_error"
    NOT_CONFIGURED = "not_configured"


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    """The result of :meth:`ProviderAdapter.validate_credentials`; holds no key."""

    state: CredentialState
    status_code: int | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model as a provider lists it, normalised."""

    id: str
    provider: str
    display_name: str | None = None
    context_length: int | None = None
    #: Prices as the provider states them (units vary by provider).
    pricing: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
