"""The answer's output format (structured output) between the APIs and the canonical form.

One :class:`~provider_proxy.dialects.canonical.OutputFormat` per request, or
``None`` for plain text. Each API names it differently:

=====================  ==========================================================
OpenAI Chat            ``response_format``: ``{"type": "json_object"}`` or
                       ``{"type": "json_schema", "json_schema": {name, schema,
                       strict, description}}``
OpenAI Responses       ``text.format``: the same, flat (``{"type": "json_schema",
                       name, schema, strict, description}``), echoed in the
                       response's ``text``
Gemini                 ``generationConfig.responseMimeType: "application/json"``
                       with ``responseJsonSchema`` (JSON Schema) or
                       ``responseSchema`` (Gemini's OpenAPI subset)
Anthropic              ``output_config.format: {"type": "json_schema", schema}``
                       (generally available, no beta header; the beta's
                       ``output_format`` is read too)
=====================  ==========================================================

Conversions, by one rule each:

- **To Gemini** the schema goes intact as ``responseJsonSchema``, the field that
  takes JSON Schema (``$ref``, ``anyOf``, ``additionalProperties`` and all);
  from a Gemini client, ``responseSchema`` is read as JSON Schema with
  :func:`~provider_proxy.dialects._gemini_schema.to_json_schema`. A JSON
  object without a schema is ``responseMimeType`` alone.
- **To Anthropic** the schema is made what Claude's constrained decoding takes
  (:func:`anthropic_schema`): an object without ``additionalProperties`` gets
  ``additionalProperties: false`` (every answer still fits the client's
  schema); an open object (``additionalProperties`` true or a schema) and a
  recursive ``$ref`` are refused. A keyword Claude does not enforce
  (one outside :data:`ANTHROPIC_KEYWORDS`: ``minimum``, ``maxLength``,
  ``pattern``, ``oneOf``, ...) is refused when the client asked for a
  ``strict`` schema, and otherwise moved into the description as guidance (what
  Anthropic's own SDK does; ``oneOf`` becomes ``anyOf``). Annotations
  (:data:`ANNOTATIONS`: ``default``, ``examples``, ...) go into the description
  either way. A ``type`` list becomes the ``anyOf`` of its types. A JSON
  object without a schema is refused: Claude's closed objects cannot say "any
  object".
- **strict**: Gemini and Anthropic always constrain the answer to the schema,
  so the flag has nothing more to say there; to OpenAI it is sent as given. A
  format decoded from Anthropic is strict; one from Gemini leaves it unset.
- **name** (OpenAI requires one, ``^[a-zA-Z0-9_-]{1,64}$``): a name becomes
  the schema's ``title`` where the target has no name field and the schema no
  title; to OpenAI, a format without a name is named from the schema's title,
  else :data:`DEFAULT_NAME`. **description**: the schema's top-level
  description where the target has no such field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import _codec_util as u
from ._gemini_schema import to_json_schema
from .canonical import OutputFormat, Unsupported

#: The name sent to OpenAI for a format that came without one.
DEFAULT_NAME = "response"
_VALID_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: The keywords Claude's structured output takes (and enforces), as Anthropic's SDK keeps
#: them; ``format`` only with :data:`ANTHROPIC_FORMATS`, ``minItems`` only 0 or 1.
ANTHROPIC_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "allOf",
        "$ref",
        "$defs",
        "definitions",
        "title",
        "description",
        "format",
        "minItems",
    }
)
#: Keywords that say something about a value but hold the answer to nothing: sent to
#: Claude in the description, whatever ``strict`` says.
ANNOTATIONS = frozenset(
    {
        "default",
        "examples",
        "example",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "discriminator",
    }
)
#: The string ``format`` values Claude's structured output knows.
ANTHROPIC_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)

_MAPS = ("properties", "$defs", "definitions")
_LISTS = ("anyOf", "allOf")
_BY_TYPE = {
    "object": ("properties", "required", "additionalProperties"),
    "array": ("items", "minItems"),
}


# -- OpenAI Chat ------------------------------------------------------------------------


def from_chat(value: Any) -> OutputFormat | None:
    """A Chat client's ``response_format`` (``None`` or ``{"type": "text"}``: plain text)."""
    if value is None:
        return None
    where = "response_format"
    form = u.obj(value, where)
    kind = form.get("type")
    if kind == "text":
        u.only(form, ("type",), where)
        return None
    if kind == "json_object":
        u.only(form, ("type",), where)
        return OutputFormat("json_object", source=where)
    if kind != "json_schema":
        raise Unsupported(f"{where}.type", f"unknown response format {kind!r}")
    u.only(form, ("type", "json_schema"), where)
    spec = u.obj(form.get("json_schema"), f"{where}.json_schema")
    return _json_schema(spec, f"{where}.json_schema")


def to_chat(form: OutputFormat) -> dict[str, Any]:
    """A canonical format as a Chat ``response_format``."""
    if form.kind == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": _openai_spec(form)}


# -- OpenAI Responses -------------------------------------------------------------------


def from_responses(value: Any) -> OutputFormat | None:
    """A Responses client's ``text.format`` (``None`` or ``{"type": "text"}``: plain text)."""
    if value is None:
        return None
    where = "text.format"
    form = u.obj(value, where)
    kind = form.get("type")
    if kind == "text":
        u.only(form, ("type",), where)
        return None
    if kind == "json_object":
        u.only(form, ("type",), where)
        return OutputFormat("json_object", source=where)
    if kind != "json_schema":
        raise Unsupported(f"{where}.type", f"unknown text format {kind!r}")
    return _json_schema({key: value for key, value in form.items() if key != "type"}, where)


def to_responses(form: OutputFormat | None) -> dict[str, Any]:
    """A canonical format as Responses ``text.format`` (also the response's echo of it)."""
    if form is None:
        return {"type": "text"}
    if form.kind == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", **_openai_spec(form)}


def _json_schema(spec: dict[str, Any], where: str) -> OutputFormat:
    u.only(spec, ("name", "schema", "strict", "description"), where)
    name = u.text(spec.get("name"), f"{where}.name")
    if not _VALID_NAME.fullmatch(name):
        raise Unsupported(f"{where}.name", "it must be 1 to 64 of a-z, A-Z, 0-9, _ and -")
    return OutputFormat(
        "json_schema",
        name=name,
        schema=u.obj(spec.get("schema"), f"{where}.schema"),
        strict=u.opt_bool(spec.get("strict"), f"{where}.strict"),
        description=u.opt_str(spec.get("description"), f"{where}.description"),
        source=where,
    )


def _openai_spec(form: OutputFormat) -> dict[str, Any]:
    title = (form.schema or {}).get("title")
    name = form.name
    if name is None:
        name = title if isinstance(title, str) and _VALID_NAME.fullmatch(title) else DEFAULT_NAME
    spec: dict[str, Any] = {"name": name, "schema": dict(form.schema or {})}
    if form.strict is not None:
        spec["strict"] = form.strict
    if form.description is not None:
        spec["description"] = form.description
    return spec


# -- Gemini -----------------------------------------------------------------------------


def from_gemini(config: Mapping[str, Any]) -> OutputFormat | None:
    """The format in a Gemini client's ``generationConfig`` (camelCase keys)."""
    prefix = "generationConfig."
    mime = u.opt_str(config.get("responseMimeType"), f"{prefix}responseMimeType")
    json_schema, schema = config.get("responseJsonSchema"), config.get("responseSchema")
    if json_schema is not None and schema is not None:
        raise Unsupported(f"{prefix}responseSchema", "give responseSchema or responseJsonSchema")
    given = "responseJsonSchema" if json_schema is not None else "responseSchema"
    if mime in (None, "text/plain"):
        if json_schema is not None or schema is not None:
            raise Unsupported(f"{prefix}{given}", 'it needs responseMimeType "application/json"')
        return None
    if mime != "application/json":
        raise Unsupported(f"{prefix}responseMimeType", f"{mime!r} does not translate")
    if json_schema is None and schema is None:
        return OutputFormat("json_object", source=f"{prefix}responseMimeType")
    where = f"{prefix}{given}"
    raw = u.obj(json_schema if json_schema is not None else schema, where)
    converted = raw if json_schema is not None else to_json_schema(raw)
    return OutputFormat("json_schema", schema=converted, source=where)


def to_gemini(form: OutputFormat) -> dict[str, Any]:
    """A canonical format as ``generationConfig`` keys: the schema intact as
    ``responseJsonSchema``."""
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    if form.kind == "json_schema":
        config["responseJsonSchema"] = _annotated(form)
    return config


# -- Anthropic --------------------------------------------------------------------------


def from_anthropic(output_config: Any, output_format: Any) -> OutputFormat | None:
    """An Anthropic client's ``output_config.format`` (or the beta's ``output_format``)."""
    if output_config is not None and output_format is not None:
        raise Unsupported("output_format", "give output_config.format or output_format")
    if output_config is not None:
        config = u.obj(output_config, "output_config")
        u.only(config, ("format",), "output_config")
        value, where = config.get("format"), "output_config.format"
    else:
        value, where = output_format, "output_format"
    if value is None:
        return None
    form = u.obj(value, where)
    if form.get("type") != "json_schema":
        raise Unsupported(f"{where}.type", f"unknown output format {form.get('type')!r}")
    u.only(form, ("type", "schema"), where)
    schema = u.obj(form.get("schema"), f"{where}.schema")
    return OutputFormat("json_schema", schema=schema, strict=True, source=where)


def to_anthropic(form: OutputFormat) -> dict[str, Any]:
    """A canonical format as Anthropic's ``output_config`` (refused: a JSON object
    without a schema)."""
    if form.kind == "json_object":
        raise Unsupported(
            form.source,
            "Claude's structured output needs a JSON schema (its objects are closed, "
            "so it cannot say 'any JSON object'); send a json_schema format",
        )
    schema = anthropic_schema(_annotated(form), form.strict is True, f"{form.source}.schema")
    return {"format": {"type": "json_schema", "schema": schema}}


def anthropic_schema(schema: Mapping[str, Any], strict: bool, where: str) -> dict[str, Any]:
    """``schema`` as Claude's structured output takes it, by the rule in this module's docs.

    :raises Unsupported: naming the keyword (its path under ``where``) that cannot be carried.
    """
    _refuse_recursion(schema, where)
    return _close(dict(schema), strict, where)


def _close(node: dict[str, Any], strict: bool, where: str) -> dict[str, Any]:
    node = _split_types(node)
    out: dict[str, Any] = {}
    moved: list[str] = []
    for key, value in node.items():
        at = f"{where}.{key}"
        if key == "oneOf" and isinstance(value, list) and not strict:
            out["anyOf"] = [_sub(item, strict, f"{at}[{i}]") for i, item in enumerate(value)]
        elif key in ANNOTATIONS or not _enforced(key, value):
            if strict and key not in ANNOTATIONS:
                raise Unsupported(at, "Claude's structured output does not enforce it")
            moved.append(f"{key}: {_brief(value)}")
        elif key in _MAPS and isinstance(value, dict):
            out[key] = {name: _sub(sub, strict, f"{at}.{name}") for name, sub in value.items()}
        elif key in _LISTS and isinstance(value, list):
            out[key] = [_sub(item, strict, f"{at}[{i}]") for i, item in enumerate(value)]
        elif key in ("items", "additionalProperties"):
            out[key] = _sub(value, strict, at)
        else:
            out[key] = value
    if _is_object(node):
        extra = node.get("additionalProperties")
        if extra is None:
            out["additionalProperties"] = False
        elif extra is not False:
            raise Unsupported(
                f"{where}.additionalProperties", "Claude's structured output takes closed objects"
            )
    if moved:
        text = ", ".join(moved)
        described = out.get("description")
        out["description"] = f"{described}\n\n{{{text}}}" if described else f"{{{text}}}"
    return out


def _enforced(key: str, value: Any) -> bool:
    if key == "format":
        return value in ANTHROPIC_FORMATS
    if key == "minItems":
        return value in (0, 1)
    if key == "enum":
        return isinstance(value, list) and all(_primitive(item) for item in value)
    return key in ANTHROPIC_KEYWORDS


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _split_types(node: dict[str, Any]) -> dict[str, Any]:
    """A ``type`` list (``["string", "null"]``) as the ``anyOf`` of one type each, the same
    schema in the form Claude reads; each type's own keywords go into its branch."""
    kinds = node.get("type")
    if not isinstance(kinds, list):
        return node
    if len(kinds) == 1:
        return {**node, "type": kinds[0]}
    rest = {key: value for key, value in node.items() if key != "type"}
    branches: list[dict[str, Any]] = []
    for kind in kinds:
        branch: dict[str, Any] = {"type": kind}
        for key in _BY_TYPE.get(str(kind), ()):
            if key in rest:
                branch[key] = rest.pop(key)
        branches.append(branch)
    return {**rest, "anyOf": branches}


def _sub(value: Any, strict: bool, where: str) -> Any:
    return _close(value, strict, where) if isinstance(value, dict) else value


def _is_object(node: Mapping[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node


def _brief(value: Any) -> str:
    return repr(value) if not isinstance(value, (dict, list)) else type(value).__name__


def _refuse_recursion(schema: Mapping[str, Any], where: str) -> None:
    definitions: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        found = schema.get(key)
        if isinstance(found, dict):
            definitions.update({f"#/{key}/{name}": value for name, value in found.items()})

    def visit(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item, path)
            return
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in path:
                raise Unsupported(
                    f"{where}.$ref", f"a recursive schema ({ref}) cannot be sent to Claude"
                )
            if ref in definitions:
                visit(definitions[ref], (*path, ref))
        for key, value in node.items():
            if key not in ("$defs", "definitions"):
                visit(value, path)

    visit(schema, ())


# -- shared -----------------------------------------------------------------------------


def _annotated(form: OutputFormat) -> dict[str, Any]:
    """The schema with the format's name as its title and description as its description,
    where it has none (for a target without those fields)."""
    schema = dict(form.schema or {})
    if form.name is not None and "title" not in schema:
        schema["title"] = form.name
    if form.description is not None:
        described = schema.get("description")
        schema["description"] = (
            f"{form.description}\n\n{described}" if described else form.description
        )
    return schema


__all__ = [
    "ANNOTATIONS",
    "ANTHROPIC_FORMATS",
    "ANTHROPIC_KEYWORDS",
    "DEFAULT_NAME",
    "anthropic_schema",
    "from_anthropic",
    "from_chat",
    "from_gemini",
    "from_responses",
    "to_anthropic",
    "to_chat",
    "to_gemini",
    "to_responses",
]
