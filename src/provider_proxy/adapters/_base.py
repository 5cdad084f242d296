"""`BaseAdapter`: the :class:`~provider_proxy.ProviderAdapter` defaults a provider builds on.

A provider is usually a small subclass that sets ``default_name``,
``default_base_url``, ``default_api_key_env`` and, when it does not speak
OpenAI's formats, ``dialects``; it overrides :meth:`BaseAdapter.auth_headers`
where its credentials differ.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict, cast

import httpx
from typing_extensions import Unpack

from .._adapter import (
    Availability,
    BodyTransform,
    CredentialCheck,
    CredentialState,
    ModelInfo,
    RequestContext,
)
from .._bounded import AnswerTooLarge, send_bounded
from .._exceptions import ProviderNotConfigured
from .._secret import CONTROL_CHARACTERS, Secret, clean_credential
from ..dialects import Dialect, OpenAIChat, OpenAIResponses
from ..policy import EndpointRule, HeaderPolicy, RetryPolicy, endpoint_allowed, parse_rules
from ..transforms._compose import Composed, applies, checked_transforms
from ._identity import ClientIdentity
from ._keys import KeyPool, Keys

if TYPE_CHECKING:
    from ._tokens import TokenSource

#: An API key: the key itself, a :class:`~provider_proxy.Secret`, or a callable
#: that returns the current key (or ``None``), called for every request so keys
#: can rotate without a restart.
ApiKey = str | Secret | Callable[[], "str | Secret | None"]
#: What ``api_key=`` takes: a key, or several (a list, or names to keys) for a
#: :class:`~provider_proxy.adapters.KeyPool`, or a callable returning one or several.
ApiKeys = ApiKey | Keys | KeyPool | Callable[[], "str | Secret | Keys | None"]
#: A key as held: checked once when given, or a callable asked (and checked) each time.
KeySource = Secret | Callable[[], "str | Secret | None"] | None

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_AVAILABLE = Availability(True)
#: Endpoint decisions remembered per adapter (clients call few distinct paths).
_ENDPOINT_CACHE_SIZE = 1024


class ProviderOptions(TypedDict, total=False):
    """The options every adapter takes besides its name and base URL (see :class:`BaseAdapter`)."""

    api_key: ApiKeys | None
    api_key_env: str | Sequence[str] | None
    user_agent: str | None
    headers: Mapping[str, str] | None
    default_headers: Mapping[str, str] | None
    key_optional: bool | None
    allow: str | Iterable[str]
    transforms: Sequence[BodyTransform]
    forward_headers: str | Iterable[str]
    client_identity: ClientIdentity | None
    token_source: TokenSource | None
    sockets: Iterable[str] | None
    retry: RetryPolicy | None


class AdapterOptions(ProviderOptions, total=False):
    """:class:`BaseAdapter`'s keyword options: :class:`ProviderOptions`, a name and a base URL."""

    name: str | None
    base_url: str | httpx.URL | None


#: The formats each adapter class speaks to the gateway, with the ``dialects`` they
#: were chosen from (an instance with dialects of its own is worked out anew).
_GATEWAY_DIALECTS: dict[type, tuple[tuple[Dialect, ...], tuple[Dialect, ...]]] = {}


class BaseAdapter:
    """An OpenAI-style provider: ``Authorization: Bearer <key>`` and OpenAI error bodies."""

    default_name: ClassVar[str] = ""
    default_base_url: ClassVar[str] = ""
    #: The environment variable holding the key, or several tried in order.
    default_api_key_env: ClassVar[str | tuple[str, ...] | None] = None
    #: The header that carries the key, and the text before the key in it.
    auth_header: ClassVar[str] = "authorization"
    auth_scheme: ClassVar[str] = "Bearer "
    #: Headers the provider needs unless the client sends them (an API version);
    #: ``default_headers=`` adds to or overrides these.
    base_default_headers: ClassVar[Mapping[str, str]] = {}
    #: Whether the provider works without a key (a local model server).
    default_key_optional: ClassVar[bool] = False
    #: The API formats the provider speaks, the default first; :meth:`dialect_for`
    #: picks the one that recognises a path.
    dialects: ClassVar[tuple[Dialect, ...]] = (OpenAIChat(), OpenAIResponses())
    #: The formats the gateway sends this provider requests in; ``None``: its
    #: ``dialects``, but without the Responses API when it speaks Chat too. Most
    #: OpenAI-compatible servers (vLLM, Ollama, DashScope, OpenRouter, Copilot,
    #: Azure deployments) serve ``/responses`` for some models or not at all, so a
    #: Responses client at the gateway is translated to Chat for them; passthrough
    #: of ``{mount}/{name}/responses`` is unaffected. OpenAI's adapter speaks both.
    gateway_dialects: ClassVar[tuple[Dialect, ...] | None] = None
    #: The output formats (structured output: ``"json_object"``, ``"json_schema"``) the
    #: gateway may ask of this provider when it translates; a request for another is
    #: refused (400 naming the client's field). Narrow it for a server that has no
    #: ``response_format`` or no JSON schemas.
    output_formats: ClassVar[frozenset[str]] = frozenset({"json_object", "json_schema"})
    #: The endpoints forwarded by default (see :mod:`provider_proxy.policy._endpoints` for
    #: the rule syntax): the provider's inference API, nothing administrative.
    endpoints: ClassVar[tuple[str, ...]] = (
        "POST /chat/completions",
        "POST /completions",
        "POST /embeddings",
        "POST /responses",
        "POST /responses/input_tokens",
        "GET,DELETE /responses/*",
        "POST /responses/*/cancel",
        "GET /responses/*/input_items",
        "POST /moderations",
        "POST /audio/speech",
        "POST /audio/transcriptions",
        "POST /audio/translations",
        "POST /images/generations",
        "POST /images/edits",
        "POST /images/variations",
        "GET /models",
        "GET /models/**",
    )

    #: The WebSocket endpoints relayed (rules as in :attr:`endpoints`, method ``GET``):
    #: by default none, so a socket to any other path is refused.
    socket_endpoints: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Unpack[AdapterOptions]) -> None:
        """
        :param api_key_env: the environment variable to read the key from when
            ``api_key`` is not given (several are tried in order), read once, here.
        :param forward_headers: topology or URL-override headers of the client
            (``["x-forwarded-for"]``) forwarded all the same; by default none is.
        :param client_identity: the client presented upstream instead of the
            caller's; ``headers=`` and ``user_agent=`` still win over it.
        :param token_source: a :class:`~provider_proxy.adapters.TokenSource` of
            short-lived tokens, sent as the key is (``auth_header``, ``auth_scheme``).
        :param allow: endpoint rules forwarded beyond the adapter's ``endpoints``
            (``["GET,POST /files/**"]``; ``["* /**"]`` allows everything); a
            single string is one rule.
        :param transforms: body transforms for this provider's requests, run after
            the adapter's own :meth:`default_transforms`.
        :param sockets: the WebSocket endpoints relayed, instead of the adapter's
            :attr:`socket_endpoints` (``[]`` relays none).
        :param retry: how gateway requests naming this provider's models directly
            (``"openai/gpt-4.1"``) are retried; routes have their own.
        """
        name = options.get("name")
        name = self.default_name if name is None else name
        base_url = options.get("base_url")
        api_key = options.get("api_key")
        api_key_env = options.get("api_key_env")
        user_agent = options.get("user_agent")
        headers = options.get("headers")
        default_headers = options.get("default_headers")
        key_optional = options.get("key_optional")
        allow = options.get("allow", ())
        transforms = options.get("transforms", ())
        forward_headers = options.get("forward_headers", ())
        client_identity = options.get("client_identity")
        self._token_source = options.get("token_source")
        #: The retry policy of gateway requests for this provider's models, if any.
        self.retry: RetryPolicy | None = options.get("retry")
        if self._token_source is not None and options.get("api_key") is not None:
            raise ValueError(
                "Pass api_key= (sent as it is) or token_source= (short-lived tokens), not both."
            )
        if not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"Adapter name {name!r} must be 1-64 of lower-case letters, digits, '.', '_' "
                "or '-', starting with a letter or digit: it is a URL segment."
            )
        self._name = name
        self._base_url = _parse_base_url(base_url or self.default_base_url)
        envs = api_key_env if api_key_env is not None else self.default_api_key_env
        names = (envs,) if isinstance(envs, str) else tuple(envs or ())
        self._api_key_envs: tuple[str, ...] = tuple(name for name in names if name)
        what = f"The api_key of adapter {name!r}"
        self._pool: KeyPool | None = None
        self._key: KeySource
        if isinstance(api_key, KeyPool):  # built with options of its own
            self._key = self._pool = api_key
        elif isinstance(api_key, (list, tuple, Mapping)) or callable(api_key):
            self._key = self._pool = KeyPool(api_key, f"adapter {name!r}")
        else:
            # (a str is a Sequence too, which mypy cannot tell from a list here)
            self._key = key_source(cast("ApiKey | None", api_key), self._api_key_envs, what)
        identity = client_identity.fixed_headers() if client_identity is not None else None
        given = {**_header_map(identity, "client_identity"), **_header_map(headers, "headers")}
        if user_agent is not None:
            given["user-agent"] = user_agent
        self._headers: Mapping[str, str] = _header_map(given, "headers")
        self._header_policy = HeaderPolicy(
            forward_headers, client_identity.drop_prefixes if client_identity else ()
        )
        self._default_headers: Mapping[str, str] = {
            **_header_map(self.base_default_headers, "base_default_headers"),
            **_header_map(default_headers, "default_headers"),
        }
        self.key_optional = self.default_key_optional if key_optional is None else key_optional
        extra = (allow,) if isinstance(allow, str) else tuple(allow)
        self._endpoint_rules: tuple[EndpointRule, ...] = parse_rules((*self.endpoints, *extra))
        self._endpoint_cache: dict[tuple[str, str], bool] = {}
        sockets = options.get("sockets")
        self._socket_rules: tuple[EndpointRule, ...] = parse_rules(
            self.socket_endpoints if sockets is None else sockets
        )
        self._dialect_cache: dict[str, Dialect] = {}
        self._transforms = checked_transforms(
            (*self.default_transforms(), *transforms), f"The transforms of adapter {name!r}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, base_url={str(self.base_url)!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def base_url(self) -> httpx.URL:
        return self._base_url

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def default_headers(self) -> Mapping[str, str]:
        return self._default_headers

    @property
    def header_policy(self) -> HeaderPolicy:
        """Which of the client's headers go upstream: ``forward_headers`` and the
        client identity's dropped prefixes."""
        return self._header_policy

    @property
    def key_pool(self) -> KeyPool | None:
        """The adapter's keys when ``api_key=`` gave several (or a callable), else ``None``."""
        return self._pool

    def api_key(self) -> Secret | None:
        """The current key, or ``None`` when there is none.

        :raises ProviderNotConfigured: the key callable returned a key with a
            line break or control character inside.
        """
        key = self._key
        if not callable(key):  # a fixed key (or none): nothing to ask, nothing to check
            return key
        return key_from_callable(key(), f"The key callable of adapter {self.name!r}")

    def availability(self) -> Availability:
        source = self._token_source
        if source is not None:
            if source.configured:
                return _AVAILABLE
            return Availability(False, "No credential for its token source.")
        # A key callable is asked once per request, in auth_headers(), not here; a
        # fixed key (checked once, when the adapter was made) is there for good.
        if self._key is not None or self.key_optional:
            return _AVAILABLE
        return Availability(False, self._missing_key_reason())

    def current_availability(self) -> Availability:
        """:meth:`availability`, but a key callable is asked too: one that returns
        no key right now makes the adapter unavailable.

        :class:`~provider_proxy.adapters.FirstAvailableAdapter` asks this to pick
        a provider; it costs one call of the key callable.
        """
        availability = self.availability()
        if availability.enabled and not self.key_optional and callable(self._key):
            try:
                pool = self._pool
                has_key = pool.peek() if pool is not None else self.api_key() is not None
                if not has_key:
                    return Availability(
                        False, "No API key right now: its key callable returned none."
                    )
            except ProviderNotConfigured as exc:  # a key it cannot send
                return Availability(False, exc.message)
        return availability

    def _missing_key_reason(self) -> str:
        if self._api_key_envs:
            return (
                f"No API key: set {' or '.join(self._api_key_envs)} or pass api_key= "
                "to the adapter."
            )
        return "No API key: pass api_key= to the adapter."

    def auth_headers(
        self, context: RequestContext
    ) -> Mapping[str, str] | Awaitable[Mapping[str, str]]:
        """The credential headers; awaitable with a ``token_source`` (or in a subclass)."""
        if self._token_source is not None:
            return self._issued_auth(self._token_source)
        key = self.api_key()
        if key is None:
            if self.key_optional:
                return {}
            raise ProviderNotConfigured(
                f"The provider {self.name!r} has no API key right now: its key callable "
                "returned none."
            )
        return {self.auth_header: self.auth_scheme + key.reveal()}

    async def _issued_auth(self, source: TokenSource) -> Mapping[str, str]:
        token = await source.token()
        return {self.auth_header: self.auth_scheme + token.value.reveal()}

    def rewrite_url(self, url: httpx.URL, context: RequestContext) -> httpx.URL:
        return url

    def endpoint_allowed(self, method: str, path: str) -> bool:
        key = (method, path)
        allowed = self._endpoint_cache.get(key)
        if allowed is None:
            allowed = endpoint_allowed(self._endpoint_rules, method, path)
            if len(self._endpoint_cache) >= _ENDPOINT_CACHE_SIZE:
                self._endpoint_cache.clear()
            self._endpoint_cache[key] = allowed
        return allowed

    def opens_socket(self, path: str) -> bool:
        """Whether ``path`` (below the base URL, confined) is a provider socket the proxy relays."""
        return endpoint_allowed(self._socket_rules, "GET", path)

    def socket_auth(
        self, auth: Mapping[str, str], url: httpx.URL
    ) -> tuple[Mapping[str, str], httpx.URL]:
        """Where the credentials of :meth:`auth_headers` go on a socket's handshake:
        headers, by default; an adapter whose provider wants them in the URL moves them."""
        return auth, url

    def default_transforms(self) -> Sequence[BodyTransform]:
        """Transforms the provider always needs (none by default); called once, at init."""
        return ()

    def body_transform(self, context: RequestContext) -> BodyTransform | None:
        """The adapter's transforms that apply to this request, as one, or ``None``."""
        if not self._transforms:
            return None
        wanted = [t for t in self._transforms if applies(t, context)]
        if not wanted:
            return None
        return wanted[0] if len(wanted) == 1 else Composed(wanted)

    def serving(self) -> BaseAdapter:
        """Itself: an adapter serves its own requests."""
        return self

    def dialect_for(self, path: str) -> Dialect:
        """The first of :attr:`dialects` that recognises ``path``, else the first of them.

        Remembered per path (clients call few distinct paths), as endpoint decisions are.
        """
        found = self._dialect_cache.get(path)
        if found is None:
            found = next((d for d in self.dialects if d.recognizes(path)), self.dialects[0])
            if len(self._dialect_cache) >= _ENDPOINT_CACHE_SIZE:
                self._dialect_cache.clear()
            self._dialect_cache[path] = found
        return found

    def gateway_path(self, dialect: Dialect, operation: str) -> str | None:
        """Where this provider serves ``operation`` in ``dialect``'s format (the gateway
        sends there), or ``None`` when it does not speak that format to the gateway."""
        if dialect not in self._gateway_dialects():
            return None
        return dialect.operations.get(operation)

    def _gateway_dialects(self) -> tuple[Dialect, ...]:
        if self.gateway_dialects is not None:
            return self.gateway_dialects
        # Class attributes both: worked out once per class, not on every request.
        known = _GATEWAY_DIALECTS.get(type(self))
        if known is not None and known[0] is self.dialects:
            return known[1]
        speaks = self.dialects
        responses = tuple(d for d in speaks if isinstance(d, OpenAIResponses))
        chosen = speaks
        if len(responses) < len(speaks):  # Chat (or another format) beside Responses
            chosen = tuple(d for d in speaks if not isinstance(d, OpenAIResponses))
        _GATEWAY_DIALECTS[type(self)] = (speaks, chosen)
        return chosen

    async def aclose(self) -> None:
        """Close the token source, if any (adapters holding more resources override this)."""
        if self._token_source is not None:
            await self._token_source.aclose()

    # -- credentials and models -------------------------------------------------

    def credential_probe(self) -> httpx.Request | None:
        """A cheap request whose status tells whether the key is accepted."""
        return httpx.Request("GET", self.join("/models"))

    def probe_state(self, response: httpx.Response) -> CredentialState:
        """Map the probe's answer to a :class:`CredentialState`."""
        if response.is_success:
            return CredentialState.VALID
        if response.status_code in (401, 403):
            return CredentialState.AUTH_REJECTED
        return CredentialState.INCONCLUSIVE

    def models_request(self) -> httpx.Request:
        """The request that lists the provider's models (OpenAI's ``GET /models``)."""
        return httpx.Request("GET", self.join("/models"))

    async def validate_credentials(self, client: httpx.AsyncClient) -> CredentialCheck:
        if not self.availability().enabled:
            return CredentialCheck(CredentialState.NOT_CONFIGURED)
        probe = self.credential_probe()
        if probe is None:
            return CredentialCheck(
                CredentialState.INCONCLUSIVE, detail="no probe for this provider"
            )
        try:
            response = await self.send_own(client, probe)
        except httpx.HTTPError as exc:
            return CredentialCheck(CredentialState.NETWORK_ERROR, detail=type(exc).__name__)
        except AnswerTooLarge as exc:
            return CredentialCheck(CredentialState.NETWORK_ERROR, detail=str(exc))
        return CredentialCheck(self.probe_state(response), status_code=response.status_code)

    async def fetch_models(self, client: httpx.AsyncClient) -> list[ModelInfo]:
        response = await self.send_own(client, self.models_request())
        response.raise_for_status()
        return [self.model_info(item) for item in response.json().get("data", [])]

    def model_info(self, record: Mapping[str, Any]) -> ModelInfo:
        """One entry of the provider's model list, normalised."""
        return ModelInfo(
            id=str(record["id"]),
            provider=self.name,
            display_name=record.get("display_name") or record.get("name"),
            context_length=record.get("context_length") or record.get("context_window"),
            pricing=record.get("pricing"),
            raw=record,
        )

    def join(self, path: str) -> httpx.URL:
        """``base_url`` with ``path`` appended (for the adapter's own requests)."""
        base_url = self.base_url
        base = base_url.raw_path.partition(b"?")[0].rstrip(b"/")
        return base_url.copy_with(raw_path=base + path.encode("ascii"))

    async def send_own(self, client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
        """Send one of the adapter's own requests (probe, model list) with its credentials.

        The answer is read whole, but at most 4 MiB of it decoded
        (``_bounded.send_bounded``): a compression bomb raises ``AnswerTooLarge``
        instead of filling the host's memory.
        """
        context = RequestContext(self.name, request.method, request.url.path, b"", [], "internal")
        auth = self.auth_headers(context)
        if inspect.isawaitable(auth):
            auth = await auth
        for headers in (self.default_headers, self.headers, auth):
            for key, value in headers.items():
                request.headers[key] = value
        return await send_bounded(client, request)


def checked_key(key: str | Secret, what: str) -> Secret | None:
    """``key`` as a :class:`Secret`, stripped and checked; ``None`` when blank.

    :raises ValueError: a control character inside, naming ``what``, never the key.
    """
    value = clean_credential(key.reveal() if isinstance(key, Secret) else key, what)
    return Secret(value) if value else None


def key_source(value: ApiKey | None, envs: Sequence[str], what: str) -> KeySource:
    """Where a key comes from: a callable as given; else the key given, or the
    first of the environment variables ``envs`` that is set, checked here."""
    if callable(value):
        return value
    if value is not None:
        return checked_key(value, what)
    found = next((name for name in envs if os.environ.get(name)), None)
    return None if found is None else checked_key(os.environ[found], found)


def current_key(source: KeySource, what: str) -> Secret | None:
    """The key ``source`` holds now (a callable is asked, see :func:`key_from_callable`)."""
    return key_from_callable(source(), what) if callable(source) else source


def key_from_callable(key: str | Secret | None, what: str) -> Secret | None:
    """What a key callable returned, as :func:`checked_key` makes it.

    :raises ProviderNotConfigured: a key with a control character inside (a 503
        for the request, naming ``what``, never the key).
    """
    if not key:
        return None
    try:
        return checked_key(key, f"{what} returned a key that")
    except ValueError as exc:
        raise ProviderNotConfigured(str(exc)) from None


def _header_map(headers: Mapping[str, str] | None, what: str) -> dict[str, str]:
    """``headers`` with lower-case names, so later merges replace rather than duplicate."""
    lowered: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if CONTROL_CHARACTERS.search(name) or CONTROL_CHARACTERS.search(value):
            raise ValueError(
                f"{what}: header {name.strip()!r} has a line break or control character."
            )
        lowered[name.lower()] = value
    return lowered


def _parse_base_url(value: str | httpx.URL) -> httpx.URL:
    """``value`` as a URL requests can be joined to.

    :raises ValueError: showing at most scheme, host and path of ``value``:
        its userinfo or query may hold a credential.
    """
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        raise ValueError(
            "base_url must be an absolute http(s) URL; httpx cannot parse it."
        ) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {shown_url(url)}.")
    if url.userinfo:
        raise ValueError(
            f"base_url must not carry credentials; pass api_key= instead (got {shown_url(url)})."
        )
    if url.query or url.fragment or "?" in str(value) or "#" in str(value):
        # A query would be dropped from every request yet shown in /health and
        # /status: a key there would leak, and any other parameter do nothing.
        raise ValueError(
            f"base_url must not carry a query or a fragment (got {shown_url(url)}); pass "
            "api_key= for a key and headers= for anything else the provider needs."
        )
    return url


def shown_url(url: httpx.URL) -> str:
    """``url`` as an error message may show it: ``'scheme://host:port/path'``, no
    userinfo, query or fragment; without a host, nothing of it."""
    if not url.host:
        return "a URL without a host"
    port = f":{url.port}" if url.port is not None else ""
    return repr(f"{url.scheme}://{url.host}{port}{url.path}")
