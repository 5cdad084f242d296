"""A FastAPI app with the proxy mounted under ``/llm``.

Run it (keys from the environment)::

    OPENAI_API_KEY=sk-... uvicorn examples.fastapi_app:app
    OPENAI_API_KEY=sk-... python examples/fastapi_app.py   # the same, on 127.0.0.1:8000

and call it with an unmodified SDK, which never needs the real key::

    from openai import OpenAI

    client = OpenAI(base_url="http://127.0.0.1:8000/llm/openai", api_key="unused")
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
    )

``http://127.0.0.1:8000/llm/anthropic`` is the base URL for ``anthropic.Anthropic``,
and ``/llm/health`` tells which providers have a key. ``http://127.0.0.1:8000/chat``
is a chat page (``examples/ws_chat.html``) on the proxy's inference socket, ``/llm/ws``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from provider_proxy import ProviderAdapter, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter

#: The chat page: plain HTML and JS on ``{mount}/ws``.
CHAT_PAGE = Path(__file__).with_name("ws_chat.html")


def create_app(
    adapters: Sequence[ProviderAdapter] | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The app, with the proxy under ``/llm``.

    :param adapters: the providers; by default OpenAI and Anthropic, with their keys
        from ``OPENAI_API_KEY`` and ``ANTHROPIC_API_KEY``.
    :param transport: the proxy's upstream transport (by default the fastest installed).
    """
    if adapters is None:
        adapters = [OpenAIAdapter(), AnthropicAdapter()]
    proxy = make_asgi_app(adapters, transport=transport)
    # FastAPI does not pass lifespan events to mounted apps: hand it the proxy's,
    # so the upstream connection pool is closed on shutdown.
    app = FastAPI(title="My app", lifespan=proxy.lifespan)

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "from the host app"}

    @app.get("/chat", response_class=HTMLResponse)
    async def chat() -> str:
        """A browser chat on the proxy's ``/llm/ws`` socket."""
        return CHAT_PAGE.read_text(encoding="utf-8")

    app.mount("/llm", proxy)
    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
