"""Fetching image URLs for providers that take images only inline (opt-in).

A client's http(s) image URL is sent as it is to a provider that takes URLs;
one that takes images only inline refuses it (400, ``image.url``) unless the
operator enables fetching with ``make_asgi_app(fetch_images=ImageFetching())``.
The proxy then fetches each such image itself, with these rules against
server-side request forgery and abuse:

- only ``http`` and ``https``;
- the host is resolved once, and every address it resolves to must be a
  public one (loopback, private, link-local, shared, multicast, reserved and
  unspecified addresses are refused: cloud metadata endpoints among them); the
  request goes to that address, with the name in ``Host`` and in TLS SNI, so a
  second resolution cannot send it elsewhere;
- redirects are not followed;
- the answer must be a 2xx ``image/*`` of at most ``max_bytes`` (read in
  chunks and stopped at the cap), within ``timeout`` seconds.

Any failure refuses the request (400, naming the image): nothing is sent to
the provider.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import socket
from urllib.parse import urlsplit

import anyio
import httpx

from .._exceptions import BadRequest
from ..dialects.canonical import Image, Message, Part, Request, ToolResult


@dataclasses.dataclass(frozen=True, slots=True)
class ImageFetching:
    """How the proxy fetches image URLs for providers that take images only inline.

    :param max_bytes: the largest image fetched (bytes).
    :param max_images: the most images fetched for one request.
    :param timeout: seconds for each image, connection to last byte.
    :param allow_private: fetch from non-public addresses too. Only for a
        trusted network: it lets clients make the proxy reach internal hosts.
    """

    max_bytes: int = 5 * 1024 * 1024
    max_images: int = 8
    timeout: float = 10.0
    allow_private: bool = False


class ImageNotFetched(BadRequest):
    """An image URL the proxy would not or could not fetch (400)."""

    kind = "image_not_fetched"


def public_address(address: str) -> bool:
    """Whether an IP address is one the proxy may fetch from by default (a global unicast)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class ImageFetcher:
    """Replaces a request's http(s) image URLs with the images' data, by the rules above."""

    def __init__(self, settings: ImageFetching) -> None:
        self.settings = settings
        self._client: httpx.AsyncClient | None = None

    async def inline(self, request: Request) -> Request:
        """``request`` with every http(s) image URL fetched and put inline."""
        urls = [
            p.url
            for p in _images(request)
            if p.url is not None and p.url.startswith(("http:", "https:"))
        ]
        if not urls:
            return request
        if len(urls) > self.settings.max_images:
            raise ImageNotFetched(
                f"The request has {len(urls)} image URLs; the proxy fetches at most "
                f"{self.settings.max_images}."
            )
        fetched: dict[str, Image] = {}
        for url in dict.fromkeys(urls):
            fetched[url] = await self._fetch(url)
        return dataclasses.replace(
            request,
            messages=tuple(
                Message(m.role, tuple(_replaced(p, fetched) for p in m.parts))
                for m in request.messages
            ),
        )

    async def aclose(self) -> None:
        """Close the connection pool, if one was opened."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _fetch(self, url: str) -> Image:
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise ImageNotFetched(f"The image URL {_shown(url)} is not an http(s) URL.")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await self._address(host, port, url)
        target = f"[{address}]" if ":" in address else address
        pinned = parts._replace(netloc=f"{target}:{port}").geturl()
        headers = {"host": parts.netloc.rpartition("@")[2], "accept": "image/*"}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        client = self._pool()
        limit = self.settings.max_bytes
        try:
            with anyio.fail_after(self.settings.timeout):
                request = client.build_request(
                    "GET", pinned, headers=headers, extensions=extensions
                )
                response = await client.send(request, stream=True)
                try:
                    if not 200 <= response.status_code < 300:
                        raise ImageNotFetched(
                            f"The image URL {_shown(url)} answered {response.status_code} "
                            "(redirects are not followed)."
                        )
                    media_type = response.headers.get("content-type", "").partition(";")[0]
                    if not media_type.strip().lower().startswith("image/"):
                        raise ImageNotFetched(f"The image URL {_shown(url)} is not an image.")
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_raw():
                        size += len(chunk)
                        if size > limit:
                            raise ImageNotFetched(
                                f"The image at {_shown(url)} is over the proxy's limit of "
                                f"{limit} bytes."
                            )
                        chunks.append(chunk)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise ImageNotFetched(f"The image URL {_shown(url)} took too long.") from None
        except httpx.HTTPError:
            raise ImageNotFetched(f"The image URL {_shown(url)} could not be fetched.") from None
        data = base64.b64encode(b"".join(chunks)).decode("ascii")
        return Image(data=data, media_type=media_type.strip().lower())

    async def _address(self, host: str, port: int, url: str) -> str:
        """The one address the image is fetched from; every address of the host checked."""
        try:
            found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise ImageNotFetched(f"The image host of {_shown(url)} does not resolve.") from None
        addresses = [str(info[4][0]) for info in found]
        if not addresses:
            raise ImageNotFetched(f"The image host of {_shown(url)} does not resolve.")
        if not self.settings.allow_private and not all(public_address(a) for a in addresses):
            raise ImageNotFetched(
                f"The image URL {_shown(url)} is not on a public address; the proxy does not "
                "fetch from loopback, private or link-local addresses."
            )
        return addresses[0]

    def _pool(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client


def _images(request: Request) -> list[Image]:
    found: list[Image] = []
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, Image):
                found.append(part)
            elif isinstance(part, ToolResult):
                found.extend(p for p in part.content if isinstance(p, Image))
    return found


def _replaced(part: Part, fetched: dict[str, Image]) -> Part:
    if isinstance(part, Image) and part.url in fetched:
        return dataclasses.replace(fetched[part.url], cache_control=part.cache_control)
    if isinstance(part, ToolResult):
        content = tuple(_replaced(p, fetched) for p in part.content)
        return dataclasses.replace(part, content=content)  # type: ignore[arg-type]
    return part


def _shown(url: str) -> str:
    """A URL as errors show it: scheme, host and path (no credentials, no query)."""
    parts = urlsplit(url)
    return repr(f"{parts.scheme}://{parts.hostname or ''}{parts.path}")


__all__ = ["ImageFetcher", "ImageFetching", "ImageNotFetched", "public_address"]
