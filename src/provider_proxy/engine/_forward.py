"""Forwarding one request: a route, an admission, a plan, then the exchange.

The order is the cheapest refusal first: provider configured, path confined,
endpoint allowed, client admitted by the guards, body within its limit. A body
is read and parsed only when a transform applies to it (or a guard needs its
model); otherwise it streams to the provider as it arrives. The facts flow one
way: :class:`~provider_proxy.engine._plan.Route` and
:class:`~provider_proxy.engine._plan.Plan` in, an
:class:`~provider_proxy.engine._report.Outcome` out, and a
:class:`~provider_proxy.engine._report.Report` back to the app.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import time
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from typing import Any

import httpx

from .._adapter import JSON, BodyTransform, ModelLookup, RequestContext, Usage, facts
from .._exceptions import (
    BodyTooLarge,
    ClientDisconnected,
    EndpointNotAllowed,
    InvalidJSON,
    ProviderNotConfigured,
    ProxyError,
)
from .._json import dumps, loads
from ..adapters import Provider, ProviderAdapter, StatefulAdapter
from ..dialects import KEY_PARAMS, PRIVATE_HEADERS, Dialect
from ..guards import Admission, Estimate, Guards
from ..policy import (
    REQUEST_ID,
    HeaderPolicy,
    RawHeaders,
    apply_headers,
    confine,
    query_without,
    request_headers_for_upstream,
    upstream_url,
)
from ..spend import Pricing
from ..state import SessionStore
from ..transforms._compose import Composed, applies, checked_transforms, run_transform
from ..transports import UpstreamRequest
from ..types import Receive, Scope, Send
from ._answers import rewriting_send
from ._body import RequestBody, declared_body_length
from ._exchange import exchange
from ._heads import as_raw, send_error
from ._plan import Plan, Route
from ._priced import CostHeader
from ._report import Arrival, Outcome, Report

logger = logging.getLogger("provider_proxy")

_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_NOT_PARSED: Any = object()
#: How many upstream URLs (of paths without a query) the forwarder remembers.
_URL_CACHE_SIZE = 256


@facts
class _Body:
    """The body as it will be sent, and what reading it told (when it was read)."""

    #: Whole bytes, or the client's stream as it arrives.
    content: bytes | AsyncIterable[bytes]
    length: int | None
    #: The model the (transformed) body names, when it was parsed.
    model: str | None = None
    #: Bytes received, when the body was read whole.
    received: int | None = None
    #: The output limit the (transformed) body sets (``max_tokens``), when it was parsed.
    output_limit: int | None = None


class Forwarder:
    """Forwards requests for a :class:`~provider_proxy.ProxyApp`; one per app.

    :param transport: returns the app's upstream transport (created lazily).
    :param guards: client auth and limits, or ``None``.
    :param transforms: app-wide transforms, run after each adapter's own.
    :param models: the model ids of a provider, for transforms that resolve aliases.
    :param usage: whether to read token usage from responses (someone consumes it).
    :param overhead_header: whether to add ``x-proxy-overhead-ms`` to answers.
    :param sessions: the conversation sessions of stateful upstreams.
    :param cost_header: the prices for ``x-proxy-cost-usd`` on whole answers, if wanted.
    :param trace_headers: the current trace context as headers, for the upstream request.
    """

    def __init__(
        self,
        *,
        transport: Callable[[], httpx.AsyncBaseTransport],
        extensions: Mapping[str, Any],
        max_body_size: int | None,
        guards: Guards | None,
        transforms: Sequence[BodyTransform],
        models: ModelLookup | None,
        usage: Callable[[], bool],
        overhead_header: bool,
        sessions: SessionStore | None = None,
        cost_header: Pricing | None = None,
        trace_headers: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self._transport = transport
        self._extensions = dict(extensions)
        self._max_body_size = max_body_size
        self._guards = guards
        self._transforms = checked_transforms(transforms, "make_asgi_app(transforms=...)")
        self._models = models
        self._usage = usage
        self.overhead_header = overhead_header
        self._sessions = sessions
        #: Prices answers for ``x-proxy-cost-usd`` (``cost_header=True``), else ``None``.
        self.cost_header = cost_header
        self._trace_headers = trace_headers
        self._last_netloc: tuple[httpx.URL | None, bytes] = (None, b"")
        self._policies: dict[tuple[HeaderPolicy, Dialect], HeaderPolicy] = {}
        self._last_policy: tuple[HeaderPolicy | None, Dialect | None, HeaderPolicy | None] = (
            None,
            None,
            None,
        )
        self._stateless: set[type[ProviderAdapter]] = set()
        self._urls: dict[tuple[int, str], tuple[httpx.URL, httpx.URL]] = {}

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        provider: Provider,
        rest: bytes,
        arrival: Arrival,
        serving: ProviderAdapter | None = None,
        client_dialect: str | None = None,
        translated: bool = False,
        *,
        repeat: bool = False,
        content: bytes | None = None,
    ) -> Report:
        """Forward and relay, or answer the refusal in the path's format; never raises
        a :class:`ProxyError` (a failure mid-answer is the outcome's ``abort``).

        :param serving: the adapter ``provider`` chose already for this request.
        :param client_dialect: at the gateway, the client's format, and
            ``translated``, whether the request and answer are translated (for the report).
        :param repeat: a retry of a request the guards admitted once (a route's
            next attempt): its rate limits are not charged again.
        :param content: the body, read (and rewritten) already by the gateway;
            ``receive`` is then only watched for the client leaving.
        """
        if content is None:
            body = RequestBody(receive, self._max_body_size)
        else:
            body = RequestBody.of(content, receive)
        adapter = serving if serving is not None else provider.serving()
        name = provider.name
        path = rest.decode("ascii", "replace")
        dialect: Dialect | None = None  # the route's, once it is known
        identity: str | None = None
        model: str | None = None
        limits: RawHeaders = []
        outcome: Outcome | None = None
        # Only the guards hold anything for the request (their admissions, which
        # are released however it ends); an unguarded one enters no context at all.
        held = contextlib.AsyncExitStack() if self._guards is not None else None
        try:
            admission: Admission | None = None
            try:
                try:
                    route = self._route(scope, provider, adapter, rest, arrival.request_id)
                    path, dialect = route.path, route.dialect
                    guards = self._guards
                    context = route.context
                    declared = declared_body_length(context.headers)
                    self._check_declared(declared)
                    late = guards is not None and guards.needs_model
                    if guards is not None and late:
                        # Per-model limits need the body; only a known client's is read.
                        identity = await guards.identify(scope)
                    elif guards is not None:
                        assert held is not None
                        admission = await held.enter_async_context(
                            await guards.admit(
                                scope,
                                provider=name,
                                model=None,
                                request_bytes=declared,
                                repeat=repeat,
                            )
                        )
                        identity, limits = admission.identity, as_raw(dict(admission.headers))
                    if identity is not None:
                        context = dataclasses.replace(context, identity=identity)
                    source = await self._body(route, body, context, read=late, declared=declared)
                    model = source.model
                    if guards is not None and late:
                        # After the transforms, so an alias is limited as the model it
                        # names; a model in the path is the one served.
                        assert held is not None
                        admission = await held.enter_async_context(
                            await guards.admit(
                                scope,
                                provider=name,
                                model=context.path_model or model,
                                request_bytes=source.received,
                                identity=identity,
                                estimate=Estimate(
                                    source.length or 0,
                                    source.output_limit,
                                    str(route.adapter.base_url),
                                ),
                                repeat=repeat,
                            )
                        )
                        identity, limits = admission.identity, as_raw(dict(admission.headers))
                        if identity is not None:
                            context = dataclasses.replace(context, identity=identity)
                    request = await self._request(route, context, source)
                except (ProxyError, ClientDisconnected):
                    raise
                except Exception as exc:
                    # A bug or misconfiguration in adapter or transform code: a clear 500,
                    # with the details in the log rather than in the answer.
                    logger.exception(
                        "could not prepare the %s request %s", name, arrival.request_id
                    )
                    raise ProxyError(
                        f"The proxy could not prepare the request for {name!r} "
                        f"({type(exc).__name__}); its log has the details under request id "
                        f"{arrival.request_id}."
                    ) from exc
                plan = Plan(
                    route,
                    request,
                    context.path_model or model,
                    identity,
                    limits,
                    context.request_id,
                )
                rewriters = context.answer_rewriters  # added by the transforms that ran
                outcome = await exchange(
                    plan,
                    body,
                    receive,
                    rewriting_send(send, rewriters) if rewriters else send,
                    self._upstream(route.adapter, identity),
                    start=arrival.start,
                    read_usage=self._usage() or self.cost_header is not None,
                    overhead_header=self.overhead_header,
                    cost_header=None
                    if self.cost_header is None
                    else self._priced(route, context.path_model or model),
                )
            except ProxyError as error:
                overhead = self.overhead(arrival)
                if dialect is None:
                    dialect = adapter.dialect_for(path)
                size = await send_error(send, dialect, error, arrival.request_id, limits, overhead)
                outcome = Outcome.refused(error, size, None)
            except ClientDisconnected:
                outcome = Outcome.client_left()
            finally:
                if admission is not None:
                    admission.charge(
                        outcome.usage if outcome is not None else None,
                        body.size,
                        billed=_maybe_billed(outcome),
                        cut_after=_cut_after(outcome),
                    )
        finally:
            if held is not None:
                await held.aclose()
        assert outcome is not None  # every path above set it or raised
        if outcome.error_kind == "client_disconnected" and outcome.upstream_status is None:
            logger.debug("client went away before the answer (request %s)", arrival.request_id)
        dialect_name = dialect.name if dialect is not None else None
        return Report(
            outcome,
            name,
            path,
            model,
            identity,
            body.size,
            dialect_name,
            client_dialect,
            translated,
        )

    def _upstream(self, adapter: ProviderAdapter, identity: str | None) -> httpx.AsyncBaseTransport:
        """The app's transport; for a stateful upstream, one holding the conversation."""
        transport = self._transport()
        if type(adapter) in self._stateless:
            return transport
        if isinstance(adapter, StatefulAdapter):
            if self._sessions is None:  # pragma: no cover - the app always gives one
                raise ProxyError("Stateful upstreams need the app's session store.")
            return adapter.conversation_transport(transport, self._sessions, identity)
        self._stateless.add(type(adapter))  # (isinstance against an ABC costs a call)
        return transport

    def _priced(self, route: Route, asked: str | None) -> CostHeader:
        """The ``x-proxy-cost-usd`` value of an answer on ``route``, from its usage."""
        pricing = self.cost_header
        assert pricing is not None
        base_url = str(route.adapter.base_url)

        def header(usage: Usage | None, answered: str | None) -> bytes | None:
            cost, _ = pricing.cost(route.provider, asked or answered, usage, base_url)
            return None if cost is None else str(cost.total).encode("ascii")

        return header

    def overhead(self, arrival: Arrival) -> float | None:
        """The proxy's time so far, for ``x-proxy-overhead-ms`` when it is asked for."""
        if not self.overhead_header:
            return None
        return arrival.since(time.perf_counter())

    # -- the route and the body ---------------------------------------------------------

    def _route(
        self,
        scope: Scope,
        provider: Provider,
        adapter: ProviderAdapter,
        rest: bytes,
        request_id: str,
    ) -> Route:
        """The provider configured, the path confined and allowed, its dialect and context."""
        name = provider.name
        availability = provider.availability()
        if not availability.enabled:
            raise ProviderNotConfigured(
                f"The provider {name!r} is not configured: {availability.reason}"
            )
        method: str = scope["method"]
        path = confine(rest).decode("ascii")
        if not adapter.endpoint_allowed(method, path):
            raise EndpointNotAllowed(
                f"The proxy does not forward {method} {path} to {name!r}: only "
                "the provider's inference endpoints are open. The operator can open more "
                "with the adapter's allow= option."
            )
        query: bytes = scope.get("query_string", b"")
        if self._guards is not None and self._guards.reads_query_key:
            query = query_without(query, KEY_PARAMS)  # the client's key is its own
        dialect = adapter.dialect_for(path)
        context = RequestContext(
            name,
            method,
            path,
            query,
            scope["headers"],
            request_id,
            models=self._models,
            path_model=dialect.model_in_path(path),
            dialect=dialect.name,
        )
        return Route(name, adapter, dialect, method, path, context)

    def _check_declared(self, declared: int | None) -> None:
        limit = self._max_body_size
        if limit is not None and declared is not None and declared > limit:
            raise BodyTooLarge(
                f"The request body ({declared} bytes) is over the proxy's limit of {limit} bytes."
            )

    async def _body(
        self,
        route: Route,
        body: RequestBody,
        context: RequestContext,
        *,
        read: bool,
        declared: int | None,
    ) -> _Body:
        """The body to send: streamed as it comes, or read (and transformed) when it must be."""
        first = await body.start(declared)
        transform = self._transform_for(route.adapter, context)
        if transform is None and not read:
            if not body.more:
                return _Body(first, len(first))
            return _Body(body.stream(), declared)
        raw = await body.read_all()
        received = len(raw)
        strict = transform is not None
        parsed = _parse(raw, strict=strict)
        model: str | None = None
        output_limit: int | None = None
        if parsed is not _NOT_PARSED:
            model_of = route.dialect.model_of
            model = model_of(parsed)
            if transform is not None:
                changed = await run_transform(transform, parsed, context)
                if changed is not None:
                    parsed = changed
                    model = model_of(changed) or model
            output_limit = route.dialect.output_limit_of(parsed)
            # The upstream gets what the transforms and guards read, not the bytes
            # sent, which its parser might read otherwise (the first of two "model"s).
            forwarded = _serialise(parsed, strict=strict)
            if forwarded is None:
                model = None  # forwarded as sent: its model is not known
            else:
                raw = forwarded
        return _Body(raw, len(raw), model, received, output_limit)

    def _transform_for(
        self, adapter: ProviderAdapter, context: RequestContext
    ) -> BodyTransform | None:
        """The adapter's transform and the app-wide ones that apply, as one."""
        own = adapter.body_transform(context)
        if not self._transforms:
            return own
        wanted = [t for t in self._transforms if applies(t, context)]
        if not wanted:
            return own
        if own is not None:
            wanted.insert(0, own)
        return wanted[0] if len(wanted) == 1 else Composed(wanted)

    # -- the upstream request -----------------------------------------------------------

    async def _request(
        self, route: Route, context: RequestContext, source: _Body
    ) -> UpstreamRequest:
        """The upstream request: credentials, URL, headers and framing."""
        adapter = route.adapter
        # Credentials first: an adapter that refreshes a token may learn its API
        # host from the answer (a token exchange), so the URL comes after.
        auth = adapter.auth_headers(context)
        if type(auth) is not dict and inspect.isawaitable(auth):
            auth = await auth
        base_url = adapter.base_url
        url = adapter.rewrite_url(self._url(base_url, route.path, context.query), context)
        headers = request_headers_for_upstream(context.headers, self._policy(route))
        fixed = {**context.upstream_headers, **adapter.headers, **auth}
        if self._trace_headers is not None:
            fixed.update(self._trace_headers())  # the proxy's span, not the caller's
        apply_headers(headers, fixed, adapter.default_headers)
        headers.append((b"host", self._netloc(base_url)))
        headers.append((REQUEST_ID, context.request_id.encode("ascii")))
        length = source.length
        if length is None:
            headers.append((b"transfer-encoding", b"chunked"))
        elif length or route.method not in _BODYLESS_METHODS:
            headers.append((b"content-length", str(length).encode("ascii")))
        return UpstreamRequest(route.method, url, headers, source.content, self._extensions)

    def _policy(self, route: Route) -> HeaderPolicy:
        """The adapter's header policy, never forwarding a client's credentials or account
        headers of any built-in format, nor of the path's own."""
        dialect = route.dialect
        policy = route.adapter.header_policy
        last_policy, last_dialect, last = self._last_policy
        if last is not None and last_policy is policy and last_dialect is dialect:
            return last  # hashing a policy (frozen sets) costs more than this check
        key = (policy, dialect)
        extended = self._policies.get(key)
        if extended is None:
            private = PRIVATE_HEADERS | dialect.credential_headers | dialect.account_headers
            extended = self._policies[key] = policy.never_forwarding(private)
        self._last_policy = (policy, dialect, extended)
        return extended

    def _url(self, base_url: httpx.URL, path: str, query: bytes) -> httpx.URL:
        """The upstream URL of ``path`` (confined) below ``base_url``; remembered for
        paths without a query (httpx builds a URL in several Python calls)."""
        if query:  # not kept: a query may carry anything, a client's key too
            return upstream_url(base_url, path.encode("ascii"), query)
        urls = self._urls
        known = urls.get((id(base_url), path))
        if known is not None and known[0] is base_url:
            return known[1]
        url = upstream_url(base_url, path.encode("ascii"), b"")
        if len(urls) >= _URL_CACHE_SIZE:
            urls.clear()
        urls[id(base_url), path] = (base_url, url)
        return url

    def _netloc(self, base_url: httpx.URL) -> bytes:
        """``base_url.netloc``, remembered for the last base URL (httpx computes it anew)."""
        known, netloc = self._last_netloc
        if known is not base_url:
            netloc = base_url.netloc
            self._last_netloc = (base_url, netloc)
        return netloc


def _maybe_billed(outcome: Outcome | None) -> bool:
    """Whether the provider may have billed the request: it was sent, and not answered
    with an error status."""
    if outcome is None or outcome.sent_at is None:
        return False
    status = outcome.upstream_status
    return status is None or status < 400


def _cut_after(outcome: Outcome | None) -> int | None:
    """The bytes relayed of an answer that broke off (the client left, the stream
    failed), whose usage may be partial; ``None`` for an answer that completed."""
    if outcome is None or outcome.upstream_status is None:
        return None
    if outcome.error_kind in ("client_disconnected", "upstream_stream_error"):
        return outcome.response_bytes
    return None


def _parse(raw: bytes, *, strict: bool) -> JSON:
    """The body as JSON; invalid JSON is a 400 when a transform needs it, else unparsed."""
    if not raw:
        return _NOT_PARSED
    try:
        return loads(raw)
    except ValueError as exc:
        if strict:
            raise InvalidJSON(
                f"The request body is not valid JSON ({exc}); the proxy must read it to apply "
                "its configured transforms, so nothing was forwarded."
            ) from None
        return _NOT_PARSED


def _serialise(body: JSON, *, strict: bool) -> bytes | None:
    """``body`` as JSON; without a JSON form, a 400 when a transform needs it, else ``None``."""
    try:
        return dumps(body)
    except ValueError as exc:
        if strict:
            raise InvalidJSON(
                f"The request body cannot be forwarded as JSON ({exc}); the proxy must read "
                "it to apply its configured transforms, so nothing was forwarded."
            ) from None
        return None
