"""mount(): dispatch by prefix and the lifespan folded into the host's."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from provider_proxy import ProxyApp, make_asgi_app, mount
from provider_proxy.adapters import OpenAIAdapter
from provider_proxy.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio


class RecordingTransport(httpx.AsyncBaseTransport):
    """Counts closes, to see the proxy's shutdown run."""

    def __init__(self) -> None:
        self.closed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"url": str(request.url)})

    async def aclose(self) -> None:
        self.closed += 1


def _proxy(transport: httpx.AsyncBaseTransport) -> ProxyApp:
    return make_asgi_app(
        [OpenAIAdapter(base_url="https://up.example/v1", api_key="k")], transport=transport
    )


async def _run_lifespan(app: Any) -> list[str]:
    """Drive a lifespan startup and shutdown; return what the app answered."""
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    answers: list[str] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        answers.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    return answers


async def test_host_with_lifespan_runs_proxy_shutdown() -> None:
    events: list[str] = []

    async def host(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    transport = RecordingTransport()
    answers = await _run_lifespan(mount(host, "/llm", _proxy(transport)))
    assert answers == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert transport.closed == 1


async def test_host_without_lifespan_support_django_style() -> None:
    async def host(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    transport = RecordingTransport()
    answers = await _run_lifespan(mount(host, "/llm", _proxy(transport)))
    assert answers == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert transport.closed == 1


async def test_host_that_ignores_lifespan() -> None:
    async def host(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    transport = RecordingTransport()
    answers = await _run_lifespan(mount(host, "/llm", _proxy(transport)))
    assert answers == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert transport.closed == 1


async def _host_app(scope: Scope, receive: Receive, send: Send) -> None:
    body = f"host saw {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/llm/openai/models", {"url": "https://up.example/v1/models"}),
        ("/llm/openai/models/gpt-4o", {"url": "https://up.example/v1/models/gpt-4o"}),
        ("/llmx/openai/models", "host saw /llmx/openai/models"),
        ("/other", "host saw /other"),
    ],
)
async def test_dispatch_by_prefix(path: str, expected: Any) -> None:
    app = mount(_host_app, "/llm/", _proxy(RecordingTransport()))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://myapp"
    ) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert (response.json() if isinstance(expected, dict) else response.text) == expected


async def test_dispatch_under_root_path() -> None:
    app = mount(_host_app, "/llm", _proxy(RecordingTransport()))
    transport = httpx.ASGITransport(app=app, root_path="/api")
    async with httpx.AsyncClient(transport=transport, base_url="http://myapp") as client:
        response = await client.get("/api/llm/openai/models")
    assert response.json() == {"url": "https://up.example/v1/models"}


def test_empty_prefix_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        mount(_host_app, "/", _proxy(RecordingTransport()))


async def test_host_startup_failure_is_not_hidden() -> None:
    async def host(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database down"})
        raise RuntimeError("database down")

    transport = RecordingTransport()
    with pytest.raises(RuntimeError, match="database down"):
        await _run_lifespan(mount(host, "/llm", _proxy(transport)))
