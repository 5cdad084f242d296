"""Endpoint policy: which ``METHOD /path`` a provider's key may be used for.

A provider key behind the proxy must not open the provider's whole API (files,
batches, fine-tuning, organisation admin) to whoever reaches the mount point,
so each adapter declares its inference endpoints and everything else is
refused unless the operator allows it. Rules are strings such as
``"POST /chat/completions"`` or ``"GET /v1beta/models/*"``:

- the method is one method, several joined with ``,`` (``"GET,DELETE"``), or
  ``*`` for any; ``GET`` also covers ``HEAD``;
- in the path, ``*`` matches within one segment (``/models/*`` matches
  ``/models/gpt-4o`` but not ``/models/a/b``), ``**`` matches across segments;
- the path is compared without its query and without a trailing ``/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

#: The rule that allows every endpoint: ``allow=[ALLOW_ALL]``.
ALLOW_ALL = "* /**"


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
    method, _, path = text.strip().partition(" ")
    path = path.strip()
    if not method or not path.startswith("/"):
        raise ValueError(
            f"Endpoint rule {text!r} must be 'METHOD /path', for example 'POST /chat/completions' "
            "or 'GET,DELETE /files/**'."
        )
    methods: frozenset[str] | None = None
    if method != "*":
        names = {name.strip().upper() for name in method.split(",") if name.strip()}
        if "GET" in names:
            names.add("HEAD")
        methods = frozenset(names)
    parts = re.split(r"(\*\*|\*)", _normalise(path))
    regex = "".join(
        ".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part) for part in parts
    )
    return EndpointRule(methods, re.compile(regex), text)


def parse_rules(texts: Iterable[str]) -> tuple[EndpointRule, ...]:
    """Parse several rules at once (at construction time, so a typo fails early)."""
    return tuple(parse_rule(text) for text in texts)


def endpoint_allowed(rules: Iterable[EndpointRule], method: str, path: str) -> bool:
    """Whether any rule matches ``method path``."""
    return any(rule.matches(method, path) for rule in rules)


def _normalise(path: str) -> str:
    path = path.partition("?")[0]
    return path.rstrip("/") or "/"
