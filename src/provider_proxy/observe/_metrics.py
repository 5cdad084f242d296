"""Prometheus metrics from the proxy's events (the ``prometheus`` extra).

The metrics live in a registry of their own, served by the proxy at
``GET {mount}/metrics``; given the host's registry they are registered there
too, so a host that already serves metrics shows them with its own.

Label values are bounded: ``provider`` is an adapter name (``none`` for the
proxy's own endpoints and unknown providers), ``status`` an HTTP status,
``kind`` one of a fixed set, and ``model`` (which comes from clients and
providers) is capped: after :data:`DEFAULT_MAX_MODELS` distinct models, later
ones are counted as ``other``; names are cut to :data:`MAX_MODEL_LENGTH`
characters, and a request whose model is unknown counts as ``unknown``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._events import ProxyEvent

#: Distinct ``model`` label values kept; later models count as ``other``.
DEFAULT_MAX_MODELS = 200
#: The longest ``model`` label value; longer names are cut.
MAX_MODEL_LENGTH = 128

#: Buckets of the latency histograms (seconds): model answers take up to minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Buckets of the overhead histogram (seconds): the proxy's own time is sub-millisecond.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

#: ``error_kind`` values that mean the provider could not be reached or broke off.
UPSTREAM_FAILURES = frozenset({"upstream_unreachable", "upstream_timeout", "upstream_stream_error"})


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(
            "PrometheusMetrics needs prometheus_client; install the 'prometheus' extra: "
            "pip install 'provider-proxy[prometheus]'."
        ) from exc
    return prometheus_client


class PrometheusMetrics:
    """Counters and histograms of the proxy's requests; an event sink.

    Pass it as ``metrics=`` to :func:`~provider_proxy.make_asgi_app` (or
    ``metrics=True`` for one with defaults): the engine hands it every event,
    calls :meth:`track_start` and :meth:`track_end` around each forwarded
    request, and serves :meth:`render` at ``GET {mount}/metrics``.

    All names start with ``namespace`` and ``_``:

    * ``requests_total{provider,status}``: requests answered, by the status the
      client got;
    * ``request_duration_seconds{provider}``: arrival to last byte (histogram);
    * ``time_to_first_byte_seconds{provider}``: arrival to the first body byte
      (histogram; requests that sent no body are not observed);
    * ``overhead_seconds{provider}``: the proxy's own time before the upstream
      request went out (histogram);
    * ``in_flight_requests{provider}``: requests being forwarded now (gauge);
    * ``tokens_total{provider,model,kind}``: tokens reported by providers; kind
      ``input`` (every prompt token, cached ones included), ``output``,
      ``cache_read`` and ``cache_write`` (parts of the input);
    * ``web_searches_total{provider,model}``: web searches providers ran and
      bill (:attr:`Usage.web_searches <provider_proxy.Usage.web_searches>`);
    * ``upstream_errors_total{provider,kind}``: the provider failed: kind
      ``upstream_unreachable``, ``upstream_timeout``, ``upstream_stream_error``
      (the stream broke mid-answer), or ``http_<status>`` for an error status
      it answered (4xx and 5xx);
    * ``errors_total{provider,kind}``: requests that did not complete normally,
      by the event's ``error_kind`` (the proxy's own error answers,
      ``client_disconnected``, ``upstream_stream_error``);
    * ``cost_usd_total{provider,model}``: what requests cost in USD (those whose
      cost is known); with ``cost_by_client=True`` also by ``client`` (the
      identity, capped like models at ``max_clients``, ``none`` without one).

    :param registry: the host's :class:`prometheus_client.CollectorRegistry` to
        register the metrics with as well (``prometheus_client.REGISTRY`` for
        the default one); one registry takes one set per ``namespace``.
    :param namespace: the prefix of every metric name.
    :param max_models: distinct ``model`` label values kept.
    :param buckets: the latency histograms' buckets, in seconds.
    :param cost_by_client: label the cost counter by client too (one series per
        client: only for a bounded number of clients).
    :param max_clients: distinct ``client`` label values kept; later ones count as ``other``.
    :raises ImportError: when ``prometheus_client`` is not installed.
    """

    def __init__(
        self,
        registry: Any = None,
        namespace: str = "provider_proxy",
        *,
        max_models: int = DEFAULT_MAX_MODELS,
        buckets: Sequence[float] = LATENCY_BUCKETS,
        cost_by_client: bool = False,
        max_clients: int = DEFAULT_MAX_MODELS,
    ) -> None:
        prom = _prometheus()
        self._prom = prom
        #: The registry :meth:`render` serves: these metrics and nothing else.
        self.registry = prom.CollectorRegistry(auto_describe=True)
        self.namespace = namespace
        self.max_models = max_models
        options: dict[str, Any] = {"namespace": namespace, "registry": None}
        self.requests = prom.Counter(
            "requests",
            "Requests answered, by provider and status.",
            ["provider", "status"],
            **options,
        )
        self.duration = prom.Histogram(
            "request_duration_seconds",
            "Time from a request's arrival to its last byte.",
            ["provider"],
            buckets=tuple(buckets),
            **options,
        )
        self.first_byte = prom.Histogram(
            "time_to_first_byte_seconds",
            "Time from a request's arrival to the first response body byte.",
            ["provider"],
            buckets=tuple(buckets),
            **options,
        )
        self.overhead = prom.Histogram(
            "overhead_seconds",
            "The proxy's own time before the upstream request was sent.",
            ["provider"],
            buckets=OVERHEAD_BUCKETS,
            **options,
        )
        self.in_flight = prom.Gauge(
            "in_flight_requests", "Requests being forwarded now.", ["provider"], **options
        )
        self.tokens = prom.Counter(
            "tokens",
            "Tokens reported by providers, by model and kind.",
            ["provider", "model", "kind"],
            **options,
        )
        self.web_searches = prom.Counter(
            "web_searches",
            "Web searches providers ran and bill, by model.",
            ["provider", "model"],
            **options,
        )
        self.upstream_errors = prom.Counter(
            "upstream_errors",
            "Provider failures: unreachable, timed out, broken streams and error statuses.",
            ["provider", "kind"],
            **options,
        )
        self.errors = prom.Counter(
            "errors",
            "Requests that did not complete normally, by error kind.",
            ["provider", "kind"],
            **options,
        )
        self.cost_by_client = cost_by_client
        self.max_clients = max_clients
        self.cost = prom.Counter(
            "cost_usd",
            "What requests cost in USD, by provider and model.",
            ["provider", "model", "client"] if cost_by_client else ["provider", "model"],
            **options,
        )
        self.route_attempts = prom.Counter(
            "route_attempts",
            "Attempts of requests for routes, by route, deployment and outcome (served or failed).",
            ["route", "deployment", "outcome"],
            **options,
        )
        collectors = (
            self.cost,
            self.route_attempts,
            self.requests,
            self.duration,
            self.first_byte,
            self.overhead,
            self.in_flight,
            self.tokens,
            self.upstream_errors,
            self.errors,
            self.web_searches,
        )
        for collector in collectors:
            self.registry.register(collector)
        if registry is not None:
            for index, collector in enumerate(collectors):
                try:
                    registry.register(collector)
                except ValueError:
                    for registered in collectors[:index]:
                        registry.unregister(registered)
                    raise
        self._models: set[str] = set()
        self._clients: set[str] = set()
        self._models_lock = threading.Lock()

    def watch_sessions(self, status: Callable[[], Mapping[str, Any]]) -> None:
        """Serve the conversation session counts ``status()`` returns (the app's
        :meth:`~provider_proxy.state.SessionStore.status`), read at each scrape:
        ``sessions_active`` (gauge) and ``sessions_total{outcome}`` (hits, misses,
        saved, restarted)."""
        import prometheus_client.core as families  # present: __init__ imported the package

        namespace = self.namespace

        class _Sessions:
            def collect(self) -> Any:
                counts = status()
                active = families.GaugeMetricFamily(
                    f"{namespace}_sessions_active",
                    "Conversation sessions of stateful upstreams alive in this process.",
                )
                active.add_metric([], counts.get("active", 0))
                total = families.CounterMetricFamily(
                    f"{namespace}_sessions",
                    "Conversation session lookups and saves, by outcome.",
                    labels=["outcome"],
                )
                for outcome in ("hits", "misses", "saved", "restarted"):
                    total.add_metric([outcome], counts.get(outcome, 0))
                return [active, total]

        self.registry.register(_Sessions())

    def __repr__(self) -> str:
        return f"PrometheusMetrics(namespace={self.namespace!r})"

    def track_start(self, provider: str) -> None:
        """A request to ``provider`` is being forwarded (the in-flight gauge goes up)."""
        self.in_flight.labels(provider).inc()

    def track_end(self, provider: str) -> None:
        """That request is done, however it ended."""
        self.in_flight.labels(provider).dec()

    def _model(self, model: str | None) -> str:
        if not model:
            return "unknown"
        model = model[:MAX_MODEL_LENGTH]
        if model in self._models:
            return model
        with self._models_lock:
            if len(self._models) < self.max_models:
                self._models.add(model)
                return model
        return "other"

    def _client(self, identity: str | None) -> str:
        if identity is None:
            return "none"
        identity = identity[:MAX_MODEL_LENGTH]
        if identity in self._clients:
            return identity
        with self._models_lock:
            if len(self._clients) < self.max_clients:
                self._clients.add(identity)
                return identity
        return "other"

    def __call__(self, event: ProxyEvent) -> None:
        """Count one finished request."""
        provider = event.provider or "none"
        self.requests.labels(provider, str(event.status)).inc()
        self.duration.labels(provider).observe(event.duration)
        if event.time_to_first_byte is not None:
            self.first_byte.labels(provider).observe(event.time_to_first_byte)
        if event.upstream_status is not None or event.error_kind in UPSTREAM_FAILURES:
            self.overhead.labels(provider).observe(event.overhead)
        if event.error_kind is not None:
            self.errors.labels(provider, event.error_kind).inc()
        if event.error_kind in UPSTREAM_FAILURES:
            self.upstream_errors.labels(provider, event.error_kind).inc()
        elif event.upstream_status is not None and 400 <= event.upstream_status <= 599:
            self.upstream_errors.labels(provider, f"http_{event.upstream_status}").inc()
        if event.route is not None:
            for index, deployment in enumerate(event.deployments, 1):
                served = index == len(event.deployments) and event.status < 400
                outcome = "served" if served else "failed"
                self.route_attempts.labels(event.route, deployment, outcome).inc()
        usage = event.usage
        if usage is not None:
            model = self._model(event.model)
            for kind, count in (
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cache_read", usage.cache_read_tokens),
                ("cache_write", usage.cache_write_tokens),
            ):
                if count is not None and count > 0:
                    self.tokens.labels(provider, model, kind).inc(count)
            if usage.web_searches:
                self.web_searches.labels(provider, model).inc(usage.web_searches)
        cost = event.cost
        if cost is not None and cost.total > 0:
            labels = [provider, self._model(event.model)]
            if self.cost_by_client:
                labels.append(self._client(event.identity))
            self.cost.labels(*labels).inc(float(cost.total))

    def render(self) -> tuple[bytes, str]:
        """These metrics in Prometheus' text format, and the content type to serve them with."""
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
