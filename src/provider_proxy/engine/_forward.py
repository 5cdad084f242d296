"""Forwarding one request: checks, body, upstream request, then the relayed answer.

The order is the cheapest refusal first: provider configured, path confined,
endpoint allowed, client admitted by the guards, body within its limit. A body
is read and parsed only when a transform applies to it (or a guard needs its
model); otherwise it streams to the provider as it arrives.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from .._adapter import JSON, BodyTransform, ModelLookup, RequestContext
from .._exceptions import (
    BodyTooLarge,
    ClientDisconnected,
    EndpointNotAllowed,
    InvalidJSON,
    ProviderNotConfigured,
    ProxyError,
)
from .._json import dumps, loads
from ..adapters import ProviderAdapter
from ..dialects import KEY_PARAMS, PRIVATE_HEADERS, Dialect
from ..guards import UNIDENTIFIED, Guards, Unidentified
from ..observe import RequestRecord, UsageTap
from ..policy import (
    REQUEST_ID,
    UPSTREAM_REQUEST_ID,
    HeaderPolicy,
    RawHeaders,
    apply_headers,
    confine,
    header_value,
    httpx_headers,
    query_without,
    request_headers_for_upstream,
    response_headers_for_client,
    upstream_limits_renamed,
    upstream_url,
)
from ..transforms._compose import Composed, applies, checked_transforms, run_transform
from ..transports import as_proxy_error
from ..types import Receive, Scope, Send
from ._body import RequestBody, declared_body_length
from ._relay import relay_response

logger = logging.getLogger("provider_proxy")

_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_NOT_PARSED: Any = object()

#: The response header that reports the proxy's own time, when enabled.
OVERHEAD_HEADER = b"x-proxy-overhead-ms"


class Forwarder:
    """Forwards requests for a :class:`~provider_proxy.ProxyApp`; one per app.

    :param transport: returns the app's upstream transport (created lazily).
    :param guards: client auth and limits, or ``None``.
    :param transforms: app-wide transforms, run after each adapter's own.
    :param models: the model ids of a provider, for transforms that resolve aliases.
    :param usage: whether to read token usage from responses (someone consumes it).
    :param overhead_header: whether to add ``x-proxy-overhead-ms`` to answers.
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
    ) -> None:
        self._transport = transport
        self._extensions = dict(extensions)
        self._max_body_size = max_body_size
        self._guards = guards
        self._transforms = checked_transforms(transforms, "make_asgi_app(transforms=...)")
        self._models = models
        self._usage = usage
        self.overhead_header = overhead_header
        self._last_netloc: tuple[httpx.URL | None, bytes] = (None, b"")
        self._policies: dict[tuple[HeaderPolicy, Dialect], HeaderPolicy] = {}

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        adapter: ProviderAdapter,
        rest: bytes,
        record: RequestRecord,
    ) -> None:
        """Forward and relay; a :class:`ProxyError` is left for the app to answer."""
        body = RequestBody(receive, self._max_body_size)
        try:
            try:
                request, dialect = await self._prepare(scope, body, adapter, rest, record)
            except (ProxyError, ClientDisconnected):
                raise
            except Exception as exc:
                # A bug or misconfiguration in adapter or transform code: a clear 500,
                # with the details in the log rather than in the answer.
                logger.exception(
                    "could not prepare the %s request %s", adapter.name, record.request_id
                )
                raise ProxyError(
                    f"The proxy could not prepare the request for {adapter.name!r} "
                    f"({type(exc).__name__}); its log has the details under request id "
                    f"{record.request_id}."
                ) from exc
            await self._exchange(request, body, receive, send, adapter, dialect, record)
        finally:
            record.request_bytes = max(record.request_bytes, body.size)

    # -- the request ----------------------------------------------------------------

    async def _prepare(
        self,
        scope: Scope,
        body: RequestBody,
        adapter: ProviderAdapter,
        rest: bytes,
        record: RequestRecord,
    ) -> tuple[httpx.Request, Dialect]:
        """The upstream request and its path's dialect: checks first, then the body,
        URL and headers."""
        availability = adapter.availability()
        if not availability.enabled:
            raise ProviderNotConfigured(
                f"The provider {adapter.name!r} is not configured: {availability.reason}"
            )
        method: str = scope["method"]
        path = confine(rest)
        text_path = path.decode("ascii")
        record.path = text_path
        if not adapter.endpoint_allowed(method, text_path):
            raise EndpointNotAllowed(
                f"The proxy does not forward {method} {text_path} to {adapter.name!r}: only "
                "the provider's inference endpoints are open. The operator can open more "
                "with the adapter's allow= option."
            )
        client_headers: list[tuple[bytes, bytes]] = scope["headers"]
        query: bytes = scope.get("query_string", b"")
        guards = self._guards
        if guards is not None and guards.reads_query_key:
            query = query_without(query, KEY_PARAMS)  # the client's key is its own
        dialect = adapter.dialect_for(text_path)
        context = RequestContext(
            adapter.name,
            method,
            text_path,
            query,
            client_headers,
            record.request_id,
            models=self._models,
            path_model=dialect.model_in_path(text_path),
            dialect=dialect.name,
        )
        declared = declared_body_length(client_headers)
        limit = self._max_body_size
        if limit is not None and declared is not None and declared > limit:
            raise BodyTooLarge(
                f"The request body ({declared} bytes) is over the proxy's limit of {limit} bytes."
            )
        late_admission = guards is not None and guards.needs_model
        identity: str | Unidentified | None = UNIDENTIFIED
        if guards is not None:
            if late_admission:
                # Per-model limits need the body; only a known client's is read.
                identity = await guards.identify(scope)
                if identity is not None:
                    context = dataclasses.replace(context, identity=identity)
            else:
                context = await self._admit(guards, scope, adapter, None, declared, record, context)

        first = await body.start()
        transform = self._transform_for(adapter, context)
        stream: httpx.AsyncByteStream | httpx.ByteStream
        length: int | None
        if transform is not None or late_admission:
            raw = await body.read_all()
            received = len(raw)
            strict = transform is not None
            parsed = _parse(raw, strict=strict)
            if parsed is not _NOT_PARSED:
                record.model = dialect.model_of(parsed)
                if transform is not None:
                    changed = await run_transform(transform, parsed, context)
                    if changed is not None:
                        parsed = changed
                        record.model = dialect.model_of(changed) or record.model
                # The upstream gets what the transforms and guards read, not the bytes
                # sent, which its parser might read otherwise (the first of two "model"s).
                forwarded = _serialise(parsed, strict=strict)
                if forwarded is None:
                    record.model = None  # forwarded as sent: its model is not known
                else:
                    raw = forwarded
            if guards is not None and late_admission:
                # After the transforms, so an alias is limited as the model it names;
                # a model in the path (the dialect says which) is the one served.
                served = context.path_model or record.model
                context = await self._admit(
                    guards, scope, adapter, served, received, record, context, identity
                )
            stream, length = httpx.ByteStream(raw), len(raw)
        elif not body.more:
            stream, length = httpx.ByteStream(first), len(first)
        else:
            stream, length = _StreamedBody(body), declared

        # Credentials first: an adapter that refreshes a token may learn its API
        # host from the answer (a token exchange), so the URL comes after.
        auth = adapter.auth_headers(context)
        if inspect.isawaitable(auth):
            auth = await auth
        url = adapter.rewrite_url(upstream_url(adapter.base_url, path, query), context)
        headers = request_headers_for_upstream(client_headers, self._policy(adapter, dialect))
        fixed = {**context.upstream_headers, **adapter.headers, **auth}
        apply_headers(headers, fixed, adapter.default_headers)
        headers.append((b"host", self._netloc(adapter.base_url)))
        headers.append((REQUEST_ID, record.request_id.encode("ascii")))
        if length is None:
            headers.append((b"transfer-encoding", b"chunked"))
        elif length or method not in _BODYLESS_METHODS:
            headers.append((b"content-length", str(length).encode("ascii")))
        request = httpx.Request(method, url, stream=stream, extensions=self._extensions)
        request.headers = httpx_headers(headers)
        return request, dialect

    def _policy(self, adapter: ProviderAdapter, dialect: Dialect) -> HeaderPolicy:
        """The adapter's header policy, never forwarding a client's credentials or account
        headers of any built-in format, nor of the path's own."""
        key = (adapter.header_policy, dialect)
        extended = self._policies.get(key)
        if extended is None:
            private = PRIVATE_HEADERS | dialect.credential_headers | dialect.account_headers
            extended = self._policies[key] = key[0].never_forwarding(private)
        return extended

    def _netloc(self, base_url: httpx.URL) -> bytes:
        """``base_url.netloc``, remembered for the last base URL (httpx computes it anew)."""
        known, netloc = self._last_netloc
        if known is not base_url:
            netloc = base_url.netloc
            self._last_netloc = (base_url, netloc)
        return netloc

    async def _admit(
        self,
        guards: Guards,
        scope: Scope,
        adapter: ProviderAdapter,
        model: str | None,
        request_bytes: int | None,
        record: RequestRecord,
        context: RequestContext,
        identity: str | Unidentified | None = UNIDENTIFIED,
    ) -> RequestContext:
        admission = await guards.admit(
            scope,
            provider=adapter.name,
            model=model,
            request_bytes=request_bytes,
            identity=identity,
        )
        record.admission = admission
        record.identity = admission.identity
        record.response_headers = admission.headers
        if admission.identity is None:
            return context
        return dataclasses.replace(context, identity=admission.identity)

    def _transform_for(
        self, adapter: ProviderAdapter, context: RequestContext
    ) -> BodyTransform | None:
        """The adapter's transform and the app-wide ones that apply, as one."""
        own = adapter.body_transform(context)
        wanted = [t for t in self._transforms if applies(t, context)]
        if not wanted:
            return own
        if own is not None:
            wanted.insert(0, own)
        return wanted[0] if len(wanted) == 1 else Composed(wanted)

    # -- the exchange -----------------------------------------------------------------

    async def _exchange(
        self,
        request: httpx.Request,
        body: RequestBody,
        receive: Receive,
        send: Send,
        adapter: ProviderAdapter,
        dialect: Dialect,
        record: RequestRecord,
    ) -> None:
        """Send ``request`` and relay the answer, stopping at once if the client leaves."""
        watch = _DisconnectWatch(body, receive)
        completed = relaying = False
        try:
            try:
                record.sent_at = time.perf_counter()
                try:
                    response = await self._transport().handle_async_request(request)
                except httpx.TransportError as exc:
                    raise body.error or as_proxy_error(exc, adapter.base_url.host) from exc
                record.headers_at = time.perf_counter()
                record.upstream_status = record.status = response.status_code
                if body.error is not None:  # the client left (or sent too much) meanwhile
                    await response.aclose()
                    raise body.error
                headers = response_headers_for_client(response.headers.raw)
                tap = self._tap(dialect, headers, record)
                relaying = True
                try:
                    await relay_response(
                        response,
                        send,
                        self._client_headers(headers, record),
                        provider=adapter.name,
                        request_id=record.request_id,
                        record=record,
                        tap=tap,
                    )
                    completed = True
                finally:
                    watch.stop()
                    await response.aclose()
                    if tap is not None:
                        usage, model = tap.result()
                        record.usage = usage
                        record.model = record.model or model
            finally:
                watch.stop()
        except asyncio.CancelledError:
            if not watch.absorb():
                raise
            if watch.reason is not None and not relaying:
                # Nothing answered yet: the client left (499) or sent too much (413).
                raise watch.reason from None
        except Exception as exc:
            watch.settle()
            # What the client did (left, sent too much) explains a failed upload
            # better than what the transport made of it; once the answer has
            # started, though, no other answer can be sent.
            cause = body.error or watch.reason
            if cause is not None and cause is not exc and not relaying:
                raise cause from None
            raise
        watch.settle()
        # (The server also reports a disconnect once a response is complete.)
        if watch.disconnected and not completed:
            record.error_kind = "client_disconnected"
            logger.debug(
                "client went away; closed the upstream response (request %s)", record.request_id
            )

    def _tap(self, dialect: Dialect, headers: RawHeaders, record: RequestRecord) -> UsageTap | None:
        """A usage reader for the answer with these (lower-case) headers, if usage is wanted."""
        content_type = _text(header_value(headers, b"content-type"))
        record.streamed = content_type is not None and content_type.startswith("text/event-stream")
        if not self._usage():
            return None
        hints = dialect.usage_hints  # which events to skip unparsed
        return UsageTap(
            dialect.usage_of,
            dialect.model_of,
            content_type=content_type,
            content_encoding=_text(header_value(headers, b"content-encoding")),
            usage_hint=hints[0] if hints else None,
            model_hint=hints[1] if hints else None,
        )

    def _client_headers(self, headers: RawHeaders, record: RequestRecord) -> RawHeaders:
        """The upstream's headers as the client gets them, with the proxy's own added."""
        request_id = record.request_id.encode("ascii")
        if record.response_headers:  # the proxy's limits replace the provider's
            headers = upstream_limits_renamed(headers)
        upstream_id = header_value(headers, REQUEST_ID)
        if upstream_id is not None:
            headers = [item for item in headers if item[0] != REQUEST_ID]
            if upstream_id != request_id:
                headers.append((UPSTREAM_REQUEST_ID, upstream_id))
        headers.append((REQUEST_ID, request_id))
        headers.extend(extra_headers(record, self.overhead_header))
        return headers


def extra_headers(record: RequestRecord, overhead: bool) -> RawHeaders:
    """The headers the proxy adds to any answer: limits, and its overhead when asked."""
    headers: RawHeaders = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in record.response_headers.items()
    ]
    if overhead:
        spent = record.overhead(time.perf_counter()) * 1000
        headers.append((OVERHEAD_HEADER, f"{spent:.3f}".encode("ascii")))
    return headers


class _DisconnectWatch:
    """Cancels the forwarding task when the client goes away (or its body fails) mid-exchange.

    ASGI tells only the caller of ``receive`` that the client left, so the watch is
    its one caller during the exchange: a streamed body it reads ahead of the
    upload (:meth:`RequestBody.read_ahead`), since an upload blocked on a write to
    a provider that stopped reading calls nothing; then it waits for
    ``http.disconnect``. One small task, plain asyncio rather than a task group:
    this runs for every request, and the exchange's own task does the work.
    """

    __slots__ = ("_body", "_task", "_watcher", "active", "disconnected", "fired", "reason")

    def __init__(self, body: RequestBody, receive: Receive) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - ASGI servers run apps in tasks
            raise RuntimeError("the proxy needs to run in an asyncio task")
        self._task = task
        self._body = body
        self.active = True
        #: A cancellation was requested and not yet taken back.
        self.fired = False
        #: The client went away while the exchange ran.
        self.disconnected = False
        #: Why the watch cancelled the exchange: the client left, or its body is too large.
        self.reason: ProxyError | ClientDisconnected | None = None
        ahead = body.more
        if ahead:
            body.hand_over()  # before the transport can ask for the next chunk
        self._watcher = task.get_loop().create_task(self._watch(receive, ahead=ahead))

    async def _watch(self, receive: Receive, *, ahead: bool) -> None:
        try:
            if ahead:
                await self._body.read_ahead()
            while (await receive())["type"] != "http.disconnect":
                pass
            self.reason = ClientDisconnected()
        except (ClientDisconnected, BodyTooLarge) as exc:
            self.reason = exc
        except Exception:  # a server that fails here cannot tell us anything more
            logger.debug("receive() failed while watching for a disconnect", exc_info=True)
            return
        if self.active:
            self.fired = True
            self._task.cancel()

    def stop(self) -> None:
        """The exchange is over (or closing): a disconnect no longer cancels it."""
        if self.active:
            self.active = False
            self._watcher.cancel()
            self._body.take_back()

    def absorb(self) -> bool:
        """Whether a :class:`asyncio.CancelledError` was this watch's own, and is now spent."""
        if not self.fired:
            return False
        self._spend()
        return _uncancel(self._task) == 0

    def settle(self) -> None:
        """Take back a cancellation that fired but that the exchange swallowed."""
        if self.fired:
            self._spend()
            _uncancel(self._task)

    def _spend(self) -> None:
        self.fired = False
        self.disconnected = isinstance(self.reason, ClientDisconnected)


def _uncancel(task: asyncio.Task[Any]) -> int:
    """``task.uncancel()`` (Python 3.11+); 3.10 keeps no count, so nothing is pending."""
    uncancel: Callable[[], int] | None = getattr(task, "uncancel", None)
    return 0 if uncancel is None else uncancel()


class _StreamedBody(httpx.AsyncByteStream):
    """The client's body as an httpx request stream, read as the upstream sends it."""

    def __init__(self, body: RequestBody) -> None:
        self._body = body

    async def __aiter__(self) -> Any:
        async for chunk in self._body.stream():
            yield chunk


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


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
