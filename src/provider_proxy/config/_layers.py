"""The environment and the command line as documents, and how documents merge.

Pure: :func:`environment_document` reads a mapping (``os.environ`` or a
test's), :func:`merge` layers documents so that a later one wins, key by key.
Precedence, lowest first: default, file, environment, flag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._schema import Problem


@dataclass(frozen=True, slots=True)
class Variable:
    """An environment variable and the key it sets; the first set of ``names`` wins."""

    names: tuple[str, ...]
    key: str
    #: "str", "int", "float", "bool", "list", "lower", "level" (a log level), or
    #: "ms" (milliseconds, made seconds).
    kind: str
    doc: str


#: Every variable read, in the order of the documented table. ``PROVIDER_PROXY_*``
#: first in each row: they win over the names brought from other services.
VARIABLES: tuple[Variable, ...] = (
    Variable(("PROVIDER_PROXY_HOST", "HOST"), "server.host", "str", "address to listen on"),
    Variable(
        ("PROVIDER_PROXY_PORT", "PORT", "PROXY_PORT"), "server.port", "int", "port to listen on"
    ),
    Variable(
        ("PROVIDER_PROXY_WORKERS", "WEB_CONCURRENCY"),
        "server.workers",
        "int",
        "worker processes (share limits through a Redis store)",
    ),
    Variable(
        ("PROVIDER_PROXY_LOG_LEVEL", "LOG_LEVEL"),
        "server.log_level",
        "level",
        "debug, info, warning, error or critical",
    ),
    Variable(("PROVIDER_PROXY_LOG_FORMAT",), "server.log_format", "lower", "json or text"),
    Variable(
        ("PROVIDER_PROXY_RELOAD_INTERVAL",),
        "server.reload_interval",
        "float",
        "seconds between checks of key files (0: only on SIGHUP)",
    ),
    Variable(
        ("PROVIDER_PROXY_VALIDATE_CREDENTIALS",),
        "validate_credentials",
        "lower",
        "off, warn or strict",
    ),
    Variable(
        ("PROVIDER_PROXY_ALLOWED_ORIGINS", "ALLOWED_ORIGINS", "CORS_ORIGINS"),
        "cors.allow_origins",
        "list",
        "browser origins allowed (comma-separated)",
    ),
    Variable(
        ("PROVIDER_PROXY_CLIENT_KEYS",),
        "guards.client_keys",
        "list",
        "keys clients must send (comma-separated)",
    ),
    Variable(
        ("PROVIDER_PROXY_CLIENT_KEYS_FILE",),
        "guards.client_keys_file",
        "str",
        "file of client keys or their SHA-256 hashes, one a line",
    ),
    Variable(
        ("PROVIDER_PROXY_MAX_CONCURRENT", "MAX_CONCURRENT_REQUESTS"),
        "guards.max_concurrent",
        "int",
        "requests in flight at most (503 beyond)",
    ),
    Variable(
        ("PROVIDER_PROXY_TRUSTED_PROXIES", "TRUSTED_PROXIES"),
        "guards.trusted_proxies",
        "list",
        "proxies whose X-Forwarded-For is believed (comma-separated)",
    ),
    Variable(("PROVIDER_PROXY_TIMEOUT",), "timeout", "float", "upstream timeout, seconds"),
    Variable(("REQUEST_TIMEOUT",), "timeout", "ms", "upstream timeout, milliseconds"),
    Variable(
        ("PROVIDER_PROXY_MAX_BODY_SIZE",), "max_body_size", "int", "largest request body, bytes"
    ),
    Variable(
        ("PROVIDER_PROXY_TRANSPORT",),
        "transport",
        "str",
        "upstream transport: auto, reqwest, aiohttp or httpx",
    ),
    Variable(
        ("PROVIDER_PROXY_STORE", "REDIS_URL"),
        "store",
        "str",
        "memory, or redis://host:port/db to share limits between workers",
    ),
    Variable(("PROVIDER_PROXY_METRICS",), "metrics", "bool", "serve /metrics (Prometheus)"),
    Variable(("PROVIDER_PROXY_ACCESS_LOG",), "access_log", "bool", "one JSON line per request"),
    Variable(
        ("PROVIDER_PROXY_USAGE_FILE",),
        "sinks.usage_file",
        "str",
        "append token usage, one JSON line per request",
    ),
    Variable(
        ("PROVIDER_PROXY_MODELS_TTL",), "models_ttl", "float", "seconds the model catalog is cached"
    ),
    Variable(
        ("PROVIDER_PROXY_INFERENCE_API",),
        "inference_api",
        "bool",
        "serve the /api/v1 inference and model endpoints",
    ),
    Variable(
        ("PROVIDER_PROXY_DEFAULT_PROVIDER",),
        "default_provider",
        "str",
        "the provider of gateway models named without one",
    ),
    Variable(
        ("WS_MAX_CONNECTIONS", "PROVIDER_PROXY_WS_MAX_CONNECTIONS"),
        "ws_max_connections",
        "int",
        "WebSocket connections at most",
    ),
    Variable(
        ("WS_HEARTBEAT_INTERVAL",),
        "ws_heartbeat_interval",
        "ms",
        "WebSocket heartbeat, milliseconds",
    ),
)

#: The rate limit of the service this replaces: both or neither, milliseconds.
RATE_WINDOW = "RATE_LIMIT_WINDOW_MS"
RATE_MAX = "RATE_LIMIT_MAX_REQUESTS"
#: Its defaults, when only one of the two is set.
RATE_DEFAULTS = {RATE_WINDOW: "900000", RATE_MAX: "100"}

#: Rate limits in one variable: ``LIMIT/SECONDS [ip|identity] [PATH,PATH...]`` rules
#: separated by ``;``.
RATE_LIMITS = "PROVIDER_PROXY_RATE_LIMITS"
RATE_LIMITS_EXAMPLE = 'e.g. "100/900 ip; 50/900 ip /api/v1/inference*,/v1/messages"'


def parse_rate_limits(text: str) -> list[dict[str, Any]]:
    """The rules of :data:`RATE_LIMITS`; raises :class:`ValueError` naming the bad rule."""
    rules: list[dict[str, Any]] = []
    for part in text.split(";"):
        words = part.split()
        if not words:
            continue
        limit, slash, window = words[0].partition("/")
        rule: dict[str, Any] = {}
        try:
            rule["limit"], rule["window"] = int(limit), float(window)
        except ValueError:
            raise ValueError(f"{part.strip()!r} does not start with LIMIT/SECONDS") from None
        if not slash:
            raise ValueError(f"{part.strip()!r} does not start with LIMIT/SECONDS")
        rest = words[1:]
        if rest and rest[0] in ("ip", "identity"):
            rule["key"] = rest.pop(0)
        if rest:
            rule["paths"] = [p for p in rest.pop(0).split(",") if p]
        if rest:
            raise ValueError(f"{part.strip()!r} has more than a key and its paths")
        rules.append(rule)
    return rules


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(kind: str, text: str) -> Any:
    """The value of ``text`` as ``kind``; raises :class:`ValueError` naming what was expected."""
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "ms":
        return int(text) / 1000
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError("true or false")
    if kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind == "lower":
        return text.strip().lower()
    if kind == "level":  # Node's loggers say "warn"
        level = text.strip().lower()
        return {"warn": "warning", "fatal": "critical"}.get(level, level)
    return text


_EXPECTED = {"int": "an integer", "float": "a number", "ms": "an integer of milliseconds"}


@dataclass(frozen=True, slots=True)
class Layer:
    """A document, with the source of each key for messages."""

    document: dict[str, Any]
    sources: dict[str, str]


def set_key(layer: Layer, key: str, value: Any, source: str) -> None:
    """Set the dotted ``key`` in ``layer`` (tables made on the way)."""
    parts = key.split(".")
    table = layer.document
    for part in parts[:-1]:
        table = table.setdefault(part, {})
    table[parts[-1]] = value
    layer.sources[key] = source


def environment_document(
    env: Mapping[str, str], base_url_prefixes: Mapping[str, str]
) -> tuple[Layer, list[Problem]]:
    """The settings ``env`` makes, as a document.

    :param base_url_prefixes: provider type to its variables' prefix
        (``"OPENROUTER"`` for ``OPENROUTER_API_BASE`` and ``OPENROUTER_BASE_URL``).
    """
    layer = Layer({}, {})
    problems: list[Problem] = []
    taken: set[str] = set()
    for variable in VARIABLES:
        name = next((n for n in variable.names if env.get(n, "") != ""), None)
        if name is None or variable.key in taken:
            continue
        source = f"environment variable {name}"
        try:
            value = _convert(variable.kind, env[name])
        except ValueError:
            want = _EXPECTED.get(variable.kind, "true or false")
            problems.append(Problem(source, variable.key, f"must be {want}, not {env[name]!r}"))
            continue
        taken.add(variable.key)
        set_key(layer, variable.key, value, source)
    rules: list[dict[str, Any]] = []
    sources: list[str] = []
    if env.get(RATE_WINDOW) or env.get(RATE_MAX):
        source = f"environment variables {RATE_WINDOW} and {RATE_MAX}"
        try:
            window = int(env.get(RATE_WINDOW) or RATE_DEFAULTS[RATE_WINDOW])
            limit = int(env.get(RATE_MAX) or RATE_DEFAULTS[RATE_MAX])
        except ValueError:
            problems.append(Problem(source, "guards.rate_limits", "must be integers"))
        else:
            rules.append({"limit": limit, "window": window / 1000, "key": "ip", "name": "per IP"})
            sources.append(source)
    if env.get(RATE_LIMITS):
        source = f"environment variable {RATE_LIMITS}"
        try:
            rules += parse_rate_limits(env[RATE_LIMITS])
        except ValueError as exc:
            problems.append(Problem(source, "guards.rate_limits", str(exc), RATE_LIMITS_EXAMPLE))
        else:
            sources.append(source)
    if rules:
        set_key(layer, "guards.rate_limits", rules, " and ".join(sources))
    for kind, prefix in base_url_prefixes.items():
        for suffix in ("_API_BASE", "_BASE_URL"):
            name = prefix + suffix
            if env.get(name):
                source = f"environment variable {name}"
                set_key(layer, f"providers.{kind}.base_url", env[name], source)
                break
    return layer, problems


def merge(layers: Sequence[Layer]) -> Layer:
    """One document of ``layers``, later ones winning key by key (lists are replaced whole)."""
    merged = Layer({}, {})
    for layer in layers:
        _merge_into(merged.document, layer.document)
        merged.sources.update(layer.sources)
    return merged


def _merge_into(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    for name, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(name), dict):
            _merge_into(target[name], value)
        else:
            target[name] = _copy(value)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def file_layer(document: Mapping[str, Any], path: str) -> Layer:
    """A parsed file as a layer: every key's source is the file."""
    layer = Layer(_copy(dict(document)), {})
    _record(layer.document, "", path, layer.sources)
    return layer


def _record(value: Any, key: str, source: str, sources: dict[str, str]) -> None:
    if key:
        sources[key] = source
    if isinstance(value, dict):
        for name, item in value.items():
            _record(item, f"{key}.{name}" if key else name, source, sources)


def flag_layer(flags: Mapping[str, tuple[str, Any]]) -> Layer:
    """Flags given on the command line: key to (flag, value)."""
    layer = Layer({}, {})
    for key, (flag, value) in flags.items():
        set_key(layer, key, value, flag)
    return layer
