"""Prometheus metrics from events: names, labels, values, bounds and registries."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from provider_proxy import ProxyEvent, Usage, make_asgi_app
from provider_proxy.adapters import OpenAIAdapter
from provider_proxy.observe._metrics import MAX_MODEL_LENGTH, PrometheusMetrics

from .conftest import ALL, OPENAI_KEY
from .events import event
from .servers import ServerThread, serve

# The duration and the counts the sums below add up (the rest is the shared event's).
EVENT = event(duration=0.75, usage=Usage(100, 20, 80, 5))

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _render(metrics: PrometheusMetrics) -> Samples:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return _samples(body.decode())


def _event(**changes: Any) -> ProxyEvent:
    return dataclasses.replace(EVENT, **changes)


def test_requests_latency_and_tokens() -> None:
    metrics = PrometheusMetrics()
    metrics(EVENT)
    metrics(_event(duration=2.0, time_to_first_byte=1.5, usage=Usage(10, 2)))
    metrics(_event(provider="anthropic", model="claude-x", status=429, upstream_status=429))
    samples = _render(metrics)
    openai = (("provider", "openai"),)
    assert samples[("provider_proxy_requests_total", (*openai, ("status", "200")))] == 2
    assert (
        samples[("provider_proxy_requests_total", (("provider", "anthropic"), ("status", "429")))]
        == 1
    )
    assert samples[("provider_proxy_request_duration_seconds_count", openai)] == 2
    assert samples[("provider_proxy_request_duration_seconds_sum", openai)] == 2.75
    duration_le_1 = (("le", "1.0"), ("provider", "openai"))
    assert samples[("provider_proxy_request_duration_seconds_bucket", duration_le_1)] == 1
    assert samples[("provider_proxy_time_to_first_byte_seconds_count", openai)] == 2
    assert samples[("provider_proxy_time_to_first_byte_seconds_sum", openai)] == 1.8
    assert samples[("provider_proxy_overhead_seconds_count", openai)] == 2

    def tokens(kind: str, model: str = "gpt-4o", provider: str = "openai") -> float:
        labels = (("kind", kind), ("model", model), ("provider", provider))
        return samples[("provider_proxy_tokens_total", labels)]

    assert tokens("input") == 110
    assert tokens("output") == 22
    assert tokens("cache_read") == 80
    assert tokens("cache_write") == 5
    assert tokens("input", "claude-x", "anthropic") == 100


def test_upstream_errors_and_error_kinds() -> None:
    metrics = PrometheusMetrics()
    metrics(_event(status=500, upstream_status=500, usage=None))
    metrics(_event(status=503, upstream_status=503, usage=None))
    metrics(_event(status=401, upstream_status=401, usage=None))
    metrics(_event(status=504, upstream_status=None, error_kind="upstream_timeout", usage=None))
    metrics(_event(status=502, upstream_status=None, error_kind="upstream_unreachable"))
    metrics(_event(error_kind="upstream_stream_error"))
    metrics(_event(status=499, error_kind="client_disconnected"))
    # The proxy's own answers: an error kind, but not the provider's failure.
    metrics(_event(status=429, upstream_status=None, error_kind="rate_limited", usage=None))
    metrics(
        _event(provider=None, status=404, upstream_status=None, error_kind="provider_not_found")
    )
    samples = _render(metrics)

    def upstream(kind: str) -> float:
        key = ("provider_proxy_upstream_errors_total", (("kind", kind), ("provider", "openai")))
        return samples.get(key, 0)

    def errors(kind: str, provider: str = "openai") -> float:
        key = ("provider_proxy_errors_total", (("kind", kind), ("provider", provider)))
        return samples.get(key, 0)

    assert upstream("http_500") == upstream("http_503") == upstream("http_401") == 1
    assert upstream("upstream_timeout") == upstream("upstream_unreachable") == 1
    assert upstream("upstream_stream_error") == 1
    assert upstream("rate_limited") == upstream("client_disconnected") == 0
    assert upstream("http_200") == 0
    upstream_total = sum(v for (n, _), v in samples.items() if n.endswith("upstream_errors_total"))
    assert upstream_total == 6
    assert errors("rate_limited") == errors("client_disconnected") == 1
    assert errors("upstream_timeout") == errors("upstream_stream_error") == 1
    assert errors("provider_not_found", "none") == 1
    # The proxy's own refusal sent nothing upstream: no overhead observed for it.
    assert samples[("provider_proxy_overhead_seconds_count", (("provider", "openai"),))] == 7


def test_in_flight_gauge() -> None:
    metrics = PrometheusMetrics()
    metrics.track_start("openai")
    metrics.track_start("openai")
    metrics.track_start("anthropic")
    metrics.track_end("openai")
    samples = _render(metrics)
    assert samples[("provider_proxy_in_flight_requests", (("provider", "openai"),))] == 1
    assert samples[("provider_proxy_in_flight_requests", (("provider", "anthropic"),))] == 1


def test_model_label_is_bounded() -> None:
    metrics = PrometheusMetrics(max_models=2)
    for model in ("a", "b", "c", "d", "a", None, "", "x" * 1000):
        metrics(_event(model=model, usage=Usage(1, 0)))
    samples = _render(metrics)
    models = {
        dict(labels)["model"]: value
        for (name, labels), value in samples.items()
        if name == "provider_proxy_tokens_total"
    }
    assert models == {"a": 2, "b": 1, "other": 3, "unknown": 2}
    metrics = PrometheusMetrics()
    metrics(_event(model="y" * 1000))
    (long,) = {
        dict(labels)["model"]
        for (name, labels) in _render(metrics)
        if name == "provider_proxy_tokens_total"
    }
    assert long == "y" * MAX_MODEL_LENGTH


def test_zero_negative_and_missing_counts_add_nothing() -> None:
    metrics = PrometheusMetrics()
    metrics(_event(usage=Usage(0, None, -5, 0)))  # negative would make Counter.inc raise
    metrics(_event(usage=None))
    assert not any(name == "provider_proxy_tokens_total" for name, _ in _render(metrics))


def test_namespace_and_buckets() -> None:
    metrics = PrometheusMetrics(namespace="llm", buckets=(0.5, 1.0))
    metrics(EVENT)
    samples = _render(metrics)
    assert samples[("llm_requests_total", (("provider", "openai"), ("status", "200")))] == 1
    buckets = {
        dict(labels)["le"]
        for name, labels in samples
        if name == "llm_request_duration_seconds_bucket"
    }
    assert buckets == {"0.5", "1.0", "+Inf"}


def test_registered_with_the_host_registry_and_rendered_alone() -> None:
    host = CollectorRegistry()
    Counter("host_logins", "The host's own metric.", registry=host).inc()
    metrics = PrometheusMetrics(registry=host)
    metrics(EVENT)
    hosted = _samples(generate_latest(host).decode())
    assert hosted[("host_logins_total", ())] == 1
    key = ("provider_proxy_requests_total", (("provider", "openai"), ("status", "200")))
    assert hosted[key] == 1
    # The proxy's endpoint serves its own metrics only.
    own = _render(metrics)
    assert own[key] == 1
    assert ("host_logins_total", ()) not in own


def test_a_name_clash_in_the_host_registry_fails_cleanly() -> None:
    host = CollectorRegistry()
    first = PrometheusMetrics(registry=host)
    before = generate_latest(host)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusMetrics(registry=host)
    assert generate_latest(host) == before
    first(EVENT)
    PrometheusMetrics(registry=host, namespace="other")  # another namespace fits
    # A clash on the last metric: the ones registered before it are taken back.
    host = CollectorRegistry()
    Counter("errors", "The host's own.", namespace="provider_proxy", registry=host)
    before = generate_latest(host)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusMetrics(registry=host)
    assert generate_latest(host) == before


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"provider-proxy\[prometheus\]"):
        PrometheusMetrics()


def test_overhead_excludes_the_providers_time(upstream: ServerThread) -> None:
    delay = 0.4
    proxy = make_asgi_app(
        [OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY, allow=[ALL])],
        metrics=True,
        validate_credentials="off",
    )
    with serve(proxy) as server:
        answered = httpx.post(
            server.url + "/openai/chat/completions",
            json={"model": "gpt-4o", "messages": []},
            headers={"x-fake-delay": str(delay)},
            timeout=10,
        )
        assert answered.status_code == 200
        samples = _samples(httpx.get(server.url + "/metrics").text)
    openai = (("provider", "openai"),)
    assert samples[("provider_proxy_overhead_seconds_count", openai)] == 1
    # The request took the provider's delay; the proxy's own share does not hold it.
    assert samples[("provider_proxy_request_duration_seconds_sum", openai)] >= delay
    assert 0 < samples[("provider_proxy_overhead_seconds_sum", openai)] < delay
