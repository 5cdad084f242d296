"""``provider-proxy demo``: the whole path, offline, printed as it happens.

A fake provider and the proxy are served by uvicorn on loopback ports; a real
HTTP client asks the proxy for a streamed chat completion with its own token,
and the demo prints each piece as it arrives and what the provider received.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from ._json import loads
from .adapters import OpenAIAdapter
from .engine import make_asgi_app
from .testing import FakeUpstream

PROVIDER_KEY = "sk-demo-provider-key"
CLIENT_TOKEN = "token-of-your-own-client"


async def _start(app: Any) -> tuple[Any, asyncio.Task[None], str]:
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}"


async def run_demo() -> int:
    """Run the demo; returns the process exit code."""
    fake = FakeUpstream()
    up_server, up_task, up_url = await _start(fake)
    proxy = make_asgi_app([OpenAIAdapter(base_url=up_url + "/v1", api_key=PROVIDER_KEY)])
    px_server, px_task, px_url = await _start(proxy)
    print(f"fake provider  {up_url}/v1")
    print(f"proxy          {px_url}  (transport: {type(proxy.transport).__name__})")
    print(f"client         POST {px_url}/openai/chat/completions  (stream, own token)\n")
    pieces: list[str] = []
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            start = time.monotonic()
            async with client.stream(
                "POST",
                f"{px_url}/openai/chat/completions",
                json={
                    "model": "gpt-demo",
                    "stream": True,
                    "messages": [{"role": "user", "content": "Say hello."}],
                },
                headers={"authorization": f"Bearer {CLIENT_TOKEN}", "x-fake-gap": "0.1"},
            ) as response:
                request_id = response.headers.get("x-request-id")
                print(f"status {response.status_code}, x-request-id {request_id}")
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    delta = loads(line[6:])["choices"][0]["delta"].get("content")
                    if delta:
                        pieces.append(delta)
                        elapsed = (time.monotonic() - start) * 1000
                        print(f"  +{elapsed:6.0f} ms  {delta!r}")
        seen = fake.last
        print(f"\nanswer         {''.join(pieces)!r}")
        sent_key = seen.header("authorization") == f"Bearer {PROVIDER_KEY}"
        client_token_seen = any(CLIENT_TOKEN.encode() in v for _, v in seen.headers)
        print(f"provider got the proxy's key:        {'yes' if sent_key else 'NO'}")
        print(f"provider saw the client's token:     {'YES' if client_token_seen else 'no'}")
        print(f"provider got the same x-request-id:  {seen.header('x-request-id') == request_id}")
        ok = bool(pieces) and sent_key and not client_token_seen
        print("\ndemo " + ("passed" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        for server in (px_server, up_server):
            server.should_exit = True
        await asyncio.gather(px_task, up_task)
        await proxy.aclose()
