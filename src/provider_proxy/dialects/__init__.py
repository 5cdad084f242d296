"""API formats as dialects: what the engine knows about each wire format.

Each built-in dialect owns one format's paths, where its model and stream flag
are, its error body, its usage reader and the headers its clients send keys
in. Adapters say which dialect each of their paths speaks.
"""

import dataclasses
from collections.abc import Iterable, Mapping

from . import canonical
from ._base import BaseDialect, Dialect
from ._gemini_embed import GeminiClientEmbeddings, GeminiEmbeddings
from ._token_counts import AnthropicCounting, GeminiCounting, TokenCounting
from ._token_estimate import Tokenizer, estimate_input_tokens, offline_tokenizer
from .anthropic_messages import AnthropicMessages, AnthropicMessagesCodec
from .gemini import GATEWAY_METHODS, Gemini, GeminiCodec, catalog_model, catalog_page, gateway_call
from .openai_chat import OpenAIChat, OpenAIChatCodec
from .openai_responses import OpenAIResponses, OpenAIResponsesCodec

#: The built-in dialects, one instance each.
BUILTIN: tuple[Dialect, ...] = (OpenAIChat(), OpenAIResponses(), AnthropicMessages(), Gemini())

#: The gateway's endpoints, below the mount: the client's format and the operation.
GATEWAY: Mapping[str, tuple[Dialect, str]] = {
    "/v1/chat/completions": (OpenAIChat(), "generate"),
    "/v1/messages": (AnthropicMessages(), "generate"),
    "/v1/messages/count_tokens": (AnthropicMessages(), "count_tokens"),
    "/v1/responses": (OpenAIResponses(), "generate"),
    "/v1/embeddings": (OpenAIChat(), "embed"),
}

#: Below the mount, where the gateway's kept answers are fetched and deleted
#: (``{prefix}{id}``), and the format their clients speak.
STORED_ANSWERS: Mapping[str, Dialect] = {"/v1/responses/": OpenAIResponses()}


def stored_answer(path: str) -> tuple[Dialect, str] | None:
    """The format and the id of a kept answer's path below the mount
    (``/v1/responses/{id}``), or ``None`` when the path is not one."""
    for prefix, dialect in STORED_ANSWERS.items():
        if path.startswith(prefix):
            return dialect, path[len(prefix) :]
    return None


#: Below the mount, where the gateway's conversations are (``{path}``, ``{path}/{id}``,
#: ``{path}/{id}/items``...), and the format their clients speak.
CONVERSATIONS: Mapping[str, Dialect] = {"/v1/conversations": OpenAIResponses()}


def conversation_path(path: str) -> tuple[Dialect, str] | None:
    """The format and the rest (``""``, ``"/{id}"``, ``"/{id}/items"``...) of a path
    below the mount that names the gateway's conversations, or ``None``."""
    for prefix, dialect in CONVERSATIONS.items():
        if path == prefix or path.startswith(prefix + "/"):
            return dialect, path[len(prefix) :]
    return None


#: The formats the gateway can send a built-in web search in (the provider runs its
#: own search tool): a request with one goes to the provider in one of these when
#: the provider speaks one to the gateway.
SEARCHING: frozenset[str] = frozenset({OpenAIResponses.name, AnthropicMessages.name, Gemini.name})

#: Embeddings between formats, by (client format, provider format): a client's
#: ``/v1/embeddings`` on a provider that embeds in another format.
EMBEDDINGS: Mapping[tuple[str, str], canonical.EmbeddingTranslation] = {
    (OpenAIChat.name, Gemini.name): GeminiEmbeddings(),
    (Gemini.name, OpenAIChat.name): GeminiClientEmbeddings(),
}

#: Token-count requests and answers, by format: a client's count on a provider of
#: another format that counts (translated), or the gateway's estimate in its shape.
TOKEN_COUNTS: Mapping[str, TokenCounting] = {
    AnthropicMessages.name: AnthropicCounting(),
    Gemini.name: GeminiCounting(),
}


@dataclasses.dataclass(frozen=True, slots=True)
class PathCall:
    """A gateway request whose path names the model: its format, operation and model."""

    dialect: Dialect
    #: ``"generate"``, ``"stream"`` when the path asks for a stream, ``"count_tokens"``,
    #: ``"embed"`` (a batch) or ``"embed_content"`` (one).
    operation: str
    model: str
    #: The path asks for a stream (the body of such a format does not say).
    stream: bool
    #: Why the request cannot be served as asked (a 400 in the format), or ``None``.
    refusal: str | None = None


def gateway_in_path(path: str, query: bytes) -> PathCall | None:
    """A gateway endpoint whose path names the model, Gemini's
    ``/{v1beta|v1}/models/{model}:generateContent`` (and ``:streamGenerateContent``,
    ``:countTokens``, ``:embedContent``, ``:batchEmbedContents``), else ``None``.
    A stream must be asked for as server-sent events (``alt=sse``), the only
    stream the gateway writes.
    """
    found = gateway_call(path)
    if found is None:
        return None
    model, method = found
    stream = method == "streamGenerateContent"
    refusal = None
    operation = GATEWAY_METHODS.get(method, "")
    if not operation:
        served = ", ".join(GATEWAY_METHODS)
        refusal = f"The gateway serves {served} of any model, not {method}."
    elif stream and b"alt=sse" not in query.split(b"&"):
        refusal = "The gateway streams streamGenerateContent as server-sent events: add ?alt=sse."
    return PathCall(Gemini(), operation, model, stream, refusal)


@dataclasses.dataclass(frozen=True, slots=True)
class CatalogCall:
    """A model-catalog request in a format that lists models on its own paths."""

    dialect: Dialect
    #: The model asked for (``GET .../models/{model}``), or ``None`` for the list.
    model: str | None

    def page(self, query: bytes) -> tuple[int, str | None]:
        """The list's page size and the model it continues after, from the query."""
        return catalog_page(query)


def catalog_in_path(path: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> CatalogCall | None:
    """Gemini's ``/v1beta/models`` and ``/v1beta/models/{model}`` (and ``/v1/...`` when
    the client is Google's SDK, see :func:`client_dialect`), answered from the gateway's
    model catalog in Gemini's shape, else ``None``."""
    model = catalog_model(path, "v1beta")
    if model is None and client_dialect(headers) == Gemini():
        model = catalog_model(path, "v1")
    if model is None:
        return None
    return CatalogCall(Gemini(), model or None)


#: The format of the proxy's own endpoints (``/v1/models``) and of unknown routes.
DEFAULT: Dialect = OpenAIChat()


def client_dialect(headers: Iterable[tuple[bytes, bytes]]) -> Dialect:
    """The format a client speaks, by the header only its SDKs send; else the default."""
    names = {name for name, _ in headers}
    for dialect in BUILTIN:
        if dialect.client_marker is not None and dialect.client_marker in names:
            return dialect
    return DEFAULT


#: Every header in which a client of a built-in format sends a key: never forwarded.
CREDENTIAL_HEADERS: frozenset[bytes] = frozenset().union(
    *(dialect.credential_headers for dialect in BUILTIN)
)
#: The client headers no built-in format forwards: credentials and account scope.
PRIVATE_HEADERS: frozenset[bytes] = CREDENTIAL_HEADERS.union(
    *(dialect.account_headers for dialect in BUILTIN)
)
#: Query parameters in which clients of a built-in format send a key.
KEY_PARAMS: frozenset[str] = frozenset(d.key_param for d in BUILTIN if d.key_param is not None)
#: Prefixes of the WebSocket subprotocols in which browser clients of a built-in format
#: send a key: checked by the guards, never forwarded.
KEY_SUBPROTOCOLS: tuple[str, ...] = tuple(
    dict.fromkeys(d.key_subprotocol for d in BUILTIN if d.key_subprotocol is not None)
)
#: Headers browser clients of the built-in formats send (for CORS), credentials included.
CLIENT_HEADERS: tuple[str, ...] = tuple(
    dict.fromkeys(
        name
        for dialect in BUILTIN
        for name in (
            *sorted(h.decode("latin-1") for h in dialect.credential_headers),
            *dialect.client_headers,
        )
    )
)

__all__ = [
    "BUILTIN",
    "CLIENT_HEADERS",
    "CONVERSATIONS",
    "CREDENTIAL_HEADERS",
    "DEFAULT",
    "EMBEDDINGS",
    "GATEWAY",
    "KEY_PARAMS",
    "KEY_SUBPROTOCOLS",
    "PRIVATE_HEADERS",
    "SEARCHING",
    "STORED_ANSWERS",
    "TOKEN_COUNTS",
    "AnthropicMessages",
    "AnthropicMessagesCodec",
    "BaseDialect",
    "CatalogCall",
    "Dialect",
    "Gemini",
    "GeminiCodec",
    "OpenAIChat",
    "OpenAIChatCodec",
    "OpenAIResponses",
    "OpenAIResponsesCodec",
    "PathCall",
    "TokenCounting",
    "Tokenizer",
    "canonical",
    "catalog_in_path",
    "conversation_path",
    "estimate_input_tokens",
    "gateway_in_path",
    "offline_tokenizer",
    "stored_answer",
]
