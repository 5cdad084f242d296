"""WebSocket upgrades to paths no adapter opens a socket on are answered with 426,
so clients fall back to HTTP at once (relayed sockets: ``test_websocket_relay``).

The Codex CLI tries a WebSocket to ``/responses`` first: after a 403 it retries
for seconds, after a 426 it switches to HTTP straight away. Tested through real
uvicorn, with a WebSocket-capable server (the ``websocket.http.response``
extension) and without one (the handshake arrives as a plain GET, and is
refused even where a capable server would relay it).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from provider_proxy import ProxyApp
from provider_proxy.adapters import CopilotAdapter

from .servers import ServerThread, serve, wait_until


@pytest.fixture
def events() -> list[Any]:
    return []


@pytest.fixture
def proxy(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, events: list[Any]
) -> ProxyApp:
    adapters = [*make_proxy().adapters.values(), CopilotAdapter(base_url=upstream.url, api_key="k")]
    return make_proxy(adapters=adapters, sinks=[events.append])


@pytest.fixture
def ws_server(proxy: ProxyApp) -> Iterator[ServerThread]:
    with serve(proxy, ws="websockets-sansio") as server:
        yield server


@pytest.fixture
def plain_server(proxy: ProxyApp) -> Iterator[ServerThread]:
    with serve(proxy, ws="none") as server:
        yield server


def _refused(url: str) -> Any:
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=10).close()
    return refused.value.response


def _openai_error(body: bytes) -> None:
    assert json.loads(body)["error"]["code"] == "websocket_not_supported"


def _anthropic_error(body: bytes) -> None:
    payload = json.loads(body)
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "api_error"
    assert "WebSocket" in payload["error"]["message"]


@pytest.mark.parametrize(
    ("path", "check"),
    [
        ("/openai/chat/completions", _openai_error),
        ("/anthropic/v1/messages", _anthropic_error),
        ("/copilot/v1/messages", _anthropic_error),
        ("/copilot/responses", _openai_error),
        ("/nope/responses", _openai_error),  # no such provider: still 426, the proxy's format
    ],
)
def test_websocket_handshake_gets_426_in_the_routes_format(
    ws_server: ServerThread, events: list[Any], path: str, check: Callable[[bytes], None]
) -> None:
    response = _refused(ws_server.url.replace("http://", "ws://") + path)
    assert response.status_code == 426
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["content-type"] == "application/json"
    assert "upgrade" not in response.headers
    check(response.body)
    assert wait_until(lambda: len(events) == 1)
    assert (events[0].status, events[0].error_kind) == (426, "websocket_not_supported")


def _raw_get(server: ServerThread, path: str) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """A WebSocket handshake sent to a server that has no WebSocket support."""
    port = int(server.url.rpartition(":")[2])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines)
        while len(body) < int(headers[b"content-length"]):
            body += sock.recv(65536)
    return status, headers, body


@pytest.mark.parametrize(
    ("path", "check"),
    [
        ("/openai/responses", _openai_error),
        ("/copilot/v1/messages", _anthropic_error),
    ],
)
def test_handshake_as_plain_http_gets_426_too(
    plain_server: ServerThread, events: list[Any], path: str, check: Callable[[bytes], None]
) -> None:
    # Without this, GET /openai/responses would be refused as endpoint_not_allowed.
    status, headers, body = _raw_get(plain_server, path)
    assert status.startswith(b"HTTP/1.1 426 ")
    assert b"upgrade" not in headers
    assert headers[b"x-should-retry"] == b"false"
    check(body)
    assert wait_until(lambda: len(events) == 1)
    assert events[0].error_kind == "websocket_not_supported"


@pytest.mark.anyio
async def test_without_the_http_response_extension_the_handshake_is_closed(
    proxy: ProxyApp, events: list[Any]
) -> None:
    sent: list[dict[str, Any]] = []
    incoming = iter([{"type": "websocket.connect"}])

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/openai/chat/completions",
        "headers": [],
        "extensions": {},
    }
    await proxy(scope, receive, send)
    assert [message["type"] for message in sent] == ["websocket.close"]
    await proxy.aclose()  # delivers the event
    assert [(e.status, e.error_kind, e.provider) for e in events] == [
        (403, "websocket_not_supported", "openai")
    ]
