"""OpenTelemetry: a span per provider request and the GenAI client metrics (the ``otel`` extra).

Follows the OpenTelemetry semantic conventions for generative AI client calls:
a ``CLIENT`` span named ``"{gen_ai.operation.name} {gen_ai.request.model}"``
with ``gen_ai.*`` attributes (operation, provider, request and response model,
token usage), ``server.address``/``server.port`` of the provider and
``error.type`` when the request failed; and the histograms
``gen_ai.client.token.usage`` (``{token}``, by ``gen_ai.token.type``) and
``gen_ai.client.operation.duration`` (seconds).

A request the router serves (a route, or a retry policy) gets a child span per
attempt, ``"attempt {deployment}"``, with the deployment, the attempt's number,
its status and its error, so a retry or a fallback shows in the trace.

The span continues the trace of the incoming request (its ``traceparent``,
``tracestate`` and ``baggage``, read with the globally configured propagator)
and is the current span while the request is forwarded, so instrumented code
below it (a transport, a transform) nests under it; the upstream request
carries its context in place of the caller's. It holds no prompt, no
answer and no key: only what :class:`~provider_proxy.ProxyEvent` holds, unless
``capture_content=True`` asks for the prompt and the answer as span events
(bounded, credentials scrubbed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .._adapter import Usage
from .._scrub import scrub
from ..policy import RawHeaders
from ..types import Message, Receive, Send
from ._events import ProxyEvent

#: The incoming headers a trace context is read from (W3C Trace Context and Baggage).
_CONTEXT_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
#: The most of a prompt or an answer a span event keeps (``capture_content=True``).
CAPTURE_LIMIT = 64 * 1024
#: Buckets the conventions advise for ``gen_ai.client.token.usage``.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
#: Buckets the conventions advise for ``gen_ai.client.operation.duration`` (seconds).
DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)


def _otel() -> tuple[Any, Any, Any]:
    try:
        from opentelemetry import metrics, propagate, trace
    except ImportError as exc:
        raise ImportError(
            "OpenTelemetry needs opentelemetry-api; install the 'otel' extra: "
            "pip install 'provider-proxy[otel]'."
        ) from exc
    return trace, metrics, propagate


def operation_of(path: str) -> str:
    """``gen_ai.operation.name`` of a path: ``embeddings`` for embedding calls, else ``chat``."""
    return "embeddings" if "embed" in path.lower() else "chat"


class OpenTelemetry:
    """Traces and GenAI metrics of the proxy's provider requests.

    Pass it as ``telemetry=`` to :func:`~provider_proxy.make_asgi_app`.

    :param tracer_provider: where spans go; by default the global one
        (``opentelemetry.trace.set_tracer_provider``).
    :param meter_provider: where metrics go; by default the global one.
    :param capture_content: record the request body (``gen_ai.content.prompt``)
        and the answer as the client got it (``gen_ai.content.completion``) as
        events of the request's span, each up to ``capture_limit`` bytes. Off by
        default: prompts and answers are the users' data. Provider keys never
        reach them (the proxy's keys are not in either body, and known
        credentials are scrubbed).
    :raises ImportError: when ``opentelemetry-api`` is not installed.
    """

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        capture_content: bool = False,
        capture_limit: int = CAPTURE_LIMIT,
    ) -> None:
        if capture_limit < 0:
            raise ValueError("OpenTelemetry(capture_limit=) is a number of bytes, 0 or more.")
        self.capture_content = capture_content
        self.capture_limit = capture_limit
        trace, metrics, propagate = _otel()
        from ..__version__ import __version__

        self._trace = trace
        self._propagate = propagate
        self.tracer = trace.get_tracer("provider_proxy", __version__, tracer_provider)
        meter = metrics.get_meter("provider_proxy", __version__, meter_provider=meter_provider)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )

    def __repr__(self) -> str:
        return "OpenTelemetry()"

    def begin(self, headers: RawHeaders, started_at: float, path: str) -> Any:
        """Start the span of a request that arrived at ``started_at`` (epoch seconds),
        as a child of the trace context its headers carry."""
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers
            if name in _CONTEXT_HEADERS
        }
        parent = self._propagate.extract(carrier) if carrier else None
        return self.tracer.start_span(
            operation_of(path),
            context=parent,
            kind=self._trace.SpanKind.CLIENT,
            start_time=int(started_at * 1e9),
        )

    @contextlib.contextmanager
    def current(self, span: Any) -> Iterator[None]:
        """Make ``span`` the current one (without ending it) for the block."""
        with self._trace.use_span(span, end_on_exit=False):
            yield

    @contextlib.contextmanager
    def attempt(self, deployment: str, number: int) -> Iterator[AttemptSpan]:
        """A child span of the current one for one attempt at ``deployment``
        (``"{adapter}/{model}"``, or the adapter's name in passthrough), current
        for the block: the upstream request nests under it. The caller fills in
        the :class:`AttemptSpan` it yields. Without a request's span to hang it
        under (a ``{mount}/ws`` request), there is none."""
        if not self._trace.get_current_span().get_span_context().is_valid:
            yield AttemptSpan()
            return
        adapter, _, model = deployment.partition("/")
        attributes: dict[str, Any] = {
            "provider_proxy.deployment": deployment,
            "provider_proxy.attempt": number,
            "gen_ai.provider.name": adapter,
        }
        if model:
            attributes["gen_ai.request.model"] = model
        span = self.tracer.start_span(
            f"attempt {deployment}", kind=self._trace.SpanKind.INTERNAL, attributes=attributes
        )
        record = AttemptSpan()
        try:
            with self._trace.use_span(span, end_on_exit=False):
                yield record
        finally:
            if record.status is not None:
                span.set_attribute("http.response.status_code", record.status)
            if record.error is not None:
                span.set_attribute("error.type", record.error)
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, record.error))
            span.end()

    def capturing(self, span: Any, receive: Receive, send: Send) -> tuple[Receive, Send]:
        """``receive`` and ``send`` that add the request body and the answer to
        ``span`` as events, once each is complete (``capture_content=True``);
        else they are returned as they are."""
        if not self.capture_content:
            return receive, send
        limit = self.capture_limit
        prompt, answer = _Capture(limit), _Capture(limit)

        async def captured_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and prompt.add(message):
                _content_event(span, "gen_ai.content.prompt", "gen_ai.prompt", prompt)
            return message

        async def captured_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and answer.add(message):
                _content_event(span, "gen_ai.content.completion", "gen_ai.completion", answer)

        return captured_receive, captured_send

    def trace_headers(self) -> dict[str, str]:
        """The current trace context as headers (``traceparent``, ...), for the
        upstream request: the provider's own spans then nest under the proxy's."""
        carrier: dict[str, str] = {}
        self._propagate.inject(carrier)
        return carrier

    def end(
        self,
        span: Any,
        event: ProxyEvent,
        *,
        request_model: str | None,
        response_model: str | None,
        server: tuple[str, int | None] | None,
        finish_reasons: tuple[str, ...] = (),
    ) -> None:
        """Name and describe the span from the request's event, end it, and record metrics.

        :param request_model: the model the request named; when its body was not
            read (passthrough streams it), the answer's model stands in.
        """
        operation = operation_of(event.path)
        request_model = request_model or event.model
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": event.provider or "unknown",
        }
        if request_model:
            attributes["gen_ai.request.model"] = request_model
        if server is not None:
            attributes["server.address"] = server[0]
            if server[1] is not None:
                attributes["server.port"] = server[1]
        error = event.error_kind or (str(event.status) if event.status >= 400 else None)
        if error is not None:
            attributes["error.type"] = error
        metric_attributes = dict(attributes)
        if response_model:
            attributes["gen_ai.response.model"] = response_model
            metric_attributes["gen_ai.response.model"] = response_model
        if finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = list(finish_reasons)
        attributes["http.response.status_code"] = event.status
        attributes.update(_usage_attributes(event.usage))
        if event.cost is not None:
            attributes["provider_proxy.cost_usd"] = float(event.cost.total)
        span.update_name(f"{operation} {request_model}" if request_model else operation)
        span.set_attributes(attributes)
        if error is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
        span.end(end_time=int((event.started_at + event.duration) * 1e9))
        self.duration.record(event.duration, metric_attributes)
        usage = event.usage
        if usage is not None:
            for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
                if count is not None:
                    self.token_usage.record(count, {**metric_attributes, "gen_ai.token.type": kind})


def _usage_attributes(usage: Usage | None) -> dict[str, int]:
    if usage is None:
        return {}
    found = {
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
        "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
    }
    return {name: count for name, count in found.items() if count is not None}


class AttemptSpan:
    """What an attempt's span records when it ends: the status the provider answered
    (or the proxy's), and the error that made it fail, if any."""

    __slots__ = ("error", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.error: str | None = None


class _Capture:
    """One body's first ``limit`` bytes, and whether more came."""

    __slots__ = ("_parts", "_size", "done", "limit", "truncated")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self.truncated = False
        self.done = False

    def add(self, message: Message) -> bool:
        """Keep the chunk; ``True`` once the body is complete (the first time)."""
        if self.done:
            return False
        chunk: bytes = message.get("body", b"")
        room = self.limit - self._size
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[: max(room, 0)]
        self._parts.append(chunk)
        self._size += len(chunk)
        self.done = not message.get("more_body", False)
        return self.done

    def text(self) -> str:
        return scrub(b"".join(self._parts).decode("utf-8", "replace"))


def _content_event(span: Any, name: str, attribute: str, capture: _Capture) -> None:
    try:
        span.add_event(
            name,
            {attribute: capture.text(), "provider_proxy.truncated": capture.truncated},
        )
    except Exception:  # a failing exporter or span breaks nothing
        return
