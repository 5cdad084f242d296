"""``provider-proxy serve`` on each server it supports, run as a user would run it.

Each server must behave the same: the app's lifespan runs (the credential
probes), streams are relayed event by event (and freed when the client leaves),
a WebSocket handshake gets the proxy's answer, SIGTERM drains the request in
flight before exiting, and no access log line shows a query (a client's key
may be in it).
"""

from __future__ import annotations

import gc
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from provider_proxy._server import FreezeAfterStartup, chosen_server
from provider_proxy.testing import FakeUpstream

from .conftest import OwnUpstream
from .servers import ServerThread, env_without_keys, free_port, get_when_up, wait_until

SERVER_NAMES = ["uvicorn", "granian"]
KEY = "az-key-not-shown"
#: After a graceful stop, uvicorn ends by the signal it caught (its convention); granian with 0.
CLEAN_EXITS = (0, -signal.SIGTERM)
CHAT = "/azure/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"


class Served:
    """``provider-proxy serve`` in a process of its own, in front of the fake provider."""

    def __init__(self, server: str, upstream: ServerThread) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "provider_proxy", "serve", "--port", str(self.port)),
                *("--validate-credentials", "strict"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env_without_keys(
                PROVIDER_PROXY_SERVER=server,
                AZURE_OPENAI_API_KEY=KEY,
                AZURE_OPENAI_ENDPOINT=upstream.url,
            ),
        )
        self.output = ""

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        self.output += out
        return self.process.returncode


@pytest.fixture(params=SERVER_NAMES)
def served(request: pytest.FixtureRequest, upstream: ServerThread) -> Iterator[Served]:
    proxy = Served(str(request.param), upstream)
    try:
        get_when_up(proxy.url + "/health", proxy.process)
        yield proxy
    finally:
        if proxy.process.poll() is None:
            proxy.process.kill()
            proxy.stop()


def test_the_lifespan_ran_and_the_chosen_server_serves(served: Served) -> None:
    health = httpx.get(served.url + "/health").json()
    # The strict credential probe ran at start-up, so the lifespan did.
    assert health["providers"]["azure"]["credentials"]["state"] == "valid"
    assert served.stop() in CLEAN_EXITS


def test_each_server_is_the_one_asked_for(upstream: ServerThread) -> None:
    for name in SERVER_NAMES:
        proxy = Served(name, upstream)
        try:
            get_when_up(proxy.url + "/health", proxy.process)
        finally:
            assert proxy.stop() in CLEAN_EXITS
        assert f"provider-proxy: on {name}" in proxy.output


def test_a_stream_is_relayed_event_by_event(served: Served, fake: FakeUpstream) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    arrivals: list[float] = []
    received = b""
    with httpx.stream(
        "POST",
        served.url + CHAT,
        json=body,
        headers={"x-fake-chunks": "4", "x-fake-gap": "0.3"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            arrivals.append(time.monotonic())
            received += chunk
    assert received.rstrip().endswith(b"data: [DONE]")
    # Not gathered and sent at the end: the pieces arrived over the stream's life.
    assert len(arrivals) >= 4
    assert arrivals[-1] - arrivals[0] >= 0.6
    assert fake.last.header("api-key") == KEY


def test_a_websocket_handshake_gets_the_proxys_answer(served: Served) -> None:
    # A path no adapter opens a socket on (the chat endpoint is HTTP only).
    url = served.url.replace("http://", "ws://") + CHAT
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=10).close()
    # Refused by the proxy in the route's format (both servers carry the app's own
    # answer to a handshake), not dropped or answered 403 by the server.
    assert refused.value.response.status_code == 426
    assert json.loads(bytes(refused.value.response.body or b""))["error"]["code"] == (
        "websocket_not_supported"
    )


def test_sigterm_drains_the_request_in_flight(served: Served) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    received = b""
    with httpx.stream(
        "POST",
        served.url + CHAT,
        json=body,
        headers={"x-fake-chunks": "6", "x-fake-gap": "0.2"},
        timeout=30,
    ) as response:
        chunks = response.iter_raw()
        received += next(chunks)
        served.process.send_signal(signal.SIGTERM)
        for chunk in chunks:
            received += chunk
    # The answer finished after the signal, then the server exited cleanly.
    assert received.rstrip().endswith(b"data: [DONE]")
    assert served.stop() in CLEAN_EXITS


def test_no_access_log_shows_a_query(served: Served) -> None:
    assert httpx.get(served.url + "/health?key=query-key-not-shown").is_success
    served.stop()
    assert "query-key-not-shown" not in served.output
    assert KEY not in served.output


# --- in process ----------------------------------------------------------------


async def _started_app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.complete"})


@pytest.mark.anyio
async def test_the_heap_is_frozen_once_the_app_started() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        # Frozen before the server hears of the start-up, so before any request.
        assert gc.get_freeze_count() > 0
        sent.append(message)

    gc.unfreeze()
    try:
        await FreezeAfterStartup(_started_app)({"type": "lifespan"}, receive, send)
    finally:
        gc.unfreeze()
    assert sent == [{"type": "lifespan.startup.complete"}]


@pytest.mark.anyio
async def test_requests_pass_through_unfrozen() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    gc.unfreeze()
    await FreezeAfterStartup(app)({"type": "http"}, None, None)  # type: ignore[arg-type]
    assert seen == ["http"]
    assert gc.get_freeze_count() == 0


def test_auto_is_uvicorn_and_a_name_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVIDER_PROXY_SERVER", raising=False)
    assert chosen_server() == "uvicorn"
    assert chosen_server("granian") == "granian"
    monkeypatch.setenv("PROVIDER_PROXY_SERVER", "GRANIAN")
    assert chosen_server() == "granian"
    monkeypatch.setenv("PROVIDER_PROXY_SERVER", "auto")
    assert chosen_server() == "uvicorn"
    with pytest.raises(SystemExit) as exited:
        chosen_server("hypercorn")
    assert "must be one of auto, uvicorn, granian" in str(exited.value.code)


class TestOnItsOwnUpstream(OwnUpstream):
    """Tests that count the fake's streams, each on a fake of its own."""

    def test_a_client_leaving_mid_stream_frees_the_upstream(
        self, served: Served, fake: FakeUpstream
    ) -> None:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        closed_before = fake.closed_streams
        # 50 events 0.2 s apart: 10 s unless the proxy hears the client go.
        with httpx.stream(
            "POST",
            served.url + CHAT,
            json=body,
            headers={"x-fake-chunks": "50", "x-fake-gap": "0.2"},
            timeout=30,
        ) as response:
            assert next(response.iter_raw())
        assert wait_until(lambda: fake.closed_streams == closed_before + 1, timeout=5)
        assert fake.open_streams == 0
