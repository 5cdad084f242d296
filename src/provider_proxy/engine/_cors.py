"""CORS for browser clients, when the proxy runs alone or its host has none.

Preflight requests are answered here without reaching a provider. Following
the Fetch standard, ``*`` is never sent together with credentials: with
``allow_credentials=True`` the allowed origin is echoed instead, and a
wildcard origin list is refused at construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..dialects import CLIENT_HEADERS
from ..types import ASGIApp, Message, Receive, Scope, Send

_SAFELISTED = ("accept", "accept-language", "content-language", "content-type")


@dataclass(frozen=True)
class CORS:
    """Which browser origins may call the proxy, and with what."""

    allow_origins: Sequence[str] = ()
    allow_methods: Sequence[str] = ("GET", "POST", "OPTIONS")
    #: By default the headers the official SDKs send (credentials, API versions,
    #: beta flags, ``x-stainless-*``), from the built-in dialects.
    allow_headers: Sequence[str] = ("content-type", "x-request-id", *CLIENT_HEADERS)
    allow_credentials: bool = False
    expose_headers: Sequence[str] = (
        "x-request-id",
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-should-retry",
    )
    max_age: int = 600
    _origins: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.allow_origins, str):
            raise TypeError("allow_origins is a list of origins, such as ['https://app.example'].")
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError(
                "allow_origins=['*'] cannot be combined with allow_credentials=True "
                "(browsers refuse it); list the origins instead."
            )
        object.__setattr__(self, "_origins", frozenset(o.rstrip("/") for o in self.allow_origins))

    def origin_allowed(self, origin: str) -> bool:
        return "*" in self._origins or origin in self._origins

    def header_allowed(self, name: str) -> bool:
        name = name.strip().lower()
        if name in _SAFELISTED or "*" in self.allow_headers:
            return True
        for allowed in self.allow_headers:
            allowed = allowed.lower()
            if allowed == name or (allowed.endswith("*") and name.startswith(allowed[:-1])):
                return True
        return False

    def origin_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        wildcard = "*" in self._origins and not self.allow_credentials
        headers = [(b"access-control-allow-origin", b"*" if wildcard else origin.encode("latin-1"))]
        if not wildcard:
            headers.append((b"vary", b"Origin"))
        if self.allow_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers


class CORSMiddleware:
    """Pure-ASGI CORS: answers preflights, adds headers to allowed origins' answers."""

    def __init__(self, app: ASGIApp, cors: CORS) -> None:
        self.app = app
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = None
        requested_method = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                requested_method = value.decode("latin-1")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and requested_method is not None:
            await self._preflight(scope, origin, requested_method, send)
            return
        if not self.cors.origin_allowed(origin):
            await self.app(scope, receive, send)
            return
        extra = self.cors.origin_headers(origin)
        if self.cors.expose_headers:
            extra.append(
                (b"access-control-expose-headers", ", ".join(self.cors.expose_headers).encode())
            )

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, origin: str, method: str, send: Send) -> None:
        cors = self.cors
        requested = b""
        for name, value in scope["headers"]:
            if name == b"access-control-request-headers":
                requested = value
        names = [n for n in requested.decode("latin-1").split(",") if n.strip()]
        methods = {m.upper() for m in cors.allow_methods}
        ok = (
            cors.origin_allowed(origin)
            and ("*" in methods or method.upper() in methods)
            and all(cors.header_allowed(n) for n in names)
        )
        headers: list[tuple[bytes, bytes]] = [(b"content-length", b"0"), (b"vary", b"Origin")]
        if ok:
            headers = [(b"content-length", b"0"), *cors.origin_headers(origin)]
            headers += [
                (b"access-control-allow-methods", ", ".join(sorted(methods)).encode()),
                (b"access-control-max-age", str(cors.max_age).encode()),
            ]
            if names:
                headers.append((b"access-control-allow-headers", requested))
        status = 204 if ok else 403
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
