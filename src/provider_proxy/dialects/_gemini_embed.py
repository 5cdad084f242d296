"""OpenAI embeddings requests on Gemini's ``batchEmbedContents``, and the answers back.

``POST {mount}/v1/embeddings`` is OpenAI's format. On a Gemini model each
string of ``input`` becomes one request of ``batchEmbedContents`` (in order),
``dimensions`` its ``outputDimensionality``; the vectors come back in OpenAI's
list, as floats or, when the client asked for ``encoding_format: "base64"``
(the ``openai`` SDK's default), as base64 of little-endian float32s. Token-id
inputs are refused (Gemini embeds text); ``user`` is dropped (no effect
there). Gemini reports no token usage for embeddings: the answer's ``usage``
says 0.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from . import _codec_util as u
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
