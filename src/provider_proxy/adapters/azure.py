"""Azure OpenAI: deployment-style paths with ``api-version``, and the v1 API."""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar
from urllib.parse import unquote

import httpx
from typing_extensions import Unpack

from .._adapter import Availability, RequestContext
from .._exceptions import ProviderNotConfigured
from .._secret import Secret
from ..dialects import OpenAIChat, OpenAIResponses
from ..policy import with_default_param
from ._base import AdapterOptions, BaseAdapter, key_from_callable

#: The ``api-version`` sent when the client sends none: the latest GA version
#: of the Azure OpenAI inference API.
AZURE_API_VERSION = "2024-10-21"

#: Stands in for the endpoint while none is configured (the adapter is then
#: disabled, so nothing is sent there; ``.invalid`` never resolves).
_NO_ENDPOINT = "https://azure-openai-endpoint-not-configured.invalid"

#: Returns a current Microsoft Entra ID token (sync or async), or ``None``.
AzureADTokenProvider = Callable[[], "str | Secret | Awaitable[str | Secret | None] | None"]

_DEPLOYMENT_ENDPOINTS = (
    "chat/completions",
    "completions",
    "embeddings",
    "audio/transcriptions",
    "audio/translations",
    "audio/speech",
    "images/generations",
    "images/edits",
)
_ENDPOINTS = (
    *(f"POST /openai/deployments/*/{endpoint}" for endpoint in _DEPLOYMENT_ENDPOINTS),
    "POST /openai/responses",
    "GET,DELETE /openai/responses/*",
    "GET /openai/responses/*/input_items",
    "POST /openai/responses/*/cancel",
    "GET /openai/models",
    "GET /openai/models/*",
    # The v1 API (no api-version; the deployment is the body's "model").
    "POST /openai/v1/chat/completions",
    "POST /openai/v1/completions",
    "POST /openai/v1/embeddings",
    "POST /openai/v1/responses",
    "GET,DELETE /openai/v1/responses/*",
    "GET /openai/v1/responses/*/input_items",
    "POST /openai/v1/responses/*/cancel",
    # Token counting and compaction: v1 only, as Azure serves them.
    "POST /openai/v1/responses/input_tokens",
    "POST /openai/v1/responses/compact",
    "GET /openai/v1/models",
    "GET /openai/v1/models/*",
)


class AzureDeployments(OpenAIChat):
    """OpenAI Chat as Azure serves it: ``/openai/deployments/{deployment}/...`` names the
    model in the path (the deployment), whatever the body's ``model`` says."""

    #: The gateway sends to the v1 API, where the deployment is the body's ``model``.
    operations: ClassVar[Mapping[str, str]] = {"generate": "/openai/v1/chat/completions"}

    def model_in_path(self, path: str) -> str | None:
        decoded = unquote(path)
        marker = decoded.find("/deployments/")
        if marker < 0:
            return None
        return decoded[marker + len("/deployments/") :].partition("/")[0] or None


class AzureOpenAIAdapter(BaseAdapter):
    """Azure OpenAI, at a resource endpoint such as ``https://myres.openai.azure.com``.

    ``base_url`` is the resource endpoint as the openai SDK's
    ``AzureOpenAI(azure_endpoint=...)`` takes it (default: ``AZURE_OPENAI_ENDPOINT``);
    a trailing ``/openai`` is dropped, so ``https://myres.openai.azure.com/openai``
    works too. Requests keep the SDK's paths below it
    (``/openai/deployments/{deployment}/chat/completions``,
    ``/openai/v1/chat/completions``), so a client points ``azure_endpoint`` at
    ``{mount}/azure``. Without an endpoint the adapter is disabled and says so.

    The key (``api_key=``, else ``AZURE_OPENAI_API_KEY``) is sent in
    ``api-key``; or pass ``azure_ad_token=``, a callable (sync or async)
    returning a current Microsoft Entra ID token, sent as ``Authorization:
    Bearer`` (it wins over a key). ``api-version`` is added to the query when
    the client sent none (``api_version=``, else ``OPENAI_API_VERSION``, else
    :data:`~provider_proxy.adapters.azure.AZURE_API_VERSION`), except under
    ``/openai/v1/``, which takes none.
    """

    default_name = "azure"
    default_api_key_env = "AZURE_OPENAI_API_KEY"
    auth_header = "api-key"
    #: The Realtime socket (preview ``/openai/realtime?deployment=``, GA under
    #: ``/openai/v1``) and the v1 Responses socket.
    socket_endpoints = (
        "GET /openai/realtime",
        "GET /openai/v1/realtime",
        "GET /openai/v1/responses",
    )
    auth_scheme = ""
    dialects = (AzureDeployments(), OpenAIResponses())
    endpoints = _ENDPOINTS

    def __init__(
        self,
        *,
        api_version: str | None = None,
        azure_ad_token: AzureADTokenProvider | None = None,
        **options: Unpack[AdapterOptions],
    ) -> None:
        endpoint = options.get("base_url")
        if endpoint is None:
            endpoint = os.environ.get("AZURE_OPENAI_ENDPOINT")
        self._configured = bool(endpoint)
        options["base_url"] = _resource_endpoint(endpoint) if endpoint else _NO_ENDPOINT
        super().__init__(**options)
        self.api_version = api_version or os.environ.get("OPENAI_API_VERSION") or AZURE_API_VERSION
        self._ad_token = azure_ad_token

    def availability(self) -> Availability:
        if not self._configured:
            return Availability(
                False,
                "No endpoint: set AZURE_OPENAI_ENDPOINT or pass base_url= to the adapter "
                "(the resource endpoint, https://{resource}.openai.azure.com).",
            )
        if self._ad_token is not None:
            return Availability(True)
        availability = super().availability()
        if availability.enabled:
            return availability
        envs = " or ".join(self._api_key_envs)
        where = f"set {envs}, or pass" if envs else "pass"
        return Availability(
            False, f"No credentials: {where} api_key= or azure_ad_token= to the adapter."
        )

    def auth_headers(
        self, context: RequestContext
    ) -> Mapping[str, str] | Awaitable[Mapping[str, str]]:
        """``api-key``, or ``Authorization: Bearer`` with a token from ``azure_ad_token``."""
        if self._ad_token is None:
            return super().auth_headers(context)
        token = self._ad_token()
        if inspect.isawaitable(token):
            return self._bearer_later(token)
        return self._bearer(token)

    async def _bearer_later(self, token: Awaitable[str | Secret | None]) -> Mapping[str, str]:
        return self._bearer(await token)

    def _bearer(self, token: str | Secret | None) -> Mapping[str, str]:
        checked = key_from_callable(token, f"The azure_ad_token callable of {self.name!r}")
        value = checked.reveal() if checked is not None else None
        if not value:
            raise ProviderNotConfigured(
                f"The provider {self.name!r} has no Entra ID token right now: its "
                "azure_ad_token callable returned none."
            )
        return {"authorization": "Bearer " + value}

    def rewrite_url(self, url: httpx.URL, context: RequestContext) -> httpx.URL:
        """Add ``api-version`` when the client sent none (not under ``/openai/v1/``)."""
        if context.path.startswith("/openai/v1/") or context.path == "/openai/v1":
            return url
        return with_default_param(url, "api-version", self.api_version)

    def credential_probe(self) -> httpx.Request:
        return self.models_request()

    def models_request(self) -> httpx.Request:
        """``GET /openai/models``: the models the resource offers (not its deployments)."""
        return httpx.Request(
            "GET", self.join("/openai/models"), params={"api-version": self.api_version}
        )


def _resource_endpoint(value: str | httpx.URL) -> str | httpx.URL:
    """The endpoint without a trailing ``/openai`` (the SDK adds that itself)."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:  # refused, without quoting it, by BaseAdapter
        return value
    path = url.raw_path.partition(b"?")[0].rstrip(b"/")
    if path.endswith(b"/openai"):
        return url.copy_with(raw_path=path[: -len(b"/openai")] or b"/")
    return value
