"""The standalone service around the proxy: its lifespan, startup lines, key reloads,
and the protective headers of an API that answers browsers and scripts alike."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

from ..engine import ProxyApp, make_asgi_app
from ..types import ASGIApp, Message, Receive, Scope, Send
from ._keyfiles import poll_all, reload_all
from ._load import ServiceConfig

logger = logging.getLogger("provider_proxy.service")


def build_app(config: ServiceConfig) -> ProxyApp:
    """The proxy the configuration describes."""
    return make_asgi_app(config.built.adapters, **config.built.options)


def announce(config: ServiceConfig, proxy: ProxyApp) -> None:
    """One line per provider: where it goes, whether its key is there and worked."""
    for warning in config.warnings:
        logger.warning(warning)
    ports = config.ports
    for name, adapter in proxy.adapters.items():
        availability = adapter.availability()
        check = proxy.credentials.get(name)
        if check is not None:
            credentials = check.state.value
        else:
            credentials = "set" if availability.enabled else "missing"
        fields: dict[str, Any] = {
            "provider": name,
            "base_url": str(adapter.serving().base_url),
            "credentials": credentials,
        }
        if name in ports:
            fields["port"] = ports[name]
        if not availability.enabled:
            fields["reason"] = availability.reason
        logger.info("provider %s", name, extra={"fields": fields})


class Service:
    """The proxy with the service's lifespan around it: startup lines, key file reloads."""

    def __init__(self, config: ServiceConfig, proxy: ProxyApp) -> None:
        self.config = config
        self.proxy = proxy
        self._app = ProtectiveHeaders(proxy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self._app(scope, receive, send)
            return
        message = await receive()
        assert message["type"] == "lifespan.startup"
        try:
            await self.proxy.startup()
        except Exception as exc:
            logger.error("startup failed: %s", exc)
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        announce(self.config, self.proxy)
        async with self._reloading():
            await send({"type": "lifespan.startup.complete"})
            while (await receive())["type"] != "lifespan.shutdown":
                pass
        await self.proxy.aclose()
        await send({"type": "lifespan.shutdown.complete"})

    @contextlib.asynccontextmanager
    async def _reloading(self) -> AsyncIterator[None]:
        """Key files read again on ``SIGHUP`` and every ``reload_interval`` seconds."""
        if not self.config.built.key_files:
            yield
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, reload_all)
        interval = float(self.config.server["reload_interval"])

        async def poll() -> None:
            while True:
                await asyncio.sleep(interval)
                poll_all()

        task = loop.create_task(poll()) if interval > 0 else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()


class ProtectiveHeaders:
    """Pure-ASGI: ``X-Content-Type-Options: nosniff`` on every answer, and
    ``Cache-Control: no-store`` on errors, unless the answer set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def protected(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                if message["status"] >= 400 and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, protected)
