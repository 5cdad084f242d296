from __future__ import annotations

import importlib

import pytest

import provider_proxy
import provider_proxy.adapters

#: Every layer package, each re-exporting what the others may use.
LAYERS = (
    "adapters",
    "config",
    "dialects",
    "engine",
    "guards",
    "observe",
    "policy",
    "spend",
    "state",
    "testing",
    "transforms",
    "transports",
)

#: The public names before the package was grouped into layers: each must still import.
EARLIER_PUBLIC = {
    "provider_proxy": (
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
        "aiohttp_transport",
        "default_transport",
        "http1_transport",
        "make_asgi_app",
        "mount",
        "reqwest_transport",
    ),
    "provider_proxy.adapters": (
        "AnthropicAdapter",
        "ApiKey",
        "AzureOpenAIAdapter",
        "BaseAdapter",
        "ClientIdentity",
        "CopilotAdapter",
        "CopilotTokenError",
        "DashScopeAdapter",
        "FirstAvailableAdapter",
        "GeminiAdapter",
        "OllamaAdapter",
        "OpenAIAdapter",
        "OpenAICompatibleAdapter",
        "OpenRouterAdapter",
        "VLLMAdapter",
    ),
    "provider_proxy.transforms": (
        "EXTENDED_TTL_BETA",
        "MAX_BREAKPOINTS",
        "AnthropicPromptCache",
        "Composed",
        "DropTools",
        "IncludeStreamUsage",
        "ModelAliases",
        "ParameterPolicy",
        "StripAnsi",
        "applies",
        "compose",
        "strip_ansi",
        "version_key",
    ),
}


def _sorted(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: (not n.isupper(), n))


@pytest.mark.parametrize("name", ["", *LAYERS])
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(f"provider_proxy.{name}" if name else "provider_proxy")
    assert module.__all__ == _sorted(module.__all__)
    for item in module.__all__:
        assert hasattr(module, item), item


def test_everything_public_is_in_all() -> None:
    public = {name for name in dir(provider_proxy) if not name.startswith("_")}
    assert public - {*LAYERS, "types"} <= set(provider_proxy.__all__)


@pytest.mark.parametrize("module", sorted(EARLIER_PUBLIC))
def test_every_earlier_public_name_still_imports(module: str) -> None:
    imported = importlib.import_module(module)
    missing = [name for name in EARLIER_PUBLIC[module] if not hasattr(imported, name)]
    assert missing == []


def test_version() -> None:
    assert provider_proxy.__version__.count(".") == 2
