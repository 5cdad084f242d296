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
from ._app import DEFAULT_MAX_BODY_SIZE, ProxyApp, make_asgi_app
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
from ._mount import mount
from ._secret import Secret
from ._upstream import DEFAULT_LIMITS, DEFAULT_TIMEOUT, default_transport

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_TIMEOUT",
    "Availability",
    "BadRequest",
    "BodyTooLarge",
    "BodyTransform",
    "ClientDisconnected",
    "ClientNotAuthorized",
    "CredentialCheck",
    "CredentialState",
    "EndpointNotAllowed",
    "EventSink",
    "Forbidden",
    "InvalidJSON",
    "MethodNotAllowed",
    "ModelInfo",
    "ModelLookup",
    "ModelNotAllowed",
    "Overloaded",
    "PathRefused",
    "PoolExhausted",
    "ProviderAdapter",
    "ProviderNotConfigured",
    "ProviderNotFound",
    "ProxyApp",
    "ProxyError",
    "ProxyEvent",
    "QuotaExceeded",
    "RateLimited",
    "RequestContext",
    "Secret",
    "StoreUnavailable",
    "TooManyConcurrent",
    "UpstreamStreamError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "Usage",
    "__version__",
    "default_transport",
    "make_asgi_app",
    "mount",
]
