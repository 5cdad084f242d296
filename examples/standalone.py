"""The proxy served alone, with the providers whose keys are in the environment.

    OPENAI_API_KEY=sk-... python examples/standalone.py --port 8000

``OPENAI_UPSTREAM`` / ``ANTHROPIC_UPSTREAM`` point the adapters at another base
URL (a regional endpoint, a test server).
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from provider_proxy import ProviderAdapter, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter


def build_adapters() -> list[ProviderAdapter]:
    adapters: list[ProviderAdapter] = [
        OpenAIAdapter(base_url=os.environ.get("OPENAI_UPSTREAM")),
        AnthropicAdapter(base_url=os.environ.get("ANTHROPIC_UPSTREAM")),
    ]
    return [adapter for adapter in adapters if adapter.availability().enabled]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    adapters = build_adapters()
    if not adapters:
        raise SystemExit("Set OPENAI_API_KEY and/or ANTHROPIC_API_KEY first.")
    uvicorn.run(make_asgi_app(adapters), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
