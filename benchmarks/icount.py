"""``python -m benchmarks.icount UPSTREAM_URL KIND N``: N requests, for counting instructions.

Wall-clock numbers need quiet cores; instruction counts do not. This calls an
app in process (no server in front) N times with a 1 KB chat request, against
a real upstream on loopback in another process (``python -m benchmarks.serve
upstream``), so the transport's socket work is in the count, the Rust client's
thread too. Run it under callgrind twice and take the difference::

    valgrind --tool=callgrind python -m benchmarks.icount URL proxy-reqwest 50
    valgrind --tool=callgrind python -m benchmarks.icount URL proxy-reqwest 150

(instructions per request: the second total less the first, over 100).
Both runs first send 20 requests and then ``gc.freeze()``, as
``provider-proxy serve`` does after start-up: otherwise a full collection
falls inside the counted window or not, by chance. ``receive()`` answers
``http.disconnect`` once the answer is complete, as uvicorn's does.
``KIND`` is ``floor-aiohttp``, ``floor-reqwest``, ``proxy-httpx``,
``proxy-aiohttp``, ``proxy-http1``, ``proxy-reqwest``, or ``gateway-http1``
(OpenAI Chat in at the gateway, Anthropic Messages upstream).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .bodies import chat_body

#: Requests sent before counting starts (and the heap is frozen).
WARM_UP = 20

KINDS = (
    "floor-aiohttp",
    "floor-reqwest",
    "proxy-httpx",
    "proxy-aiohttp",
    "proxy-http1",
    "proxy-reqwest",
    "gateway-http1",
)

#: The model the gateway kind asks for: Anthropic-backed, so every request is translated.
GATEWAY_MODEL = "anthropic/claude-x"


def _transport(kind: str) -> httpx.AsyncBaseTransport:
    if kind == "proxy-httpx":
        return httpx.AsyncHTTPTransport()
    if kind == "proxy-aiohttp":
        from provider_proxy.transports._aiohttp import AiohttpTransport

        return AiohttpTransport()
    if kind in ("proxy-http1", "gateway-http1"):
        from provider_proxy.transports._http1 import Http1Transport

        return Http1Transport()
    from provider_proxy import reqwest_transport

    return reqwest_transport()


def app_for(kind: str, upstream: str) -> tuple[Any, str]:
    """The app ``kind`` names in front of ``upstream``, and the path to POST chats to."""
    if kind.startswith("floor"):
        from .floor import Floor, ReqwestFloor

        floor = ReqwestFloor if kind == "floor-reqwest" else Floor
        return floor(upstream), "/v1/chat/completions"
    from provider_proxy import make_asgi_app
    from provider_proxy.adapters import AnthropicAdapter, OpenAICompatibleAdapter

    if kind.startswith("gateway"):
        anthropic = AnthropicAdapter(base_url=upstream, api_key="x")
        app = make_asgi_app([anthropic], transport=_transport(kind), validate_credentials="off")
        return app, "/v1/chat/completions"
    adapter = OpenAICompatibleAdapter("bench", upstream + "/v1", api_key="x")
    app = make_asgi_app([adapter], transport=_transport(kind), validate_credentials="off")
    return app, "/bench/chat/completions"


async def _call(app: Any, path: str, body: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", b"Bearer client"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    received = False
    answered = asyncio.Event()
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif not message.get("more_body", False):
            answered.set()  # the answer is complete: receive() returns, as uvicorn's does

    await app(scope, receive, send)
    answered.set()
    return status


@contextlib.asynccontextmanager
async def started(app: Any) -> AsyncIterator[None]:
    """``app`` with its lifespan started, and shut down on leaving."""
    lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    up = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            up.set()

    await lifespan.put({"type": "lifespan.startup"})
    running = asyncio.ensure_future(app({"type": "lifespan"}, lifespan.get, send))
    await up.wait()
    yield
    await lifespan.put({"type": "lifespan.shutdown"})
    await running


async def run(kind: str, upstream: str, requests: int) -> None:
    """Start ``kind``'s app (its lifespan), send ``requests`` chats, then shut it down."""
    app, path = app_for(kind, upstream)
    body = chat_body(1024, model=GATEWAY_MODEL if kind.startswith("gateway") else "gpt-bench")
    async with started(app):
        for number in range(WARM_UP + requests):
            if number == WARM_UP:
                gc.collect()
                gc.freeze()
            status = await _call(app, path, body)
            if status != 200:
                raise SystemExit(f"{kind}: the upstream answered {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("upstream", help="the fake upstream's base URL")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("requests", type=int)
    args = parser.parse_args()
    asyncio.run(run(args.kind, args.upstream.rstrip("/"), args.requests))


if __name__ == "__main__":
    main()
