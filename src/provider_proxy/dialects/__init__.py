"""API formats as dialects: what the engine knows about each wire format.

Each built-in dialect owns one format's paths, where its model and stream flag
are, its error body, its usage reader and the headers its clients send keys
in. Adapters say which dialect each of their paths speaks.
"""

import dataclasses
from collections.abc import Iterable, Mapping

from . import canonical
from ._base import BaseDialect, Dialect
from ._gemini_embed import GeminiEmbeddings
from ._token_estimate import Tokenizer, estimate_input_tokens, offline_tokenizer
from .anthropic_messages import AnthropicMessages, AnthropicMessagesCodec
from .gemini import GATEWAY_METHODS, Gemini, GeminiCodec, gateway_call
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


#: The formats the gateway can send a built-in web search in (the provider runs its
#: own search tool): a request with one goes to the provider in one of these when
#: the provider speaks one to the gateway.
SEARCHING: frozenset[str] = frozenset({OpenAIResponses.name, AnthropicMessages.name, Gemini.name})

#: Embeddings between formats, by (client format, provider format): a client's
#: ``/v1/embeddings`` on a provider that embeds in another format.
EMBEDDINGS: Mapping[tuple[str, str], canonical.EmbeddingTranslation] = {
    (OpenAIChat.name, Gemini.name): GeminiEmbeddings(),
}


@dataclasses.dataclass(frozen=True, slots=True)
class PathCall:
    """A gateway request whose path names the model: its format, operation and model."""

    dialect: Dialect
    #: ``"generate"``, or ``"stream"`` when the path asks for a stream.
    operation: str
    model: str
    #: The path asks for a stream (the body of such a format does not say).
    stream: bool
    #: Why the request cannot be served as asked (a 400 in the format), or ``None``.
    refusal: str | None = None


def gateway_in_path(path: str, query: bytes) -> PathCall | None:
    """A gateway endpoint whose path names the model, Gemini's
    ``/{v1beta|v1}/models/{model}:generateContent`` (and ``:streamGenerateContent``),
    else ``None``. A stream must be asked for as server-sent events (``alt=sse``),
    the only stream the gateway writes.
    """
    found = gateway_call(path)
    if found is None:
        return None
    model, method = found
    stream = method == "streamGenerateContent"
    refusal = None
    if method not in GATEWAY_METHODS:
        refusal = f"The gateway serves {' and '.join(GATEWAY_METHODS)} of any model, not {method}."
    elif stream and b"alt=sse" not in query.split(b"&"):
        refusal = "The gateway streams streamGenerateContent as server-sent events: add ?alt=sse."
    return PathCall(Gemini(), "stream" if stream else "generate", model, stream, refusal)


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
    "CREDENTIAL_HEADERS",
    "DEFAULT",
    "EMBEDDINGS",
    "GATEWAY",
    "KEY_PARAMS",
    "KEY_SUBPROTOCOLS",
    "PRIVATE_HEADERS",
    "SEARCHING",
    "STORED_ANSWERS",
    "AnthropicMessages",
    "AnthropicMessagesCodec",
    "BaseDialect",
    "Dialect",
    "Gemini",
    "GeminiCodec",
    "OpenAIChat",
    "OpenAIChatCodec",
    "OpenAIResponses",
    "OpenAIResponsesCodec",
    "PathCall",
    "Tokenizer",
    "canonical",
    "estimate_input_tokens",
    "gateway_in_path",
    "offline_tokenizer",
    "stored_answer",
]
