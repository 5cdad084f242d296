"""Google's Gemini API: ``generateContent`` and friends on ``/{version}/models/{model}:...``."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from .._adapter import JSON, Usage
from .._exceptions import BadRequest, ProxyError
from .._json import dumps
from . import _gemini_codec as _codec
from ._base import (
    BaseDialect,
    choice_reasons,
    first_count,
    get,
    int_count,
    route,
    top_level_model,
    usage,
)
from ._gemini_stream import StreamDecoder, StreamEncoder
from .canonical import Codec, FidelityTable, Request, Response, StreamError

#: Query parameters that carry a Google credential (``key`` is the API key's
#: usual place; ``access_token`` and its alias ``oauth_token`` an OAuth token).
CREDENTIAL_PARAMS = frozenset({"key", "apiKey", "api_key", "access_token", "oauth_token"})

#: A substring of every key the Gemini usage reader looks at (``usageMetadata``).
USAGE_HINT = "usage"

# google.rpc.Code names by HTTP status, as Google's APIs answer errors.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def gemini_usage(payload: Any) -> Usage | None:
    """Gemini ``usageMetadata`` (``generateContent`` and each streamed chunk).

    ``promptTokenCount`` already includes the cached tokens
    (``cachedContentTokenCount``); tokens of tool-use prompts
    (``toolUsePromptTokenCount``) are added to the input and thinking tokens
    (``thoughtsTokenCount``) to the output, so the total matches Gemini's
    ``totalTokenCount``. Streamed chunks repeat the counts so far; the last
    one holds the final counts. An answer grounded in Google Search
    (:func:`grounded`) counts one web search, as Google bills grounded prompts.
    """
    counts = get(payload, "usageMetadata")
    if not isinstance(counts, dict):
        return None
    # Google bills a grounded answer (per prompt): one search, however many queries.
    searches = 1 if grounded(payload) else None
    prompt = int_count(counts.get("promptTokenCount"))
    tools = int_count(counts.get("toolUsePromptTokenCount"))
    candidates = int_count(counts.get("candidatesTokenCount"))
    thoughts = int_count(counts.get("thoughtsTokenCount"))
    return usage(
        None if prompt is None else prompt + (tools or 0),
        None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0),
        int_count(counts.get("cachedContentTokenCount")),
        None,
        thoughts,
        searches,
    )


def grounded(payload: Any) -> bool:
    """Whether an answer (or streamed chunk) was grounded in Google Search: a
    candidate's ``groundingMetadata`` names the queries it ran or the pages it used."""
    candidates = get(payload, "candidates")
    if not isinstance(candidates, list):
        return False
    for candidate in candidates:
        metadata = get(candidate, "groundingMetadata")
        if isinstance(metadata, dict) and (
            metadata.get("webSearchQueries") or metadata.get("groundingChunks")
        ):
            return True
    return False


def model_method(path: str) -> tuple[str, str] | None:
    """``(model, method)`` of a ``.../models/{model}:{method}`` path, else ``None``."""
    decoded = route(path)
    marker = decoded.rfind("/models/")
    if marker < 0:
        return None
    name, colon, method = decoded[marker + len("/models/") :].partition(":")
    if colon and name and method and "/" not in name + method:
        return name, method
    return None


#: The methods of a model the gateway serves to Gemini clients, and the operation of each.
GATEWAY_METHODS = {
    "generateContent": "generate",
    "streamGenerateContent": "stream",
    "countTokens": "count_tokens",
    "embedContent": "embed_content",
    "batchEmbedContents": "embed",
}
#: Gemini's other methods of a model, which the gateway answers with a refusal.
OTHER_METHODS = frozenset({"batchGenerateContent", "predict"})


def gateway_call(path: str) -> tuple[str, str] | None:
    """``(model, method)`` of a gateway path ``/{v1beta|v1}/models/{model}:{method}``.

    The model may hold slashes (``openai/gpt-4.1``, as google-genai writes it
    unencoded, or ``openai%2Fgpt-4.1``); a leading ``models/`` is left out. The
    method is one of :data:`GATEWAY_METHODS` or :data:`OTHER_METHODS` (a model id
    with a colon, ``ollama/llama3:8b``, is no method call).
    """
    decoded = route(path.partition("?")[0])
    for version in ("/v1beta/models/", "/v1/models/"):
        if decoded.startswith(version):
            name, colon, method = decoded[len(version) :].rpartition(":")
            name = name.removeprefix("models/")
            known = method in GATEWAY_METHODS or method in OTHER_METHODS
            if colon and name and known:
                return name, method
    return None


#: What the gateway serves of a catalog model, in Gemini's model list.
GENERATE_METHODS = ("generateContent", "streamGenerateContent", "countTokens")
EMBED_METHODS = ("embedContent", "batchEmbedContents")
#: The largest ``pageSize`` of a model list (Gemini's own bound); its default.
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50


def catalog_model(path: str, version: str) -> str | None:
    """For ``/{version}/models`` ``""``, for ``/{version}/models/{model}`` the model
    (which may hold slashes, ``openai/gpt-4.1``), else ``None``: the gateway's model
    catalog in Gemini's shape."""
    decoded = route(path.partition("?")[0]).rstrip("/")
    prefix = f"/{version}/models"
    if decoded == prefix:
        return ""
    if decoded.startswith(prefix + "/") and ":" not in decoded:
        return decoded[len(prefix) + 1 :].removeprefix("models/")
    return None


def page_token(model_id: str) -> str:
    """The opaque ``pageToken`` of the page after ``model_id``."""
    return base64.urlsafe_b64encode(model_id.encode()).decode("ascii")


def catalog_page(query: bytes) -> tuple[int, str | None]:
    """A model list's ``pageSize`` (default 50, at most 1000) and the model its
    ``pageToken`` continues after; :class:`BadRequest` when they are not valid."""
    params = dict(urllib.parse.parse_qsl(query.decode("latin-1")))
    size = params.get("pageSize") or params.get("page_size")
    try:
        limit = DEFAULT_PAGE_SIZE if not size else int(size)
    except ValueError:
        raise BadRequest("pageSize must be a whole number.") from None
    if limit < 0:
        raise BadRequest("pageSize must not be negative.")
    limit = min(limit or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    token = params.get("pageToken") or params.get("page_token")
    if not token:
        return limit, None
    try:
        return limit, base64.urlsafe_b64decode(token.encode("ascii")).decode()
    except (ValueError, UnicodeError):
        raise BadRequest("pageToken is not one this model list issued.") from None


class GeminiCodec:
    """Gemini ``generateContent`` ⇄ canonical (see :mod:`provider_proxy.dialects._gemini_codec`)."""

    request_fields: FidelityTable = _codec.REQUEST_FIELDS
    encode_fields: FidelityTable = _codec.ENCODE_FIELDS

    def decode_request(self, body: Any) -> tuple[Request, tuple[str, ...]]:
        return _codec.decode_request(body)

    def encode_request(self, request: Request) -> dict[str, Any]:
        return _codec.encode_request(request)

    def dropped_by_encoding(self, request: Request) -> tuple[str, ...]:
        return _codec.dropped_by_encoding(request)

    def decode_response(self, body: Any) -> Response:
        return _codec.decode_response(body)

    def encode_response(self, response: Response, request: Request | None = None) -> dict[str, Any]:
        return _codec.encode_response(response)

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder()

    def stream_encoder(self, request: Request) -> StreamEncoder:
        return StreamEncoder()

    def encode_error(self, status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
        return _codec.encode_error(status, kind, message)

    def decode_error(self, status: int, body: Any) -> StreamError:
        return _codec.decode_error(status, body)


class Gemini(BaseDialect):
    """Gemini ``generateContent``: ``x-goog-api-key`` (or ``?key=``), the model in the path."""

    name: ClassVar[str] = "gemini"
    credential_headers: ClassVar[frozenset[bytes]] = frozenset({b"x-goog-api-key"})
    credential_params: ClassVar[frozenset[str]] = CREDENTIAL_PARAMS
    key_param: ClassVar[str | None] = "key"
    #: Sent by Google's SDKs (google-genai): ``{mount}/v1/models`` answers them in this format.
    client_marker: ClassVar[bytes | None] = b"x-goog-api-client"
    usage_hints: ClassVar[tuple[str, str] | None] = (USAGE_HINT, "model")
    finish_hint: ClassVar[str | None] = "finishReason"
    #: The gateway's translation to and from the canonical form.
    codec: ClassVar[Codec | None] = GeminiCodec()
    #: The model goes in the path (``{model}``); a stream is its own method.
    operations: ClassVar[Mapping[str, str]] = {
        "generate": "/v1beta/models/{model}:generateContent",
        "stream": "/v1beta/models/{model}:streamGenerateContent?alt=sse",
        "embed": "/v1beta/models/{model}:batchEmbedContents",
        "embed_content": "/v1beta/models/{model}:embedContent",
        "count_tokens": "/v1beta/models/{model}:countTokens",
    }

    def recognizes(self, path: str) -> bool:
        decoded = route(path)
        if model_method(path) is not None:
            return True
        return decoded.startswith(("/v1beta/models", "/v1/models"))

    def model_in_path(self, path: str) -> str | None:
        found = model_method(path)
        return found[0] if found is not None else None

    def model_of(self, payload: JSON) -> str | None:
        """A response's ``modelVersion``, else a top-level ``model``."""
        version = get(payload, "modelVersion")
        if isinstance(version, str):
            return version
        return top_level_model(payload)

    def streams(self, body: JSON, path: str) -> bool:
        found = model_method(path)
        return found is not None and found[1] == "streamGenerateContent"

    def usage_of(self, payload: JSON) -> Usage | None:
        return gemini_usage(payload)

    #: Gemini Live (``BidiGenerateContent``): turns start implicitly (voice activity,
    #: ``turnComplete``); the message that ends one carries ``usageMetadata``.
    socket_hints: ClassVar[tuple[str, ...]] = ("usageMetadata",)

    def socket_turn(self, payload: JSON) -> Literal["start", "end"] | None:
        return "end" if isinstance(get(payload, "usageMetadata"), dict) else None

    def output_limit_of(self, body: JSON) -> int | None:
        """``generationConfig.maxOutputTokens`` (the OpenAI-compatible paths are OpenAI Chat)."""
        return first_count(get(body, "generationConfig"), "maxOutputTokens")

    def finish_reasons_of(self, payload: JSON) -> tuple[str, ...]:
        """Each candidate's ``finishReason`` (``STOP``, ``MAX_TOKENS``, ...)."""
        return choice_reasons(payload, "candidates", "finishReason")

    def model_list(self, models: Sequence[Mapping[str, Any]], has_more: bool) -> dict[str, Any]:
        """``{"models": [...], "nextPageToken"}``: the page token names the page's last model."""
        listed: dict[str, Any] = {"models": [self.model_entry(model) for model in models]}
        if has_more and models:
            listed["nextPageToken"] = page_token(str(models[-1]["id"]))
        return listed

    def model_entry(self, model: Mapping[str, Any]) -> dict[str, Any]:
        """A catalog model in Gemini's shape: ``models/{id}``, and what the gateway
        serves of it (the catalog's ``operations`` where the provider said; else, for
        an id naming embeddings, the embedding methods, and generation for any other)."""
        model_id = str(model["id"])
        operations = model.get("operations")
        if isinstance(operations, list):
            methods: tuple[str, ...] = tuple(
                method for method, operation in GATEWAY_METHODS.items() if operation in operations
            )
        else:
            methods = EMBED_METHODS if "embed" in model_id.lower() else GENERATE_METHODS
        entry: dict[str, Any] = {
            "name": f"models/{model_id}",
            "baseModelId": model_id,
            "version": "",
            "displayName": model.get("name") or model_id,
            "description": model.get("description") or "",
            "supportedGenerationMethods": list(methods),
        }
        if isinstance(model.get("context_length"), int):
            entry["inputTokenLimit"] = model["context_length"]
        if isinstance(model.get("max_completion_tokens"), int):
            entry["outputTokenLimit"] = model["max_completion_tokens"]
        return entry

    def error_body(self, error: ProxyError, request_id: str) -> bytes:
        """Google's error format: ``{"error": {"code", "message", "status"}}``."""
        code = error.status_code
        status = STATUS_NAMES.get(code, "INVALID_ARGUMENT" if code < 500 else "INTERNAL")
        return dumps({"error": {"code": code, "message": error.message, "status": status}})
