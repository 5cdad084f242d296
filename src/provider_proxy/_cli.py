"""The ``provider-proxy`` command: ``serve`` the proxy alone, or run the offline ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from ._server import run_server
from .adapters._environment import KEY_VARIABLES, from_environment
from .engine import make_asgi_app

#: What ``serve`` looks for, as said when nothing is set.


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:
        sys.exit("provider-proxy needs uvicorn to serve: pip install 'provider-proxy[server]'")
    return uvicorn


def serve(host: str, port: int, validate: str = "warn") -> int:
    """Serve the proxy with uvicorn, with every provider that has a key in the environment."""
    adapters = from_environment()
    if not adapters:
        print(
            f"No provider has a key: set one or more of {KEY_VARIABLES}.",
            file=sys.stderr,
        )
        return 2
    names = ", ".join(adapter.name for adapter in adapters)
    print(f"provider-proxy: serving {names} on http://{host}:{port}/{{provider}}/...")
    app = make_asgi_app(adapters, validate_credentials=validate)  # type: ignore[arg-type]
    # uvicorn's access log writes each request line, query included, where a
    # client may have put its key (?key=); the proxy's own log leaves queries out.
    return run_server(app, host, port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="provider-proxy", description="An embeddable ASGI proxy for LLM provider APIs."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser(
        "serve", help="serve the proxy alone (providers whose keys are in the environment)"
    )
    serve_parser.add_argument("--host", default=os.environ.get("PROVIDER_PROXY_HOST", "127.0.0.1"))
    serve_parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PROVIDER_PROXY_PORT", "8000"))
    )
    serve_parser.add_argument(
        "--validate-credentials",
        choices=["off", "warn", "strict"],
        default="warn",
        help="probe each provider's key at startup (strict: refuse to start if one fails)",
    )
    commands.add_parser(
        "demo", help="run a fake provider, the proxy and a streamed chat completion, offline"
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.host, args.port, args.validate_credentials)
    _uvicorn()
    from ._demo import run_demo

    return asyncio.run(run_demo())
