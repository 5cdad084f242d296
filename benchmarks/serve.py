"""``python -m benchmarks.serve KIND --upstream URL``: one server of a run, on this core.

``upstream`` is the fake upstream; ``floor``, ``proxy``, ``proxy-transform``
and ``gateway`` (the proxy with an Anthropic adapter only, reached through its
OpenAI-Chat gateway endpoint, so every request is translated) are ASGI apps
served by uvicorn on httptools and uvloop, one worker, as the proxy is deployed.
The proxy is on its default transport (``http1`` with the ``fast`` extra).
``floor-reqwest`` and ``proxy-reqwest`` are the floor and the proxy on
pyreqwest's client (the ``reqwest`` extra) under uvicorn; ``floor-granian`` is
that floor under granian (embedded, as ``provider-proxy serve`` runs it), and
``proxy-granian`` the proxy on its default transport under granian, the fastest
stack the proxy supports.
``floor-ws`` and ``proxy-ws`` relay WebSockets: the hand-written socket floor,
and the proxy's relay with an OpenAI adapter (``/openai/realtime?model=...``),
both under the same uvicorn.
Prints ``READY <port> <note>`` once it accepts requests.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from typing import Any

from .bodies import mark
from .procs import raise_fd_limit

#: The pyreqwest and granian floors and the proxy on them.
FAST_KINDS = ("floor-reqwest", "floor-granian", "proxy-reqwest", "proxy-granian")


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    return sock


def proxy_app(upstream: str, *, transform: bool, reqwest: bool = False) -> tuple[Any, str]:
    """The proxy under test, as an application would build it, and how its transform is set."""
    from provider_proxy import make_asgi_app, reqwest_transport
    from provider_proxy.adapters import OpenAICompatibleAdapter

    base = upstream + "/v1"
    if reqwest:
        adapter = OpenAICompatibleAdapter("bench", base, api_key="x")
        return make_asgi_app([adapter], transport=reqwest_transport()), "transport=reqwest"
    if not transform:
        return make_asgi_app([OpenAICompatibleAdapter("bench", base, api_key="x")]), "-"
    options: dict[str, Any] = {"transforms": [mark]}
    try:
        adapter = OpenAICompatibleAdapter("bench", base, api_key="x", **options)
    except TypeError:
        # The adapter does not take transforms=: configure it app-wide instead.
        adapter = OpenAICompatibleAdapter("bench", base, api_key="x")
        return make_asgi_app([adapter], **options), "transform=app-wide"
    return make_asgi_app([adapter]), "transform=adapter"


def gateway_app(upstream: str) -> tuple[Any, str]:
    """The gateway in front of an Anthropic-backed model: OpenAI Chat in, Messages upstream."""
    from provider_proxy import make_asgi_app
    from provider_proxy.adapters import AnthropicAdapter

    return make_asgi_app([AnthropicAdapter(base_url=upstream, api_key="x")]), "anthropic"


def socket_proxy_app(upstream: str) -> tuple[Any, str]:
    """The proxy relaying OpenAI's Realtime socket to the fake upstream's echo.

    Every socket of a run comes from one address with no client key, so the
    per-client limit (20 by default) is lifted to the scenario's socket count.
    """
    from provider_proxy import make_asgi_app
    from provider_proxy.adapters import OpenAIAdapter

    adapter = OpenAIAdapter(base_url=upstream + "/v1", api_key="x")
    return make_asgi_app([adapter], ws_max_sockets_per_client=1000), "openai"


def _serve_asgi(app: Any, sock: socket.socket, note: str) -> None:
    import uvicorn

    port = sock.getsockname()[1]

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                print(f"READY {port} {note}", flush=True)

    config = uvicorn.Config(
        app,
        http="httptools",
        loop="uvloop",
        lifespan="on",
        access_log=False,
        log_level="warning",
        backlog=4096,
        timeout_graceful_shutdown=1,
    )
    Server(config).run(sockets=[sock])


def _serve_granian(app: Any, sock: socket.socket, note: str) -> None:
    """``app`` on granian, embedded in this process as ``provider-proxy serve`` runs it."""
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels
    from granian.server.embed import Server

    port = sock.getsockname()[1]
    sock.close()  # granian binds the port itself

    async def ready_when_started(scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                print(f"READY {port} {note}", flush=True)

        await app(scope, receive, sending if scope["type"] == "lifespan" else send)

    server = Server(
        ready_when_started,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        backlog=4096,
        log_level=LogLevels.warning,
        log_access=False,
    )

    async def run() -> None:
        import signal

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.stop)
        await server.serve()

    import uvloop

    uvloop.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    kinds = ["upstream", "floor", "proxy", "proxy-transform", "gateway", *FAST_KINDS]
    kinds += ["floor-ws", "proxy-ws"]
    parser.add_argument("kind", choices=kinds)
    parser.add_argument("--upstream", default="-", help="the upstream's base URL")
    args = parser.parse_args()
    raise_fd_limit()
    sock = _listen()
    if args.kind == "upstream":
        import uvloop

        from .upstream import serve

        uvloop.install()
        asyncio.run(serve(sock))
    elif args.kind == "floor":
        from .floor import Floor

        _serve_asgi(Floor(args.upstream), sock, "-")
    elif args.kind in ("floor-reqwest", "floor-granian"):
        from .floor import ReqwestFloor

        serve_on = _serve_granian if args.kind.endswith("granian") else _serve_asgi
        serve_on(ReqwestFloor(args.upstream), sock, "client=pyreqwest")
    elif args.kind == "proxy-reqwest":
        app, note = proxy_app(args.upstream, transform=False, reqwest=True)
        _serve_asgi(app, sock, note)
    elif args.kind == "proxy-granian":
        app, note = proxy_app(args.upstream, transform=False)
        _serve_granian(app, sock, note)
    elif args.kind == "floor-ws":
        from .floor import SocketFloor

        _serve_asgi(SocketFloor(args.upstream), sock, "client=websockets")
    elif args.kind == "proxy-ws":
        app, note = socket_proxy_app(args.upstream)
        _serve_asgi(app, sock, note)
    elif args.kind == "gateway":
        app, note = gateway_app(args.upstream)
        _serve_asgi(app, sock, note)
    else:
        app, note = proxy_app(args.upstream, transform=args.kind == "proxy-transform")
        _serve_asgi(app, sock, note)


if __name__ == "__main__":
    main()
