"""The configuration document: its keys, their types, and the checks that name a fix.

Pure: a document is the plain data a TOML file parses to, with environment
variables and flags merged in by :mod:`provider_proxy.config._layers`. Every
problem names where its key came from (the file, an environment variable, a
flag), the key's dotted path and what to do about it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..dialects import PRIVATE_HEADERS
from ..transports import TRANSPORT_NAMES

#: A key's origin for messages when nothing more precise is known.
DEFAULT_SOURCE = "default"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration: where, which key, what, and the fix."""

    source: str
    key: str
    message: str
    fix: str | None = None

    def __str__(self) -> str:
        text = f"{self.source}: {self.key}: {self.message}" if self.key else self.message
        return f"{text} ({self.fix})" if self.fix else text


class ConfigInvalid(Exception):
    """The configuration has problems; each is one line of the message."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class Field:
    """A scalar or list key: the TOML types it takes and, if fixed, its choices."""

    kinds: tuple[type, ...]
    choices: tuple[str, ...] = ()
    #: Its value is masked when the configuration is printed.
    secret: bool = False
    #: A list whose items must be of ``items``.
    items: tuple[type, ...] = ()


@dataclass(frozen=True, slots=True)
class Table:
    """A table of known keys; ``values`` instead makes every key free, each value of that shape."""

    keys: Mapping[str, Field | Table | ListOf] = field(default_factory=dict)
    values: Field | Table | None = None
    #: Keys passed through unchecked (an adapter class's own options).
    open: bool = False


@dataclass(frozen=True, slots=True)
class ListOf:
    """A list of tables of one shape (``[[guards.rate_limits]]``)."""

    table: Table


@dataclass(frozen=True, slots=True)
class Either:
    """A key that takes a scalar or a table (``timeout = 30`` or ``[timeout] read = 30``)."""

    scalar: Field
    table: Table


NUMBER = (int, float)
_STR = Field((str,))
_BOOL = Field((bool,))
_INT = Field((int,))
_NUM = Field(NUMBER)
_STRS = Field((list,), items=(str,))
_HEADERS = Table(values=Field((str,)))

#: What every provider table takes; a ``type``'s own options are added to these.
PROVIDER_KEYS: dict[str, Field | Table | ListOf] = {
    "type": _STR,
    "class": _STR,
    "base_url": _STR,
    "api_key": Field((str,), secret=True),
    "api_key_env": Field((str, list), items=(str,)),
    "api_key_file": _STR,
    "key_optional": _BOOL,
    "user_agent": _STR,
    "headers": _HEADERS,
    "default_headers": _HEADERS,
    "allow": Field((str, list), items=(str,)),
    "forward_headers": Field((str, list), items=(str,)),
    "client_identity": Table({"user_agent": _STR, "headers": _HEADERS, "drop_prefixes": _STRS}),
    "transforms": ListOf(Table({"class": _STR}, open=True)),
}

RATE_LIMIT = Table(
    {
        "limit": _INT,
        "window": _NUM,
        "window_ms": _INT,
        "key": Field((str,), choices=("identity", "ip")),
        "unit": Field((str,), choices=("requests", "bytes", "tokens")),
        "per_provider": _BOOL,
        "per_model": _BOOL,
        "paths": _STRS,
        "name": _STR,
    }
)

GUARDS = Table(
    {
        "client_keys": Field((list,), items=(str,), secret=True),
        "client_keys_file": _STR,
        "rate_limits": ListOf(RATE_LIMIT),
        "quotas": ListOf(
            Table(
                {
                    "tokens": _INT,
                    "period": Field((str,), choices=("day", "month")),
                    "key": Field((str,), choices=("identity", "ip")),
                }
            )
        ),
        "max_concurrent": _INT,
        "max_concurrent_per_client": _INT,
        "trusted_proxies": _STRS,
    }
)

SERVER = Table(
    {
        "host": _STR,
        "port": _INT,
        "workers": _INT,
        "log_level": Field((str,), choices=("critical", "error", "warning", "info", "debug")),
        "log_format": Field((str,), choices=("json", "text")),
        "reload_interval": _NUM,
        #: The same as ``guards.trusted_proxies`` (a server setting to some).
        "trusted_proxies": _STRS,
    }
)

#: A retry policy: ``RetryPolicy``'s keywords.
RETRY = Table(
    {
        "attempts": _INT,
        "backoff": _NUM,
        "max_backoff": _NUM,
        "jitter": _BOOL,
        "retry_on": Field((list,), items=(int,)),
        "deadline": _NUM,
        "attempt_timeout": _NUM,
        "max_retry_after": _NUM,
        "max_retry_body": _INT,
        "hold_bytes": _INT,
        "hold_seconds": _NUM,
    }
)

#: One route: ``Route``'s keywords; ``deployments`` holds ``"adapter/model"``
#: strings or ``{target = ..., weight = ...}`` tables (checked when built).
ROUTE = Table(
    {
        "deployments": Field((list,)),
        "strategy": Field((str,), choices=("priority", "weighted", "least_busy", "latency")),
        "retry": RETRY,
        "sticky": _BOOL,
        "sticky_ttl": _NUM,
        "cooldown": Table(
            {
                "failures": _INT,
                "window": _NUM,
                "base": _NUM,
                "factor": _NUM,
                "max": _NUM,
                "probe_timeout": _NUM,
            }
        ),
    }
)

#: The document's top level. Other keys of ``make_asgi_app`` (``ProxyOptions``)
#: that take a plain value are accepted too: see :func:`check_document`.
TOP: dict[str, Field | Table | ListOf | Either] = {
    "validate_credentials": Field((str,), choices=("off", "warn", "strict")),
    "models_ttl": _NUM,
    "max_body_size": _INT,
    "access_log": _BOOL,
    "metrics": _BOOL,
    "overhead_header": _BOOL,
    "default_provider": _STR,
    "strict_translation": _BOOL,
    "inference_api": _BOOL,
    "timeout": Either(_NUM, Table({"connect": _NUM, "read": _NUM, "write": _NUM, "pool": _NUM})),
    "transport": Field((str,), choices=TRANSPORT_NAMES),
    "limits": Table(
        {"max_connections": _INT, "max_keepalive_connections": _INT, "keepalive_expiry": _NUM}
    ),
    "store": Either(
        _STR,
        Table(
            {
                "url": Field((str,), secret=True),
                "prefix": _STR,
                "on_error": Field((str,), choices=("open", "closed")),
                "timeout": _NUM,
            }
        ),
    ),
    "transforms": ListOf(Table({"class": _STR}, open=True)),
    "server": SERVER,
    "providers": Table(values=Table(PROVIDER_KEYS, open=True)),
    "guards": GUARDS,
    "cors": Table(
        {
            "allow_origins": _STRS,
            "allow_methods": _STRS,
            "allow_headers": _STRS,
            "allow_credentials": _BOOL,
            "expose_headers": _STRS,
            "max_age": _INT,
        }
    ),
    "sinks": Table({"usage_file": _STR}),
    "ports": Table(values=_INT),
    "retry": RETRY,
    "routes": Table(values=ROUTE),
}

#: Key names whose values are secrets wherever they appear (header names in any case).
SECRET_NAMES = frozenset(
    {
        "api_key",
        "client_keys",
        "password",
        "token",
        "github_token",
        "cookie",
        "proxy-authorization",
        *(name.decode("latin-1") for name in PRIVATE_HEADERS),
    }
)

_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}
_TYPE_NAMES.update({list: "a list", dict: "a table"})


def _kind_name(kinds: tuple[type, ...]) -> str:
    if set(kinds) == {int, float}:
        return "a number"
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def _is(value: object, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # TOML's true is not the number 1
        return bool in kinds
    return isinstance(value, kinds)


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """The fix for an unknown key: the nearest known one, or the list of them."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "the keys here are: " + ", ".join(sorted(known))


class Checker:
    """Walks a document against the schema, collecting :class:`Problem` s."""

    def __init__(self, sources: Mapping[str, str], passthrough: Mapping[str, Field]) -> None:
        self._sources = sources
        self._passthrough = passthrough
        self.problems: list[Problem] = []

    def source(self, key: str) -> str:
        """Where ``key`` (or the nearest table above it) was set."""
        probe = key
        while probe:
            found = self._sources.get(probe)
            if found is not None:
                return found
            probe = probe.rpartition(".")[0].split("[")[0] if "." in probe else ""
        return DEFAULT_SOURCE

    def problem(self, key: str, message: str, fix: str | None = None) -> None:
        self.problems.append(Problem(self.source(key), key, message, fix))

    def document(self, document: Mapping[str, Any]) -> None:
        known: dict[str, Any] = {**TOP, **self._passthrough}
        for name, value in document.items():
            spec = known.get(name)
            if spec is None:
                self.problem(name, "unknown key", did_you_mean(name, list(known)))
            else:
                self.value(name, value, spec)

    def value(self, key: str, value: Any, spec: Field | Table | ListOf | Either) -> None:
        if isinstance(spec, Either):
            if isinstance(value, dict):
                self.table(key, value, spec.table)
            else:
                self.field(key, value, spec.scalar, also="or a table")
        elif isinstance(spec, Table):
            if not isinstance(value, dict):
                self.problem(key, f"must be a table, not {value!r}", f"write [{key}] and its keys")
            else:
                self.table(key, value, spec)
        elif isinstance(spec, ListOf):
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                self.problem(key, "must be a list of tables", f"write [[{key}]] for each")
            else:
                for i, item in enumerate(value):
                    self.table(f"{key}[{i}]", item, spec.table)
        else:
            self.field(key, value, spec)

    def table(self, key: str, value: Mapping[str, Any], spec: Table) -> None:
        for name, item in value.items():
            path = f"{key}.{name}"
            if spec.values is not None:
                self.value(path, item, spec.values)
            elif name in spec.keys:
                self.value(path, item, spec.keys[name])
            elif not spec.open:
                self.problem(path, "unknown key", did_you_mean(name, list(spec.keys)))

    def field(self, key: str, value: Any, spec: Field, also: str = "") -> None:
        if not _is(value, spec.kinds):
            want = _kind_name(spec.kinds) + (f" {also}" if also else "")
            self.problem(key, f"must be {want}, not {value!r}")
            return
        if spec.choices and value not in spec.choices:
            close = difflib.get_close_matches(str(value), spec.choices, n=1, cutoff=0.6)
            self.problem(
                key,
                f"must be one of {', '.join(spec.choices)}, not {value!r}",
                f"did you mean {close[0]!r}?" if close else None,
            )
        if isinstance(value, list) and spec.items:
            for i, item in enumerate(value):
                if not _is(item, spec.items):
                    self.problem(f"{key}[{i}]", f"must be {_kind_name(spec.items)}, not {item!r}")
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            self.problem(key, f"must not be negative, not {value}")


def check_document(
    document: Mapping[str, Any],
    sources: Mapping[str, str],
    passthrough: Mapping[str, Field] | None = None,
) -> list[Problem]:
    """Every problem of ``document``'s shape (unknown keys, wrong types, bad choices).

    :param passthrough: further top-level keys taken as they are: the plain
        options of ``make_asgi_app`` this schema does not list itself.
    """
    checker = Checker(sources, passthrough or {})
    checker.document(document)
    return checker.problems


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class Resolved:
    """A document with its references replaced, and what they were."""

    document: Any
    problems: list[Problem]
    #: Keys whose values came from a reference (masked when printed: references
    #: are where secrets are kept).
    referenced: set[str]
    #: Keys whose whole value was one reference, to the variable's name (a key
    #: read again from the environment when it is reloaded).
    whole: dict[str, str]


def resolve_references(
    document: Any, env: Mapping[str, str], sources: Mapping[str, str], key: str = ""
) -> Resolved:
    """``document`` with every ``"${NAME}"`` replaced by that environment variable;
    a problem for each variable not set."""
    problems: list[Problem] = []
    referenced: set[str] = set()
    whole: dict[str, str] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}" if path else k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        alone = _REFERENCE.fullmatch(value)
        if alone is not None:
            whole[path] = alone.group(1)

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                checker = Checker(sources, {})
                problems.append(
                    Problem(
                        checker.source(path),
                        path,
                        f"the environment variable {name} is not set",
                        f"set {name}, or write the value without ${{{name}}}",
                    )
                )
                return ""
            referenced.add(path)
            return env[name]

        return _REFERENCE.sub(substitute, value)

    resolved = walk(document, key)
    return Resolved(resolved, problems, referenced, whole)


MASK = "***"


def masked(document: Any, referenced: set[str], path: str = "") -> Any:
    """``document`` for printing: secrets and referenced values shown as ``***``.

    A value is a secret when its key is one of :data:`SECRET_NAMES`, when it
    came from a ``${...}`` reference, or when it is a URL with a password.
    """
    if isinstance(document, dict):
        out: dict[str, Any] = {}
        for name, value in document.items():
            sub = f"{path}.{name}" if path else name
            if name.lower() in SECRET_NAMES and value:
                out[name] = [MASK] * len(value) if isinstance(value, list) else MASK
            else:
                out[name] = masked(value, referenced, sub)
        return out
    if isinstance(document, list):
        return [masked(v, referenced, f"{path}[{i}]") for i, v in enumerate(document)]
    if path in referenced:
        return MASK
    if isinstance(document, str):
        return _URL_PASSWORD.sub(r"\1" + MASK + "@", document)
    return document


_URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@]*:)[^@/]*@", re.IGNORECASE)
