"""Reading the configuration: the file, the environment and the flags, checked and built.

:func:`load_config` is the one entry: ``serve`` and ``check`` both call it, so
they report the same problems.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._build import (
    BUILTIN_TYPES,
    ENVIRONMENT_TYPES,
    OPENAI_COMPATIBLE,
    Builder,
    Built,
    app_option_names,
    base_url_prefixes,
    plain_options,
)
from ._layers import Layer, environment_document, file_layer, flag_layer, merge
from ._schema import (
    TOP,
    Checker,
    ConfigInvalid,
    Field,
    Problem,
    check_document,
    masked,
    resolve_references,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

#: The variable naming the file when ``--config`` is not given.
CONFIG_VARIABLE = "PROVIDER_PROXY_CONFIG"

#: The server settings when nothing sets them.
SERVER_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 8000,
    "workers": 1,
    "log_level": "info",
    "log_format": "json",
    "reload_interval": 5.0,
}


@dataclass
class ServiceConfig:
    """The effective configuration of a standalone proxy, checked and built."""

    #: The merged document, references resolved (it holds secrets: print :meth:`masked`).
    document: dict[str, Any]
    #: Where each key was set.
    sources: dict[str, str]
    #: The file read, if any.
    path: str | None
    #: Settings that were ignored, said at startup.
    warnings: list[str]
    built: Built
    _referenced: set[str]

    @property
    def server(self) -> dict[str, Any]:
        """Host, port, workers, log level and format, reload interval."""
        return {**SERVER_DEFAULTS, **self.document.get("server", {})}

    @property
    def ports(self) -> dict[str, int]:
        """Providers served each at the root of its own port."""
        return dict(self.document.get("ports", {}))

    def masked(self) -> dict[str, Any]:
        """The effective configuration to print: every secret as ``***``."""
        shown: dict[str, Any] = masked(self.document, self._referenced)
        shown["server"] = {**SERVER_DEFAULTS, **shown.get("server", {})}
        shown.setdefault("validate_credentials", "warn")
        return shown


def read_file(path: str) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The parsed TOML file, or the problem that stops it being read."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file), []
    except OSError as exc:
        return None, [Problem(path, "", f"{path}: cannot read the file ({exc.strerror})")]
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(path, "", f"{path}: not valid TOML: {exc}")]


def load_config(
    path: str | None,
    env: Mapping[str, str],
    flags: Mapping[str, tuple[str, Any]] | None = None,
    *,
    live_environment: bool = False,
) -> ServiceConfig:
    """The configuration from ``path`` (or ``$PROVIDER_PROXY_CONFIG``), ``env`` and ``flags``.

    :param flags: dotted key to ``(flag, value)``, as given on the command line.
    :param live_environment: provider keys from the environment (by reference or
        the provider's own variable) are read from ``os.environ`` at each use,
        so an environment file read again rotates them.
    :raises ConfigInvalid: with every problem found.
    """
    path = path or env.get(CONFIG_VARIABLE) or None
    problems: list[Problem] = []
    layers: list[Layer] = []
    from_file: dict[str, Any] = {}
    if path is not None:
        parsed, problems = read_file(path)
        if parsed is None:
            raise ConfigInvalid(problems)
        from_file = parsed
        layers.append(file_layer(parsed, path))
    env_layer, env_problems = environment_document(env, base_url_prefixes())
    problems += env_problems
    warnings = _drop_unsupported(env_layer)
    _aim_base_urls(env_layer, from_file.get("providers"))
    layers.append(env_layer)
    layers.append(flag_layer(flags or {}))
    merged = merge(layers)
    resolved = resolve_references(merged.document, env, merged.sources)
    document, referenced = resolved.document, resolved.referenced
    problems += resolved.problems
    passthrough = {name: Field((bool, int, float, str)) for name in plain_options() - set(TOP)}
    if "routes" in document:  # said plainly rather than as an unknown key
        routes = document.pop("routes")
        problems.append(
            Problem(
                merged.sources.get("routes", path or ""),
                "routes",
                "a [routes] table is not read from a file yet"
                if "routes" in app_option_names()
                else "this version of provider-proxy has no routes",
                "pass routes= to make_asgi_app from Python, or name models as provider/model",
            )
        )
        document["routes"] = routes
    problems += check_document(
        {k: v for k, v in document.items() if k != "routes"}, merged.sources, passthrough
    )
    from_environment = "providers" not in from_file
    if from_environment:
        document["providers"] = {
            **{name: {} for name in ENVIRONMENT_TYPES},
            **document.get("providers", {}),
        }
    server = {**SERVER_DEFAULTS, **document.get("server", {})}
    checker = Checker(merged.sources, {})
    checker.problems.extend(problems)
    interval = server["reload_interval"]
    builder = Builder(
        checker,
        float(interval) if isinstance(interval, (int, float)) else 0.0,
        live_keys=resolved.whole if live_environment else None,
    )
    try:
        built = builder.build(document, from_environment=from_environment)
    except Exception:  # a document already found wrong may not build at all
        if not problems:
            raise
        raise ConfigInvalid(checker.problems) from None
    if from_environment:
        del document["providers"]
        if built.adapters:
            document["providers"] = {
                a.name: merged.document.get("providers", {}).get(a.name, {}) for a in built.adapters
            }
    _check_ports(document, built, checker)
    if checker.problems:
        raise ConfigInvalid(checker.problems)
    return ServiceConfig(document, merged.sources, path, warnings, built, referenced)


def _drop_unsupported(layer: Layer) -> list[str]:
    """Settings of the environment this version cannot honour, removed and said.

    Users bring variables from the service this replaces; one it cannot use
    yet must not stop it from starting, but must not pass unsaid either.
    """
    warnings: list[str] = []
    known = set(TOP) | app_option_names()
    for name in list(layer.document):
        if name not in known:
            source = layer.sources.pop(name)
            del layer.document[name]
            warnings.append(f"{source} is not supported by this version and is ignored")
    return warnings


def _aim_base_urls(layer: Layer, file_providers: Mapping[str, Any] | None) -> None:
    """Point ``*_BASE_URL`` variables at the file's provider of that type, if the file has any."""
    env_providers = layer.document.get("providers")
    if not env_providers or file_providers is None:
        return
    aimed: dict[str, Any] = {}
    for kind, table in env_providers.items():
        source = layer.sources.pop(f"providers.{kind}.base_url")
        for name, file_table in file_providers.items():
            declared = file_table.get("type", name) if isinstance(file_table, dict) else None
            if declared == kind and declared != OPENAI_COMPATIBLE and kind in BUILTIN_TYPES:
                aimed[name] = dict(table)
                layer.sources[f"providers.{name}.base_url"] = source
    layer.document["providers"] = aimed
    if not aimed:
        del layer.document["providers"]


def _check_ports(document: Mapping[str, Any], built: Built, checker: Checker) -> None:
    """``[ports]`` and ``default_provider`` name providers there are, each port once."""
    names = {adapter.name for adapter in built.adapters}
    default = document.get("default_provider")
    if default is not None and names and default not in names:
        checker.problem(
            "default_provider",
            f"names no provider; the providers are: {', '.join(sorted(names))}",
        )
    main = document.get("server", {}).get("port", SERVER_DEFAULTS["port"])
    seen: dict[int, str] = {main: "the main server"}
    for name, port in document.get("ports", {}).items():
        if name not in names:
            checker.problem(
                f"ports.{name}",
                f"names no provider; the providers are: {', '.join(sorted(names)) or 'none'}",
            )
        if port in seen:
            checker.problem(
                f"ports.{name}", f"port {port} is already {seen[port]}'s", "pick another"
            )
        seen[port] = name
