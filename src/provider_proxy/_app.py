"""`ProxyApp`: the ASGI app that routes ``{mount}/{provider}/...`` to an adapter.

The request flows one way: route → adapter checks → body → upstream → relay.
Cheap refusals (unknown provider, bad path, oversized body) happen before any
upstream work; errors the proxy answers itself come in the route's provider
error format.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio
import httpx
from typing_extensions import Self

from ._adapter import ProviderAdapter, RequestContext
from ._body import RequestBody, declared_length
from ._exceptions import (
    BodyTooLarge,
    ClientDisconnected,
    InvalidJSON,
    MethodNotAllowed,
    ProviderNotConfigured,
    ProviderNotFound,
    ProxyError,
)
from ._headers import (
    REQUEST_ID,
    UPSTREAM_REQUEST_ID,
    RawHeaders,
    apply_headers,
    header_value,
    request_headers_for_upstream,
    request_id_from,
    response_headers_for_client,
)
from ._json import dumps, loads
from ._paths import confine, path_below_mount, split_provider, upstream_url
from ._relay import relay_response
from ._upstream import DEFAULT_LIMITS, DEFAULT_TIMEOUT, as_proxy_error, default_transport
from .adapters._base import openai_error_body
from .types import Receive, Scope, Send

logger = logging.getLogger("provider_proxy")

#: 32 MiB: room for a long chat history with images, small enough to refuse abuse.
DEFAULT_MAX_BODY_SIZE = 32 * 1024 * 1024

#: Names under the mount point that the proxy answers itself.
RESERVED_NAMES = frozenset({"health", "status", "metrics", "v1"})

_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_JSON_HEADERS = [(b"content-type", b"application/json")]


class ProxyApp:
    """The proxy as a plain ASGI app; build it with :func:`make_asgi_app`.

    Mount it anywhere (``app.mount("/llm", proxy)``, or :func:`provider_proxy.mount`).
    It holds one pooled upstream transport, created on first use because a
    mounted sub-app may never see a lifespan event, and closed on shutdown or
    :meth:`aclose`. Under a router that keeps lifespan to itself (FastAPI,
    Starlette), pass :meth:`lifespan` to the host; hosts that manage lifecycles
    themselves can use ``async with proxy:``.
    """

    def __init__(
        self,
        adapters: Sequence[ProviderAdapter],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        limits: httpx.Limits = DEFAULT_LIMITS,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        self._adapters: dict[str, ProviderAdapter] = {}
        for adapter in adapters:
            if not isinstance(adapter, ProviderAdapter):
                raise TypeError(f"{adapter!r} does not implement ProviderAdapter.")
            if adapter.name in RESERVED_NAMES:
                raise ValueError(
                    f"The adapter name {adapter.name!r} is reserved for the proxy's own "
                    f"endpoints ({', '.join(sorted(RESERVED_NAMES))}); pass name= to rename it."
                )
            if adapter.name in self._adapters:
                raise ValueError(
                    f"Two adapters are named {adapter.name!r}; pass name= to tell them apart."
                )
            self._adapters[adapter.name] = adapter
        if max_body_size is not None and max_body_size < 0:
            raise ValueError("max_body_size must be a number of bytes (0 or more), or None.")
        self._transport = transport
        self._owns_transport = transport is None
        self._limits = limits
        timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._extensions: dict[str, Any] = {"timeout": timeout.as_dict()}
        self._max_body_size = max_body_size
        # The Host header of each provider, computed once.
        self._hosts = {name: adapter.base_url.netloc for name, adapter in self._adapters.items()}

    def __repr__(self) -> str:
        return f"ProxyApp(providers={list(self._adapters)!r})"

    @property
    def adapters(self) -> Mapping[str, ProviderAdapter]:
        """The mounted adapters by name."""
        return self._adapters

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        """The upstream transport, created on first use."""
        if self._transport is None:
            self._transport = default_transport(self._limits)
        return self._transport

    # -- lifecycle --------------------------------------------------------------

    async def startup(self) -> None:
        """Prepare for requests (creates the upstream transport)."""
        self.transport  # noqa: B018 - created now rather than on the first request

    async def aclose(self) -> None:
        """Close the upstream transport; a later request opens a new one."""
        transport = self._transport
        if transport is None:
            return
        if self._owns_transport:
            self._transport = None
        await transport.aclose()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """The proxy's startup and shutdown as a lifespan context for the host.

        For hosts whose router does not pass lifespan to mounted apps, such as
        FastAPI and Starlette: ``FastAPI(lifespan=proxy.lifespan)``.
        """
        await self.startup()
        try:
            yield
        finally:
            await self.aclose()

    async def __aenter__(self) -> Self:
        await self.startup()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- ASGI ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = request_id_from(scope["headers"])
        adapter: ProviderAdapter | None = None
        try:
            name, rest = split_provider(path_below_mount(scope))
            adapter = self._adapters.get(name)
            if adapter is not None:
                await self._forward(scope, receive, send, adapter, rest, request_id)
            elif name == "health" and rest in (b"", b"/"):
                await self._health(scope, send, request_id)
            else:
                mounted = ", ".join(self._adapters) or "none"
                what = f"No provider named {name!r}" if name else "No provider in the path"
                raise ProviderNotFound(f"{what}; the mounted providers are: {mounted}.")
        except ProxyError as error:
            await self._send_error(send, adapter, error, request_id)
        except ClientDisconnected:
            logger.debug("client went away before the answer (request %s)", request_id)

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        adapter: ProviderAdapter,
        rest: bytes,
        request_id: str,
    ) -> None:
        body = RequestBody(receive, self._max_body_size)
        try:
            request = await self._prepare(scope, body, adapter, rest, request_id)
        except (ProxyError, ClientDisconnected):
            raise
        except Exception as exc:
            # A bug or misconfiguration in adapter or transform code: a clear 500,
            # with the details in the log rather than in the answer.
            logger.exception("could not prepare the %s request %s", adapter.name, request_id)
            raise ProxyError(
                f"The proxy could not prepare the request for {adapter.name!r} "
                f"({type(exc).__name__}); its log has the details under request id {request_id}."
            ) from exc
        await self._exchange(request, body, receive, send, adapter, request_id)

    async def _prepare(
        self,
        scope: Scope,
        body: RequestBody,
        adapter: ProviderAdapter,
        rest: bytes,
        request_id: str,
    ) -> httpx.Request:
        """The upstream request: checks first, then the body, URL and headers."""
        availability = adapter.availability()
        if not availability.enabled:
            raise ProviderNotConfigured(
                f"The provider {adapter.name!r} is not configured: {availability.reason}"
            )
        path = confine(rest)
        client_headers: list[tuple[bytes, bytes]] = scope["headers"]
        method: str = scope["method"]
        query: bytes = scope.get("query_string", b"")
        context = RequestContext(
            adapter.name, method, path.decode("ascii"), query, client_headers, request_id
        )
        declared = declared_length(header_value(client_headers, b"content-length"))
        limit = self._max_body_size
        if limit is not None and declared is not None and declared > limit:
            raise BodyTooLarge(
                f"The request body ({declared} bytes) is over the proxy's limit of {limit} bytes."
            )

        first = await body.start()
        transform = adapter.body_transform(context)
        stream: httpx.AsyncByteStream | httpx.ByteStream
        length: int | None
        if transform is not None:
            content = _transformed(await body.read_all(), transform, context)
            stream, length = httpx.ByteStream(content), len(content)
        elif not body.more:
            stream, length = httpx.ByteStream(first), len(first)
        else:
            stream, length = _StreamedBody(body), declared

        url = adapter.rewrite_url(upstream_url(adapter.base_url, path, query), context)
        headers = request_headers_for_upstream(client_headers)
        auth = adapter.auth_headers(context)
        if inspect.isawaitable(auth):
            auth = await auth
        apply_headers(headers, {**adapter.headers, **auth}, adapter.default_headers)
        headers.append((b"host", self._hosts[adapter.name]))
        headers.append((REQUEST_ID, request_id.encode("ascii")))
        if length is None:
            headers.append((b"transfer-encoding", b"chunked"))
        elif length or method not in _BODYLESS_METHODS:
            headers.append((b"content-length", str(length).encode("ascii")))
        return httpx.Request(
            method, url, headers=headers, stream=stream, extensions=self._extensions
        )

    async def _exchange(
        self,
        request: httpx.Request,
        body: RequestBody,
        receive: Receive,
        send: Send,
        adapter: ProviderAdapter,
        request_id: str,
    ) -> None:
        """Send ``request`` and relay the answer, stopping at once if the client leaves."""
        disconnected = False
        failure: BaseException | None = None

        async def watch_disconnect(cancel: anyio.CancelScope) -> None:
            nonlocal disconnected
            await body.done.wait()
            if body.error is not None:
                return
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected = True
            cancel.cancel()

        transport = self.transport
        async with anyio.create_task_group() as group:
            group.start_soon(watch_disconnect, group.cancel_scope)
            try:
                try:
                    response = await transport.handle_async_request(request)
                except httpx.TransportError as exc:
                    raise body.error or as_proxy_error(exc, adapter.base_url.host) from exc
                if body.error is not None:  # pragma: no cover - transports raise first
                    raise body.error
                try:
                    await relay_response(
                        response,
                        send,
                        _client_headers(response, request_id),
                        provider=adapter.name,
                        request_id=request_id,
                    )
                finally:
                    with anyio.CancelScope(shield=True):
                        await response.aclose()
            except Exception as exc:
                # Re-raised below, outside the task group, so it is not wrapped in
                # an exception group.
                failure = body.error or exc
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if disconnected:
            logger.debug("client went away; closed the upstream response (request %s)", request_id)

    async def _health(self, scope: Scope, send: Send, request_id: str) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            raise MethodNotAllowed("The health endpoint answers GET only.")
        providers: dict[str, dict[str, Any]] = {}
        for name, adapter in self._adapters.items():
            availability = adapter.availability()
            entry: dict[str, Any] = {
                "enabled": availability.enabled,
                "base_url": str(adapter.base_url),
            }
            if not availability.enabled:
                entry["reason"] = availability.reason
            providers[name] = entry
        status = "ok" if any(p["enabled"] for p in providers.values()) else "unconfigured"
        await _send_json(send, 200, {"status": status, "providers": providers}, request_id)

    async def _send_error(
        self, send: Send, adapter: ProviderAdapter | None, error: ProxyError, request_id: str
    ) -> None:
        if adapter is not None:
            content = adapter.error_body(error, request_id)
        else:
            content = openai_error_body(error)
        headers: RawHeaders = [
            *_JSON_HEADERS,
            (b"content-length", str(len(content)).encode("ascii")),
            (REQUEST_ID, request_id.encode("ascii")),
            # Read by the OpenAI and Anthropic SDKs to decide whether to retry.
            (b"x-should-retry", b"true" if error.retryable else b"false"),
        ]
        await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})


class _StreamedBody(httpx.AsyncByteStream):
    """The client's body as an httpx request stream, read as the upstream sends it."""

    def __init__(self, body: RequestBody) -> None:
        self._body = body

    async def __aiter__(self) -> Any:
        async for chunk in self._body.stream():
            yield chunk


def _transformed(raw: bytes, transform: Any, context: RequestContext) -> bytes:
    """Run a body transform; the body is serialised again only if it changed."""
    if not raw:
        return raw
    try:
        parsed = loads(raw)
    except ValueError as exc:
        raise InvalidJSON(f"The request body is not valid JSON: {exc}") from None
    changed = transform(parsed, context)
    return raw if changed is None else dumps(changed)


def _client_headers(response: httpx.Response, request_id: str) -> RawHeaders:
    headers = response_headers_for_client(response.headers.raw)
    upstream_id = header_value(headers, REQUEST_ID)
    if upstream_id is not None:
        headers = [item for item in headers if item[0] != REQUEST_ID]
        if upstream_id != request_id.encode("ascii"):
            headers.append((UPSTREAM_REQUEST_ID, upstream_id))
    headers.append((REQUEST_ID, request_id.encode("ascii")))
    return headers


async def _send_json(send: Send, status: int, payload: Any, request_id: str) -> None:
    content = dumps(payload)
    headers: RawHeaders = [
        *_JSON_HEADERS,
        (b"content-length", str(len(content)).encode("ascii")),
        (REQUEST_ID, request_id.encode("ascii")),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content, "more_body": False})


def make_asgi_app(
    adapters: Sequence[ProviderAdapter],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    limits: httpx.Limits = DEFAULT_LIMITS,
    max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
) -> ProxyApp:
    """Build the proxy for ``adapters``; mount the result under any prefix.

    :param adapters: the providers; ``{mount}/{adapter.name}/X`` goes to ``{adapter.base_url}/X``.
        Names must be unique; ``health``, ``status``, ``metrics`` and ``v1`` are kept for the
        proxy's own endpoints.
    :param transport: the upstream transport (any :class:`httpx.AsyncBaseTransport`); by
        default the fastest installed. The app closes it on shutdown, as
        :class:`httpx.AsyncClient` does.
    :param timeout: upstream timeouts; a float sets them all. Defaults: connect 10 s,
        read and write 600 s, waiting for a pooled connection 10 s.
    :param limits: the upstream connection pool's size (for the default transport).
    :param max_body_size: the largest request body accepted, in bytes (``None``: no limit).
    """
    return ProxyApp(
        adapters,
        transport=transport,
        timeout=timeout,
        limits=limits,
        max_body_size=max_body_size,
    )
