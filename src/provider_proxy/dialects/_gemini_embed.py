"""Embeddings between OpenAI's format and Gemini's, both ways.

:class:`GeminiEmbeddings`: OpenAI embeddings requests on Gemini's
``batchEmbedContents``, and the answers back.

``POST {mount}/v1/embeddings`` is OpenAI's format. On a Gemini model each
string of ``input`` becomes one request of ``batchEmbedContents`` (in order),
``dimensions`` its ``outputDimensionality``; the vectors come back in OpenAI's
list, as floats or, when the client asked for ``encoding_format: "base64"``
(the ``openai`` SDK's default), as base64 of little-endian float32s. Token-id
inputs are refused (Gemini embeds text); ``user`` is dropped (no effect
there). Gemini reports no token usage for embeddings: the answer's ``usage``
says 0.

:class:`GeminiClientEmbeddings`: a Gemini client's ``embedContent`` or
``batchEmbedContents`` on a provider that embeds in OpenAI's format
(``/v1/embeddings``). Each request's text becomes one string of ``input`` (in
order), ``outputDimensionality`` the ``dimensions`` (one value for the whole
batch, as OpenAI takes one); the vectors come back as Gemini's ``embedding``
(``embedContent``) or ``embeddings`` (``batchEmbedContents``). ``taskType``
is dropped and named (OpenAI's models embed one way for every task);
``title`` is refused (it is text Gemini embeds with the document, which would
be lost), as are parts that are not text and contents of more than one part.
The model of each request is the path's (google-genai repeats it there).
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from . import _codec_util as u
from ._gemini_codec import camel
from .canonical import Unsupported, UntranslatableResponse

#: The fields of an OpenAI embeddings request, and which are dropped on Gemini.
FIELDS = ("model", "input", "encoding_format", "dimensions", "user")
DROPPED = ("user",)


class GeminiEmbeddings:
    """OpenAI embeddings ⇄ Gemini ``batchEmbedContents`` (see the module docstring)."""

    def decode_request(self, body: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
        """A client's body checked, with the fields dropped."""
        body = u.obj(body, "body")
        u.only(body, FIELDS, "body")
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else u.arr(inputs, "input")
        if not texts:
            raise Unsupported("input", "expected at least one string")
        for i, item in enumerate(texts):
            if not isinstance(item, str):
                raise Unsupported(f"input[{i}]", "Gemini embeds text, not token ids")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise Unsupported("encoding_format", f"unknown encoding {encoding!r}")
        u.opt_int(body.get("dimensions"), "dimensions")
        dropped = tuple(name for name in DROPPED if body.get(name) is not None)
        return body, dropped

    def encode_request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """The checked body as a ``batchEmbedContents`` body for ``model``."""
        inputs = body["input"]
        texts = [inputs] if isinstance(inputs, str) else inputs
        requests = []
        for text in texts:
            request: dict[str, Any] = {
                "model": f"models/{model}",
                "content": {"parts": [{"text": text}]},
            }
            if body.get("dimensions") is not None:
                request["outputDimensionality"] = body["dimensions"]
            requests.append(request)
        return {"requests": requests}

    def decode_response(self, answer: Any, request: dict[str, Any], model: str) -> dict[str, Any]:
        """Gemini's ``{"embeddings": [{"values"}]}`` as OpenAI's list of embeddings."""
        answer = u.obj(answer, "response")
        embeddings = u.arr(answer.get("embeddings"), "embeddings")
        base64_wanted = request.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(embeddings):
            values = u.arr(u.obj(item, f"embeddings[{index}]").get("values"), "values")
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                raise UntranslatableResponse("The provider answered an embedding of non-numbers.")
            vector: Any = values
            if base64_wanted:
                packed = struct.pack(f"<{len(values)}f", *values)
                vector = base64.b64encode(packed).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": vector})
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }


#: The fields of one Gemini embedding request, and those dropped on OpenAI's format.
CLIENT_FIELDS = ("model", "content", "taskType", "title", "outputDimensionality")
CLIENT_DROPPED = ("taskType",)
#: The key of the normalised body that says the client asked ``embedContent`` (one).
_SINGLE = "single"


class GeminiClientEmbeddings:
    """Gemini ``embedContent`` / ``batchEmbedContents`` ⇄ OpenAI embeddings (see the module
    docstring). The checked body is normalised to ``{"texts", "dimensions", "single"}``."""

    def decode_request(self, body: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
        """A Gemini client's body (either method's) checked, with the fields dropped."""
        body = camel(u.obj(body, "body"))
        single = "requests" not in body
        if single:
            u.only(body, CLIENT_FIELDS, "body")
            requests = [body]
            where = [""]
        else:
            u.only(body, ("model", "requests"), "body")
            requests = [
                camel(u.obj(r, f"requests[{i}]"))
                for i, r in enumerate(u.arr(body["requests"], "requests"))
            ]
            where = [f"requests[{i}]." for i in range(len(requests))]
            if not requests:
                raise Unsupported("requests", "expected at least one request")
        texts: list[str] = []
        dimensions: set[int | None] = set()
        dropped: list[str] = []
        for request, at in zip(requests, where, strict=True):
            if not single:
                u.only(request, CLIENT_FIELDS, at.rstrip("."))
            texts.append(_text_of(request.get("content"), f"{at}content"))
            if request.get("title") is not None:
                raise Unsupported(
                    f"{at}title",
                    "it is embedded with the document, and OpenAI's format has no place for it",
                )
            if request.get("taskType") is not None:
                u.text(request["taskType"], f"{at}taskType")
                dropped.append("taskType")
            dimensions.add(
                u.opt_int(request.get("outputDimensionality"), f"{at}outputDimensionality")
            )
        if len(dimensions) > 1:
            raise Unsupported(
                "requests[].outputDimensionality",
                "OpenAI's format takes one dimensionality for the whole batch",
            )
        checked = {"texts": texts, "dimensions": dimensions.pop(), _SINGLE: single}
        return checked, tuple(dict.fromkeys(dropped))

    def encode_request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """The checked body as an OpenAI embeddings body for ``model`` (floats asked for)."""
        upstream: dict[str, Any] = {
            "model": model,
            "input": body["texts"],
            "encoding_format": "float",
        }
        if body["dimensions"] is not None:
            upstream["dimensions"] = body["dimensions"]
        return upstream

    def decode_response(self, answer: Any, request: dict[str, Any], model: str) -> dict[str, Any]:
        """OpenAI's list of embeddings as Gemini's ``embedding`` or ``embeddings``."""
        answer = u.obj(answer, "response")
        items = [u.obj(item, "data[]") for item in u.arr(answer.get("data"), "data")]
        if len(items) != len(request["texts"]):
            raise UntranslatableResponse(
                f"The provider answered {len(items)} embeddings for {len(request['texts'])} inputs."
            )
        items.sort(key=_index)
        vectors = []
        for item in items:
            values = item.get("embedding")
            if not isinstance(values, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values
            ):
                raise UntranslatableResponse("The provider answered an embedding of non-numbers.")
            vectors.append({"values": values})
        if request[_SINGLE]:
            return {"embedding": vectors[0]}
        return {"embeddings": vectors}


def _index(item: dict[str, Any]) -> int:
    """Where an OpenAI embedding goes in the list (its ``index``)."""
    index = item.get("index")
    return index if isinstance(index, int) else 0


def _text_of(content: Any, where: str) -> str:
    """The text of one content to embed: one text part (Gemini's content shape)."""
    content = camel(u.obj(content, where))
    u.only(content, ("parts", "role"), where)
    parts = u.arr(content.get("parts"), f"{where}.parts")
    if len(parts) != 1:
        raise Unsupported(f"{where}.parts", "one text part per content is embedded here")
    part = camel(u.obj(parts[0], f"{where}.parts[0]"))
    if set(part) != {"text"}:
        raise Unsupported(f"{where}.parts[0]", "only text is embedded here")
    return u.text(part["text"], f"{where}.parts[0].text")
