"""`ProxyApp`: the ASGI app that routes ``{mount}/{provider}/...`` to an adapter.

Routing, the proxy's own endpoints (``health``, ``status``, ``metrics``,
``v1/models``) and the per-request bookkeeping live here; forwarding itself is
:mod:`provider_proxy.engine._forward`. Errors the proxy answers itself come in the
route's provider error format, and every request ends in one
:class:`~provider_proxy.ProxyEvent` handed to the sinks after its answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypedDict

import httpx
from typing_extensions import Self, Unpack

from ..__version__ import __version__
from .._adapter import (
    BodyTransform,
    CredentialCheck,
    facts,
)
from .._exceptions import (
    BadRequest,
    ClientNotAuthorized,
    Forbidden,
    MethodNotAllowed,
    ProviderNotFound,
    ProxyError,
    UpstreamStreamError,
    WebSocketNotRelayed,
)
from .._json import dumps
from .._scrub import install_log_filter
from ..adapters import BaseAdapter, Provider
from ..dialects import DEFAULT as OWN_FORMAT
from ..dialects import (
    GATEWAY,
    Dialect,
    Tokenizer,
    catalog_in_path,
    client_dialect,
    conversation_path,
    gateway_in_path,
    stored_answer,
)
from ..guards import Guards
from ..observe import (
    EventDispatcher,
    EventSink,
    JsonLogSink,
    OpenTelemetry,
    PrometheusMetrics,
    ProxyEvent,
)
from ..policy import (
    RawHeaders,
    RetryPolicy,
    Route,
    header_value,
    path_below_mount,
    request_id_from,
    split_provider,
)
from ..spend import PriceSpec, Pricing
from ..state import SESSION_TTL, MemoryStore, SessionStore, Store
from ..transports import DEFAULT_LIMITS, DEFAULT_TIMEOUT, SharedTransport, default_transport
from ..types import ASGIApp, Receive, Scope, Send
from ._accounts import Accounts
from ._catalog import DEFAULT_MODELS_TTL, ModelCatalog, handle_catalog_call, handle_models_route
from ._cors import CORS, CORSMiddleware
from ._dashboard import admitted, page, page_headers
from ._drain import Drain, Draining
from ._forward import Forwarder
from ._gateway import Gateway
from ._heads import as_raw, content_head, send_error, send_whole
from ._images import ImageFetcher, ImageFetching
from ._inference_api import InferenceAPI
from ._key_failover import settle_key
from ._report import Arrival, Outcome, Report, event_of
from ._responses_state import StoredResponses
from ._router import Router
from ._validation import ValidationMode, validate_all
from ._websocket import SocketRelay
from ._ws_common import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_SOCKETS,
    DEFAULT_MAX_SOCKETS_PER_CLIENT,
    WS_HTTP_RESPONSE,
    SocketLimits,
)
from ._ws_inference import (
    DEFAULT_CONNECTIONS_PER_MINUTE,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MAX_CONNECTIONS,
    InferenceSocket,
    InferenceSocketOptions,
)
from ._ws_responses import SOCKET_PATH as RESPONSES_SOCKET_PATH
from ._ws_responses import ResponsesSocket

logger = logging.getLogger("provider_proxy")

#: The proxy's own endpoints that need the client auth of ``guards=``; ``/health``
#: stays open, for load balancers and orchestrators, but shows the setup only to
#: known clients.
_GUARDED_ENDPOINTS = frozenset({"v1", "v1beta", "status", "metrics"})

#: The longest any timeout of the proxy's own small requests (credential probes,
#: model lists) may be: a provider that hangs must not hold up startup for as
#: long as a generation may take.
_OWN_TIMEOUT_CAP = 15.0

#: 32 MiB: room for a long chat history with images, small enough to refuse abuse.
DEFAULT_MAX_BODY_SIZE = 32 * 1024 * 1024

#: Names under the mount point that the proxy answers itself.
RESERVED_NAMES = frozenset({"health", "status", "metrics", "v1", "ws", "dashboard"})

_JSON = b"application/json"

#: The name under the mount of the REST service API (``inference_api=True``).
_API = "api"

#: What a request without a span runs in (one, reused: it holds nothing).
_UNTRACED: contextlib.nullcontext[None] = contextlib.nullcontext()

#: The ASGI extension that lets an app answer a WebSocket handshake with HTTP.
_WS_HTTP_RESPONSE = WS_HTTP_RESPONSE


class ProxyOptions(TypedDict, total=False):
    """The keyword options of :class:`ProxyApp` and :func:`make_asgi_app`."""

    transport: httpx.AsyncBaseTransport | None
    timeout: httpx.Timeout | float
    limits: httpx.Limits
    max_body_size: int | None
    transforms: Sequence[BodyTransform]
    guards: Guards | None
    cors: CORS | None
    store: Store | None
    validate_credentials: ValidationMode
    models_ttl: float
    sinks: Sequence[EventSink]
    access_log: bool
    metrics: PrometheusMetrics | bool | None
    overhead_header: bool
    default_provider: str | None
    strict_translation: bool
    tokenizer: Tokenizer | None
    session_ttl: float
    inference_api: bool
    ws_max_frame_bytes: int
    ws_idle_timeout: float | None
    ws_max_lifetime: float | None
    ws_max_sockets: int
    ws_max_sockets_per_client: int
    ws_heartbeat_interval: float
    ws_max_connections: int
    ws_connections_per_minute: int | None
    prices: Mapping[str, PriceSpec] | Pricing | None
    cost_header: bool
    telemetry: OpenTelemetry | None
    dashboard: bool
    stored_responses: StoredResponses | None
    routes: Mapping[str, Route]
    retry: RetryPolicy | None
    drain_timeout: float | None
    fetch_images: ImageFetching | None


class ProxyApp:
    """The proxy as a plain ASGI app; build it with :func:`make_asgi_app`.

    Mount it anywhere (``app.mount("/llm", proxy)``, or :func:`provider_proxy.mount`).
    It holds one pooled upstream transport, created on first use because a
    mounted sub-app may never see a lifespan event, and closed on shutdown or
    :meth:`aclose`. Under a router that keeps lifespan to itself (FastAPI,
    Starlette), pass :meth:`lifespan` to the host; hosts that manage lifecycles
    themselves can use ``async with proxy:``.

    :param adapters: the providers; ``{mount}/{adapter.name}/X`` goes to
        ``{adapter.base_url}/X``. Names must be unique; ``health``, ``status``,
        ``metrics``, ``v1`` and ``ws`` are kept for the proxy's own endpoints.
    :param transport: the upstream transport (any :class:`httpx.AsyncBaseTransport`); by
        default the fastest installed. The app closes it on shutdown, as
        :class:`httpx.AsyncClient` does.
    :param timeout: upstream timeouts; a float sets them all. Defaults: connect 10 s,
        read and write 600 s, waiting for a pooled connection 10 s.
    :param limits: the upstream connection pool's size (for the default transport).
    :param max_body_size: the largest request body accepted, in bytes (``None``: no limit).
    :param transforms: body transforms for every provider, run after each adapter's own.
    :param guards: client authentication, rate limits, quotas and concurrency caps.
    :param cors: CORS for browser clients, when the host does not handle it.
    :param store: shared state for limits and the model catalog; by default in memory.
        The app closes it on shutdown (a closed :class:`RedisStore` reconnects when used).
    :param validate_credentials: probe each provider's key at startup: ``"off"``,
        ``"warn"`` (log the failures; the default) or ``"strict"`` (startup fails).
    :param models_ttl: seconds the model catalog (``GET {mount}/v1/models``) is cached.
    :param sinks: callables (sync or async) receiving each :class:`ProxyEvent`.
    :param access_log: one JSON log line per request on the ``provider_proxy.access``
        logger at INFO (computed only when that level is enabled).
    :param metrics: Prometheus metrics (``True`` for a new registry), served at
        ``GET {mount}/metrics``; needs the ``prometheus`` extra.
    :param overhead_header: add ``x-proxy-overhead-ms``, the proxy's own time, to answers.
    :param default_provider: the adapter that serves gateway models named without an
        adapter prefix (``model="gpt-4.1"``); without one, such a name is a 404.
    :param strict_translation: at the gateway, refuse (400) a field a translation
        would drop for having no effect at the provider, instead of dropping it.
    :param tokenizer: estimates ``POST {mount}/v1/messages/count_tokens`` for models
        whose provider cannot count tokens, marked ``x-proxy-token-estimate``. By
        default tiktoken's ``cl100k_base`` when the ``tokens`` extra is installed;
        ``None`` answers those requests 501.
    :param session_ttl: seconds a conversation session of a stateful upstream
        (:class:`~provider_proxy.adapters.StatefulAdapter`) lives unused; 30 minutes
        by default.
    :param inference_api: also answer ``{mount}/api/v1/inference``, ``/inference/stream``
        and ``/models...`` in the REST service API some clients were written against
        (see :doc:`standalone`); ``api`` is then a reserved name.
    :param ws_max_frame_bytes: the largest WebSocket message relayed either way
        (16 MiB; closed with 1009 beyond).
    :param ws_idle_timeout: seconds a relayed provider socket may pass without a
        message either way (300; closed with 1001); ``None``: no limit.
    :param ws_max_lifetime: seconds a relayed provider socket may stay open (3600;
        closed with 1001); ``None``: no limit.
    :param ws_max_sockets: relayed provider sockets open at once (1000; 1013 beyond).
    :param ws_max_sockets_per_client: relayed provider sockets open at once per
        client identity, or IP without client auth (20; 1013 beyond).
    :param ws_heartbeat_interval: seconds between ``heartbeat`` frames on ``{mount}/ws`` (30).
    :param ws_max_connections: ``{mount}/ws`` sockets open at once (1000; 1013 beyond).
    :param ws_connections_per_minute: new ``{mount}/ws`` sockets per client IP per
        minute (5; 1013 beyond); ``None``: no limit.
    :param prices: USD per million tokens by model (``{"my-model": {"input": 0.5,
        "output": 1.5, "cache_read": 0.05}}``, or a :class:`~provider_proxy.Pricing`),
        for the cost of each request (:attr:`ProxyEvent.cost`); models not listed
        are priced by the ``prices`` extra's library, else their cost is ``None``.
    :param cost_header: add ``x-proxy-cost-usd``, the answer's cost in USD, to whole
        (not streamed) answers whose cost is known; they are read whole first.
    :param telemetry: OpenTelemetry spans and GenAI metrics for provider requests
        (:class:`~provider_proxy.observe.OpenTelemetry`; the ``otel`` extra).
    :param dashboard: serve ``GET {mount}/dashboard``, a page plotting ``/status``
        live; under guards, for ``Guards(admins=[...])`` only.
    :param stored_responses: how the gateway keeps the conversations of stateful
        clients (``store``, ``previous_response_id``) for providers without state:
        time to live, size and per-client caps (in ``store``).
    :param routes: gateway model names served by one of several deployments, with
        retries, fallbacks and cool-downs (see :doc:`routing`).
    :param retry: the retry policy of routes without their own (by default
        :class:`~provider_proxy.RetryPolicy`'s defaults); given, gateway models
        named directly are retried too.
    :param drain_timeout: on shutdown (SIGTERM under a server in the main thread,
        or :meth:`aclose`), refuse new requests with 503 and ``/health`` with
        ``draining``, and give open ones this many seconds before aborting them;
        ``None`` (the default): no drain.
    :param fetch_images: at the gateway, fetch http(s) image URLs for providers that
        take images only inline, by these rules (see :class:`ImageFetching`); by
        default such a URL is refused (400).
    """

    def __init__(self, adapters: Sequence[Provider], **options: Unpack[ProxyOptions]) -> None:
        self._adapters: dict[str, Provider] = {}
        for adapter in adapters:
            if not isinstance(adapter, Provider):
                raise TypeError(f"{adapter!r} does not implement ProviderAdapter.")
            if adapter.name in RESERVED_NAMES or (
                adapter.name == _API and options.get("inference_api", False)
            ):
                raise ValueError(
                    f"The adapter name {adapter.name!r} is reserved for the proxy's own "
                    f"endpoints ({', '.join(sorted(RESERVED_NAMES))}); pass name= to rename it."
                )
            if adapter.name in self._adapters:
                raise ValueError(
                    f"Two adapters are named {adapter.name!r}; pass name= to tell them apart."
                )
            self._adapters[adapter.name] = adapter
        max_body_size = options.get("max_body_size", DEFAULT_MAX_BODY_SIZE)
        if max_body_size is not None and max_body_size < 0:
            raise ValueError("max_body_size must be a number of bytes (0 or more), or None.")
        mode = options.get("validate_credentials", "warn")
        if mode not in ("off", "warn", "strict"):
            raise ValueError(
                f"validate_credentials must be 'off', 'warn' or 'strict', not {mode!r}."
            )
        self._validation_mode: ValidationMode = mode
        self._credentials: dict[str, CredentialCheck] = {}
        self._transport = options.get("transport")
        self._owns_transport = self._transport is None
        self._limits = options.get("limits", DEFAULT_LIMITS)
        timeout = options.get("timeout", DEFAULT_TIMEOUT)
        timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._own_timeout = _capped(timeout, _OWN_TIMEOUT_CAP)

        store = options.get("store")
        self.store: Store = MemoryStore() if store is None else store
        prices = options.get("prices")
        #: Where the cost of each request comes from.
        self.pricing = prices if isinstance(prices, Pricing) else Pricing(prices)
        self._accounts = Accounts(self._adapters, self.pricing)
        self._dashboard = options.get("dashboard", False)
        #: Spend is wanted on /status (and so usage read) when prices or the page are.
        self._spend_wanted = prices is not None or self._dashboard
        self._guards = options.get("guards")
        if self._guards is not None:
            self._guards.bind(self.store)
            self._guards.bind_pricing(self.pricing)
        #: The conversation sessions of stateful upstreams, in the app's store.
        self.sessions = SessionStore(self.store, ttl=options.get("session_ttl", SESSION_TTL))
        self.catalog = ModelCatalog(
            self._adapters,
            self.store,
            ttl=options.get("models_ttl", DEFAULT_MODELS_TTL),
            client_factory=self._own_client,
            transforms=options.get("transforms", ()),
            default_provider=options.get("default_provider"),
        )

        metrics = options.get("metrics")
        self._metrics = PrometheusMetrics() if metrics is True else metrics or None
        sinks: list[EventSink] = list(options.get("sinks", ()))
        if self._metrics is not None:
            sinks.append(self._metrics)
            self._metrics.watch_sessions(self.sessions.status)
        self._access_log = JsonLogSink() if options.get("access_log", True) else None
        if self._access_log is not None:
            sinks.append(self._access_log)
        self._telemetry = options.get("telemetry")
        self._other_sinks = len(sinks) - (self._access_log is not None)
        self._other_sinks += self._telemetry is not None  # it needs usage too
        self._dispatcher = EventDispatcher(sinks)

        self._forwarder = Forwarder(
            transport=lambda: self.transport,
            extensions={"timeout": timeout.as_dict()},
            max_body_size=max_body_size,
            guards=self._guards,
            transforms=options.get("transforms", ()),
            models=self.catalog.model_ids,
            usage=self._events_wanted,
            overhead_header=options.get("overhead_header", False),
            sessions=self.sessions,
            cost_header=self.pricing if options.get("cost_header", False) else None,
            trace_headers=None if self._telemetry is None else self._telemetry.trace_headers,
        )
        fetching = options.get("fetch_images")
        self._images = ImageFetcher(fetching) if fetching is not None else None
        self._gateway = Gateway(
            self._adapters,
            self._forwarder,
            transforms=options.get("transforms", ()),
            default_provider=options.get("default_provider"),
            max_body_size=max_body_size,
            strict=options.get("strict_translation", False),
            store=self.store,
            guards=self._guards,
            tokenizer=options.get("tokenizer", "auto"),
            stored=options.get("stored_responses"),
            images=self._images,
        )
        self._inference = (
            InferenceAPI(
                self._gateway,
                self.catalog,
                guards=self._guards,
                default_provider=options.get("default_provider"),
                max_body_size=max_body_size,
            )
            if options.get("inference_api", False)
            else None
        )
        frame_limit = options.get("ws_max_frame_bytes", DEFAULT_MAX_FRAME_BYTES)
        self._sockets = SocketRelay(
            limits=SocketLimits(
                max_frame_bytes=frame_limit,
                idle_timeout=options.get("ws_idle_timeout", DEFAULT_IDLE_TIMEOUT),
                max_lifetime=options.get("ws_max_lifetime", DEFAULT_MAX_LIFETIME),
                max_sockets=options.get("ws_max_sockets", DEFAULT_MAX_SOCKETS),
                max_sockets_per_client=options.get(
                    "ws_max_sockets_per_client", DEFAULT_MAX_SOCKETS_PER_CLIENT
                ),
            ),
            guards=self._guards,
            forwarder=self._forwarder,
            emit=self._emit,
        )
        self._inference_socket = InferenceSocket(
            self._gateway,
            InferenceSocketOptions(
                heartbeat_interval=options.get("ws_heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL),
                max_connections=options.get("ws_max_connections", DEFAULT_MAX_CONNECTIONS),
                connections_per_minute=options.get(
                    "ws_connections_per_minute", DEFAULT_CONNECTIONS_PER_MINUTE
                ),
                max_frame_bytes=frame_limit,
            ),
            guards=self._guards,
            store=self.store,
            finish=self._finish,
        )
        self._responses_socket = ResponsesSocket(
            self._gateway, self._sockets, guards=self._guards, finish=self._finish
        )
        self._router: Router | None = None
        routes = options.get("routes") or {}
        pooled = any(
            isinstance(a, BaseAdapter) and (a.key_pool is not None or a.retry is not None)
            for a in self._adapters.values()
        )
        if routes or options.get("retry") is not None or pooled:
            self._router = Router(
                routes,
                self._adapters,
                self._gateway.serve,
                self.store,
                retry=options.get("retry"),
                guards=self._guards,
                telemetry=self._telemetry,
            )
            self._gateway.router = self._router
            self.catalog.routes = list(routes)
            self.catalog.route_targets = {
                name: [d.target for d in route.deployments] for name, route in routes.items()
            }
        #: No metrics to track and no retries: the forwarder is awaited from the answer.
        self._forward_direct = self._metrics is None and self._router is None
        drain_timeout = options.get("drain_timeout")
        self._drain = Drain(drain_timeout) if drain_timeout is not None else None
        self._sockets.drain = self._inference_socket.drain = self._drain
        if self._gateway.background is not None:  # background responses: events, drain
            self._gateway.background.finish = self._finish
            self._gateway.background.drain = self._drain
        cors = options.get("cors")
        self._cors = cors
        self._entry: ASGIApp = (
            self._dispatch if cors is None else CORSMiddleware(self._dispatch, cors)
        )
        #: Neither CORS nor a drain: HTTP requests go straight to :meth:`_answer`.
        self._plain = cors is None and self._drain is None
        self._started = time.time()
        self._in_flight = 0
        self._by_status: Counter[int] = Counter()
        install_log_filter(*(sink.logger.name for sink in sinks if isinstance(sink, JsonLogSink)))

    def __repr__(self) -> str:
        return f"ProxyApp(providers={list(self._adapters)!r})"

    @property
    def adapters(self) -> Mapping[str, Provider]:
        """The mounted adapters by name."""
        return self._adapters

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        """The upstream transport, created on first use."""
        if self._transport is None:
            self._transport = default_transport(self._limits)
        return self._transport

    @property
    def credentials(self) -> Mapping[str, CredentialCheck]:
        """The startup credential checks by provider (empty until they ran)."""
        return self._credentials

    def _own_client(self) -> httpx.AsyncClient:
        """A client on the app's pool for the proxy's own requests (probes, model lists)."""
        return httpx.AsyncClient(
            transport=SharedTransport(self.transport), timeout=self._own_timeout
        )

    def _events_wanted(self) -> bool:
        """Whether anyone consumes events (and so token usage) right now."""
        if self._other_sinks or self._guards is not None or self._spend_wanted:
            return True
        return self._access_log is not None and self._access_log.enabled()

    # -- lifecycle --------------------------------------------------------------

    async def startup(self) -> None:
        """Prepare for requests: create the upstream transport and check credentials.

        With ``validate_credentials="strict"`` a rejected or unreachable key
        fails startup with :class:`~provider_proxy.CredentialsRejected`.
        """
        self.transport  # noqa: B018 - created now rather than on the first request
        if self._drain is not None:
            self._drain.install()
        if self._validation_mode != "off" and not self._credentials:
            try:
                async with self._own_client() as client:
                    self._credentials = await validate_all(
                        list(self._adapters.values()), client, self._validation_mode
                    )
            except Exception:
                await self.aclose()  # a failed startup leaves no session open
                raise

    async def aclose(self) -> None:
        """Close the upstream transport and finish pending sink deliveries.

        Adapters that hold resources of their own (a client for a token
        exchange) are closed too, with their ``aclose()``.
        A later request opens a new transport.
        """
        if self._drain is not None:
            await self._drain.drain()
            self._drain.uninstall()
        if self._gateway.background is not None:
            await self._gateway.background.aclose()
        await self._dispatcher.aclose()
        await self.catalog.aclose()
        if self._images is not None:
            await self._images.aclose()
        await self.store.aclose()
        for adapter in self._adapters.values():
            try:
                await adapter.aclose()
            except Exception:
                logger.exception("could not close the adapter %r", adapter.name)
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
        if self._plain and scope["type"] == "http":
            # No CORS, no drain: straight to the answer, two coroutine layers fewer
            # to create and to walk through on every resumption.
            await self._answer(scope, receive, send, None)
        else:
            await self._entry(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

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

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``{mount}/ws``, ``{mount}/v1/responses`` (see :mod:`._ws_responses`), or a
        provider socket relayed (see :mod:`._websocket`); any
        other is refused with 426 in the route's format.

        Servers without the ``websocket.http.response`` extension can only close,
        which they answer with 403.
        """
        if (await receive())["type"] != "websocket.connect":
            return  # gone before the handshake reached the app
        try:
            target = self._route(scope)
        except ProxyError:
            target = _NOWHERE
        error: ProxyError = _websocket_refused()
        if self._drain is not None and self._drain.draining:
            error = _draining()  # sockets are long: opened on another instance
        elif not self._origin_allowed(scope):
            error = Forbidden(
                "This page's origin may not open sockets to the proxy (see its cors= option)."
            )
        elif target.name == "ws" and target.rest in (b"", b"/"):
            await self._inference_socket.handle(scope, receive, send)
            return
        elif target.adapter is None and target.path == RESPONSES_SOCKET_PATH:
            await self._responses_socket.handle(scope, receive, send)
            return
        elif target.adapter is not None and self._sockets.relays(target.adapter, target.rest):
            await self._sockets.handle(scope, receive, send, target.adapter, target.rest)
            return
        arrival = Arrival(request_id_from(scope["headers"]), "GET")
        if _WS_HTTP_RESPONSE in (scope.get("extensions") or {}):
            dialect = self._dialect(target)
            size = await send_error(
                send, dialect, error, arrival.request_id, message=_WS_HTTP_RESPONSE
            )
            outcome = Outcome.refused(error, size, None)
        else:
            await send({"type": "websocket.close", "code": 1008})
            # what the server answers a close before accepting
            outcome = Outcome(403, error_kind=error.kind)
        self._finish(arrival, Report(outcome, target.provider, target.path))

    def _origin_allowed(self, scope: Scope) -> bool:
        """Browsers apply no CORS to sockets: with ``cors=``, a page of another origin
        may not open one (a cross-site page would otherwise use its visitor's cookies)."""
        origin = header_value(scope["headers"], b"origin")
        if self._cors is None or origin is None:
            return True
        return self._cors.origin_allowed(origin.decode("latin-1"))

    def _route(self, scope: Scope) -> _Target:
        """The adapter the path names (if any), and the path for the event and errors.

        :raises PathRefused: a path below the mount that cannot be routed.
        """
        name, rest = split_provider(path_below_mount(scope))
        adapter = self._adapters.get(name)
        text = rest.decode("ascii", "replace")
        if adapter is not None:
            return _Target(adapter, name, rest, text)
        path = f"/{name}{text}"
        if name != "v1":
            listing = catalog_in_path(path)  # a format's own model catalog: its format
            return _Target(None, name, rest, path, None if listing is None else listing.dialect)
        # The gateway's endpoints speak their format; the rest of /v1 the client's.
        gateway = GATEWAY.get(path)
        if gateway is not None:
            client = gateway[0]
        elif (stored := stored_answer(path)) is not None:  # a kept answer: its format's
            client = stored[0]
        elif (conversation := conversation_path(path)) is not None:  # a kept conversation
            client = conversation[0]
        else:
            client = client_dialect(scope["headers"])
        return _Target(None, name, rest, path, client)

    def _dialect(self, target: _Target) -> Dialect:
        """The API format of the target's path: the client's at the gateway, the
        adapter's path's, else the default for the proxy's own endpoints."""
        if target.client is not None:
            return target.client
        if target.adapter is None:
            return OWN_FORMAT
        return target.adapter.serving().dialect_for(target.path.partition("?")[0])

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        drain = self._drain
        if drain is None:
            await self._answer(scope, receive, send, None)
            return
        arrival = Arrival(request_id_from(scope["headers"]), scope["method"])
        with drain.track(send) as tracked:
            await self._answer(scope, receive, tracked.send, arrival)
        if not tracked.aborted:
            return
        # Still open when the drain ran out of time: aborted, with its event.
        outcome = Outcome(
            tracked.status or 503,
            error_kind="drained",
            streamed=tracked.streamed,
            response_bytes=tracked.response_bytes,
        )
        self._finish(arrival, Report(outcome))
        if tracked.status is None:
            error = _draining()
            try:
                dialect = self._dialect(self._route(scope))
            except ProxyError:
                dialect = OWN_FORMAT
            await send_error(send, dialect, error, arrival.request_id)
            return
        raise UpstreamStreamError("The proxy shut down before the answer was complete.")

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, arrival: Arrival | None
    ) -> None:
        if arrival is None:
            arrival = Arrival(request_id_from(scope["headers"]), scope["method"])
        self._in_flight += 1
        target = _NOWHERE
        report: Report | None = None
        span: Any = None
        try:
            try:
                target = self._route(scope)
                if self._drain is not None and self._drain.draining and target.name != "health":
                    raise _draining()
                if _asks_websocket(scope["headers"]):
                    raise _websocket_refused()
                gateway = stored = conversation = None
                if target.client is not None:
                    gateway = GATEWAY.get(target.path)
                    if gateway is None:
                        stored = stored_answer(target.path)
                        conversation = None if stored else conversation_path(target.path)
                in_path = None
                if (
                    gateway is None
                    and stored is None
                    and conversation is None
                    and target.adapter is None
                ):
                    in_path = gateway_in_path(target.path, scope.get("query_string", b""))
                traced: contextlib.AbstractContextManager[None] = _UNTRACED
                telemetry = self._telemetry
                routed = gateway is not None or in_path is not None or target.adapter is not None
                if telemetry is not None and routed:
                    span = telemetry.begin(scope["headers"], arrival.started_at, target.path)
                    traced = telemetry.current(span)
                    receive, send = telemetry.capturing(span, receive, send)
                with traced:
                    if target.name == _API and self._inference is not None:
                        report = await self._inference.handle(
                            scope, receive, send, target.rest.decode("ascii", "replace"), arrival
                        )
                    elif gateway is not None:
                        client, operation = gateway
                        report = settle_key(
                            await self._gateway.handle(
                                scope, receive, send, client, operation, arrival
                            )
                        )
                    elif stored is not None:
                        report = await self._gateway.handle_stored(
                            scope, send, stored[0], target.path, stored[1], arrival
                        )
                    elif conversation is not None:
                        report = await self._gateway.handle_conversations(
                            scope,
                            receive,
                            send,
                            conversation[0],
                            target.path,
                            conversation[1],
                            arrival,
                        )
                    elif in_path is not None:  # a format that names the model in the path
                        target = dataclasses.replace(target, client=in_path.dialect)
                        if in_path.refusal is not None:
                            raise BadRequest(in_path.refusal)
                        report = await self._gateway.handle(
                            scope,
                            receive,
                            send,
                            in_path.dialect,
                            in_path.operation,
                            arrival,
                            path_model=in_path.model,
                        )
                    elif target.adapter is not None and self._forward_direct:
                        # One coroutine layer fewer, which every resumption walks through.
                        report = settle_key(
                            await self._forwarder.forward(
                                scope, receive, send, target.adapter, target.rest, arrival
                            )
                        )
                    elif target.adapter is not None:
                        report = await self._forward(scope, receive, send, target, arrival)
                    else:
                        report = await self._own_endpoint(scope, send, target, arrival)
            except ProxyError as error:
                overhead = self._forwarder.overhead(arrival)
                dialect = self._dialect(target)
                size = await send_error(send, dialect, error, arrival.request_id, overhead=overhead)
                report = Report(Outcome.refused(error, size, None), target.provider, target.path)
        finally:
            self._in_flight -= 1
            if report is not None:
                self._finish(arrival, report, span)
            elif span is not None:
                span.end()
        if report.outcome.abort is not None:
            raise report.outcome.abort  # the server aborts the connection

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, target: _Target, arrival: Arrival
    ) -> Report:
        adapter = target.adapter
        assert adapter is not None
        metrics = self._metrics
        if metrics is not None:
            metrics.track_start(target.name)
        try:
            retry = None if self._router is None else self._router.passthrough_policy(adapter)
            if retry is not None:
                assert self._router is not None
                return await self._router.passthrough(
                    self._forwarder.forward,
                    scope,
                    receive,
                    send,
                    adapter,
                    target.rest,
                    arrival,
                    retry,
                )
            return settle_key(
                await self._forwarder.forward(scope, receive, send, adapter, target.rest, arrival)
            )
        finally:
            if metrics is not None:
                metrics.track_end(target.name)

    def _emit(self, event: ProxyEvent) -> None:
        """Count a WebSocket's event (a socket's, or a turn's on it) and hand it to the sinks."""
        if event.websocket == "connection":
            self._by_status[event.status] += 1
        if self._dispatcher.sinks and (self._other_sinks or self._events_wanted()):
            self._dispatcher.emit(event)

    def _finish(self, arrival: Arrival, report: Report, span: Any = None) -> None:
        """Count the answer, hand its event to the sinks, and end its span."""
        self._by_status[report.outcome.status] += 1
        wanted = self._dispatcher.sinks and (self._other_sinks or self._events_wanted())
        if wanted or span is not None:
            cost, unknown = self._accounts.record(report)
            event = event_of(arrival, report, cost, unknown)
            if wanted:
                self._dispatcher.emit(event)
            if span is not None:
                self._end_span(span, event, report)
        else:
            self._accounts.count(report)  # no event: nothing asks its cost now

    def _end_span(self, span: Any, event: ProxyEvent, report: Report) -> None:
        """The request's span, described from its event (a failing exporter breaks nothing)."""
        assert self._telemetry is not None
        adapter = self._adapters.get(report.provider) if report.provider else None
        url = adapter.serving().base_url if adapter is not None else None
        try:
            self._telemetry.end(
                span,
                event,
                request_model=report.model,
                response_model=report.outcome.model,
                server=None if url is None else (url.host, url.port),
                finish_reasons=report.outcome.finish_reasons,
            )
        except Exception:
            logger.exception("could not end the OpenTelemetry span of a request")

    # -- the proxy's own endpoints --------------------------------------------------

    async def _own_endpoint(
        self, scope: Scope, send: Send, target: _Target, arrival: Arrival
    ) -> Report:
        name, rest = target.name, target.rest
        method = scope["method"]
        identity: str | None = None
        if self._guards is not None and name in _GUARDED_ENDPOINTS:
            # The catalog asks providers with their keys, and status pages name
            # the setup: the same clients as the providers' routes, not anyone.
            identity = await self._guards.identify(scope)
        limits: Mapping[str, str] = {}
        if self._guards is not None and name in _GUARDED_ENDPOINTS:
            limits = await self._guards.limit_endpoint(scope, identity)
        content_type = _JSON
        code = 200
        if (listing := catalog_in_path(target.path, scope["headers"])) is not None:
            query = scope.get("query_string", b"")
            content = dumps(await handle_catalog_call(self.catalog, method, listing, query))
        elif name == "v1" and rest.startswith(b"/models"):
            content = dumps(
                await handle_models_route(
                    self.catalog,
                    method,
                    rest.decode("ascii"),
                    scope.get("query_string", b""),
                    client_dialect(scope["headers"]),
                )
            )
        elif name == "dashboard" and self._dashboard and rest in (b"", b"/"):
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowed("The dashboard answers GET only.")
            identity = await admitted(self._guards, scope)
            content = page()
            head = content_head(b"text/html; charset=utf-8", len(content), arrival.request_id)
            await send_whole(send, 200, [*head, *page_headers()], content)
            return Report(
                Outcome(200, response_bytes=len(content)), None, target.path, identity=identity
            )
        elif name in ("health", "status", "metrics") and rest in (b"", b"/"):
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowed(f"The {name} endpoint answers GET only.")
            if name == "health":
                health, identity = await self._health_for(scope)
                if self._drain is not None and self._drain.draining:
                    health["status"], code = "draining", 503  # a load balancer moves away
                content = dumps(health)
            elif name == "status":
                content = dumps(await self._status())
            elif self._metrics is not None:
                content, text_type = self._metrics.render()
                content_type = text_type.encode("latin-1")
            else:
                raise ProviderNotFound(
                    "Metrics are not enabled; pass metrics=True to make_asgi_app (needs the "
                    "prometheus extra)."
                )
        else:
            mounted = ", ".join(self._adapters) or "none"
            what = f"No provider named {name!r}" if name else "No provider in the path"
            raise ProviderNotFound(f"{what}; the mounted providers are: {mounted}.")
        head = content_head(content_type, len(content), arrival.request_id) + as_raw(dict(limits))
        await send_whole(send, code, head, content)
        outcome = Outcome(code, response_bytes=len(content))
        return Report(outcome, None, target.path, identity=identity)

    def _providers(self) -> dict[str, dict[str, Any]]:
        providers: dict[str, dict[str, Any]] = {}
        for name, adapter in self._adapters.items():
            availability = adapter.availability()
            entry: dict[str, Any] = {
                "enabled": availability.enabled,
                "base_url": str(adapter.serving().base_url),
            }
            if not availability.enabled:
                entry["reason"] = availability.reason
            pool = adapter.key_pool if isinstance(adapter, BaseAdapter) else None
            if pool is not None and pool.names():
                entry["keys"] = pool.status()  # by name, never the key
            check = self._credentials.get(name)
            if check is not None:
                entry["credentials"] = {
                    "state": check.state.value,
                    "status_code": check.status_code,
                }
                if check.detail:
                    entry["credentials"]["detail"] = check.detail
            elif self._validation_mode == "off":
                entry["credentials"] = {"state": "not_checked"}
            providers[name] = entry
        return providers

    def _health(self) -> dict[str, Any]:
        providers = self._providers()
        status = "ok" if any(p["enabled"] for p in providers.values()) else "unconfigured"
        health: dict[str, Any] = {"status": status, "providers": providers, **self._alive()}
        if self._router is not None and self._router.routes:
            health["routes"] = self._router.health()
        return health

    def _alive(self) -> dict[str, Any]:
        """When ``/health`` answered, for how long the app has run, which version."""
        now = time.time()
        moment = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        return {
            "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "uptime": round(now - self._started, 3),
            "version": __version__,
        }

    async def _health_for(self, scope: Scope) -> tuple[dict[str, Any], str | None]:
        """``/health``: open to all, but the setup (base URLs, checks) only to known clients."""
        health = self._health()
        if self._guards is None:
            return health, None
        try:
            return health, await self._guards.identify(scope)
        except ClientNotAuthorized:
            health["providers"] = {
                name: {"enabled": entry["enabled"]} for name, entry in health["providers"].items()
            }
            health.pop("routes", None)
        return health, None

    async def _status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "uptime_seconds": round(time.time() - self._started, 3),
            "providers": self._providers(),
            "models": self.catalog.status(),
            "guards": None if self._guards is None else self._guards.status(),
            "sessions": self.sessions.status(),
            **self._accounts.status(),
            "routes": None if self._router is None else self._router.status(),
            "requests": {
                "in_flight": self._in_flight,
                "total": sum(self._by_status.values()),
                "by_status": {str(code): n for code, n in sorted(self._by_status.items())},
            },
        }


@facts
class _Target:
    """What the path below the mount names: an adapter, or one of the proxy's own endpoints."""

    adapter: Provider | None
    name: str
    rest: bytes
    #: The path as events name it: below the provider, or with the endpoint's name.
    path: str
    #: The client's format, at the gateway's endpoints.
    client: Dialect | None = None

    @property
    def provider(self) -> str | None:
        return None if self.adapter is None else self.name


#: The target of a request whose path was not routed (yet): no adapter, no path.
_NOWHERE = _Target(None, "", b"", "")


def _draining() -> Draining:
    return Draining(
        "The proxy is shutting down; send the request again (another instance will answer).",
        headers={"Retry-After": "1"},
    )


def _asks_websocket(headers: RawHeaders) -> bool:
    """Whether a plain HTTP request asks to switch to WebSocket (a server without
    WebSocket support passes the handshake on as HTTP)."""
    upgrade = header_value(headers, b"upgrade")
    return upgrade is not None and b"websocket" in upgrade.lower()


def _websocket_refused() -> WebSocketNotRelayed:
    return WebSocketNotRelayed(
        "The proxy does not relay WebSockets; send the same request over HTTP "
        "(streaming with server-sent events)."
    )


def make_asgi_app(adapters: Sequence[Provider], **options: Unpack[ProxyOptions]) -> ProxyApp:
    """Build the proxy for ``adapters``; mount the result under any prefix.

    The options are :class:`ProxyApp`'s.
    """
    return ProxyApp(adapters, **options)


def _capped(timeout: httpx.Timeout, cap: float) -> httpx.Timeout:
    """``timeout`` with every phase at most ``cap`` seconds."""

    def phase(seconds: float | None) -> float:
        return cap if seconds is None else min(seconds, cap)

    return httpx.Timeout(
        connect=phase(timeout.connect),
        read=phase(timeout.read),
        write=phase(timeout.write),
        pool=phase(timeout.pool),
    )
