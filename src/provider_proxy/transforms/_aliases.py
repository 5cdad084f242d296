"""`ModelAliases`: short, stable model names for clients, resolved by the proxy."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .._adapter import JSON, RequestContext
from ._compose import Transform
from ._util import MODEL_ROUTES, Cow, posts_to

_GLOB_CHARS = re.compile(r"[*?\[]")
_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_DIGITS = re.compile(r"\d+")


def version_key(model: str) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    """A sort key that puts the newest model last.

    Digit runs are compared as numbers (``claude-sonnet-4-5`` after
    ``claude-sonnet-4-1`` after ``claude-3-7-sonnet``). Dates
    (``2024-08-06``, ``20250514``) and other runs of four or more digits
    (``0613``) are snapshot stamps, not versions: they only order models of the
    same version, so ``claude-sonnet-4-5-20250929`` is after
    ``claude-sonnet-4-20250514``. The id itself breaks remaining ties.
    """
    stamps: list[int] = []

    def take(found: re.Match[str]) -> str:
        stamps.append(int("".join(found.groups())))
        return "-"

    versions: list[int] = []
    for run in _DIGITS.findall(_DATE.sub(take, model)):
        (stamps if len(run) >= 4 else versions).append(int(run))
    return tuple(versions), tuple(stamps), model


@dataclass(frozen=True, slots=True)
class _Model:
    id: str


@dataclass(frozen=True, slots=True)
class _Alias:
    key: str  # case-folded


@dataclass(frozen=True, slots=True)
class _Reference:
    provider: str  # case-folded
    pattern: str  # case-folded glob
    text: str


_Step = _Model | _Alias | _Reference


class ModelAliases(Transform):
    """Rewrite the body's ``model`` when it names an alias.

    ``aliases`` maps an alias (matched case-insensitively) to either

    - a string without glob characters: the model id it stands for, or the
      name of another alias; or
    - a ``provider/glob`` reference, or a list of references and alias names,
      tried in order: a reference is matched (case-insensitively) against the
      models the request's adapter lists (``context.models``), and the first
      one that matches any decides, its highest version winning (see
      :func:`version_key`). References naming another adapter than the one
      serving the request are skipped, so one alias can name a model for each
      provider (``["anthropic/claude-sonnet-*", "openrouter/anthropic/claude-sonnet-*"]``).

    When nothing resolves (no reference for this adapter, no model catalog, no
    match) the model is left as sent and the provider answers as usual.
    ``default`` (a model id or an alias) fills in a missing, null or empty
    ``model``. In passthrough only bodies are rewritten: a model named in the URL
    (Gemini's ``/models/{model}:generateContent``) is not. At the gateway it is:
    the gateway hands the transforms a path's model as the body's ``model`` and
    serves the model they leave there (``{mount}/v1beta/models/{alias}:generateContent``).

    Alias loops (``a -> b -> a``) raise :class:`ValueError` here, at
    construction; the table cannot change afterwards, so none can occur later.
    """

    __slots__ = ("_default", "_table")

    def __init__(
        self, aliases: Mapping[str, str | Sequence[str]], *, default: str | None = None
    ) -> None:
        keys: dict[str, str] = {}
        for key in aliases:
            if not isinstance(key, str) or not key.strip():
                raise ValueError(f"Model alias names must be non-empty strings; got {key!r}.")
            if key.casefold() in keys:
                raise ValueError(
                    f"Model aliases {keys[key.casefold()]!r} and {key!r} differ only in case; "
                    "aliases are matched case-insensitively."
                )
            keys[key.casefold()] = key
        self._table: dict[str, tuple[_Step, ...]] = {
            key.casefold(): _parse_target(key, target, keys) for key, target in aliases.items()
        }
        self._default: _Step | None = None
        if default is not None:
            if not isinstance(default, str) or not default.strip():
                raise ValueError(f"default= must be a model id or an alias; got {default!r}.")
            if default.casefold() in self._table:
                self._default = _Alias(default.casefold())
            elif _GLOB_CHARS.search(default):
                raise ValueError(
                    f"default={default!r} is a pattern; define an alias for it and pass "
                    "the alias's name as default=."
                )
            else:
                self._default = _Model(default)
        _check_loops(self._table, keys)

    def __repr__(self) -> str:
        return f"ModelAliases({len(self._table)} aliases)"

    def applies_to(self, context: RequestContext) -> bool:
        """JSON requests to endpoints whose body names a model, and every gateway
        request (before it is routed it has no adapter; see the class docstring)."""
        return posts_to(context, MODEL_ROUTES) or (context.method == "POST" and not context.adapter)

    async def __call__(self, body: JSON, context: RequestContext) -> JSON | None:
        if not isinstance(body, dict):
            return None
        model = body.get("model")
        if model is None or model == "":
            if self._default is None:
                return None
            resolved = await self._resolve((self._default,), context, {})
        elif isinstance(model, str) and model.casefold() in self._table:
            resolved = await self._resolve((_Alias(model.casefold()),), context, {})
        else:
            return None
        if resolved is None or resolved == model:
            return None
        cow = Cow(body)
        cow.at()["model"] = resolved
        return cow.result

    async def _resolve(
        self, steps: tuple[_Step, ...], context: RequestContext, listed: dict[str, list[str]]
    ) -> str | None:
        for step in steps:
            if isinstance(step, _Model):
                return step.id
            if isinstance(step, _Alias):
                found = await self._resolve(self._table[step.key], context, listed)
                if found is not None:
                    return found
                continue
            if step.provider != context.adapter.casefold() or context.models is None:
                continue
            if "ids" not in listed:  # one catalog lookup per request
                listed["ids"] = list(await context.models(context.adapter))
            matches = [m for m in listed["ids"] if fnmatchcase(m.casefold(), step.pattern)]
            if matches:
                return max(matches, key=version_key)
        return None


def _parse_target(
    key: str, target: str | Sequence[str], keys: Mapping[str, str]
) -> tuple[_Step, ...]:
    if isinstance(target, str):
        if not target.strip():
            raise ValueError(f"Model alias {key!r} maps to an empty string.")
        folded = target.casefold()
        if folded in keys and folded != key.casefold():
            return (_Alias(folded),)
        if _GLOB_CHARS.search(target):
            return (_reference(key, target),)
        return (_Model(target),)  # also an alias spelling its own model's case
    items = tuple(target)
    if not items:
        raise ValueError(f"Model alias {key!r} maps to an empty list.")
    steps: list[_Step] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"Model alias {key!r}: list items must be strings; got {item!r}.")
        if item.casefold() in keys:
            steps.append(_Alias(item.casefold()))
        else:
            steps.append(_reference(key, item))
    return tuple(steps)


def _reference(key: str, text: str) -> _Reference:
    provider, slash, pattern = text.partition("/")
    if not slash or not provider or not pattern:
        raise ValueError(
            f"Model alias {key!r}: {text!r} is neither an alias nor a 'provider/glob' "
            "reference such as 'anthropic/claude-sonnet-*'."
        )
    return _Reference(provider.casefold(), pattern.casefold(), text)


def _check_loops(table: Mapping[str, tuple[_Step, ...]], keys: Mapping[str, str]) -> None:
    done: set[str] = set()

    def visit(key: str, trail: list[str]) -> None:
        if key in trail:
            loop = [*trail[trail.index(key) :], key]
            raise ValueError(
                "Model aliases refer to each other in a loop: "
                + " -> ".join(keys[k] for k in loop)
                + "."
            )
        if key in done:
            return
        trail.append(key)
        for step in table[key]:
            if isinstance(step, _Alias):
                visit(step.key, trail)
        trail.pop()
        done.add(key)

    for key in table:
        visit(key, [])
