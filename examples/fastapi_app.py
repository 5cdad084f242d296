"""A FastAPI app with the proxy mounted under ``/llm``.

Run it (keys from the environment)::

    OPENAI_API_KEY=sk-... uvicorn examples.fastapi_app:app

and call it with an unmodified SDK::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/llm/openai", api_key="unused")
    client.chat.completions.create(model="gpt-4o-mini", messages=[...])
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from provider_proxy import ProviderAdapter, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter


def create_app(adapters: Sequence[ProviderAdapter] | None = None) -> FastAPI:
    """The app; ``adapters`` default to OpenAI and Anthropic with keys from the environment."""
    proxy = make_asgi_app(adapters or [OpenAIAdapter(), AnthropicAdapter()])
    # FastAPI does not pass lifespan to mounted apps: hand it the proxy's, so the
    # upstream connection pool is closed on shutdown.
    app = FastAPI(title="My app", lifespan=proxy.lifespan)

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "from the host app"}

    app.mount("/llm", proxy)
    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
