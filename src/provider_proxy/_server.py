"""The HTTP server ``provider-proxy serve`` runs the app on, and the heap frozen once it started.

Two servers, one behaviour (lifespan, WebSockets, a graceful drain on SIGINT or
SIGTERM, no access log: a request line may carry a client's key in its query):

- ``uvicorn`` (the ``server`` extra): the reference ASGI server.
- ``granian`` (the ``granian`` extra): HTTP parsing and sockets in Rust, less
  CPU per request; run embedded, in this process and its event loop (uvloop's
  when installed, as uvicorn does).

``PROVIDER_PROXY_SERVER`` picks one: ``auto`` (the default) is uvicorn, which
serves every setting (``[ports]``, ``workers``); granian is asked for by name,
for one port in one process (its embedded mode is marked experimental by its
authors). See ``docs/performance.rst`` for the trade-offs.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from typing import Any

from .types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("provider_proxy")

#: The servers ``PROVIDER_PROXY_SERVER`` may name.
SERVERS = ("auto", "uvicorn", "granian")

#: uvicorn's exit status when the app's start-up failed; granian's is made the same.
STARTUP_FAILED = 3


class FreezeAfterStartup:
    """The app, with the heap moved out of the garbage collector's sight once it has started.

    Everything alive after start-up (modules, adapters, the pool, compiled
    patterns) lives as long as the process: :func:`gc.freeze` stops every
    collection from walking it again, and keeps the pages copy-on-write
    friendly in forked workers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_and_freeze(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
            await send(message)

        await self.app(scope, receive, send_and_freeze)


def chosen_server(name: str | None = None) -> str:
    """The server to run: ``name``, else ``PROVIDER_PROXY_SERVER``; ``auto`` resolved."""
    name = (name or os.environ.get("PROVIDER_PROXY_SERVER") or "auto").strip().lower()
    if name not in SERVERS:
        sys.exit(f"PROVIDER_PROXY_SERVER must be one of {', '.join(SERVERS)}, not {name!r}")
    return "uvicorn" if name == "auto" else name


def run_server(app: ASGIApp, host: str, port: int, server: str | None = None) -> int:
    """Serve ``app`` on ``host:port`` until SIGINT or SIGTERM; the exit status."""
    name = chosen_server(server)
    logger.info("provider-proxy: on %s", name)
    frozen = FreezeAfterStartup(app)
    if name == "granian":
        return _run_granian(frozen, host, port)
    return _run_uvicorn(frozen, host, port)


def _run_uvicorn(app: ASGIApp, host: str, port: int) -> int:
    try:
        import uvicorn
    except ImportError:
        sys.exit("provider-proxy needs uvicorn to serve: pip install 'provider-proxy[server]'")
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, lifespan="on")
    return 0


#: granian logs to stdout by default; uvicorn, as the proxy's own log, to stderr.
_GRANIAN_LOGS_TO_STDERR = {
    "handlers": {
        "console": {
            "formatter": "generic",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
    },
}


def _run_granian(app: ASGIApp, host: str, port: int) -> int:
    try:
        from granian.constants import Interfaces
        from granian.server.embed import Server
    except ImportError:
        sys.exit(
            "PROVIDER_PROXY_SERVER=granian needs granian: pip install 'provider-proxy[granian]'"
        )
    server = Server(
        app,
        address=host,
        port=port,
        interface=Interfaces.ASGI,  # with lifespan
        websockets=True,
        log_access=False,
        log_dictconfig=_GRANIAN_LOGS_TO_STDERR,
    )
    try:  # uvloop (the ``server`` extra), as uvicorn would use it
        import uvloop
    except ImportError:
        return asyncio.run(_serve_granian(server))
    return int(uvloop.run(_serve_granian(server)))


async def _serve_granian(server: Any) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, server.stop)
    from granian.errors import FatalError

    try:
        await server.serve()
    except FatalError:  # the app's start-up failed; granian logged why
        return STARTUP_FAILED
    # A worker that ended on its own, without granian calling it fatal.
    return STARTUP_FAILED if server.interrupt_children else 0
