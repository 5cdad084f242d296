"""A single-file Django ASGI project with the proxy mounted under ``/llm``.

Run it (keys from the environment)::

    OPENAI_API_KEY=sk-... uvicorn examples.django_app:application
    OPENAI_API_KEY=sk-... python examples/django_app.py   # the same, on 127.0.0.1:8000

and point an SDK at ``http://127.0.0.1:8000/llm/openai`` (or ``/llm/anthropic``)
with any API key: the proxy puts the real one in.

Django's ASGI handler does not do lifespan; ``mount()`` answers the lifespan
events itself, and still closes the proxy's connection pool on shutdown.
"""

from __future__ import annotations

from collections.abc import Sequence

import django
import httpx
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path

from provider_proxy import ProviderAdapter, make_asgi_app, mount
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.types import ASGIApp


def hello(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"hello": "from the Django app"})


urlpatterns = [path("", hello)]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="example-only-not-secret",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )
    django.setup()


def create_application(
    adapters: Sequence[ProviderAdapter] | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ASGIApp:
    """Django with the proxy under ``/llm``.

    :param adapters: the providers; by default OpenAI and Anthropic, with their keys
        from ``OPENAI_API_KEY`` and ``ANTHROPIC_API_KEY``.
    :param transport: the proxy's upstream transport (by default the fastest installed).
    """
    if adapters is None:
        adapters = [OpenAIAdapter(), AnthropicAdapter()]
    proxy = make_asgi_app(adapters, transport=transport)
    return mount(get_asgi_application(), "/llm", proxy)


application = create_application()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(application, host="127.0.0.1", port=8000)
