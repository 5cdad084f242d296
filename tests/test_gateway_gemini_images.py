"""Image URLs for Gemini, which takes images only inline: refused, or fetched when allowed.

Through a real server: an OpenAI Chat client sends an http image URL to a
Gemini model. By default it is a 400 naming ``image.url``; with
``fetch_images=ImageFetching()`` the proxy fetches it, but never from a
loopback or private address (the image server here is on loopback, so those
tests see the refusal, and ``allow_private=True`` the fetch), never past a
redirect, never more than ``max_bytes``, and only images.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from provider_proxy import ImageFetching, make_asgi_app
from provider_proxy.adapters import GeminiAdapter
from provider_proxy.engine._images import public_address
from provider_proxy.testing import FakeUpstream
from provider_proxy.types import Receive, Scope, Send

from .servers import ServerThread, serve

FLASH = "gemini/gemini-2.5-flash"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 56


class ImageServer:
    """An ASGI app serving a small PNG, a big one, a page and a redirect; counts its requests."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.paths.append(scope["path"])
        status, headers, body = 200, [(b"content-type", b"image/png")], PNG
        if scope["path"] == "/big.png":
            body = PNG * 100
        elif scope["path"] == "/page":
            headers = [(b"content-type", b"text/html")]
            body = b"<html></html>"
        elif scope["path"] == "/moved":
            status, headers, body = 302, [(b"location", b"/a.png")], b""
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def images() -> Iterator[tuple[ImageServer, ServerThread]]:
    app = ImageServer()
    with serve(app, lifespan="off") as server:
        yield app, server


def _gateway(upstream: ServerThread, fetching: ImageFetching | None) -> Any:
    adapter = GeminiAdapter(base_url=upstream.url, api_key="gemini-test-key-0123456789")
    return serve(make_asgi_app([adapter], fetch_images=fetching, validate_credentials="off"))


def _ask(gateway: ServerThread, url: str) -> Any:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as c:
        return c.chat.completions.create(
            model=FLASH,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        )


def test_by_default_an_image_url_is_refused(
    upstream: ServerThread, fake: FakeUpstream, images: tuple[ImageServer, ServerThread]
) -> None:
    app, server = images
    before = len(fake.requests)
    with _gateway(upstream, None) as gateway, pytest.raises(openai.BadRequestError) as refused:
        _ask(gateway, f"{server.url}/a.png")
    assert "image.url" in str(refused.value)
    assert "fetch_images" in str(refused.value)
    assert app.paths == []
    assert len(fake.requests) == before


def test_a_fetched_image_goes_inline(
    upstream: ServerThread, fake: FakeUpstream, images: tuple[ImageServer, ServerThread]
) -> None:
    app, server = images
    with _gateway(upstream, ImageFetching(allow_private=True)) as gateway:
        answer = _ask(gateway, f"{server.url}/a.png?size=small")
    assert answer.choices[0].message.content
    assert app.paths == ["/a.png"]
    parts = json.loads(fake.last.body)["contents"][0]["parts"]
    assert parts == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
    ]


@pytest.mark.parametrize(
    ("path", "fetching", "says"),
    [
        ("/a.png", ImageFetching(), "not on a public address"),
        ("/big.png", ImageFetching(allow_private=True, max_bytes=1000), "over the proxy's limit"),
        ("/page", ImageFetching(allow_private=True), "is not an image"),
        ("/moved", ImageFetching(allow_private=True), "redirects are not followed"),
    ],
)
def test_an_image_that_may_not_be_fetched_refuses_the_request(
    upstream: ServerThread,
    fake: FakeUpstream,
    images: tuple[ImageServer, ServerThread],
    path: str,
    fetching: ImageFetching,
    says: str,
) -> None:
    app, server = images
    before = len(fake.requests)
    with _gateway(upstream, fetching) as gateway, pytest.raises(openai.BadRequestError) as refused:
        _ask(gateway, f"{server.url}{path}")
    assert says in str(refused.value)
    assert len(fake.requests) == before  # nothing reached the provider
    if path == "/moved":
        assert app.paths == ["/moved"]  # and the redirect was not followed


def test_a_name_that_resolves_to_loopback_is_refused(
    upstream: ServerThread, fake: FakeUpstream, images: tuple[ImageServer, ServerThread]
) -> None:
    app, server = images
    port = server.url.rpartition(":")[2]
    with _gateway(upstream, ImageFetching()) as gateway, pytest.raises(openai.BadRequestError):
        _ask(gateway, f"http://localhost:{port}/a.png")
    assert app.paths == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # shared address space
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fc00::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:127.0.0.1", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert public_address(address) is public
