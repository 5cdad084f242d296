"""Real servers on loopback for the tests: uvicorn in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1 on a free port, in its own thread and loop."""

    def __init__(self, app: Any, *, lifespan: str = "on", **config: Any) -> None:
        self.config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan, **config
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        finally:
            self.loop.close()

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> ServerThread:
        self.thread.start()
        for _ in range(1000):
            if self.server.started or not self.thread.is_alive():
                break
            self.thread.join(0.01)
        if not self.server.started:
            raise RuntimeError("the test server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        if self.thread.is_alive():  # pragma: no cover - a hang guard
            raise RuntimeError("the test server did not stop")

    def call(self, coro: Any, timeout: float = 10) -> Any:
        """Run ``coro`` on the server's loop (to inspect the app in its own thread)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextlib.contextmanager
def serve(app: Any, **config: Any) -> Iterator[ServerThread]:
    """Serve ``app`` on loopback for the duration of the block."""
    server = ServerThread(app, **config).start()
    try:
        yield server
    finally:
        server.stop()
