"""Prometheus metrics from the proxy's events (the ``prometheus`` extra)."""

from __future__ import annotations

from typing import Any

from ._events import ProxyEvent

#: Distinct model label values kept per metric; later models are counted as "other",
#: so a client sending random model names cannot grow the registry without bound.
MAX_MODELS = 200

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class PrometheusMetrics:
    """Counters and histograms of the proxy's requests, as an event sink.

    Pass it as ``metrics=`` to :func:`~provider_proxy.make_asgi_app` and the proxy
    serves it at ``GET {mount}/metrics``; with ``registry=`` the metrics are
    registered with the host's own registry too (then the host may serve them).

    Metrics (all prefixed with ``namespace``): ``requests_total{provider,status}``,
    ``request_duration_seconds{provider}``, ``time_to_first_byte_seconds{provider}``,
    ``in_flight_requests{provider}``, ``tokens_total{provider,model,kind}`` (kind:
    input, output, cache_read, cache_write) and ``errors_total{provider,kind}``.
    """

    def __init__(self, registry: Any = None, namespace: str = "provider_proxy") -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:  # pragma: no cover - the extra is installed in tests
            raise ImportError(
                "PrometheusMetrics needs prometheus_client: "
                "pip install 'provider-proxy[prometheus]'."
            ) from exc
        self._prom = prom
        self.registry = registry if registry is not None else prom.CollectorRegistry()
        options: dict[str, Any] = {"namespace": namespace, "registry": self.registry}
        self.requests = prom.Counter(
            "requests", "Requests by provider and status.", ["provider", "status"], **options
        )
        self.duration = prom.Histogram(
            "request_duration_seconds",
            "Time from a request's arrival to its last byte.",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            **options,
        )
        self.first_byte = prom.Histogram(
            "time_to_first_byte_seconds",
            "Time from a request's arrival to the first response body byte.",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            **options,
        )
        self.in_flight = prom.Gauge(
            "in_flight_requests", "Requests being served.", ["provider"], **options
        )
        self.tokens = prom.Counter(
            "tokens",
            "Tokens by provider, model and kind.",
            ["provider", "model", "kind"],
            **options,
        )
        self.errors = prom.Counter(
            "errors", "Failed requests by provider and error kind.", ["provider", "kind"], **options
        )
        self._models: set[str] = set()

    def __repr__(self) -> str:
        return "PrometheusMetrics()"

    def track_start(self, provider: str) -> None:
        self.in_flight.labels(provider).inc()

    def track_end(self, provider: str) -> None:
        self.in_flight.labels(provider).dec()

    def _model(self, model: str | None) -> str:
        if model is None:
            return "unknown"
        if model in self._models:
            return model
        if len(self._models) < MAX_MODELS:
            self._models.add(model)
            return model
        return "other"

    def __call__(self, event: ProxyEvent) -> None:
        provider = event.provider or "none"
        self.requests.labels(provider, str(event.status)).inc()
        self.duration.labels(provider).observe(event.duration)
        if event.time_to_first_byte is not None:
            self.first_byte.labels(provider).observe(event.time_to_first_byte)
        if event.error_kind is not None:
            self.errors.labels(provider, event.error_kind).inc()
        usage = event.usage
        if usage is not None:
            model = self._model(event.model)
            for kind, count in (
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cache_read", usage.cache_read_tokens),
                ("cache_write", usage.cache_write_tokens),
            ):
                if count:
                    self.tokens.labels(provider, model, kind).inc(count)

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
