"""The exchange: send a :class:`~provider_proxy.engine._plan.Plan`'s request, relay the
answer, and return its :class:`~provider_proxy.engine._report.Outcome`.

It stops at once when the client leaves (the disconnect watch cancels it), and
answers a failure before the answer started itself, in the plan's format. A
failure after the answer started cannot become an error status any more: the
outcome carries it, to be raised to the server once the event is out, so the
connection is aborted rather than ended as if complete.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable

import httpx

from .._exceptions import ClientDisconnected, ProxyError, UpstreamStreamError
from ..dialects import Dialect
from ..observe import UsageTap
from ..policy import RawHeaders, header_value, httpx_headers, response_headers_for_client
from ..transports import HttpxResponse, RawResponse, RawTransport, UpstreamRequest, as_proxy_error
from ..types import Receive, Send
from ._body import RequestBody
from ._heads import relayed_head, send_error
from ._plan import Plan
from ._priced import CostHeader, relay_priced
from ._relay import Progress, relay_response
from ._report import Outcome
from ._watch import DisconnectWatch


async def exchange(
    plan: Plan,
    body: RequestBody,
    receive: Receive,
    send: Send,
    transport: httpx.AsyncBaseTransport,
    *,
    start: float,
    read_usage: bool,
    overhead_header: bool,
    cost_header: CostHeader | None = None,
) -> Outcome:
    """Send the plan's request and relay the answer, stopping at once if the client leaves."""
    route = plan.route
    sent_at = time.perf_counter()
    headers_at: float | None = None
    upstream_status: int | None = None
    streamed = completed = relaying = False
    usage = model = None
    finish_reasons: tuple[str, ...] = ()
    progress = Progress()
    watch = DisconnectWatch(body, receive)
    failure: BaseException | None = None
    try:
        with watch:
            try:
                response = await _send(transport, plan.request)
            except httpx.TransportError as exc:
                raise body.error or as_proxy_error(exc, route.adapter.base_url.host) from exc
            headers_at = time.perf_counter()
            upstream_status = response.status_code
            if body.error is not None:  # the client left (or sent too much) meanwhile
                await response.aclose()
                raise body.error
            headers = response_headers_for_client(response.raw_headers)
            content_type = _text(header_value(headers, b"content-type"))
            streamed = content_type is not None and content_type.startswith("text/event-stream")
            tap = _tap(route.dialect, headers, content_type) if read_usage else None
            overhead = sent_at - start if overhead_header else None
            relaying = True
            try:
                head = relayed_head(headers, plan.request_id, plan.limits, overhead)
                if cost_header is not None and tap is not None and not streamed:
                    await relay_priced(
                        response,
                        send,
                        head,
                        provider=route.provider,
                        request_id=plan.request_id,
                        progress=progress,
                        tap=tap,
                        price=cost_header,
                    )
                else:
                    await relay_response(
                        response,
                        send,
                        head,
                        provider=route.provider,
                        request_id=plan.request_id,
                        progress=progress,
                        tap=tap,
                    )
                completed = True
            finally:
                watch.stop()
                await response.aclose()
                if tap is not None:
                    usage, model = tap.result()
                    finish_reasons = tap.finish_reasons
    except asyncio.CancelledError:
        if not watch.absorb():
            raise
        if watch.reason is not None and not relaying:
            # Nothing answered yet: the client left (499) or sent too much (413).
            failure = watch.reason
    except UpstreamStreamError as exc:
        watch.settle()
        return Outcome(
            upstream_status or 502,
            upstream_status,
            "upstream_stream_error",
            streamed,
            sent_at,
            headers_at,
            progress.first_byte_at,
            progress.response_bytes,
            usage,
            model,
            exc,
            finish_reasons,
        )
    except Exception as exc:
        watch.settle()
        if relaying:  # no other answer can be sent once one has started
            raise
        # What the client did (left, sent too much) explains a failed upload
        # better than what the transport made of it.
        cause = body.error or watch.reason
        failure = cause if cause is not None else exc
        if not isinstance(failure, (ProxyError, ClientDisconnected)):
            raise
    watch.settle()
    if isinstance(failure, ClientDisconnected):
        return Outcome.client_left(sent_at)
    if isinstance(failure, ProxyError):
        overhead = sent_at - start if overhead_header else None
        size = await send_error(
            send, route.dialect, failure, plan.request_id, plan.limits, overhead
        )
        return Outcome.refused(failure, size, sent_at)
    # (The server also reports a disconnect once a response is complete.)
    left = watch.disconnected and not completed
    # (Built here, not by a closure shared with the stream error above: a closure
    # would turn every local it reads into a cell, on every request.)
    return Outcome(
        upstream_status if upstream_status is not None else 499,
        upstream_status,
        "client_disconnected" if left else None,
        streamed,
        sent_at,
        headers_at,
        progress.first_byte_at,
        progress.response_bytes,
        usage,
        model,
        None,
        finish_reasons,
    )


def _send(transport: httpx.AsyncBaseTransport, request: UpstreamRequest) -> Awaitable[RawResponse]:
    """Send ``request``: as raw parts to a transport that takes them (no httpx objects on
    the way), else as an :class:`httpx.Request`. (The transport's own coroutine is
    returned, not wrapped in one more: each layer is walked on every resumption.)"""
    if isinstance(transport, RawTransport):
        return transport.send_raw(request)
    return _send_httpx(transport, request)


async def _send_httpx(transport: httpx.AsyncBaseTransport, request: UpstreamRequest) -> RawResponse:
    body = request.body
    built = httpx.Request(
        request.method,
        request.url,
        stream=httpx.ByteStream(body) if isinstance(body, bytes) else _Stream(body),
        extensions=request.extensions,
    )
    built.headers = httpx_headers(request.headers)
    return HttpxResponse(await transport.handle_async_request(built))


class _Stream(httpx.AsyncByteStream):
    """A streamed request body as httpx's request stream."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk


def _tap(dialect: Dialect, headers: RawHeaders, content_type: str | None) -> UsageTap:
    """A usage reader for an answer in ``dialect`` with these (lower-case) headers."""
    hints = dialect.usage_hints  # which events to skip unparsed
    return UsageTap(
        dialect.usage_of,
        dialect.model_of,
        extract_finish=dialect.finish_reasons_of,
        finish_hint=dialect.finish_hint,
        content_type=content_type,
        content_encoding=_text(header_value(headers, b"content-encoding")),
        usage_hint=hints[0] if hints else None,
        model_hint=hints[1] if hints else None,
    )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")
