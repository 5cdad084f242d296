"""`mount()`: put the proxy under a prefix of any ASGI app, Django's included."""

from __future__ import annotations

from ..types import ASGIApp, Message, Receive, Scope, Send
from ._app import ProxyApp


def mount(app: ASGIApp, prefix: str, proxy: ProxyApp) -> ASGIApp:
    """An ASGI app that sends ``prefix`` and everything below it to ``proxy``, the rest to ``app``.

    The proxy's startup and shutdown run with the host's lifespan; for a host
    that does not support lifespan at all (Django's ``ASGIHandler`` refuses it),
    the returned app answers the lifespan events itself.

    The proxy sees ``root_path`` extended by ``prefix`` and the full ``path``,
    as Starlette's ``Mount`` does.
    """
    prefix = "/" + prefix.strip("/")
    if prefix == "/":
        raise ValueError("mount() needs a non-empty prefix such as '/llm'.")

    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(app, proxy, scope, receive, send)
            return
        if scope["type"] in ("http", "websocket"):
            root_path: str = scope.get("root_path", "")
            path: str = scope["path"]
            below = path[len(root_path) :] if root_path and path.startswith(root_path) else path
            if below == prefix or below.startswith(prefix + "/"):
                child = dict(scope)
                child["root_path"] = root_path + prefix
                if not path.startswith(root_path):
                    child["path"] = root_path + path
                await proxy(child, receive, send)
                return
        await app(scope, receive, send)

    return mounted


async def _lifespan(
    app: ASGIApp, proxy: ProxyApp, scope: Scope, receive: Receive, send: Send
) -> None:
    """Run the host's lifespan with the proxy's startup and shutdown folded in."""
    started = False  # the host has received lifespan.startup
    answered = False  # the host has answered lifespan.startup itself
    finished = False  # the host has answered lifespan.shutdown

    async def host_receive() -> Message:
        nonlocal started
        message = await receive()
        if message["type"] == "lifespan.startup":
            started = True
            await proxy.startup()
        return message

    async def host_send(message: Message) -> None:
        nonlocal answered, finished
        if message["type"].startswith("lifespan.startup."):
            answered = True
        elif message["type"].startswith("lifespan.shutdown."):
            await proxy.aclose()
            finished = True
        await send(message)

    try:
        await app(scope, host_receive, host_send)
    except Exception:
        if answered:
            raise  # the host does lifespan, and failed in it
        # The host does not do lifespan (Django raises straight away): answer it here.
        await _answer_lifespan(proxy, receive, send, startup_received=started)
        return
    if not answered:
        # A host that returned without doing lifespan at all.
        await _answer_lifespan(proxy, receive, send, startup_received=started)
    elif not finished:
        await proxy.aclose()


async def _answer_lifespan(
    proxy: ProxyApp, receive: Receive, send: Send, *, startup_received: bool
) -> None:
    if startup_received:
        await send({"type": "lifespan.startup.complete"})
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await proxy.startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await proxy.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
