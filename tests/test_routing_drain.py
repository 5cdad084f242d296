"""Graceful drain: SIGTERM to uvicorn in a real process, open streams finish or are
aborted at drain_timeout, new requests and /health get 503 meanwhile."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from provider_proxy import make_asgi_app, mount
from provider_proxy.adapters import OpenAIAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import OPENAI_KEY
from .servers import ServerThread, env_without_keys, free_port, get_when_up, serve, wait_until

STREAM = {
    "model": "gpt-x",
    "stream": True,
    "messages": [{"role": "user", "content": "Say hello."}],
}

#: The proxy under uvicorn in the main thread of its own process, as deployed.
SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import uvicorn
    from provider_proxy import make_asgi_app, mount
    from provider_proxy.adapters import OpenAIAdapter

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    upstream, port, drain = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    app = make_asgi_app(
        [OpenAIAdapter(base_url=upstream + "/v1", api_key="sk-drain-test-0123456789")],
        validate_credentials="off",
        drain_timeout=drain,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    """
)


@pytest.fixture
def slow_upstream() -> Iterator[ServerThread]:
    """A provider whose streams take about 3 s (15 chunks, 0.2 s apart)."""
    with serve(FakeUpstream(chunks=15, gap=0.2), lifespan="off") as server:
        yield server


def start_proxy(upstream: ServerThread, drain: float) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = env_without_keys(PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, upstream.url, str(port), str(drain)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    get_when_up(f"{url}/health", process)
    return process, url


class StreamReader(threading.Thread):
    """Reads one streamed answer in the background: its lines, and how it ended."""

    def __init__(
        self, url: str, first_line: threading.Event, path: str = "/openai/chat/completions"
    ) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.path = path
        self.first_line = first_line
        self.lines: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream("POST", self.url + self.path, json=STREAM, timeout=30) as response:
                for line in response.iter_lines():
                    self.lines.append(line)
                    self.first_line.set()
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.first_line.set()


def test_sigterm_lets_open_streams_finish_while_new_requests_get_503(
    slow_upstream: ServerThread,
) -> None:
    process, url = start_proxy(slow_upstream, drain=15)
    try:
        started = threading.Event()
        reader = StreamReader(url, started)
        reader.start()
        assert started.wait(10)
        process.send_signal(signal.SIGTERM)
        assert wait_until(lambda: _health(url).status_code == 503, timeout=5)
        health = _health(url)
        assert health.json()["status"] == "draining"
        refused = httpx.post(f"{url}/openai/chat/completions", json=STREAM, timeout=5)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["type"]  # in the route's (OpenAI's) error format
        assert process.poll() is None  # still serving the open stream
        reader.join(15)
        assert reader.error is None
        assert "data: [DONE]" in reader.lines  # complete, not cut
        assert sum(line.startswith("data: {") for line in reader.lines) >= 15
        assert process.wait(10) is not None
    finally:
        if process.poll() is None:
            process.kill()
        output, _ = process.communicate(timeout=10)
    assert "draining" in output


def test_streams_still_open_at_drain_timeout_are_aborted_with_their_event(
    slow_upstream: ServerThread,
) -> None:
    process, url = start_proxy(slow_upstream, drain=0.5)
    try:
        started = threading.Event()
        reader = StreamReader(url, started)
        reader.start()
        assert started.wait(10)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        reader.join(10)
        assert isinstance(reader.error, httpx.RemoteProtocolError)  # aborted, not ended
        assert "data: [DONE]" not in reader.lines
        assert 0.4 <= time.monotonic() - signalled < 2.8  # the stream alone lasts ~3 s
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        output, _ = process.communicate(timeout=10)
    access = [
        json.loads(line.split(" ", 1)[1])
        for line in output.splitlines()
        if line.startswith("provider_proxy.access ")
    ]
    assert any(event.get("error_kind") == "drained" for event in access), output


async def _host(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A host app of its own: answers ``/`` with 200."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"host"})


def test_a_host_closing_the_mounted_app_drains_it(slow_upstream: ServerThread) -> None:
    events: list[Any] = []
    proxy = make_asgi_app(
        [OpenAIAdapter(base_url=slow_upstream.url + "/v1", api_key=OPENAI_KEY)],
        validate_credentials="off",
        drain_timeout=10,
        sinks=[events.append],
    )
    with serve(mount(_host, "/llm", proxy)) as server:
        started = threading.Event()
        reader = StreamReader(server.url + "/llm", started)
        reader.start()
        assert started.wait(10)
        assert server.loop is not None
        closing = asyncio.run_coroutine_threadsafe(proxy.aclose(), server.loop)
        assert wait_until(lambda: _health(server.url + "/llm").status_code == 503, timeout=5)
        refused = httpx.post(f"{server.url}/llm/openai/chat/completions", json=STREAM, timeout=5)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert httpx.get(server.url + "/").text == "host"  # the host's own routes go on
        with pytest.raises(InvalidStatus) as socket_refused:  # no new sockets either
            ws_connect(server.url.replace("http", "ws") + "/llm/ws").close()
        assert socket_refused.value.response.status_code == 503
        reader.join(10)
        closing.result(10)
    assert reader.error is None
    assert "data: [DONE]" in reader.lines
    assert any(e.error_kind == "draining" for e in events)


def _health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/health", timeout=5)


def test_serve_drains_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "proxy.toml"
    config.write_text('drain_timeout = 5\nvalidate_credentials = "off"\n')
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "provider_proxy", "serve", "--port", str(port)),
            *("--config", str(config)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env_without_keys(
            OPENAI_API_KEY="sk-serve-drain-0123456789", PYTHONPATH=os.environ.get("PYTHONPATH", "")
        ),
    )
    try:
        get_when_up(f"http://127.0.0.1:{port}/health", process)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        assert time.monotonic() - started < 5  # nothing open: no wait for the timeout
    finally:
        if process.poll() is None:
            process.kill()
        output, _ = process.communicate(timeout=10)
    assert "draining before shutdown" in output


def test_serve_with_ports_drains_once_for_every_server(
    tmp_path: Path, slow_upstream: ServerThread
) -> None:
    """A stream open on a ``[ports]`` server finishes: SIGTERM drains the whole process."""
    port, openai_port = free_port(), free_port()
    config = tmp_path / "proxy.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            drain_timeout = 15
            validate_credentials = "off"

            [server]
            port = {port}

            [providers.openai]
            type = "openai"
            base_url = "{slow_upstream.url}/v1"
            api_key = "sk-serve-ports-drain-0123456789"

            [ports]
            openai = {openai_port}
            """
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "provider_proxy", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env_without_keys(PYTHONPATH=os.environ.get("PYTHONPATH", "")),
    )
    url, at_root = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{openai_port}"
    try:
        get_when_up(f"{url}/health", process)
        get_when_up(f"{at_root}/health", process)
        started = threading.Event()
        reader = StreamReader(at_root, started, path="/chat/completions")
        reader.start()
        assert started.wait(10)
        process.send_signal(signal.SIGTERM)
        assert wait_until(lambda: _health(url).status_code == 503, timeout=5)
        assert _health(url).json()["status"] == "draining"
        # The port's server still listens, and refuses in the drain's words.
        refused = httpx.post(f"{at_root}/chat/completions", json=STREAM, timeout=5)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert reader.is_alive()  # all of this while the stream is still open
        reader.join(15)
        assert reader.error is None
        assert "data: [DONE]" in reader.lines  # complete, not cut by the port's server
        assert process.wait(10) is not None
    finally:
        if process.poll() is None:
            process.kill()
        output, _ = process.communicate(timeout=10)
    assert output.count("draining before shutdown") == 1, output


#: The proxy with a socket-relaying provider, under uvicorn in its own process.
SOCKET_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import uvicorn
    from provider_proxy import make_asgi_app
    from provider_proxy.adapters import OpenAIAdapter

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    upstream, port, drain = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    app = make_asgi_app(
        [OpenAIAdapter(base_url=upstream + "/v1", api_key="sk-drain-test-0123456789")],
        validate_credentials="off",
        drain_timeout=drain,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio")
    """
)


def test_open_sockets_are_closed_going_away_at_the_drain_timeout() -> None:
    from websockets.exceptions import ConnectionClosed

    from provider_proxy.testing import FakeSocketUpstream

    fake = FakeSocketUpstream(subprotocol="realtime")
    with serve(fake, lifespan="off", ws="websockets-sansio") as upstream:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-c", SOCKET_SCRIPT, upstream.url, str(port), "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env_without_keys(PYTHONPATH=os.environ.get("PYTHONPATH", "")),
        )
        url = f"ws://127.0.0.1:{port}"
        try:
            get_when_up(f"http://127.0.0.1:{port}/health", process)
            relayed = ws_connect(f"{url}/openai/realtime?model=m", subprotocols=["realtime"])  # type: ignore[list-item]
            inference = ws_connect(f"{url}/ws")
            try:
                relayed.recv(timeout=10)  # the provider's session.created: relayed
                signalled = time.monotonic()
                process.send_signal(signal.SIGTERM)
                assert wait_until(lambda: _health(url.replace("ws", "http")).status_code == 503)
                close_frame = json.loads(inference.recv(timeout=10))
                waited = time.monotonic() - signalled
                assert 0.9 <= waited < 5  # at the drain's timeout, not at once
                assert close_frame == {
                    "type": "close",
                    "reason": "The proxy is shutting down.",
                    "code": 1001,
                }
                with pytest.raises(ConnectionClosed) as ended:
                    inference.recv(timeout=10)
                assert ended.value.rcvd is not None
                assert ended.value.rcvd.code == 1001
                with pytest.raises(ConnectionClosed) as cut:
                    while True:
                        relayed.recv(timeout=10)
                assert cut.value.rcvd is not None
                assert cut.value.rcvd.code == 1001  # going away
            finally:
                relayed.close()
                inference.close()
            process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
            output, _ = process.communicate(timeout=10)
    access = [
        json.loads(line.split(" ", 1)[1])
        for line in output.splitlines()
        if line.startswith("provider_proxy.access ")
    ]
    sockets = [e for e in access if e.get("websocket") == "connection"]
    assert len(sockets) == 1, output
    assert sockets[0]["close_code"] == 1001
    assert "closing 2 socket(s) still open" in output
