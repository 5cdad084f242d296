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
    ProviderAdapter,
    RequestContext,
)
from ._app import DEFAULT_MAX_BODY_SIZE, ProxyApp, make_asgi_app
from ._exceptions import (
    BadRequest,
    BodyTooLarge,
    ClientDisconnected,
    InvalidJSON,
    MethodNotAllowed,
    PathRefused,
    PoolExhausted,
    ProviderNotConfigured,
    ProviderNotFound,
    ProxyError,
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
    "CredentialCheck",
    "CredentialState",
    "InvalidJSON",
    "MethodNotAllowed",
    "ModelInfo",
    "PathRefused",
    "PoolExhausted",
    "ProviderAdapter",
    "ProviderNotConfigured",
    "ProviderNotFound",
    "ProxyApp",
    "ProxyError",
    "RequestContext",
    "Secret",
    "UpstreamStreamError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "__version__",
    "default_transport",
    "make_asgi_app",
    "mount",
]
