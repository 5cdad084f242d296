"""OpenTelemetry: GenAI spans and metrics of real requests, with the SDK's in-memory exporters."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from provider_proxy import Deployment, Guards, ProxyApp, RetryPolicy, Route, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.observe import OpenTelemetry
from provider_proxy.testing import FakeUpstream, Faults

from .conftest import ANTHROPIC_KEY, CLIENT_KEY, OPENAI_KEY
from .servers import ServerThread, serve, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "a secret prompt"}]}


class Telemetry:
    def __init__(self, **options: Any) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[self.metrics])
        self.otel = OpenTelemetry(
            tracer_provider=tracer_provider, meter_provider=meter_provider, **options
        )

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    return Telemetry()


@pytest.fixture
def traced(make_proxy: Callable[..., ProxyApp], telemetry: Telemetry) -> Iterator[ServerThread]:
    guards = Guards(client_keys={CLIENT_KEY: "team-a"})
    proxy = make_proxy(
        telemetry=telemetry.otel, guards=guards, prices={"gpt-fake": {"input": 1, "output": 2}}
    )
    with serve(proxy) as server:
        yield server


AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}


def test_a_span_per_request_with_genai_attributes_in_the_callers_trace(
    traced: ServerThread, telemetry: Telemetry, upstream: ServerThread
) -> None:
    response = httpx.post(
        traced.url + "/openai/chat/completions",
        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
        headers={**AUTH, "traceparent": TRACEPARENT, "x-fake-cached": "3"},
        timeout=10,
    )
    assert response.status_code == 200
    assert wait_until(lambda: len(telemetry.spans.get_finished_spans()) == 1)
    [span] = telemetry.spans.get_finished_spans()
    assert span.name == "chat gpt-fake"
    assert span.kind == SpanKind.CLIENT
    assert format(span.context.trace_id, "032x") == TRACE_ID  # the caller's trace continues
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_ID
    attributes = dict(span.attributes or {})
    port = int(upstream.url.rsplit(":", 1)[1])
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-fake",
        "gen_ai.response.model": "gpt-fake",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 13,
        "gen_ai.usage.output_tokens": 11,
        "gen_ai.usage.cache_read.input_tokens": 3,
        "provider_proxy.cost_usd": pytest.approx((10 * 1 + 3 * 1 + 11 * 2) / 1e6),
    }
    assert span.end_time is not None
    assert span.start_time is not None
    assert span.end_time > span.start_time
    # Nothing of the prompt or the answer, and no key, anywhere in the span.
    text = json.dumps(json.loads(span.to_json()))
    for secret in ("a secret prompt", "Hello", CLIENT_KEY, OPENAI_KEY, ANTHROPIC_KEY):
        assert secret not in text
    tokens = telemetry.points("gen_ai.client.token.usage")
    by_type = {p.attributes["gen_ai.token.type"]: p for p in tokens}
    assert by_type["input"].sum == 13
    assert by_type["output"].sum == 11
    assert by_type["input"].attributes["gen_ai.request.model"] == "gpt-fake"
    [duration] = telemetry.points("gen_ai.client.operation.duration")
    assert duration.count == 1
    assert duration.attributes["gen_ai.provider.name"] == "openai"


def test_a_request_without_a_caller_trace_starts_one(
    traced: ServerThread, telemetry: Telemetry
) -> None:
    httpx.post(traced.url + "/openai/chat/completions", json=CHAT, headers=AUTH, timeout=10)
    assert wait_until(lambda: len(telemetry.spans.get_finished_spans()) == 1)
    [span] = telemetry.spans.get_finished_spans()
    assert span.parent is None


def test_errors_are_marked_and_the_proxys_own_endpoints_have_no_span(
    traced: ServerThread, telemetry: Telemetry
) -> None:
    failed = httpx.post(
        traced.url + "/openai/chat/completions",
        json=CHAT,
        headers={**AUTH, "x-fake-status": "503"},
        timeout=10,
    )
    refused = httpx.post(traced.url + "/openai/chat/completions", json=CHAT, timeout=10)
    httpx.get(traced.url + "/health", timeout=10)
    httpx.get(traced.url + "/status", headers=AUTH, timeout=10)
    assert failed.status_code == 503
    assert refused.status_code == 401
    assert wait_until(lambda: len(telemetry.spans.get_finished_spans()) == 2)
    upstream_error, unauthorised = telemetry.spans.get_finished_spans()
    assert upstream_error.status.status_code == StatusCode.ERROR
    assert dict(upstream_error.attributes or {})["error.type"] == "503"
    assert dict(unauthorised.attributes or {})["error.type"] == "client_not_authorized"
    assert len(telemetry.spans.get_finished_spans()) == 2


def test_gateway_requests_are_traced_with_the_provider_model(
    traced: ServerThread, telemetry: Telemetry
) -> None:
    response = httpx.post(
        traced.url + "/v1/chat/completions",
        json={**CHAT, "model": "anthropic/claude-fake"},
        headers=AUTH,
        timeout=10,
    )
    assert response.status_code == 200
    assert wait_until(lambda: len(telemetry.spans.get_finished_spans()) == 1)
    [span] = telemetry.spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert span.name == "chat claude-fake"
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["gen_ai.response.finish_reasons"] == ("end_turn",)  # the provider's word
    assert attributes["gen_ai.usage.output_tokens"] > 0


def test_the_upstream_request_carries_the_proxys_span_as_parent(
    traced: ServerThread, telemetry: Telemetry, fake: FakeUpstream
) -> None:
    httpx.post(
        traced.url + "/openai/chat/completions",
        json=CHAT,
        headers={**AUTH, "traceparent": TRACEPARENT},
        timeout=10,
    )
    assert wait_until(lambda: len(telemetry.spans.get_finished_spans()) == 1)
    [span] = telemetry.spans.get_finished_spans()
    sent = [r.header("traceparent") for r in fake.requests if r.header("traceparent")]
    proxy_span = format(span.context.span_id, "016x")
    assert sent[-1] == f"00-{TRACE_ID}-{proxy_span}-01"
    assert [r.header("traceparent") for r in fake.requests].count(TRACEPARENT) == 0


@pytest.mark.parametrize(
    ("path", "payload", "reasons"),
    [
        (
            "/v1/chat/completions",
            {"choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}]},
            ("stop", "length"),
        ),
        ("/v1/chat/completions", {"choices": [{"delta": {}, "finish_reason": None}]}, ()),
        (
            "/v1/responses",
            {"type": "response.completed", "response": {"status": "completed"}},
            ("completed",),
        ),
        (
            "/v1/responses",
            {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}},
            ("max_output_tokens",),
        ),
        ("/v1/responses", {"response": {"status": "in_progress"}}, ()),
        ("/v1/messages", {"type": "message", "stop_reason": "tool_use"}, ("tool_use",)),
        (
            "/v1/messages",
            {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}},
            ("max_tokens",),
        ),
        ("/v1/messages", {"type": "message_start", "message": {"stop_reason": None}}, ()),
        ("/v1beta/models/g:generateContent", {"candidates": [{"finishReason": "STOP"}]}, ("STOP",)),
    ],
)
def test_dialects_read_finish_reasons(
    path: str, payload: dict[str, object], reasons: tuple[str, ...]
) -> None:
    from provider_proxy.dialects import BUILTIN

    dialect = next(d for d in BUILTIN if d.recognizes(path))
    assert dialect.finish_reasons_of(payload) == reasons


def test_the_tap_reads_finish_reasons_from_events_it_would_skip_for_usage() -> None:
    from provider_proxy.dialects import OpenAIChat
    from provider_proxy.observe import UsageTap

    dialect = OpenAIChat()
    tap = UsageTap(
        dialect.usage_of,
        dialect.model_of,
        content_type="text/event-stream",
        content_encoding=None,
        usage_hint="usage",
        model_hint="model",
        extract_finish=dialect.finish_reasons_of,
        finish_hint=dialect.finish_hint,
    )
    for data in (
        {"model": "m", "choices": [{"delta": {"content": "hi"}, "finish_reason": None}]},
        {"model": "m", "choices": [{"delta": {}, "finish_reason": "length"}]},
    ):
        tap.feed(b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n")
    assert tap.result() == (None, "m")
    assert tap.finish_reasons == ("length",)


# -- attempts and content ------------------------------------------------------------------


@pytest.fixture
def faulty() -> Iterator[tuple[Faults, FakeUpstream, str]]:
    """A fake provider of its own behind scripted faults."""
    fake = FakeUpstream()
    faults = Faults(fake)
    with serve(faults, lifespan="off") as server:
        yield faults, fake, server.url


def _proxy(url: str, telemetry: Telemetry, **options: Any) -> ProxyApp:
    retry = options.pop("adapter_retry", None)
    adapters = [
        OpenAIAdapter(base_url=url + "/v1", api_key=OPENAI_KEY, retry=retry),
        AnthropicAdapter(base_url=url, api_key=ANTHROPIC_KEY, retry=retry),
    ]
    return make_asgi_app(adapters, validate_credentials="off", telemetry=telemetry.otel, **options)


def _request_and_attempts(telemetry: Telemetry, attempts: int) -> tuple[Any, list[Any]]:
    assert wait_until(lambda: len(telemetry.spans.get_finished_spans()) == attempts + 1)
    spans = telemetry.spans.get_finished_spans()
    (request,) = [s for s in spans if not s.name.startswith("attempt ")]
    tried = sorted(
        (s for s in spans if s.name.startswith("attempt ")),
        key=lambda s: dict(s.attributes or {})["provider_proxy.attempt"],
    )
    return request, tried


def test_a_routed_request_has_a_child_span_per_attempt(
    faulty: tuple[Faults, FakeUpstream, str], telemetry: Telemetry
) -> None:
    faults, fake, url = faulty
    route = Route([Deployment("anthropic/claude-x"), Deployment("openai/gpt-x")])
    with serve(_proxy(url, telemetry, routes={"smart": route})) as server:
        faults.fail(1, status=503)
        response = httpx.post(
            server.url + "/v1/chat/completions",
            json={**CHAT, "model": "smart"},
            headers={"traceparent": TRACEPARENT},
            timeout=10,
        )
    assert response.status_code == 200
    request, (first, second) = _request_and_attempts(telemetry, 2)
    for attempt in (first, second):
        assert attempt.parent is not None
        assert attempt.parent.span_id == request.context.span_id  # under the request's span
        assert attempt.context.trace_id == request.context.trace_id
    assert first.name == "attempt anthropic/claude-x"
    assert dict(first.attributes or {}) == {
        "provider_proxy.deployment": "anthropic/claude-x",
        "provider_proxy.attempt": 1,
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-x",
        "http.response.status_code": 503,
        "error.type": "503",
    }
    assert first.status.status_code == StatusCode.ERROR
    assert second.name == "attempt openai/gpt-x"
    assert dict(second.attributes or {})["provider_proxy.attempt"] == 2
    assert dict(second.attributes or {})["http.response.status_code"] == 200
    assert "error.type" not in dict(second.attributes or {})
    assert second.status.status_code != StatusCode.ERROR
    # The provider's request nests under the attempt that sent it.
    served = format(second.context.span_id, "016x")
    assert fake.requests[-1].header("traceparent") == f"00-{TRACE_ID}-{served}-01"


def test_an_error_first_stream_attempt_names_the_error(
    faulty: tuple[Faults, FakeUpstream, str], telemetry: Telemetry
) -> None:
    faults, _, url = faulty
    retry = RetryPolicy(attempts=2, backoff=0.01)
    with serve(_proxy(url, telemetry, adapter_retry=retry)) as server:
        faults.error_event(1, "overloaded")
        response = httpx.post(
            server.url + "/openai/chat/completions", json={**CHAT, "stream": True}, timeout=10
        )
    assert response.status_code == 200
    request, (first, second) = _request_and_attempts(telemetry, 2)
    assert first.name == second.name == "attempt openai"
    assert dict(first.attributes or {})["error.type"] == "server_error"  # the canonical kind
    assert dict(first.attributes or {})["http.response.status_code"] == 200
    assert "error.type" not in dict(second.attributes or {})
    assert dict(request.attributes or {})["http.response.status_code"] == 200


def test_a_passthrough_retry_out_of_attempts_marks_each_attempt(
    faulty: tuple[Faults, FakeUpstream, str], telemetry: Telemetry
) -> None:
    faults, _, url = faulty
    retry = RetryPolicy(attempts=2, backoff=0.01)
    with serve(_proxy(url, telemetry, adapter_retry=retry)) as server:
        faults.fail(2, status=529)
        response = httpx.post(server.url + "/openai/chat/completions", json=CHAT, timeout=10)
    assert response.status_code == 529
    request, attempts = _request_and_attempts(telemetry, 2)
    assert [dict(a.attributes or {})["error.type"] for a in attempts] == ["529", "529"]
    assert request.status.status_code == StatusCode.ERROR


def test_captured_content_is_the_prompt_and_the_answer_as_span_events(
    faulty: tuple[Faults, FakeUpstream, str],
) -> None:
    _, _, url = faulty
    telemetry = Telemetry(capture_content=True)
    with serve(_proxy(url, telemetry)) as server:
        response = httpx.post(
            server.url + "/openai/chat/completions",
            json={**CHAT, "stream": True},
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            timeout=10,
        )
    assert response.status_code == 200
    assert wait_until(lambda: len(telemetry.spans.get_finished_spans()) == 1)
    [span] = telemetry.spans.get_finished_spans()
    events = {event.name: dict(event.attributes or {}) for event in span.events}
    prompt = events["gen_ai.content.prompt"]
    assert json.loads(prompt["gen_ai.prompt"]) == {**CHAT, "stream": True}
    assert prompt["provider_proxy.truncated"] is False
    completion = events["gen_ai.content.completion"]
    assert completion["gen_ai.completion"] == response.text  # the answer as the client got it
    assert "Hello" in completion["gen_ai.completion"]
    text = json.dumps(json.loads(span.to_json()))
    for secret in (CLIENT_KEY, OPENAI_KEY, ANTHROPIC_KEY):
        assert secret not in text


def test_captured_content_is_bounded(faulty: tuple[Faults, FakeUpstream, str]) -> None:
    _, _, url = faulty
    telemetry = Telemetry(capture_content=True, capture_limit=10)
    with serve(_proxy(url, telemetry)) as server:
        assert httpx.post(server.url + "/openai/chat/completions", json=CHAT).is_success
    assert wait_until(lambda: len(telemetry.spans.get_finished_spans()) == 1)
    [span] = telemetry.spans.get_finished_spans()
    events = {event.name: dict(event.attributes or {}) for event in span.events}
    assert events["gen_ai.content.prompt"]["gen_ai.prompt"] == '{"model":"'
    assert events["gen_ai.content.prompt"]["provider_proxy.truncated"] is True
    assert len(events["gen_ai.content.completion"]["gen_ai.completion"]) == 10


def test_content_is_not_captured_by_default(
    faulty: tuple[Faults, FakeUpstream, str], telemetry: Telemetry
) -> None:
    _, _, url = faulty
    with serve(_proxy(url, telemetry)) as server:
        assert httpx.post(server.url + "/openai/chat/completions", json=CHAT).is_success
    assert wait_until(lambda: len(telemetry.spans.get_finished_spans()) == 1)
    [span] = telemetry.spans.get_finished_spans()
    assert list(span.events) == []


def test_a_negative_capture_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="capture_limit"):
        OpenTelemetry(capture_limit=-1)


def test_an_attempt_without_a_request_span_makes_no_orphan_span(telemetry: Telemetry) -> None:
    with telemetry.otel.attempt("openai/gpt-x", 1) as attempt:
        attempt.status = 200
    assert telemetry.spans.get_finished_spans() == ()
    with (
        telemetry.otel.tracer.start_as_current_span("request"),
        telemetry.otel.attempt("openai/gpt-x", 1),
    ):
        pass
    names = [span.name for span in telemetry.spans.get_finished_spans()]
    assert names == ["attempt openai/gpt-x", "request"]
