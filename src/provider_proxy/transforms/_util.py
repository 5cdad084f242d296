"""What the ready-made transforms share: copy-on-write edits, routes, header merging.

The ready-made transforms never mutate the body they are given. They edit
through :class:`Cow`, which copies (shallowly) only the containers on the way
to a change and shares everything else with the input, so ``None`` ("nothing
changed") can be trusted and a caller may keep the parsed original.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .._adapter import JSON, RequestContext
from ..dialects._base import route as decoded_path

# Path suffixes (below the adapter's base URL) of the JSON endpoints the
# transforms know. Suffixes, so that a gateway's prefix (Azure's
# ``/openai/deployments/{name}``, Gemini's ``/v1beta/openai``) still matches.
CHAT = ("/chat/completions",)
COMPLETIONS = ("/completions",)  # legacy completions; also matches chat
RESPONSES = ("/responses",)
RESPONSES_INPUT_TOKENS = ("/responses/input_tokens",)
MESSAGES = ("/v1/messages",)
COUNT_TOKENS = ("/v1/messages/count_tokens",)
ANTHROPIC_COMPLETE = ("/v1/complete",)
#: Other OpenAI endpoints whose JSON body names a model.
OTHER_MODEL_ROUTES = ("/embeddings", "/moderations", "/audio/speech", "/images/generations")
#: The Realtime socket, whose model is named at the handshake (``?model=``): the
#: relay checks it as the body ``{"model": ...}`` of a POST here.
REALTIME = ("/realtime",)

#: Where a chat-like conversation is sent: OpenAI chat and Responses, Anthropic messages.
CONVERSATION_ROUTES = CHAT + RESPONSES + MESSAGES + COUNT_TOKENS
#: Where a request asks a model to generate (and so takes sampling parameters).
GENERATION_ROUTES = COMPLETIONS + RESPONSES + MESSAGES + ANTHROPIC_COMPLETE
#: Every JSON endpoint whose body carries a top-level ``model``.
MODEL_ROUTES = (
    COMPLETIONS
    + RESPONSES
    + RESPONSES_INPUT_TOKENS
    + MESSAGES
    + COUNT_TOKENS
    + ANTHROPIC_COMPLETE
    + OTHER_MODEL_ROUTES
    + REALTIME
)


def route(context: RequestContext) -> str:
    """The request's path, percent-decoded and without a trailing ``/``.

    Decoded so that ``/v1/m%65ssages`` (which the provider reads as
    ``/v1/messages``) cannot slip past a transform that concerns messages.
    """
    return decoded_path(context.path)


def posts_to(context: RequestContext, suffixes: tuple[str, ...], *, any_type: bool = False) -> bool:
    """Whether the request is a ``POST`` to a path ending in one of ``suffixes``.

    A body labelled ``multipart/form-data`` is not JSON and is left alone,
    unless ``any_type``: a policy that must see every body of its routes reads
    them whatever their label says (a body that is not JSON is then refused).
    """
    if context.method != "POST" or not route(context).endswith(suffixes):
        return False
    if any_type:
        return True
    for name, value in context.headers:
        if name == b"content-type":
            return not value.lower().lstrip().startswith(b"multipart/")
    return True


class Cow:
    """Edits a JSON tree copy-on-write; the tree it was given is never changed.

    :meth:`at` returns a writable container at a path: the root and every
    container on the way are shallow-copied the first time they are reached,
    everything else stays shared with the original. Call it only to make a
    change, so that :attr:`changed` means the result differs.
    """

    __slots__ = ("_own", "root")

    def __init__(self, root: JSON) -> None:
        self.root: JSON = root
        # The copies made so far, by id (held here so ids stay unique).
        self._own: dict[int, Any] = {}

    @property
    def changed(self) -> bool:
        """Whether anything was copied for a change."""
        return bool(self._own)

    @property
    def result(self) -> JSON | None:
        """The new tree, or ``None`` when nothing changed."""
        return self.root if self._own else None

    def at(self, *path: str | int) -> Any:
        """The container at ``path`` (from the root), made writable."""
        node = self.root = self._owned(self.root)
        for key in path:
            child = self._owned(node[key])
            node[key] = child
            node = child
        return node

    def _owned(self, value: Any) -> Any:
        if id(value) in self._own:
            return value
        if isinstance(value, dict):
            copy: Any = dict(value)
        elif isinstance(value, list):
            copy = list(value)
        else:
            raise TypeError(f"not a JSON container: {type(value).__name__}")
        self._own[id(copy)] = copy
        return copy


def merge_header_token(context: RequestContext, name: str, token: str) -> None:
    """Add ``token`` to the comma-separated header ``name`` of the upstream request.

    The list starts from a value an earlier transform set, else from the
    client's (every occurrence of the header); tokens are deduplicated
    (case-insensitively) and their order kept, so the client's flags survive.
    """
    key = next((k for k in context.upstream_headers if k.lower() == name), None)
    if key is not None:
        current = context.upstream_headers[key]
    else:
        raw = name.encode("latin-1")
        current = ",".join(v.decode("latin-1") for k, v in context.headers if k.lower() == raw)
    present = [item.strip() for item in current.split(",") if item.strip()]
    tokens: list[str] = []
    seen: set[str] = set()
    for item in (*present, token):
        if item.lower() not in seen:
            seen.add(item.lower())
            tokens.append(item)
    context.upstream_headers[key or name] = ",".join(tokens)


def check_names(value: Iterable[str] | str, what: str) -> tuple[str, ...]:
    """A tuple of non-empty strings, or :class:`ValueError` saying what is wrong."""
    if isinstance(value, str):
        raise ValueError(f"{what} must be a list of strings, not the string {value!r}.")
    names = tuple(value)
    for item in names:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{what} must hold non-empty strings; got {item!r}.")
    return names


def check_json(value: object, what: str) -> None:
    """:class:`ValueError` unless ``value`` can be sent as JSON."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{what} must be JSON (str, number, bool, None, list, dict): {exc}"
        ) from None
