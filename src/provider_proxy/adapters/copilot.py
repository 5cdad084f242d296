"""GitHub Copilot's API: OpenAI's chat, Responses and embeddings, Anthropic's messages.

Two kinds of credential:

* **a token the Copilot API takes as it is** (``api_key=``, or ``COPILOT_API_KEY``):
  sent as ``Authorization: Bearer``;
* **a GitHub OAuth token to exchange** (``github_token=``): the adapter trades it at
  GitHub's ``copilot_internal/v2/token`` endpoint for a short-lived Copilot token,
  caches that, renews it before it expires (one exchange at a time, however many
  requests are waiting) and follows the API host the answer names.

``GITHUB_TOKEN`` is not read unless asked for (``api_key_env="GITHUB_TOKEN"`` or
``github_token_env="GITHUB_TOKEN"``): in CI it is the workflow's token, which has
no Copilot access, and a general GitHub token should not travel to another
service by surprise.

The API host follows the GitHub server (``github_host=``): ``github.com`` uses
``https://api.githubcopilot.com``, GitHub Enterprise Cloud with data residency
(``acme.ghe.com``) ``https://copilot-api.acme.ghe.com``, and a GitHub Enterprise
Server ``https://api.enterprise.githubcopilot.com``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from typing_extensions import Unpack

from .._adapter import (
    Availability,
    CredentialCheck,
    CredentialState,
    ModelInfo,
    RequestContext,
)
from .._bounded import AnswerTooLarge, send_bounded
from .._exceptions import ProviderNotConfigured, ProxyError, UpstreamTimeout, UpstreamUnreachable
from .._secret import Secret
from ..dialects import AnthropicMessages, OpenAIChat, OpenAIResponses
from ._base import (
    AdapterOptions,
    ApiKey,
    BaseAdapter,
    KeySource,
    _parse_base_url,
    current_key,
    key_source,
)
from ._tokens import EXPIRY_SKEW as _EXPIRY_SKEW
from ._tokens import IssuedToken, TokenSource

logger = logging.getLogger("provider_proxy")

#: The integration id Copilot's own editor extension sends, and with it most
#: third-party clients; the API refuses requests without one.
DEFAULT_INTEGRATION_ID = "vscode-chat"
#: ``Editor-Version``: the API answers 400 ("missing Editor-Version header for IDE
#: auth") without it when the token is an editor's OAuth token.
DEFAULT_EDITOR_VERSION = "vscode/1.104.1"

#: Seconds before ``expires_at`` by which a Copilot token is renewed.
REFRESH_MARGIN = 60.0

_HOST_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_TOKEN_PATH = "/copilot_internal/v2/token"

#: The paths in Anthropic's format (the Messages API and its token counting).


class CopilotTokenError(ProxyError):
    """GitHub would not exchange the GitHub token for a Copilot token (never says the token).

    Answered with 502: the proxy's own credential, not the client's, was refused.
    """

    status_code = 502
    kind = "copilot_token_error"

    def __init__(self, message: str, *, upstream_status: int | None = None) -> None:
        super().__init__(message)
        #: The status GitHub answered the exchange with, if it answered.
        self.upstream_status = upstream_status


def parse_github_host(value: str) -> str:
    """The GitHub server's host name, from ``acme.ghe.com`` or ``https://acme.ghe.com/``."""
    text = value.strip()
    try:
        host = httpx.URL(text if "://" in text else f"https://{text}").host.lower().rstrip(".")
    except httpx.InvalidURL:
        host = ""
    if not _HOST_RE.fullmatch(host):
        # The host as parsed, not the value: that may carry userinfo or a query.
        got = repr(host) if host else "no host name"
        raise ValueError(f"github_host must be a host name such as 'github.com', got {got}.")
    return host


def copilot_api_url(host: str) -> str:
    """The Copilot API base URL for the GitHub server ``host``."""
    host = parse_github_host(host)
    if host == "github.com":
        return "https://api.githubcopilot.com"
    if host.endswith(".ghe.com"):
        return f"https://copilot-api.{host}"
    return "https://api.enterprise.githubcopilot.com"


def copilot_token_url(host: str) -> str:
    """Where a GitHub OAuth token of the server ``host`` is exchanged for a Copilot token."""
    host = parse_github_host(host)
    api = "api.github.com" if host == "github.com" else f"api.{host}"
    return f"https://{api}{_TOKEN_PATH}"


def _github_token(source: KeySource) -> Secret | None:
    return current_key(source, "The github_token callable")


#: A Copilot API token from an exchange (the generic :class:`IssuedToken`).
CopilotToken = IssuedToken


class TokenExchange(TokenSource):
    """Exchanges a GitHub OAuth token for Copilot tokens: cached, renewed early, single-flight.

    A token is renewed from ``refresh_in`` seconds after it was issued (at the
    latest ``margin`` seconds before ``expires_at``); until it expires, requests
    keep using it while one renewal runs in the background. Without a usable
    token every request waits for the same one exchange. A failed exchange is
    answered again for 10 seconds instead of asking GitHub once per request. A
    changed GitHub token (a key callable that rotated) is exchanged at once.

    :param github_token: the GitHub token, or a callable asked at every request.
    :param url: the exchange endpoint.
    :param headers: sent with the exchange besides the token (``Editor-Version``).
    :param client: the client for the exchange (left open); by default one of
        its own, closed by :meth:`aclose`.
    :param clock: epoch seconds (injectable for tests).
    """

    def __init__(
        self,
        github_token: KeySource,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        margin: float = REFRESH_MARGIN,
    ) -> None:
        super().__init__(github_token, clock=clock, what="GitHub token")
        self.url = _parse_base_url(url)
        self._headers = {"accept": "application/json", **(headers or {})}
        self._client = client
        self._owns_client = client is None
        self._margin = margin

    def __repr__(self) -> str:
        return f"TokenExchange(url={str(self.url)!r})"

    def github_token(self) -> Secret:
        """The current GitHub token; :class:`ProviderNotConfigured` when there is none."""
        return self.credential()

    def _client_now(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            if not self._owns_client:
                raise RuntimeError("The client passed to the Copilot token exchange is closed.")
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
        return self._client

    async def fetch(self, credential: Secret) -> CopilotToken:
        """One exchange of the GitHub token ``credential`` for a Copilot token."""
        source = credential
        host = self.url.host
        headers = {**self._headers, "authorization": "token " + source.reveal()}
        client = self._client_now()
        try:
            response = await send_bounded(
                client, client.build_request("GET", self.url, headers=headers)
            )
        except AnswerTooLarge as exc:
            raise UpstreamUnreachable(f"The Copilot token exchange failed: {exc}.") from None
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(
                f"The Copilot token exchange at {host} timed out ({type(exc).__name__})."
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(
                f"Could not reach {host} to exchange the GitHub token for a Copilot token "
                f"({type(exc).__name__})."
            ) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise UpstreamUnreachable(
                f"The Copilot token exchange at {host} failed with HTTP {status}; try again later."
            )
        if not response.is_success:
            raise CopilotTokenError(
                f"GitHub refused to issue a Copilot token (HTTP {status} from {host}): the "
                "GitHub token is invalid or expired, or its account has no Copilot access.",
                upstream_status=status,
            )
        return self._parse(response, source)

    def _parse(self, response: httpx.Response, source: Secret) -> CopilotToken:
        host = self.url.host
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            payload = {}
        value = payload.get("token")
        expires = _number(payload.get("expires_at"))
        if not isinstance(value, str) or not value or expires is None:
            raise CopilotTokenError(
                f"The Copilot token exchange at {host} answered without a token and its expiry.",
                upstream_status=response.status_code,
            )
        now = self._clock()
        if expires <= now + _EXPIRY_SKEW:
            raise CopilotTokenError(
                f"The Copilot token from {host} has already expired: is this machine's clock "
                "right?",
                upstream_status=response.status_code,
            )
        refresh_at = expires - self._margin
        refresh_in = _number(payload.get("refresh_in"))
        if refresh_in is not None and refresh_in > 0:
            refresh_at = min(refresh_at, now + refresh_in)
        # A short-lived token is still used for half its life.
        refresh_at = max(refresh_at, now + (expires - now) / 2)
        api = self._api_url(payload.get("endpoints"))
        return CopilotToken(Secret(value), expires, refresh_at, api, source)

    def _api_url(self, endpoints: Any) -> httpx.URL | None:
        api = endpoints.get("api") if isinstance(endpoints, dict) else None
        if not isinstance(api, str):
            return None
        try:
            url = _parse_base_url(api)
        except ValueError:
            url = None
        # Plain http only when the exchange itself is (a test server).
        if url is None or (url.scheme != "https" and self.url.scheme == "https"):
            logger.warning("ignored the Copilot API endpoint %r: not an https URL", api[:200])
            return None
        return url

    async def close(self) -> None:
        """Close the client the exchange opened itself."""
        client = self._client
        if self._owns_client and client is not None:
            self._client = None
            await client.aclose()


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class CopilotAdapter(BaseAdapter):
    """GitHub Copilot (``https://api.githubcopilot.com``) with a Copilot subscription.

    :param api_key: a token the Copilot API accepts as it is (a Copilot API token,
        or a GitHub token with Copilot access); by default ``COPILOT_API_KEY``.
    :param github_token: a GitHub OAuth token to exchange for short-lived Copilot
        tokens instead (or a callable returning the current one); not together
        with ``api_key``.
    :param github_token_env: read ``github_token`` from this environment variable.
    :param github_host: the GitHub server: ``github.com``, ``acme.ghe.com`` or a GitHub
        Enterprise Server host; it picks the API host and the exchange endpoint.
    :param base_url: the API base URL, instead of the one the host and the token
        exchange's ``endpoints.api`` would give.
    :param token_url: the exchange endpoint, instead of the one ``github_host`` gives.
    :param integration_id: the ``Copilot-Integration-Id`` header.
    :param editor_version: the ``Editor-Version`` header.
    :param client: the client for the token exchange (left open); by default the
        adapter opens its own, closed by :meth:`aclose` (the app calls it on shutdown).
    :param clock: epoch seconds, for the token's expiry (injectable for tests).

    ``user_agent``, ``headers``, ``default_headers``, ``allow`` and ``transforms`` are
    :class:`BaseAdapter`'s.
    """

    default_name = "copilot"
    default_base_url = "https://api.githubcopilot.com"
    default_api_key_env = "COPILOT_API_KEY"
    #: OpenAI's formats, and Anthropic's on ``/v1/messages`` (so each SDK reads its own errors).
    dialects = (OpenAIChat(), AnthropicMessages(), OpenAIResponses())
    endpoints = (
        "POST /chat/completions",
        "POST /responses",
        "POST /embeddings",
        "GET /models",
        # Claude models, in Anthropic's format (with the Copilot token as Bearer).
        "POST /v1/messages",
    )

    def __init__(
        self,
        *,
        github_token: ApiKey | None = None,
        github_token_env: str | None = None,
        github_host: str = "github.com",
        token_url: str | httpx.URL | None = None,
        integration_id: str = DEFAULT_INTEGRATION_ID,
        editor_version: str = DEFAULT_EDITOR_VERSION,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        **options: Unpack[AdapterOptions],
    ) -> None:
        host = parse_github_host(github_host)
        exchange = github_token is not None or github_token_env is not None
        if exchange and (options.get("api_key") is not None or options.get("api_key_env")):
            raise ValueError(
                "Pass api_key= (a token the Copilot API takes as it is) or github_token= "
                "(a GitHub OAuth token to exchange), not both."
            )
        fixed = {
            "copilot-integration-id": integration_id,
            "editor-version": editor_version,
            **{key.lower(): value for key, value in (options.get("headers") or {}).items()},
        }
        base_url = options.get("base_url")
        options["base_url"] = base_url or copilot_api_url(host)
        options["headers"] = fixed
        if exchange:
            options["api_key_env"] = ""  # in exchange mode there is no API key to look for
        super().__init__(**options)
        self.github_host = host
        self._pinned_base_url = base_url is not None
        self._announced_api: httpx.URL | None = None
        self._github_token_env = github_token_env
        self._exchange: TokenExchange | None = None
        if exchange:
            exchange_headers = {"editor-version": fixed["editor-version"]}
            agent = self.headers.get("user-agent")
            if agent is not None:
                exchange_headers["user-agent"] = agent
            self._exchange = TokenExchange(
                key_source(
                    github_token,
                    (github_token_env,) if github_token_env else (),
                    "The github_token",
                ),
                token_url or copilot_token_url(host),
                headers=exchange_headers,
                client=client,
                clock=clock,
            )

    @property
    def token_exchange(self) -> TokenExchange | None:
        """The token exchange when the adapter was given a GitHub token, else ``None``."""
        return self._exchange

    def availability(self) -> Availability:
        exchange = self._exchange
        if exchange is None:
            return super().availability()
        if exchange.configured:
            return Availability(True)
        where = f"set {self._github_token_env} or " if self._github_token_env else ""
        return Availability(False, f"No GitHub token to exchange: {where}pass github_token=.")

    def current_availability(self) -> Availability:
        """:meth:`availability`, with a GitHub token callable asked whether it has one now."""
        exchange = self._exchange
        if exchange is None:
            return super().current_availability()
        availability = self.availability()
        if availability.enabled:
            try:
                if _github_token(exchange.source) is None:
                    return Availability(
                        False, "No GitHub token right now: its key callable returned none."
                    )
            except ProviderNotConfigured as exc:  # a token it cannot send
                return Availability(False, exc.message)
        return availability

    def auth_headers(
        self, context: RequestContext
    ) -> Mapping[str, str] | Awaitable[Mapping[str, str]]:
        """``Authorization: Bearer``, with the key as given or a Copilot token from the exchange."""
        if self._exchange is None:
            return super().auth_headers(context)
        return self._exchanged_auth()

    @property
    def base_url(self) -> httpx.URL:
        """The API host the current Copilot token names (unless ``base_url=`` pinned
        one), else the GitHub server's.

        Derived from the token each time rather than stored: a request reads the
        host after its credentials, so the two always come from the same token.
        """
        exchange = self._exchange
        token = exchange.current if exchange is not None else None
        if token is not None and token.api is not None and not self._pinned_base_url:
            return token.api
        return self._base_url

    async def _exchanged_auth(self) -> Mapping[str, str]:
        assert self._exchange is not None
        token = await self._exchange.token()
        api = token.api
        if api is not None and not self._pinned_base_url and api != self._announced_api:
            self._announced_api = api
            logger.info("the Copilot API of %r is at %s", self.name, api)
        return {"authorization": "Bearer " + token.value.reveal()}

    async def validate_credentials(self, client: httpx.AsyncClient) -> CredentialCheck:
        """The exchange first (a refused GitHub token is ``auth_rejected``), then the probe."""
        if self._exchange is not None and self.availability().enabled:
            try:
                await self._exchanged_auth()
            except CopilotTokenError as exc:
                return CredentialCheck(
                    CredentialState.AUTH_REJECTED,
                    status_code=exc.upstream_status,
                    detail="the Copilot token exchange was refused",
                )
            except (UpstreamUnreachable, UpstreamTimeout) as exc:
                return CredentialCheck(CredentialState.NETWORK_ERROR, detail=exc.kind)
        return await super().validate_credentials(client)

    async def fetch_models(self, client: httpx.AsyncClient) -> list[ModelInfo]:
        if self._exchange is not None:
            await self._exchanged_auth()  # the exchange may move the API host
        return await super().fetch_models(client)

    def model_info(self, record: Mapping[str, Any]) -> ModelInfo:
        """Copilot lists the context window under ``capabilities.limits``."""
        info = super().model_info(record)
        capabilities = record.get("capabilities")
        limits = capabilities.get("limits") if isinstance(capabilities, dict) else None
        window = limits.get("max_context_window_tokens") if isinstance(limits, dict) else None
        if isinstance(window, int) and not isinstance(window, bool) and window > 0:
            info = dataclasses.replace(info, context_length=window)
        return info

    async def aclose(self) -> None:
        """Close the token exchange's own client (the app calls this on shutdown)."""
        if self._exchange is not None:
            await self._exchange.aclose()
