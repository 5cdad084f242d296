"""Endpoint policy: which ``METHOD /path`` a provider's key may be used for.

A provider key behind the proxy must not open the provider's whole API (files,
batches, fine-tuning, organisation admin) to whoever reaches the mount point,
so each adapter declares its inference endpoints and everything else is
refused unless the operator allows it. Rules are strings such as
``"POST /chat/completions"`` or ``"GET /v1beta/models/*"``:

- the method is one method, several joined with ``,`` (``"GET,DELETE"``), or
  ``*`` for any; ``GET`` also covers ``HEAD``;
- in the path, ``*`` matches within one segment (``/models/*`` matches
  ``/models/gpt-4o`` but not ``/models/a/b``); a ``**`` segment matches any
  number of segments, none included (``/files/**`` matches ``/files``,
  ``/files/abc`` and ``/files/abc/content``; ``/a/**/b`` matches ``/a/b``);
- the path is compared without its query and without a trailing ``/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

#: The rule that allows every endpoint: ``allow=[ALLOW_ALL]``.
ALLOW_ALL = "* /**"

_METHOD = re.compile(r"[A-Z][A-Z0-9_-]*")


@dataclass(frozen=True, slots=True)
class EndpointRule:
    """One parsed rule; build it with :func:`parse_rule`."""

    methods: frozenset[str] | None  # None: any method
    pattern: re.Pattern[str]
    text: str

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.pattern.fullmatch(_normalise(path)) is not None


@lru_cache(maxsize=512)
def parse_rule(text: str) -> EndpointRule:
    """Parse ``"METHOD /path/pattern"``; raises :class:`ValueError` naming the problem."""
    words = text.split(None, 1)
    method, path = (words[0], words[1].strip()) if len(words) == 2 else ("", "")
    if not path.startswith("/") or any(space in path for space in " \t\n"):
        raise ValueError(
            f"Endpoint rule {text!r} must be 'METHOD /path', for example 'POST /chat/completions' "
            "or 'GET,DELETE /files/**'."
        )
    names = {name.strip().upper() for name in method.split(",")}
    bad = sorted(name for name in names if name != "*" and not _METHOD.fullmatch(name))
    if bad:
        raise ValueError(
            f"Endpoint rule {text!r}: {', '.join(map(repr, bad))} is not an HTTP method; "
            "join methods with ',' (no spaces) or write '*' for any."
        )
    methods: frozenset[str] | None = None
    if "*" not in names:
        if "GET" in names:
            names.add("HEAD")
        methods = frozenset(names)
    return EndpointRule(methods, _compile(path), text)


def _compile(path: str) -> re.Pattern[str]:
    regex = ""
    for segment in _normalise(path).split("/")[1:]:
        if segment == "**":
            regex += "(?:/.*)?"  # any number of segments, none included
            continue
        parts = re.split(r"(\*\*|\*)", segment)
        regex += "/" + "".join(
            ".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part) for part in parts
        )
    return re.compile(regex)


def parse_rules(texts: Iterable[str]) -> tuple[EndpointRule, ...]:
    """Parse several rules at once (at construction time, so a typo fails early)."""
    if isinstance(texts, str):
        raise ValueError(f"Endpoint rules are a list of strings: [{texts!r}], not {texts!r}.")
    return tuple(parse_rule(text) for text in texts)


def endpoint_allowed(rules: Iterable[EndpointRule], method: str, path: str) -> bool:
    """Whether any rule matches ``method path``."""
    return any(rule.matches(method, path) for rule in rules)


def _normalise(path: str) -> str:
    path = path.partition("?")[0]
    return path.rstrip("/") or "/"
