"""From a checked document to the objects ``make_asgi_app`` takes.

Every failure here (a class that cannot be imported, an option a constructor
refuses) becomes a :class:`~provider_proxy.config.Problem` naming the key, so
``check`` reports all of them at once.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..adapters import (
    AdapterOptions,
    AnthropicAdapter,
    AzureOpenAIAdapter,
    BaseAdapter,
    ClientIdentity,
    CopilotAdapter,
    DashScopeAdapter,
    GeminiAdapter,
    OllamaAdapter,
    OpenAIAdapter,
    OpenAICompatibleAdapter,
    OpenRouterAdapter,
    Provider,
    VLLMAdapter,
)
from ..engine import CORS, ProxyOptions
from ..guards import Guards, Quota, RateLimit
from ..observe import NdjsonUsageSink
from ..policy import Cooldown, Deployment, RetryPolicy, Route
from ..state import RedisStore
from ..transports import DEFAULT_LIMITS, DEFAULT_TIMEOUT, transport_named
from ._keyfiles import ClientKeysFile, KeyFile, environ_key
from ._schema import PROVIDER_KEYS, TOP, Checker, Problem, did_you_mean

#: The built-in adapter types by name (``type = "openrouter"``); a provider
#: table named after one of them needs no ``type``.
BUILTIN_TYPES: dict[str, type[BaseAdapter]] = {
    cls.default_name: cls
    for cls in (
        OpenAIAdapter,
        AnthropicAdapter,
        OpenRouterAdapter,
        GeminiAdapter,
        AzureOpenAIAdapter,
        DashScopeAdapter,
        CopilotAdapter,
        OllamaAdapter,
        VLLMAdapter,
    )
}
OPENAI_COMPATIBLE = "openai_compatible"
#: Types tried when no provider is configured: those that need a key (local
#: servers need none, so they are served only when their base URL is set).
ENVIRONMENT_TYPES = tuple(
    name for name, cls in BUILTIN_TYPES.items() if not cls.default_key_optional
)


def base_url_prefixes() -> dict[str, str]:
    """Each built-in type's prefix of its ``*_API_BASE``/``*_BASE_URL`` variables."""
    prefixes: dict[str, str] = {}
    for name, cls in BUILTIN_TYPES.items():
        env = cls.default_api_key_env
        first = env[0] if isinstance(env, tuple) else env
        prefixes[name] = first.removesuffix("_API_KEY") if first else name.upper()
    return prefixes


#: ``make_asgi_app`` options the document builds from its tables, not passed as given.
_BUILT_OPTIONS = frozenset(
    {
        "transport",
        "timeout",
        "limits",
        "transforms",
        "guards",
        "cors",
        "store",
        "sinks",
        "routes",
        "retry",
    }
)


def app_option_names() -> frozenset[str]:
    """The keyword options ``make_asgi_app`` takes in this version."""
    return frozenset(ProxyOptions.__annotations__)


_PLAIN_TYPES = frozenset({"bool", "int", "float", "str", "None"})


def plain_options() -> frozenset[str]:
    """The options of ``make_asgi_app`` a file gives as they are: those of plain
    types (``bool``, ``float | None``, a ``Literal``), whatever this version has."""
    plain = set()
    for name, annotation in ProxyOptions.__annotations__.items():
        found: object = getattr(annotation, "__forward_arg__", annotation)
        text = found if isinstance(found, str) else str(getattr(annotation, "__name__", ""))
        parts = [part.strip() for part in text.split("|")]
        if all(part in _PLAIN_TYPES or part.startswith("Literal[") for part in parts):
            plain.add(name)
    return frozenset(plain - _BUILT_OPTIONS)


@dataclass
class Built:
    """What a document builds: the adapters, ``make_asgi_app``'s options, and watched files."""

    adapters: list[Provider] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    key_files: list[Any] = field(default_factory=list)


def import_object(path: str) -> Any:
    """``"package.module:Name"`` imported; raises :class:`ValueError` saying what is wrong."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{path!r} is not of the form 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} ({exc})") from None
    try:
        found = module
        for part in attribute.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise ValueError(f"{module_name!r} has no {attribute!r}") from None
    return found


class Builder:
    """Builds :class:`Built` from a checked document, collecting problems."""

    def __init__(
        self,
        checker: Checker,
        reload_interval: float,
        *,
        live_keys: Mapping[str, str] | None = None,
    ) -> None:
        """
        :param live_keys: with a reloaded environment file, the keys whose value
            is one ``${NAME}``, to ``NAME``: their adapters read it at each use.
        """
        self._checker = checker
        self._interval = reload_interval
        self._live = live_keys
        self.built = Built()

    @property
    def problems(self) -> list[Problem]:
        return self._checker.problems

    def problem(self, key: str, message: str, fix: str | None = None) -> None:
        self._checker.problem(key, message, fix)

    def build(self, document: Mapping[str, Any], *, from_environment: bool) -> Built:
        providers = document.get("providers", {})
        for name, table in providers.items():
            adapter = self.adapter(name, table, only_if_enabled=from_environment)
            if adapter is not None:
                self.built.adapters.append(adapter)
        options = self.built.options
        # the top-level keys the schema knows, and the plain ones it may not (yet)
        passed = ((app_option_names() & set(TOP)) | plain_options()) - _BUILT_OPTIONS
        for name, value in document.items():
            if name in passed:
                options[name] = value
        if "timeout" in document:
            timeout = document["timeout"]
            options["timeout"] = _timeout(timeout) if isinstance(timeout, dict) else float(timeout)
        if "limits" in document:
            options["limits"] = httpx.Limits(**document["limits"])
        if "transport" in document:
            try:
                options["transport"] = transport_named(
                    document["transport"], options.get("limits", DEFAULT_LIMITS)
                )
            except ImportError as exc:
                self.problem("transport", str(exc))
        if "transforms" in document:
            options["transforms"] = self.objects("transforms", document["transforms"])
        trusted = document.get("server", {}).get("trusted_proxies")
        if trusted is not None:  # who the client is: the guards' call
            document = {
                **document,
                "guards": {"trusted_proxies": trusted, **document.get("guards", {})},
            }
        if "guards" in document:
            guards = self.guards(document["guards"])
            if guards is not None:
                options["guards"] = guards
        if "cors" in document:
            cors = self.call("cors", CORS, **document["cors"])
            if cors is not None:
                options["cors"] = cors
        if "store" in document:
            self.store(document["store"])
        if "retry" in document:
            retry = self.retry("retry", document["retry"])
            if retry is not None:
                options["retry"] = retry
        if "routes" in document:
            options["routes"] = self.routes(document["routes"])
        usage_file = document.get("sinks", {}).get("usage_file")
        if usage_file:
            options["sinks"] = [NdjsonUsageSink(usage_file)]
        return self.built

    def call(self, at: str, action: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``action(*args, **kwargs)``; a :class:`ValueError`, :class:`TypeError` or
        :class:`OSError` becomes a problem at ``at``."""
        try:
            return action(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            self.problem(at, str(exc))
            return None
        except OSError as exc:
            self.problem(at, f"cannot read {exc.filename}: {exc.strerror}")
            return None

    # -- adapters --------------------------------------------------------------------

    def adapter(
        self, name: str, table: Mapping[str, Any], *, only_if_enabled: bool = False
    ) -> Provider | None:
        key = f"providers.{name}"
        options = dict(table)
        kind = options.pop("type", None)
        path = options.pop("class", None)
        if kind is not None and path is not None:
            self.problem(key, "has both type and class", "keep one of them")
            return None
        cls: Any
        if path is not None:
            cls = self.call(f"{key}.class", import_object, path)
            if cls is None:
                return None
        else:
            kind = kind or name
            if kind == OPENAI_COMPATIBLE:
                cls = OpenAICompatibleAdapter
                if "base_url" not in options:
                    self.problem(
                        key,
                        "an openai_compatible provider needs base_url",
                        'add base_url = "https://host/v1"',
                    )
                    return None
            elif kind in BUILTIN_TYPES:
                cls = BUILTIN_TYPES[kind]
            else:
                self.problem(
                    f"{key}.type" if "type" in table else key,
                    f"unknown provider type {kind!r}",
                    did_you_mean(kind, [*BUILTIN_TYPES, OPENAI_COMPATIBLE])
                    + ', or class = "package.module:Class"',
                )
                return None
            known = _adapter_keys(cls)
            unknown = [option for option in options if option not in known]
            for option in unknown:
                self.problem(f"{key}.{option}", "unknown key", did_you_mean(option, known))
            if unknown:
                return None
        if self._live is not None:
            self._live_key(key, cls, options)
        key_file = options.pop("api_key_file", None)
        if key_file is not None:
            watched = self.call(f"{key}.api_key_file", KeyFile, key_file, self._interval)
            if watched is None:
                return None
            self.built.key_files.append(watched)
            options["api_key"] = watched
        identity = options.pop("client_identity", None)
        if identity is not None:
            if "drop_prefixes" in identity:
                identity = {**identity, "drop_prefixes": tuple(identity["drop_prefixes"])}
            options["client_identity"] = ClientIdentity(**identity)
        if "transforms" in options:
            options["transforms"] = self.objects(f"{key}.transforms", options["transforms"])
        if cls is OpenAICompatibleAdapter:
            make: Callable[[], Any] = lambda: cls(name, **options)  # noqa: E731
        elif _takes(cls, "name"):
            make = lambda: cls(name=name, **options)  # noqa: E731
        else:
            make = lambda: cls(**options)  # noqa: E731
        adapter = self.call(key, make)
        if adapter is None:
            return None
        if only_if_enabled and not adapter.availability().enabled:
            return None
        return adapter  # type: ignore[no-any-return]

    def _live_key(self, key: str, cls: Any, options: dict[str, Any]) -> None:
        """Make the adapter read its key from the environment at each use."""
        name = self._live.get(f"{key}.api_key") if self._live is not None else None
        if name is not None:
            options["api_key"] = environ_key((name,))
            return
        if any(k in options for k in ("api_key", "api_key_env", "api_key_file")):
            return
        env = getattr(cls, "default_api_key_env", None)
        names = (env,) if isinstance(env, str) else tuple(env or ())
        if names and any(os.environ.get(n) for n in names):
            options["api_key"] = environ_key(names)

    # -- the rest ----------------------------------------------------------------------

    def objects(self, key: str, tables: list[dict[str, Any]]) -> list[Any]:
        """Objects built from ``[{class = "pkg.mod:Class", ...options}]``."""
        made: list[Any] = []
        for i, table in enumerate(tables):
            options = dict(table)
            path = options.pop("class", None)
            item = f"{key}[{i}]"
            if not isinstance(path, str):
                self.problem(
                    item, "needs class", 'add class = "StripAnsi" or "package.module:Class"'
                )
                continue
            if ":" not in path:  # a ready-made transform by its name
                path = f"provider_proxy.transforms:{path}"
            cls = self.call(f"{item}.class", import_object, path)
            if cls is not None:
                obj = self.call(item, cls, **options)
                if obj is not None:
                    made.append(obj)
        return made

    def guards(self, table: Mapping[str, Any]) -> Guards | None:
        options = dict(table)
        rules: list[RateLimit] = []
        for i, rule in enumerate(options.pop("rate_limits", [])):
            rule = dict(rule)
            if "window_ms" in rule:
                rule["window"] = rule.pop("window_ms") / 1000
            missing = [k for k in ("limit", "window") if k not in rule]
            if missing:
                self.problem(
                    f"guards.rate_limits[{i}]",
                    f"needs {' and '.join(missing)}",
                    "e.g. limit = 100, window = 900 (seconds)",
                )
                continue
            made = self.call(f"guards.rate_limits[{i}]", RateLimit, **rule)
            if made is not None:
                rules.append(made)
        quotas: list[Quota] = []
        for i, quota in enumerate(options.pop("quotas", [])):
            made = self.call(f"guards.quotas[{i}]", Quota, **quota)
            if made is not None:
                quotas.append(made)
        keys_file = options.pop("client_keys_file", None)
        watched: ClientKeysFile | None = None
        if keys_file is not None:
            watched = self.call(
                "guards.client_keys_file", ClientKeysFile, keys_file, self._interval
            )
            if watched is None:
                return None
            hashes = watched.hashes()
            if not hashes:
                self.problem(
                    "guards.client_keys_file",
                    f"{keys_file} holds no key",
                    "write one key (or sha256:HEX) a line",
                )
                return None
            options["client_key_hashes"] = hashes
        guards = self.call("guards", Guards, rate_limits=rules, quotas=quotas, **options)
        if guards is not None and watched is not None:
            keys = options.get("client_keys")
            watched.on_change = lambda new: guards.set_client_keys(keys, new)
            self.built.key_files.append(watched)
        return guards  # type: ignore[no-any-return]

    # -- routes ----------------------------------------------------------------------

    def _found_wrong(self, at: str) -> bool:
        """Whether a key below ``at`` was found wrong already (that problem is the clear one)."""
        return any(problem.key.startswith(f"{at}.") for problem in self.problems)

    def retry(self, at: str, table: Mapping[str, Any]) -> RetryPolicy | None:
        if self._found_wrong(at):
            return None
        options = dict(table)
        if "retry_on" in options:
            options["retry_on"] = frozenset(options["retry_on"])
        made: RetryPolicy | None = self.call(at, RetryPolicy, **options)
        return made

    def routes(self, tables: Mapping[str, Mapping[str, Any]]) -> dict[str, Route]:
        """``[routes.NAME]`` tables as :class:`Route`s (the app checks their targets)."""
        routes: dict[str, Route] = {}
        for name, table in tables.items():
            at = f"routes.{name}"
            options = dict(table)
            raw = options.pop("deployments", None)
            if not raw:
                self.problem(
                    at,
                    "needs deployments",
                    'e.g. deployments = ["anthropic/claude-sonnet-4-5", "openai/gpt-4.1"]',
                )
                continue
            deployments = self._deployments(at, raw)
            if deployments is None:
                continue
            if "retry" in options:
                options["retry"] = self.retry(f"{at}.retry", options["retry"])
                if options["retry"] is None:
                    continue
            if "cooldown" in options:
                if self._found_wrong(f"{at}.cooldown"):
                    continue
                options["cooldown"] = self.call(f"{at}.cooldown", Cooldown, **options["cooldown"])
                if options["cooldown"] is None:
                    continue
            route = self.call(at, Route, deployments, **options)
            if route is not None:
                routes[name] = route
        return routes

    def _deployments(self, at: str, raw: list[Any]) -> list[Deployment] | None:
        deployments: list[Deployment] = []
        for i, item in enumerate(raw):
            where = f"{at}.deployments[{i}]"
            if isinstance(item, str):
                deployments.append(Deployment(item))
            elif isinstance(item, dict) and isinstance(item.get("target"), str):
                unknown = set(item) - {"target", "weight"}
                if unknown:
                    self.problem(
                        where, f"unknown key {sorted(unknown)[0]!r}", "keys: target, weight"
                    )
                    return None
                made = self.call(where, Deployment, item["target"], weight=item.get("weight", 1))
                if made is None:
                    return None
                deployments.append(made)
            else:
                self.problem(
                    where,
                    'is not "adapter/model" nor a table with a target',
                    'write "openai/gpt-4.1" or { target = "openai/gpt-4.1", weight = 2 }',
                )
                return None
        return deployments

    def store(self, value: str | Mapping[str, Any]) -> None:
        options = {"url": value} if isinstance(value, str) else dict(value)
        url = options.pop("url", "memory")
        if url == "memory":
            return
        if not url.startswith(("redis://", "rediss://", "unix://")):
            self.problem(
                "store", "must be memory or a redis:// URL", 'e.g. "redis://127.0.0.1:6379/0"'
            )
            return
        store = self.call("store", RedisStore.from_url, url, **options)
        if store is not None:
            self.built.options["store"] = store


def _timeout(table: Mapping[str, float]) -> httpx.Timeout:
    """``[timeout]``: each phase given, the others at the proxy's defaults."""
    return httpx.Timeout(
        connect=table.get("connect", DEFAULT_TIMEOUT.connect),
        read=table.get("read", DEFAULT_TIMEOUT.read),
        write=table.get("write", DEFAULT_TIMEOUT.write),
        pool=table.get("pool", DEFAULT_TIMEOUT.pool),
    )


_NOT_FROM_A_FILE = frozenset({"self", "client", "clock", "azure_ad_token", "token_source"})


def _adapter_keys(cls: type) -> list[str]:
    """The keys a built-in adapter's table takes: the common ones and its own options."""
    own = [
        name
        for name, parameter in inspect.signature(cls).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in _NOT_FROM_A_FILE
    ]
    common = [k for k in _all_annotations(AdapterOptions) if k not in _NOT_FROM_A_FILE]
    return sorted({*PROVIDER_KEYS, *own, *common} - {"name"})


def _takes(cls: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _all_annotations(typed_dict: type) -> list[str]:
    """A TypedDict's keys, its bases' included (without evaluating their types)."""
    names: list[str] = []
    for klass in reversed(typed_dict.__mro__):
        names.extend(getattr(klass, "__annotations__", {}))
    return names
