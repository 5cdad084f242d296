"""What one request did, as frozen facts: its arrival, the exchange's outcome, the report.

The engine writes no record as it goes: the app notes the :class:`Arrival`,
the forwarder returns a :class:`Report` (the route's facts and the
:class:`Outcome` of the exchange), and :func:`event_of` turns the two into the
request's one :class:`~provider_proxy.ProxyEvent`.
"""

from __future__ import annotations

import time
from dataclasses import field

from .._adapter import Usage, facts
from .._exceptions import ProxyError, UpstreamStreamError
from ..observe import ProxyEvent
from ..spend import Cost


@facts
class Arrival:
    """A request as it arrived: its id, method and when (``perf_counter`` and epoch)."""

    request_id: str
    method: str
    start: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)

    def since(self, moment: float | None) -> float | None:
        """Seconds from arrival to ``moment`` (a ``perf_counter`` reading), if any."""
        return None if moment is None else moment - self.start


@facts
class Outcome:
    """How the answer went: its status, timings (``perf_counter``), bytes and usage."""

    status: int
    upstream_status: int | None = None
    #: The proxy's error kind, ``"client_disconnected"`` or ``"upstream_stream_error"``.
    error_kind: str | None = None
    streamed: bool = False
    #: When the upstream request was handed to the transport.
    sent_at: float | None = None
    headers_at: float | None = None
    first_byte_at: float | None = None
    response_bytes: int = 0
    usage: Usage | None = None
    #: The model the answer named (when the request did not say).
    model: str | None = None
    #: The failure to raise to the server once the event is out: the answer had
    #: started, so the connection must be aborted rather than ended cleanly.
    abort: UpstreamStreamError | None = None
    #: Why the answer ended, as the provider said (per choice), when it was read.
    finish_reasons: tuple[str, ...] = ()

    @classmethod
    def refused(cls, error: ProxyError, response_bytes: int, sent_at: float | None) -> Outcome:
        """The proxy answered ``error`` itself."""
        return cls(
            error.status_code, error_kind=error.kind, response_bytes=response_bytes, sent_at=sent_at
        )

    @classmethod
    def client_left(cls, sent_at: float | None = None) -> Outcome:
        """The client went away before any answer (499, nginx's code for it)."""
        return cls(499, error_kind="client_disconnected", sent_at=sent_at)


@facts
class Report:
    """What the engine knows of a request once it is answered."""

    outcome: Outcome
    #: The adapter name, or ``None`` for the proxy's own endpoints and unknown providers.
    provider: str | None = None
    #: The path below the provider's name, without the query.
    path: str = ""
    #: The model the request named (after transforms), else ``None``.
    model: str | None = None
    identity: str | None = None
    request_bytes: int = 0
    #: The API format of the provider's path.
    dialect: str | None = None
    #: At the gateway: the client's format, and whether it was translated.
    client_dialect: str | None = None
    translated: bool = False
    #: At the gateway: the route named, and the deployments tried (the last answered).
    route: str | None = None
    deployments: tuple[str, ...] = ()
    #: The name of the pooled key the answer was sent with.
    key: str | None = None
    #: ``"turn"`` for a turn of a gateway socket (``{mount}/v1/responses``).
    websocket: str | None = None
    #: Why a failure of this request would not be (or was not) retried, when a
    #: retry policy applied: its body was over ``max_retry_body``.
    not_retried: str | None = None


def event_of(
    arrival: Arrival,
    report: Report,
    cost: Cost | None = None,
    cost_unknown: str | None = None,
) -> ProxyEvent:
    """The request's one event: built here, from its arrival, its report and its cost."""
    now = time.perf_counter()
    outcome = report.outcome
    sent = outcome.sent_at if outcome.sent_at is not None else now
    return ProxyEvent(
        request_id=arrival.request_id,
        provider=report.provider,
        method=arrival.method,
        path=report.path,
        model=report.model or outcome.model,
        identity=report.identity,
        status=outcome.status,
        upstream_status=outcome.upstream_status,
        error_kind=outcome.error_kind,
        streamed=outcome.streamed,
        started_at=arrival.started_at,
        time_to_headers=arrival.since(outcome.headers_at),
        time_to_first_byte=arrival.since(outcome.first_byte_at),
        duration=now - arrival.start,
        overhead=sent - arrival.start,
        request_bytes=report.request_bytes,
        response_bytes=outcome.response_bytes,
        usage=outcome.usage,
        dialect=report.dialect,
        client_dialect=report.client_dialect,
        translated=report.translated,
        cost=cost,
        cost_unknown=cost_unknown,
        route=report.route,
        deployments=report.deployments,
        key=report.key,
        websocket=report.websocket,
        not_retried=report.not_retried,
    )
