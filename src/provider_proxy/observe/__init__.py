"""Observation: events, sinks, metrics, the SSE parser and the usage tap."""

from ._events import EventSink, ProxyEvent
from ._metrics import PrometheusMetrics
from ._otel import AttemptSpan, OpenTelemetry
from ._recent import RecentTraffic
from ._sinks import EventDispatcher, JsonLogSink, NdjsonUsageSink
from ._sse import SSEEvent, SSEParser
from ._usage_tap import UsageTap

__all__ = [
    "AttemptSpan",
    "EventDispatcher",
    "EventSink",
    "JsonLogSink",
    "NdjsonUsageSink",
    "OpenTelemetry",
    "PrometheusMetrics",
    "ProxyEvent",
    "RecentTraffic",
    "SSEEvent",
    "SSEParser",
    "UsageTap",
]
