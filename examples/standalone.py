"""The proxy served alone, with the providers whose keys are in the environment.

    OPENAI_API_KEY=sk-... python examples/standalone.py --port 8000

Clients then use ``http://127.0.0.1:8000/openai`` (or ``/anthropic``) as their
base URL, and ``/health`` tells which providers are served.

``OPENAI_BASE_URL`` / ``ANTHROPIC_BASE_URL`` point the proxy's adapters at another
upstream (a regional endpoint, a gateway, a test server), as they do for the
official SDKs.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from provider_proxy import ProviderAdapter, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter


def build_adapters() -> list[ProviderAdapter]:
    """OpenAI and Anthropic, keeping those whose API key is set."""
    adapters: list[ProviderAdapter] = [
        OpenAIAdapter(base_url=os.environ.get("OPENAI_BASE_URL") or None),
        AnthropicAdapter(base_url=os.environ.get("ANTHROPIC_BASE_URL") or None),
    ]
    return [adapter for adapter in adapters if adapter.availability().enabled]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Serve the LLM provider proxy alone.",
        epilog="Set OPENAI_API_KEY and/or ANTHROPIC_API_KEY; "
        "OPENAI_BASE_URL and ANTHROPIC_BASE_URL change the upstreams.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    adapters = build_adapters()
    if not adapters:
        raise SystemExit("Set OPENAI_API_KEY and/or ANTHROPIC_API_KEY first.")
    uvicorn.run(make_asgi_app(adapters), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
