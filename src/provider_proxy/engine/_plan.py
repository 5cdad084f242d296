"""The plan of one forwarded request: where it goes, in which format, on whose behalf.

:class:`Route` holds what the path alone decides (the adapter, its dialect, the
confined path); :class:`Plan` adds what the guards and the body decided (the
identity, the model served, the limit headers) and the prebuilt upstream
request, as raw parts (an ``httpx.Request`` is built only for a transport that
needs one). Both are frozen: the exchange reads a plan and returns an
:class:`~provider_proxy.engine._report.Outcome`.
"""

from __future__ import annotations

from .._adapter import RequestContext, facts
from ..adapters import ProviderAdapter
from ..dialects import Dialect
from ..policy import RawHeaders
from ..transports import UpstreamRequest


@facts
class Route:
    """A request's provider, path and API format, checked: configured, confined, allowed."""

    #: The name the provider is mounted under (a group's, when a group chose the adapter).
    provider: str
    #: The adapter serving the request.
    adapter: ProviderAdapter
    dialect: Dialect
    method: str
    #: The path below the provider's name, confined, still percent-encoded.
    path: str
    #: The context transforms and the adapter see (without an identity yet).
    context: RequestContext


@facts
class Plan:
    """Everything the exchange needs, decided before a byte goes upstream."""

    route: Route
    request: UpstreamRequest
    #: The model served: the path's, else the (transformed) body's; ``None`` when unread.
    model: str | None
    identity: str | None
    #: The guards' ``X-RateLimit-*`` headers, for every answer to this request.
    limits: RawHeaders
    #: The route's context's, kept here too: the exchange reads it for every head it sends.
    request_id: str
