"""provider_proxy: an embeddable ASGI proxy for LLM provider APIs.

Mount :func:`make_asgi_app` under a prefix of your web app; your clients call
``{mount}/{provider}/...`` as they would call the provider, and the proxy adds
the provider's credentials and relays the answer as it streams.
"""

from .__version__ import __version__
from ._adapter import (
    Availability,
    BodyTransform,
    CredentialCheck,
    CredentialState,
    ModelInfo,
    ModelLookup,
    ProviderAdapter,
    RequestContext,
    Usage,
)
from ._app import DEFAULT_MAX_BODY_SIZE, ProxyApp, ProxyOptions, make_asgi_app
from ._cors import CORS, CORSMiddleware
from ._events import EventSink, ProxyEvent
from ._exceptions import (
    BadRequest,
    BodyTooLarge,
    ClientDisconnected,
    ClientNotAuthorized,
    EndpointNotAllowed,
    Forbidden,
    InvalidJSON,
    MethodNotAllowed,
    ModelNotAllowed,
    Overloaded,
    PathRefused,
    PoolExhausted,
    ProviderNotConfigured,
    ProviderNotFound,
    ProxyError,
    QuotaExceeded,
    RateLimited,
    StoreUnavailable,
    TooManyConcurrent,
    UpstreamStreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from ._guards import Admission, Guards, Quota, RateLimit
from ._metrics import PrometheusMetrics
from ._mount import mount
from ._redis_store import RedisStore
from ._secret import Secret
from ._sinks import JsonLogSink, NdjsonUsageSink
from ._store import MemoryStore, RateResult, Store
from ._upstream import DEFAULT_LIMITS, DEFAULT_TIMEOUT, default_transport
from ._validation import CredentialsRejected, ValidationMode

__all__ = [
    "CORS",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_TIMEOUT",
    "Admission",
    "Availability",
    "BadRequest",
    "BodyTooLarge",
    "BodyTransform",
    "CORSMiddleware",
    "ClientDisconnected",
    "ClientNotAuthorized",
    "CredentialCheck",
    "CredentialState",
    "CredentialsRejected",
    "EndpointNotAllowed",
    "EventSink",
    "Forbidden",
    "Guards",
    "InvalidJSON",
    "JsonLogSink",
    "MemoryStore",
    "MethodNotAllowed",
    "ModelInfo",
    "ModelLookup",
    "ModelNotAllowed",
    "NdjsonUsageSink",
    "Overloaded",
    "PathRefused",
    "PoolExhausted",
    "PrometheusMetrics",
    "ProviderAdapter",
    "ProviderNotConfigured",
    "ProviderNotFound",
    "ProxyApp",
    "ProxyError",
    "ProxyEvent",
    "ProxyOptions",
    "Quota",
    "QuotaExceeded",
    "RateLimit",
    "RateLimited",
    "RateResult",
    "RedisStore",
    "RequestContext",
    "Secret",
    "Store",
    "StoreUnavailable",
    "TooManyConcurrent",
    "UpstreamStreamError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "Usage",
    "ValidationMode",
    "__version__",
    "default_transport",
    "make_asgi_app",
    "mount",
]
