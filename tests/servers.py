"""Real servers on loopback for the tests: uvicorn in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
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


def free_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_without_keys(**extra: str) -> dict[str, str]:
    """The environment with no ``*_API_KEY`` variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(extra)
    return env


def get_when_up(url: str, process: subprocess.Popen[Any], timeout: float = 30) -> httpx.Response:
    """GET ``url`` once the server in ``process`` answers; fails if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered at {url} (exit code {process.poll()})")


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition``; the timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()
