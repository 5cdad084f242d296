"""The engine: the ASGI app, routing, forwarding, the relay and the proxy's own endpoints."""

from ._app import DEFAULT_MAX_BODY_SIZE, ProxyApp, ProxyOptions, make_asgi_app
from ._cors import CORS, CORSMiddleware
from ._images import ImageFetching, ImageNotFetched
from ._mount import mount
from ._ports import ProviderAtRoot
from ._responses_state import StoredResponses
from ._validation import CredentialsRejected, ValidationMode

__all__ = [
    "CORS",
    "DEFAULT_MAX_BODY_SIZE",
    "CORSMiddleware",
    "CredentialsRejected",
    "ImageFetching",
    "ImageNotFetched",
    "ProviderAtRoot",
    "ProxyApp",
    "ProxyOptions",
    "StoredResponses",
    "ValidationMode",
    "make_asgi_app",
    "mount",
]
