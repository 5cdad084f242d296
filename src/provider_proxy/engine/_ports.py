"""One provider at the root of its own port: ``http://proxy:10001/v1/messages``.

For sandboxes that point each agent's base URL at a port. Every port's app is
a view of one :class:`~provider_proxy.ProxyApp` (one pool, one store, one set
of guards): the path gets the provider's name put in front, and ``/health``
answers for that provider alone.
"""

from __future__ import annotations

from .._json import dumps
from ..policy import request_id_from
from ..types import Receive, Scope, Send
from ._app import ProxyApp
from ._heads import content_head, send_whole

_JSON = b"application/json"


class ProviderAtRoot:
    """An ASGI app serving ``proxy``'s provider ``name`` at ``/``; ``/health`` is its own."""

    def __init__(self, proxy: ProxyApp, name: str) -> None:
        if name not in proxy.adapters:
            raise ValueError(f"{name!r} names no provider of the proxy.")
        self.proxy = proxy
        self.name = name
        self._prefix = f"/{name}"

    def __repr__(self) -> str:
        return f"ProviderAtRoot({self.name!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # the proxy's lifespan is its main server's
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path: str = scope.get("path") or "/"
        if scope["type"] == "http" and path.rstrip("/") == "/health":
            await self._health(send, request_id_from(scope["headers"]))
            return
        scope = dict(scope)
        scope["path"] = self._prefix + path
        raw = scope.get("raw_path")
        if raw is not None:
            scope["raw_path"] = self._prefix.encode("ascii") + raw
        await self.proxy(scope, receive, send)

    async def _health(self, send: Send, request_id: str) -> None:
        adapter = self.proxy.adapters[self.name]
        enabled = adapter.availability().enabled
        check = self.proxy.credentials.get(self.name)
        body = dumps(
            {
                "status": "ok" if enabled else "unconfigured",
                "provider": self.name,
                "enabled": enabled,
                "credentials": None if check is None else check.state.value,
            }
        )
        await send_whole(send, 200, content_head(_JSON, len(body), request_id), body)
