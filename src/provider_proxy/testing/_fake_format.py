"""The fake provider's structured output: each API's format field checked as the real API
checks it, and an answer in JSON that fits the schema asked for.

- OpenAI Chat ``response_format`` and Responses ``text.format``: a known ``type``; a
  ``json_schema`` needs a valid ``name`` and a ``schema``, and with ``strict: true``
  an object root, ``additionalProperties: false`` and every property ``required``
  on each object; ``json_object`` needs the word "json" in the conversation.
- Anthropic ``output_config.format`` (``output_format`` only with the
  ``structured-outputs-2025-11-13`` beta): ``type: json_schema`` with a ``schema``
  whose objects are closed (``additionalProperties: false``) and which uses none of
  the keywords Claude does not enforce (``minimum``, ``maxLength``, ...).
- Gemini ``generationConfig``: a known ``responseMimeType``; ``responseSchema``
  (Gemini's OpenAPI subset: an unknown key is refused) or ``responseJsonSchema``,
  not both, and either only with ``application/json``.

The answer (:func:`answer_text`) is a JSON instance of the schema, written with
spaces after ``,`` and ``:`` so that the fake streams it a few words at a time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CLAUDE_UNENFORCED = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "maxItems",
    "minProperties",
    "maxProperties",
    "oneOf",
)
_GEMINI_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)
_GEMINI_MIME_TYPES = ("text/plain", "application/json", "text/x.enum")
STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"


class FormatError(Exception):
    """A format field the real API refuses (400), with the API's message."""


@dataclass(frozen=True, slots=True)
class Wanted:
    """What the answer's text must be: JSON (fitting ``schema`` when there is one)."""

    schema: dict[str, Any] | None


def wanted(api: str, payload: dict[str, Any], beta: str) -> Wanted | None:
    """The JSON a request asks for (``None``: plain text), checked as ``api`` checks it.

    :param api: ``"chat"``, ``"responses"``, ``"anthropic"`` or ``"gemini"``.
    :param beta: the request's ``anthropic-beta`` header ("" without one).
    :raises FormatError: the request's format is malformed for that API.
    """
    if api == "chat":
        return _openai(payload.get("response_format"), "response_format", payload, nested=True)
    if api == "responses":
        text = payload.get("text")
        form = text.get("format") if isinstance(text, dict) else None
        return _openai(form, "text.format", payload, nested=False)
    if api == "anthropic":
        return _anthropic(payload, beta)
    return _gemini(payload.get("generationConfig") or payload.get("generation_config"))


def answer_text(want: Wanted) -> str:
    """A JSON text that fits what was asked for."""
    if want.schema is None:
        return json.dumps({"answer": "fake"})
    return json.dumps(_instance("answer", want.schema, want.schema, 0))


# -- OpenAI -----------------------------------------------------------------------------


def _openai(form: Any, where: str, payload: dict[str, Any], *, nested: bool) -> Wanted | None:
    if form is None:
        return None
    if not isinstance(form, dict):
        raise FormatError(f"Invalid type for '{where}': expected an object.")
    kind = form.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        if "json" not in json.dumps(payload.get("messages", payload.get("input"))).lower():
            raise FormatError(
                f"'messages' must contain the word 'json' in some form, to use '{where}' "
                "of type 'json_object'."
            )
        return Wanted(None)
    if kind != "json_schema":
        raise FormatError(
            f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object', and "
            f"'json_schema'. (param: {where}.type)"
        )
    spec = form.get("json_schema") if nested else form
    at = f"{where}.json_schema" if nested else where
    if not isinstance(spec, dict):
        raise FormatError(f"Missing required parameter: '{at}'.")
    name = spec.get("name")
    if not isinstance(name, str):
        raise FormatError(f"Missing required parameter: '{at}.name'.")
    if not _NAME.fullmatch(name):
        raise FormatError(f"Invalid '{at}.name': string does not match pattern.")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise FormatError(f"Missing required parameter: '{at}.schema'.")
    if spec.get("strict") is True:
        if schema.get("type") != "object":
            raise FormatError(
                f"Invalid schema for response_format '{name}': schema must be a JSON Schema "
                f"of 'type: \"object\"', got 'type: \"{schema.get('type')}\"'."
            )
        for context, node in _objects(schema, ()):
            problem = _openai_strict_problem(node)
            if problem:
                raise FormatError(
                    f"Invalid schema for response_format '{name}': In context={context}, {problem}"
                )
    return Wanted(schema)


def _openai_strict_problem(node: dict[str, Any]) -> str | None:
    if node.get("additionalProperties") is not False:
        return "'additionalProperties' is required to be supplied and to be false."
    properties = node.get("properties") or {}
    missing = [key for key in properties if key not in (node.get("required") or [])]
    if missing:
        return (
            "'required' is required to be supplied and to be an array including every key "
            f"in properties. Missing '{missing[0]}'."
        )
    return None


# -- Anthropic --------------------------------------------------------------------------


def _anthropic(payload: dict[str, Any], beta: str) -> Wanted | None:
    if payload.get("output_format") is not None:
        if STRUCTURED_OUTPUTS_BETA not in beta:
            raise FormatError("output_format: Extra inputs are not permitted")
        return _claude_format(payload["output_format"], "output_format")
    config = payload.get("output_config")
    if config is None:
        return None
    if not isinstance(config, dict):
        raise FormatError("output_config: Input should be an object")
    for key in config:
        if key not in ("format", "effort"):
            raise FormatError(f"output_config.{key}: Extra inputs are not permitted")
    if config.get("format") is None:
        return None
    return _claude_format(config["format"], "output_config.format")


def _claude_format(form: Any, where: str) -> Wanted:
    if not isinstance(form, dict) or form.get("type") != "json_schema":
        raise FormatError(f"{where}.type: Input should be 'json_schema'")
    for key in form:
        if key not in ("type", "schema"):
            raise FormatError(f"{where}.{key}: Extra inputs are not permitted")
    schema = form.get("schema")
    if not isinstance(schema, dict):
        raise FormatError(f"{where}.schema: Field required")
    for _, node in _objects(schema, ()):
        if node.get("additionalProperties") is not False:
            raise FormatError(
                f"{where}.schema: For 'object' type, 'additionalProperties' must be "
                "explicitly set to false"
            )
    for keyword in _keywords(schema):
        if keyword in _CLAUDE_UNENFORCED:
            raise FormatError(f"{where}.schema: '{keyword}' is not supported")
    return Wanted(schema)


# -- Gemini -----------------------------------------------------------------------------


def _gemini(config: Any) -> Wanted | None:
    if not isinstance(config, dict):
        return None
    mime = config.get("responseMimeType", config.get("response_mime_type"))
    schema = config.get("responseSchema", config.get("response_schema"))
    json_schema = config.get("responseJsonSchema", config.get("response_json_schema"))
    if mime is not None and mime not in _GEMINI_MIME_TYPES:
        raise FormatError(
            "* GenerateContentRequest.generation_config.response_mime_type: allowed "
            f"mimetypes are {', '.join(_GEMINI_MIME_TYPES)}"
        )
    if schema is not None and json_schema is not None:
        raise FormatError(
            "response_schema and response_json_schema cannot both be set (generation_config)"
        )
    given = schema if schema is not None else json_schema
    if given is not None and mime != "application/json":
        raise FormatError(
            "* GenerateContentRequest.generation_config.response_mime_type: "
            "must be application/json when a response schema is set"
        )
    if schema is not None:
        for keyword in _keywords(schema):
            if keyword not in _GEMINI_SCHEMA_KEYS:
                raise FormatError(
                    f'Invalid JSON payload received. Unknown name "{keyword}" at '
                    "'generation_config.response_schema': Cannot find field."
                )
    if mime != "application/json":
        return None
    return Wanted(given if isinstance(given, dict) else None)


# -- schemas ----------------------------------------------------------------------------


def _children(node: dict[str, Any]) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for key in ("properties", "$defs", "definitions"):
        value = node.get(key)
        if isinstance(value, dict):
            found.extend((name, sub) for name, sub in value.items())
    for key in ("items", "anyOf", "allOf", "oneOf", "prefixItems", "additionalProperties"):
        value = node.get(key)
        if isinstance(value, dict):
            found.append((key, value))
        elif isinstance(value, list):
            found.extend((f"{key}[{i}]", sub) for i, sub in enumerate(value))
    return found


def _objects(node: Any, context: tuple[str, ...]) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every object schema in ``node`` with its path."""
    if not isinstance(node, dict):
        return []
    found: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    kind = node.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node:
        found.append((context, node))
    for name, sub in _children(node):
        found.extend(_objects(sub, (*context, name)))
    return found


def _keywords(node: Any) -> set[str]:
    """Every schema keyword used in ``node`` (property names are not keywords)."""
    if not isinstance(node, dict):
        return set()
    found = set(node)
    for _, sub in _children(node):
        found |= _keywords(sub)
    return found


_STRINGS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "12:00:00",
    "email": "fake@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _instance(name: str, schema: Any, root: dict[str, Any], depth: int) -> Any:
    """A value that fits ``schema`` (``$ref`` resolved in ``root``)."""
    if not isinstance(schema, dict) or depth > 16:
        return f"fake-{name}"
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for step in ref[2:].split("/"):
            target = target.get(step) if isinstance(target, dict) else None
        return _instance(name, target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _instance(name, (usable or options)[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = kind.lower() if isinstance(kind, str) else None
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        return {key: _instance(key, sub, root, depth + 1) for key, sub in properties.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems") or 0))
        return [_instance(name, schema.get("items"), root, depth + 1) for _ in range(count)]
    if kind == "integer":
        return max(1, int(schema.get("minimum") or 0))
    if kind == "number":
        return max(1.5, float(schema.get("minimum") or 0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _STRINGS.get(str(schema.get("format")), f"fake-{name}")
