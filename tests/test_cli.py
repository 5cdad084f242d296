"""The ``provider-proxy`` command, run as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from provider_proxy._cli import main
from provider_proxy.adapters._environment import from_environment

from .servers import env_without_keys, free_port, get_when_up, serve


def test_demo_runs_the_whole_path_offline() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "provider_proxy", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "'Hello from the fake upstream, streamed one piece at a time.'" in out
    assert "provider got the proxy's key:        yes" in out
    assert "provider saw the client's token:     no" in out
    assert out.rstrip().endswith("demo passed")
    # Pieces are printed as they arrive, with increasing times.
    times = [int(line.split("ms")[0].strip(" +")) for line in out.splitlines() if " ms " in line]
    assert len(times) == 11
    assert times == sorted(times)
    assert "sk-demo-provider-key" not in out


def test_serve_without_keys_says_which_to_set() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "provider_proxy", "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        env=env_without_keys(),
        check=False,
    )
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr
    assert "ANTHROPIC_API_KEY" in result.stderr


def test_serve_serves_the_configured_providers() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "provider_proxy", "serve", "--port", str(port)),
            *("--validate-credentials", "off"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env_without_keys(OPENAI_API_KEY="sk-from-env-not-shown"),
    )
    try:
        health = get_when_up(f"http://127.0.0.1:{port}/health", process).json()
        assert set(health) == {"status", "providers", "timestamp", "uptime", "version"}
        assert {k: health[k] for k in ("status", "providers")} == {
            "status": "ok",
            "providers": {
                "openai": {
                    "enabled": True,
                    "base_url": "https://api.openai.com/v1",
                    "credentials": {"state": "not_checked"},
                }
            },
        }
        # A key a client puts in the query must not reach the log: uvicorn's
        # access log (which prints request lines) is off.
        assert httpx.get(f"http://127.0.0.1:{port}/health?key=query-key-not-shown").is_success
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert "serving openai" in output
    assert "sk-from-env-not-shown" not in output
    assert "query-key-not-shown" not in output


async def _refuse_every_key(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A provider that answers every request 401, as Azure does an unknown key."""
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 401, "headers": []})
    await send({"type": "http.response.body", "body": b'{"error": {"code": "401"}}'})


def test_serve_strict_refuses_to_start_with_a_rejected_key_and_closes_everything() -> None:
    with serve(_refuse_every_key, lifespan="off") as provider:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "provider_proxy", "serve", "--port", str(free_port())),
                *("--validate-credentials", "strict"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env_without_keys(
                AZURE_OPENAI_API_KEY="az-key-not-shown", AZURE_OPENAI_ENDPOINT=provider.url
            ),
            check=False,
        )
    assert result.returncode == 3  # uvicorn's "startup failed"
    assert (
        "Provider credentials failed their check: azure: auth_rejected (HTTP 401)." in result.stdout
    )
    assert "Unclosed" not in result.stderr  # the session opened for the probe was closed
    assert "az-key-not-shown" not in result.stdout + result.stderr


def test_main_requires_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "serve" in capsys.readouterr().err


def test_serve_picks_every_provider_keyed_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.endswith("_API_KEY") or name.startswith(("AZURE_OPENAI", "GITHUB")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GEMINI_API_KEY", "g-key")
    monkeypatch.setenv("OPENROUTER_API_KEY", "o-key")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "a-key")  # without an endpoint: not served
    assert [adapter.name for adapter in from_environment()] == ["openrouter", "gemini"]
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    monkeypatch.setenv("COPILOT_API_KEY", "c-key")
    names = [adapter.name for adapter in from_environment()]
    assert names == ["openrouter", "gemini", "azure", "copilot"]
