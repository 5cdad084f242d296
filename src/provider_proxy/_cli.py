"""The ``provider-proxy`` command: ``serve`` the proxy alone, ``check`` its configuration,
or run the offline ``demo``.

Exit codes: 0 fine, 2 a configuration problem (said on stderr, one per line),
3 startup failed (``--validate-credentials strict`` with a key that does not work).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from ._server import FreezeAfterStartup, chosen_server, run_server
from .adapters._environment import KEY_VARIABLES
from .config import ConfigInvalid, Problem, ServiceConfig, load_config
from .config._keyfiles import EnvironmentFile
from .config._logs import configure_logging
from .config._service import ProtectiveHeaders, Service, build_app
from .engine import ProxyApp
from .engine._ports import ProviderAtRoot

logger = logging.getLogger("provider_proxy.service")

#: The variable naming the environment file when ``--env-file`` is not given.
ENV_FILE_VARIABLE = "PROVIDER_PROXY_ENV_FILE"
_NO_PROVIDER = f"No provider has a key: set one or more of {KEY_VARIABLES}."
#: Exit status of a configuration that does not hold.
CONFIG_ERROR = 2
#: uvicorn's exit status when the app's startup failed.
STARTUP_FAILURE = 3

#: Flags and the keys they set; a flag wins over the environment and the file.
_FLAGS = {
    "host": "server.host",
    "port": "server.port",
    "workers": "server.workers",
    "log_level": "server.log_level",
    "log_format": "server.log_format",
    "validate_credentials": "validate_credentials",
}
#: The variable a worker process reads each flag from (workers start afresh).
_FLAG_VARIABLES = {
    "server.host": "PROVIDER_PROXY_HOST",
    "server.port": "PROVIDER_PROXY_PORT",
    "server.log_level": "PROVIDER_PROXY_LOG_LEVEL",
    "server.log_format": "PROVIDER_PROXY_LOG_FORMAT",
    "validate_credentials": "PROVIDER_PROXY_VALIDATE_CREDENTIALS",
}


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:
        sys.exit("provider-proxy needs uvicorn to serve: pip install 'provider-proxy[server]'")
    return uvicorn


def _flags(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    flags: dict[str, tuple[str, Any]] = {}
    for name, key in _FLAGS.items():
        value = getattr(args, name, None)
        if value is not None:
            flags[key] = ("--" + name.replace("_", "-"), value)
    return flags


def _configure(path: str | None, env_file: str | None, flags: Any) -> ServiceConfig:
    """The configuration, after the environment file (if any) is put in the environment.

    :raises ConfigInvalid: with every problem.
    """
    env_file = env_file or os.environ.get(ENV_FILE_VARIABLE) or None
    watched: EnvironmentFile | None = None
    if env_file is not None:
        try:
            watched = EnvironmentFile(env_file, 0)
        except OSError as exc:
            raise ConfigInvalid(
                [Problem(env_file, "", f"{env_file}: cannot read the file ({exc.strerror})")]
            ) from None
    config = load_config(path, os.environ, flags, live_environment=watched is not None)
    if watched is not None:
        watched.interval = float(config.server["reload_interval"])
        config.built.key_files.append(watched)
    return config


def _load(args: argparse.Namespace) -> tuple[ServiceConfig, ProxyApp] | int:
    """The configuration and the app it builds, or the exit status after saying why not."""
    try:
        config = _configure(args.config, args.env_file, _flags(args))
    except ConfigInvalid as invalid:
        for problem in invalid.problems:
            print(f"error: {problem}", file=sys.stderr)
        return CONFIG_ERROR
    try:  # what only the app checks: default_provider names a provider, the extras are there
        return config, build_app(config)
    except (ValueError, TypeError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return CONFIG_ERROR


def check(args: argparse.Namespace) -> int:
    """Validate the configuration and print it with every secret masked."""
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    config, _ = loaded
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(config.masked(), indent=2, sort_keys=True))
    if not config.built.adapters:  # what serve would refuse
        print(f"error: {_NO_PROVIDER}", file=sys.stderr)
        return CONFIG_ERROR
    names = ", ".join(a.name for a in config.built.adapters)
    print(f"configuration is valid; providers: {names}", file=sys.stderr)
    return 0


def _server(
    app: Any, host: str, port: int, level: str, lifespan: str, *, signals: bool = True
) -> Any:
    """One uvicorn server; ``signals=False`` leaves SIGTERM/SIGINT to the main one.

    With ``[ports]`` several servers run in one process: were each to take the
    signals, the last one started would stand before the main server's and the
    app's drain, and a SIGTERM would stop everything at once instead of draining.
    The main server takes them; the others stop when it does (:func:`_serve_all`).
    """
    uvicorn = _uvicorn()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan=lifespan,
        log_level=level,
        log_config=None,  # the service's handler on stdout
        # uvicorn's access log writes each request line, query included, where a
        # client may have put its key (?key=); the proxy's own log leaves queries out.
        access_log=False,
        # who the client is behind a proxy is the guards' call (trusted_proxies)
        proxy_headers=False,
    )
    if signals:
        return uvicorn.Server(config)
    return _without_signals(uvicorn.Server)(config)


def _without_signals(server: type[Any]) -> type[Any]:
    class Quiet(server):  # type: ignore[misc]
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Quiet


async def _serve_all(servers: list[Any]) -> None:
    main, *others = servers
    main_task = asyncio.ensure_future(main.serve())
    while not main.started and not main_task.done():  # noqa: ASYNC110 - uvicorn sets a flag
        await asyncio.sleep(0.01)
    if not main.started:
        await main_task
        return
    tasks = [main_task, *(asyncio.ensure_future(s.serve()) for s in others)]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:  # one stopped (a signal, a port taken): stop them all
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


def service_app() -> Service:
    """The service as an ASGI app from the environment, for each worker process."""
    config = _configure(None, None, {})
    server = config.server
    configure_logging(server["log_level"], server["log_format"])
    return Service(config, build_app(config))


def serve(args: argparse.Namespace) -> int:
    """Check the configuration, then serve it with uvicorn."""
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    config, proxy = loaded
    if not config.built.adapters:
        print(_NO_PROVIDER, file=sys.stderr)
        return CONFIG_ERROR
    server = config.server
    configure_logging(server["log_level"], server["log_format"])
    workers = int(server["workers"])
    chosen = chosen_server()
    if chosen == "granian":
        if workers > 1 or config.ports:
            print(
                "error: granian serves one port in one process here; set workers = 1 "
                "and no [ports], or PROVIDER_PROXY_SERVER=uvicorn",
                file=sys.stderr,
            )
            return CONFIG_ERROR
        return run_server(Service(config, proxy), server["host"], server["port"], chosen)
    if workers > 1:
        return _serve_workers(config, args, workers)
    logger.info("provider-proxy: on uvicorn")
    main = FreezeAfterStartup(Service(config, proxy))
    servers = [_server(main, server["host"], server["port"], server["log_level"], "on")]
    for name, port in config.ports.items():
        servers.append(
            _server(
                ProtectiveHeaders(ProviderAtRoot(proxy, name)),
                server["host"],
                port,
                server["log_level"],
                "on",
                signals=False,
            )
        )
    names = ", ".join(proxy.adapters)
    logger.info("serving %s on http://%s:%s/{provider}/...", names, server["host"], server["port"])
    asyncio.run(_serve_all(servers))
    return 0 if servers[0].started else STARTUP_FAILURE


def _serve_workers(config: ServiceConfig, args: argparse.Namespace, workers: int) -> int:
    """Several processes on one port; each reads the same configuration from the environment."""
    if config.ports:
        print("error: [ports] is served by one process; set workers = 1", file=sys.stderr)
        return CONFIG_ERROR
    if config.path is not None:
        os.environ["PROVIDER_PROXY_CONFIG"] = config.path
    if args.env_file:
        os.environ[ENV_FILE_VARIABLE] = args.env_file
    for key, (_, value) in _flags(args).items():
        variable = _FLAG_VARIABLES.get(key)
        if variable is not None:
            os.environ[variable] = str(value)
    server = config.server
    _uvicorn().run(
        "provider_proxy._cli:service_app",
        factory=True,
        host=server["host"],
        port=server["port"],
        workers=workers,
        log_level=server["log_level"],
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
    return 0


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="a proxy.toml (default: $PROVIDER_PROXY_CONFIG)"
    )
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        help="NAME=value lines put in the environment, read again on SIGHUP "
        "(default: $PROVIDER_PROXY_ENV_FILE)",
    )
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int, help="worker processes (share limits via Redis)")
    parser.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument(
        "--log-format", choices=["json", "text"], help="JSON lines (default) or text for a terminal"
    )
    parser.add_argument(
        "--validate-credentials",
        choices=["off", "warn", "strict"],
        help="probe each provider's key at startup (strict: refuse to start if one fails)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="provider-proxy", description="An embeddable ASGI proxy for LLM provider APIs."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser(
        "serve", help="serve the proxy alone (a proxy.toml, or keys in the environment)"
    )
    _add_config_flags(serve_parser)
    check_parser = commands.add_parser(
        "check", help="validate the configuration and print it, secrets masked"
    )
    _add_config_flags(check_parser)
    commands.add_parser(
        "demo", help="run a fake provider, the proxy and a streamed chat completion, offline"
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "check":
        return check(args)
    _uvicorn()
    from ._demo import run_demo

    return asyncio.run(run_demo())
