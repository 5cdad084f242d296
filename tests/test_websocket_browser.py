"""The chat page (``examples/ws_chat.html``) in headless Chromium, on ``/llm/ws``.

The FastAPI example serves the page and the proxy; a fake provider streams
slowly; Chromium (Debian's ``chromium``) is driven over the Chrome DevTools
Protocol with the ``websockets`` client: a message is typed and sent, and the
answer is seen growing token by token until it is whole.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from examples.fastapi_app import create_app
from websockets.sync.client import ClientConnection, connect

from provider_proxy.adapters import OpenAIAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import OPENAI_KEY
from .servers import ServerThread, free_port, serve, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TEXT = "Hello from the fake upstream, streamed one piece at a time."


class DevTools:
    """A page of a browser, over the Chrome DevTools Protocol."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        self._socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=30))
            if message.get("id") == number:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


@pytest.fixture
def chromium() -> Iterator[DevTools]:
    port = free_port()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    process = subprocess.Popen(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--remote-debugging-port={port}",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        page_url = _page_socket(port, process)
        with connect(page_url, max_size=None, open_timeout=30) as socket:
            yield DevTools(socket)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hang guard
            process.kill()
            process.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


def _page_socket(port: int, process: subprocess.Popen[bytes]) -> str:
    """The DevTools socket of the browser's first page, once it is up."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx.TransportError, ValueError):
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        time.sleep(0.2)
    raise AssertionError(f"Chromium did not start (exit code {process.poll()})")


@pytest.fixture
def site() -> Iterator[ServerThread]:
    """The FastAPI example in front of a fake provider that streams slowly."""
    slow = FakeUpstream(gap=0.15)
    with serve(slow, lifespan="off") as provider:
        app = create_app([OpenAIAdapter(base_url=provider.url + "/v1", api_key=OPENAI_KEY)])
        with serve(app, ws="websockets-sansio") as server:
            yield server


def test_the_chat_page_streams_the_answer_token_by_token(
    chromium: DevTools, site: ServerThread
) -> None:
    chromium.call("Page.enable")
    chromium.call("Page.navigate", url=site.url + "/chat")
    assert wait_until(
        lambda: chromium.evaluate("document.getElementById('status').textContent") == "connected",
        timeout=30,
    )
    chromium.evaluate("document.getElementById('prompt').focus()")
    chromium.call("Input.insertText", text="Hello there")
    chromium.evaluate("document.getElementById('send').click()")

    answer = "document.querySelector('.assistant')"
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = chromium.evaluate(f"{answer} ? {answer}.textContent : ''")
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        if chromium.evaluate(f"{answer} && {answer}.dataset.finish"):
            break
        time.sleep(0.03)
    assert chromium.evaluate(f"{answer}.dataset.finish") == "stop"
    assert chromium.evaluate("document.querySelector('.user').textContent") == "Hello there"
    final = chromium.evaluate(f"{answer}.textContent")
    assert final == TEXT
    tokens = chromium.evaluate(f"{answer}.querySelectorAll('.token').length")
    assert tokens > 3
    # Seen growing: several partial answers, each a prefix of the next, before the whole.
    partial = [text for text in seen if text != TEXT]
    assert len(partial) >= 3, seen
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))
