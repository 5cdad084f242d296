"""The :class:`Dialect` protocol: everything the engine knows about one API format.

A dialect is a wire format (OpenAI Chat Completions, OpenAI Responses,
Anthropic Messages, Gemini generateContent), not a provider: several providers
share one, and one provider may speak several on different paths (Copilot
serves OpenAI Chat and, on ``/v1/messages``, Anthropic Messages). The engine
asks the dialect of the request's path, never the adapter, for the model a
body names, whether it asks for a stream, how the proxy's own errors look and
how token usage is reported.

Dialects are pure: functions of a path or a parsed JSON payload, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable
from urllib.parse import unquote

from .._adapter import JSON, Usage
from .._exceptions import ProxyError
from .._json import dumps

if TYPE_CHECKING:
    from .canonical import Codec


@runtime_checkable
class Dialect(Protocol):
    """An API format, as the engine uses it (the built-ins implement it).

    A custom provider with a format of its own implements this protocol (or
    subclasses a built-in and overrides what differs) and lists it in its
    adapter's ``dialects``.
    """

    #: A short, stable name (``"openai-chat"``), for events, logs and metrics.
    name: ClassVar[str]
    #: Request headers in which clients of this format send their key (lower-case).
    credential_headers: ClassVar[frozenset[bytes]]
    #: Query parameters in which clients of this format may send their key.
    credential_params: ClassVar[frozenset[str]]
    #: The query parameter its SDKs put a key in when they use one (``"key"``), or ``None``.
    key_param: ClassVar[str | None]
    #: Request headers that pick which account or project a key bills: the operator's
    #: to set, never a client's.
    account_headers: ClassVar[frozenset[bytes]]
    #: Headers its SDKs send besides credentials (an API version, beta flags), for CORS;
    #: ``*`` within a name matches any run of characters.
    client_headers: ClassVar[tuple[str, ...]]
    #: Substrings of every streamed event that :meth:`usage_of` and :meth:`model_of`
    #: take something from; an event containing neither is not parsed. ``None``:
    #: parse every event.
    usage_hints: ClassVar[tuple[str, str] | None]
    #: A substring of every streamed event :meth:`finish_reasons_of` reads (with
    #: ``usage_hints``: events with none of them are not parsed); ``None``: none.
    #: Specific enough that the other events lack it (a key with a string value).
    finish_hint: ClassVar[str | None]
    #: Translation to and from the canonical form, for the gateway; ``None``: none.
    codec: ClassVar[Codec | None]
    #: Where a provider serves each operation of this format (``"generate"``,
    #: ``"count_tokens"``), below its base URL: the gateway's upstream paths.
    operations: ClassVar[Mapping[str, str]]
    #: A request header only this format's SDKs send (``anthropic-version``), by which
    #: the proxy's own endpoints tell which format a client speaks; ``None``: none.
    client_marker: ClassVar[bytes | None]

    def recognizes(self, path: str) -> bool:
        """Whether ``path`` (below the base URL, percent-encoded) is one of this format's."""
        ...

    def model_in_path(self, path: str) -> str | None:
        """The model a path names (Gemini's ``/models/{model}:method``), if any."""
        ...

    def model_of(self, payload: JSON) -> str | None:
        """The model named by a request body, a response body or a streamed event."""
        ...

    def streams(self, body: JSON, path: str) -> bool:
        """Whether the request (its parsed body and path) asks for a streamed answer."""
        ...

    def usage_of(self, payload: JSON) -> Usage | None:
        """Token usage in one response body or one streamed event, normalised."""
        ...

    def output_limit_of(self, body: JSON) -> int | None:
        """The most output tokens a request body allows (its ``max_tokens``), if it says."""
        ...

    def finish_reasons_of(self, payload: JSON) -> tuple[str, ...]:
        """Why the answer ended, as the provider says it, in one response body or event."""
        ...

    def error_body(self, error: ProxyError, request_id: str) -> bytes:
        """The proxy's own error in this format's JSON error body."""
        ...

    def model_list(self, models: Sequence[Mapping[str, Any]], has_more: bool) -> dict[str, Any]:
        """The model catalog's page (``provider/model`` ids) as this format lists models."""
        ...

    def model_entry(self, model: Mapping[str, Any]) -> dict[str, Any]:
        """One model of the catalog as this format describes one."""
        ...

    #: The prefix of a WebSocket subprotocol in which its browser clients send a key
    #: (``openai-insecure-api-key.``), or ``None``.
    key_subprotocol: ClassVar[str | None]
    #: Substrings of a socket message that :meth:`socket_turn` reads something from;
    #: a message containing none of them is relayed without being parsed.
    socket_hints: ClassVar[tuple[str, ...]]

    def socket_turn(self, payload: JSON) -> Literal["start", "end"] | None:
        """On a relayed socket: ``"start"`` for a client message that starts a billed
        turn (``response.create``), ``"end"`` for a provider message that ends one
        (and carries its usage), else ``None``."""
        ...

    def socket_error(self, error: ProxyError) -> str | None:
        """A refused turn as this format's socket error message; ``None``: the format
        has none, so the socket is closed instead."""
        ...


class BaseDialect:
    """Defaults for a dialect: the model in the body, ``"stream": true``, OpenAI's errors.

    Dialects hold no state: two instances of one class are equal.
    """

    name: ClassVar[str] = ""
    credential_headers: ClassVar[frozenset[bytes]] = frozenset()
    credential_params: ClassVar[frozenset[str]] = frozenset()
    key_param: ClassVar[str | None] = None
    account_headers: ClassVar[frozenset[bytes]] = frozenset()
    client_headers: ClassVar[tuple[str, ...]] = ()
    usage_hints: ClassVar[tuple[str, str] | None] = None
    finish_hint: ClassVar[str | None] = None
    #: The translation to and from the canonical form, for the gateway; ``None``: none.
    codec: ClassVar[Codec | None] = None
    operations: ClassVar[Mapping[str, str]] = {}
    client_marker: ClassVar[bytes | None] = None
    #: The request field that names the client's prompt cache (OpenAI's
    #: ``prompt_cache_key``), by which a sticky route keeps a conversation on one
    #: deployment; ``None``: the format has none.
    cache_key_field: ClassVar[str | None] = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def recognizes(self, path: str) -> bool:
        return False

    def model_in_path(self, path: str) -> str | None:
        return None

    def model_of(self, payload: JSON) -> str | None:
        return top_level_model(payload)

    def streams(self, body: JSON, path: str) -> bool:
        return stream_flag(body)

    def usage_of(self, payload: JSON) -> Usage | None:
        return None

    def output_limit_of(self, body: JSON) -> int | None:
        return None

    def finish_reasons_of(self, payload: JSON) -> tuple[str, ...]:
        return ()

    def error_body(self, error: ProxyError, request_id: str) -> bytes:
        return openai_error(error)

    def model_list(self, models: Sequence[Mapping[str, Any]], has_more: bool) -> dict[str, Any]:
        """``{"object": "list", "data": [...], "has_more"}``: OpenAI's list, most SDKs' too."""
        return {"object": "list", "data": [dict(m) for m in models], "has_more": has_more}

    def model_entry(self, model: Mapping[str, Any]) -> dict[str, Any]:
        return dict(model)

    key_subprotocol: ClassVar[str | None] = None
    socket_hints: ClassVar[tuple[str, ...]] = ()

    def socket_turn(self, payload: JSON) -> Literal["start", "end"] | None:
        return None

    def socket_error(self, error: ProxyError) -> str | None:
        return None


def route(path: str) -> str:
    """``path`` percent-decoded and without a trailing ``/``.

    Decoded so that ``/v1/m%65ssages`` (which the provider reads as
    ``/v1/messages``) is recognised as what it is.
    """
    return unquote(path).rstrip("/")


def int_count(value: Any) -> int | None:
    """A token count: a non-negative integer, else ``None`` (absent)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def get(mapping: Any, key: str) -> Any:
    """``mapping[key]`` when ``mapping`` is a JSON object that has it, else ``None``."""
    return mapping.get(key) if isinstance(mapping, dict) else None


def usage(
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read: int | None = None,
    cache_write: int | None = None,
    reasoning: int | None = None,
    web_searches: int | None = None,
) -> Usage | None:
    """A :class:`Usage`, or ``None`` when nothing was reported."""
    if input_tokens is output_tokens is cache_read is cache_write is web_searches is None:
        return None
    return Usage(input_tokens, output_tokens, cache_read, cache_write, reasoning, web_searches)


def first_count(body: JSON, *keys: str) -> int | None:
    """The first of ``keys`` in a JSON object that holds a token count."""
    for key in keys:
        count = int_count(get(body, key))
        if count is not None:
            return count
    return None


def choice_reasons(payload: JSON, choices: str, key: str) -> tuple[str, ...]:
    """The string ``key`` of each object in the list ``payload[choices]``."""
    items = get(payload, choices)
    if not isinstance(items, list):
        return ()
    return tuple(reason for item in items if isinstance(reason := get(item, key), str))


def top_level_model(payload: JSON) -> str | None:
    """A top-level ``model`` string."""
    if isinstance(payload, dict):  # (not through get(): this runs for every request)
        model = payload.get("model")
        if isinstance(model, str):
            return model
    return None


def stream_flag(body: JSON) -> bool:
    """``"stream": true`` in a JSON body (OpenAI's and Anthropic's way to ask)."""
    return get(body, "stream") is True


def openai_error(error: ProxyError) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI answers errors."""
    return dumps(
        {"error": {"message": error.message, "type": error.kind, "param": None, "code": error.kind}}
    )
