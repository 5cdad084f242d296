"""Tool schemas and names between JSON Schema and Gemini's function declarations.

Gemini's ``parameters`` take a subset of OpenAPI 3.0's schema object
(:data:`GEMINI_KEYS`), and refuse a declaration with any other key. A JSON
Schema from an OpenAI or Anthropic client is converted by one rule,
:func:`to_gemini`:

1. ``$ref`` is replaced by the schema it points to in ``$defs`` or
   ``definitions`` (its sibling keys win over the target's); a recursive
   ``$ref`` cannot be inlined and is refused.
2. ``type: [T, "null"]`` becomes ``type: T, nullable: true``, and so does an
   ``anyOf`` of ``T`` and ``{"type": "null"}`` (pydantic's ``Optional[T]``);
   several non-null types become an ``anyOf`` of one type each. ``oneOf``
   becomes ``anyOf``; an ``allOf`` is merged into its parent (properties and
   ``required`` united); a list of ``items`` (tuple validation) is stripped.
3. A string ``const`` becomes a one-value ``enum``; an ``enum`` of anything
   but strings, and a ``format`` Gemini does not know for the type, are stripped.
4. Every other key outside :data:`GEMINI_KEYS` (``$schema``, ``additionalProperties``,
   ``const`` of a non-string, ``examples``, ...) is stripped. The names of what
   was stripped are returned, and the gateway lists them in ``x-proxy-dropped-fields``.
5. An object schema without properties at the top is sent as no ``parameters``
   at all (Gemini refuses an object with an empty ``properties``).

From Gemini (a Gemini client's declarations), :func:`to_json_schema` lowercases
the types, turns ``nullable`` into a ``"null"`` type and drops
``propertyOrdering``: the result is JSON Schema any provider reads.

Function names: Gemini's must start with a letter or ``_`` and hold at most 64
of ``A-Z a-z 0-9 _ . : -``. A valid name that does not start with
:data:`NAME_PREFIX` is sent as it is; any other is sent as the prefix followed
by the unpadded base64url of its UTF-8 text, and read back by the inverse, so a
call returns to the client under the name it declared. Two tools with one name,
or a name too long to encode, are refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from .canonical import Unsupported

#: The keys of Gemini's schema object (``Schema`` of the Gemini API).
GEMINI_KEYS = frozenset(
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

#: The ``format`` values Gemini accepts, by type.
FORMATS: Mapping[str, frozenset[str]] = {
    "string": frozenset({"enum", "date-time"}),
    "number": frozenset({"float", "double"}),
    "integer": frozenset({"int32", "int64"}),
}

_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})

NAME_PREFIX = "pp_"
_VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,63}")
_MAX_NAME = 64


# -- names ------------------------------------------------------------------------------


def to_gemini_name(name: str, where: str) -> str:
    """A tool name as one Gemini accepts (see the module docstring)."""
    if _VALID_NAME.fullmatch(name) and not name.startswith(NAME_PREFIX):
        return name
    encoded = base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii").rstrip("=")
    out = NAME_PREFIX + encoded
    if len(out) > _MAX_NAME:
        raise Unsupported(where, "the tool name is too long to be made a valid Gemini name")
    return out


def from_gemini_name(name: str) -> str:
    """The inverse of :func:`to_gemini_name`."""
    if not name.startswith(NAME_PREFIX):
        return name
    encoded = name[len(NAME_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return name  # not one of ours


# -- JSON Schema to Gemini --------------------------------------------------------------


def to_gemini(schema: Mapping[str, Any], where: str) -> tuple[dict[str, Any] | None, list[str]]:
    """A JSON Schema as Gemini ``parameters`` (``None``: send none), and what was stripped."""
    definitions: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        found = schema.get(key)
        if isinstance(found, dict):
            definitions.update({f"#/{key}/{name}": value for name, value in found.items()})
    stripped: list[str] = []
    out = _convert(dict(schema), definitions, (), stripped, where, top=True)
    if out.get("type") == "object" and not out.get("properties") and "anyOf" not in out:
        return None, list(dict.fromkeys(stripped))
    return out, list(dict.fromkeys(stripped))


def _convert(
    schema: dict[str, Any],
    definitions: Mapping[str, Any],
    seen: tuple[str, ...],
    stripped: list[str],
    where: str,
    *,
    top: bool = False,
) -> dict[str, Any]:
    reference = schema.get("$ref")
    if isinstance(reference, str):
        if reference in seen:
            raise Unsupported(
                where, f"the recursive schema reference {reference!r} cannot be inlined"
            )
        target = definitions.get(reference)
        if not isinstance(target, dict):
            raise Unsupported(where, f"the schema reference {reference!r} is not in $defs")
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return _convert({**target, **siblings}, definitions, (*seen, reference), stripped, where)
    out: dict[str, Any] = {}
    for branch in schema.get("allOf") or ():
        if isinstance(branch, dict):
            _merge(out, _convert(branch, definitions, seen, stripped, where))
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            out["nullable"] = True
        if len(kinds) == 1:
            out["type"] = kinds[0]
        elif kinds:
            rest = {k: v for k, v in schema.items() if k not in ("type", "allOf")}
            out["anyOf"] = [
                _convert({**rest, "type": k}, definitions, seen, stripped, where) for k in kinds
            ]
            return out
    elif isinstance(kind, str) and kind in _TYPES:
        out["type"] = kind
    for key, value in schema.items():
        if key in ("type", "allOf", "$ref") or (top and key in ("$defs", "definitions")):
            continue
        if key == "properties" and isinstance(value, dict):
            properties = {
                name: _convert(dict(sub), definitions, seen, stripped, where)
                for name, sub in value.items()
                if isinstance(sub, dict)
            }
            out["properties"] = {**out.get("properties", {}), **properties}
        elif key == "items":
            if isinstance(value, dict):
                out["items"] = _convert(value, definitions, seen, stripped, where)
            else:
                stripped.append("items")  # tuple validation: Gemini has one item schema
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            branches = [sub for sub in value if isinstance(sub, dict)]
            kept = [sub for sub in branches if sub != {"type": "null"}]
            if len(kept) < len(branches):
                out["nullable"] = True
            converted = [_convert(dict(sub), definitions, seen, stripped, where) for sub in kept]
            if len(converted) == 1:
                _merge(out, converted[0])  # Optional[T]: T, nullable
            elif converted:
                out["anyOf"] = converted
        elif key == "required" and isinstance(value, list):
            out["required"] = list(dict.fromkeys([*out.get("required", []), *value]))
        elif key == "const" and isinstance(value, str):
            out["enum"] = [value]
            out.setdefault("type", "string")
        elif key == "enum":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out["enum"] = value
            else:
                stripped.append("enum")
        elif key == "format":
            if isinstance(value, str) and value in FORMATS.get(str(out.get("type")), ()):
                out["format"] = value
            else:
                stripped.append("format")
        elif key in GEMINI_KEYS:
            out[key] = value
        else:
            stripped.append(key)
    return out


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if key == "properties":
            into["properties"] = {**into.get("properties", {}), **value}
        elif key == "required":
            into["required"] = list(dict.fromkeys([*into.get("required", []), *value]))
        else:
            into[key] = value


# -- Gemini to JSON Schema --------------------------------------------------------------


def to_json_schema(schema: Any) -> Any:
    """A Gemini schema (types in any case, ``nullable``) as plain JSON Schema."""
    if isinstance(schema, list):
        return [to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "propertyOrdering" or key == "property_ordering":
            continue
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf", "any_of"):
            out["anyOf" if key == "any_of" else key] = to_json_schema(value)
        elif key == "nullable":
            continue
        else:
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out
