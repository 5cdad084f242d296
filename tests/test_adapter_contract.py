"""The contract every adapter keeps: each built-in one and FirstAvailableAdapter, one suite.

It implements :class:`ProviderAdapter`; each of its endpoints has a dialect; it
refuses administrative endpoints by default; its credentials never carry a
client's; its ``repr`` never shows a key; its credential probe maps the
provider's answer to a :class:`CredentialState` (with each provider's
documented exceptions); ``aclose`` may be called twice.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

import provider_proxy.adapters as adapters_module
from provider_proxy import CredentialState, Provider, ProviderAdapter, RequestContext
from provider_proxy.adapters import (
    AnthropicAdapter,
    AzureOpenAIAdapter,
    BaseAdapter,
    CopilotAdapter,
    DashScopeAdapter,
    FirstAvailableAdapter,
    GeminiAdapter,
    OllamaAdapter,
    OpenAIAdapter,
    OpenAICompatibleAdapter,
    OpenRouterAdapter,
    QwenChatAdapter,
    StatefulAdapter,
    VLLMAdapter,
)
from provider_proxy.adapters.copilot import DEFAULT_EDITOR_VERSION
from provider_proxy.adapters.qwen_chat import BROWSER_USER_AGENT
from provider_proxy.dialects import Dialect

from .conftest import CLIENT_KEY

pytestmark = pytest.mark.anyio

KEY = "sk-contract-provider-key-0123456789"
GITHUB_TOKEN = "gho_contract-github-oauth-secret"
COPILOT_TOKEN = "cop-contract-exchanged-token-0123"
TOKEN_URL = "https://api.github.com/copilot_internal/v2/token"
BUSINESS_API = "https://api.business.githubcopilot.com"
AZURE = "https://myres.openai.azure.com"
UNSET = "PP_TEST_UNSET_CONTRACT_KEY"
NOW = 1_800_000_000.0
#: Every variable a built-in adapter reads a key or an endpoint from.
ENV = (
    *("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT"),
    *("OPENAI_API_VERSION", "COPILOT_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY"),
    *("OPENROUTER_API_KEY", "OLLAMA_API_KEY", "VLLM_API_KEY", "DASHSCOPE_API_KEY", UNSET),
    *("QWEN_TOKEN", "QWEN_COOKIES"),
)
QWEN_COOKIES = "token=contract-session-cookie-0123"
STATEFUL_FORMATS = {"/chat/completions": "openai-chat", "/v1/chat/completions": "openai-chat"}


OPENAI_FORMATS = {"/chat/completions": "openai-chat", "/responses": "openai-responses"}
BEARER = ("authorization", f"Bearer {KEY}")


@dataclasses.dataclass(frozen=True)
class Case:
    """One adapter as the contract sees it."""

    id: str
    #: The adapter, with :data:`KEY` (or a GitHub token to exchange).
    make: Callable[[], ProviderAdapter]
    #: The same adapter without any credential.
    keyless: Callable[[], ProviderAdapter]
    #: The credential probe: method and URL.
    probe: tuple[str, str]
    #: The credential header the provider takes, and its value.
    auth: tuple[str, str] = BEARER
    #: Other headers the probe carries.
    probe_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Headers the probe must not carry (a credential in the wrong place).
    not_sent: tuple[str, ...] = ()
    #: Answers mapped otherwise than by :data:`STATES`, as the provider documents them.
    states: Mapping[int, CredentialState] = dataclasses.field(default_factory=dict)
    #: A paths-to-dialect-name sample of the formats it serves.
    formats: Mapping[str, str] = dataclasses.field(default_factory=lambda: OPENAI_FORMATS)
    #: The check's ``detail`` on an answered probe.
    detail: str | None = None
    #: Whether a GitHub token is exchanged for a Copilot token first.
    exchanges: bool = False
    #: Whether it works without a key (a local server).
    key_optional: bool = False


def _copilot_exchange() -> CopilotAdapter:
    return CopilotAdapter(github_token=GITHUB_TOKEN, clock=lambda: NOW)


def _first_available(**key: Any) -> FirstAvailableAdapter:
    return FirstAvailableAdapter(
        "llm",
        [
            OpenAIAdapter(api_key_env=UNSET),
            OpenAICompatibleAdapter("backup", "https://backup.example/v1", **key),
        ],
    )


CASES = [
    Case(
        "base",
        lambda: BaseAdapter(name="acme", base_url="https://llm.acme.example/v1", api_key=KEY),
        lambda: BaseAdapter(name="acme", base_url="https://llm.acme.example/v1"),
        ("GET", "https://llm.acme.example/v1/models"),
    ),
    Case(
        "openai",
        lambda: OpenAIAdapter(api_key=KEY),
        OpenAIAdapter,
        ("GET", "https://api.openai.com/v1/models"),
        formats={**OPENAI_FORMATS, "/embeddings": "openai-chat"},
    ),
    Case(
        "openai-compatible",
        lambda: OpenAICompatibleAdapter("gw", "https://gw.example/v1", api_key=KEY),
        lambda: OpenAICompatibleAdapter("gw", "https://gw.example/v1"),
        ("GET", "https://gw.example/v1/models"),
    ),
    Case(
        "anthropic",
        lambda: AnthropicAdapter(api_key=KEY),
        AnthropicAdapter,
        ("POST", "https://api.anthropic.com/v1/messages"),
        ("x-api-key", KEY),
        probe_headers={"anthropic-version": "2023-06-01"},
        not_sent=("authorization",),
        # An empty body is refused with 400 only once the key was accepted.
        states={400: CredentialState.VALID},
        formats={"/v1/messages": "anthropic-messages", "/v1/complete": "anthropic-messages"},
    ),
    Case(
        "azure",
        lambda: AzureOpenAIAdapter(base_url=AZURE + "/openai", api_key=KEY),
        lambda: AzureOpenAIAdapter(base_url=AZURE),
        ("GET", AZURE + "/openai/models?api-version=2024-10-21"),
        ("api-key", KEY),
        not_sent=("authorization",),
        formats={
            "/openai/deployments/d/chat/completions": "openai-chat",
            "/openai/v1/chat/completions": "openai-chat",
            "/openai/v1/responses": "openai-responses",
        },
    ),
    Case(
        "copilot",
        lambda: CopilotAdapter(api_key=KEY),
        CopilotAdapter,
        ("GET", "https://api.githubcopilot.com/models"),
        probe_headers={
            "copilot-integration-id": "vscode-chat",
            "editor-version": DEFAULT_EDITOR_VERSION,
        },
        # Errors on /v1/messages come in Anthropic's format, the others in OpenAI's.
        formats={**OPENAI_FORMATS, "/v1/messages": "anthropic-messages"},
    ),
    Case(
        "copilot-exchange",
        _copilot_exchange,
        lambda: CopilotAdapter(github_token_env=UNSET),
        # The exchange's answer names the API host; the probe follows it.
        ("GET", BUSINESS_API + "/models"),
        ("authorization", f"Bearer {COPILOT_TOKEN}"),
        probe_headers={
            "copilot-integration-id": "vscode-chat",
            "editor-version": DEFAULT_EDITOR_VERSION,
        },
        formats={**OPENAI_FORMATS, "/v1/messages": "anthropic-messages"},
        exchanges=True,
    ),
    Case(
        "gemini",
        lambda: GeminiAdapter(api_key=KEY),
        GeminiAdapter,
        ("GET", "https://generativelanguage.googleapis.com/v1beta/models?pageSize=1"),
        ("x-goog-api-key", KEY),
        not_sent=("authorization",),
        formats={
            "/v1beta/models/gemini-2.0-flash:generateContent": "gemini",
            "/v1/models/gemini-2.0-flash:streamGenerateContent": "gemini",
            "/v1beta/openai/chat/completions": "openai-chat",
        },
    ),
    Case(
        "openrouter",
        lambda: OpenRouterAdapter(api_key=KEY),
        OpenRouterAdapter,
        # GET /models answers without a key; GET /key needs a valid one.
        ("GET", "https://openrouter.ai/api/v1/key"),
    ),
    Case(
        "ollama",
        lambda: OllamaAdapter(api_key=KEY),
        OllamaAdapter,
        ("GET", "http://localhost:11434/v1/models"),
        key_optional=True,
    ),
    Case(
        "vllm",
        lambda: VLLMAdapter(api_key=KEY),
        VLLMAdapter,
        ("GET", "http://localhost:8000/v1/models"),
        key_optional=True,
    ),
    Case(
        "dashscope",
        lambda: DashScopeAdapter(api_key=KEY),
        DashScopeAdapter,
        ("GET", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/models"),
    ),
    Case(
        "stateful",
        lambda: StatefulAdapter(name="st", base_url="https://st.example/api", api_key=KEY),
        lambda: StatefulAdapter(name="st", base_url="https://st.example/api"),
        ("GET", "https://st.example/api/models"),
        formats=STATEFUL_FORMATS,
    ),
    Case(
        "qwen-chat",
        lambda: QwenChatAdapter(api_key=KEY, cookies=QWEN_COOKIES),
        QwenChatAdapter,
        ("GET", "https://chat.qwen.ai/api/models"),
        ("bx-umidtoken", KEY),
        probe_headers={"cookie": QWEN_COOKIES, "user-agent": BROWSER_USER_AGENT},
        not_sent=("authorization",),
        formats=STATEFUL_FORMATS,
    ),
    Case(
        "first-available",
        lambda: _first_available(api_key=KEY),
        _first_available,
        ("GET", "https://backup.example/v1/models"),
        detail="backup",  # the check names the adapter that answered
    ),
]
every_adapter = pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])

#: The standard mapping of a probe's answer.
STATES = {
    200: CredentialState.VALID,
    400: CredentialState.INCONCLUSIVE,
    401: CredentialState.AUTH_REJECTED,
    403: CredentialState.AUTH_REJECTED,
    404: CredentialState.INCONCLUSIVE,
    429: CredentialState.INCONCLUSIVE,
    500: CredentialState.INCONCLUSIVE,
    529: CredentialState.INCONCLUSIVE,
}

#: Administrative endpoints no adapter forwards unless the operator allows them.
ADMIN = [
    ("POST", "/files"),
    ("GET", "/files"),
    ("DELETE", "/files/file-1"),
    ("DELETE", "/organization"),
    ("GET", "/organization/api_keys"),
    ("POST", "/organization/admin_api_keys"),
    ("GET", "/organization/usage/completions"),
    ("POST", "/fine_tuning/jobs"),
    ("POST", "/batches"),
    ("POST", "/uploads"),
    ("POST", "/assistants"),
    ("POST", "/vector_stores"),
    ("DELETE", "/models/ft-model"),
    ("POST", "/messages/batches"),
    ("PATCH", "/deployments/d"),
    ("DELETE", "/deployments/d"),
    ("POST", "/cachedContents"),
    ("POST", "/tunedModels"),
]
#: Where providers put their APIs below the base URL.
PREFIXES = ("", "/v1", "/v1beta", "/openai", "/openai/v1")


@pytest.fixture(autouse=True)
def _no_keys_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def _exchange_answer(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=TOKEN_URL,
        match_headers={"authorization": f"token {GITHUB_TOKEN}"},
        json={
            "token": COPILOT_TOKEN,
            "expires_at": int(NOW + 1800),
            "refresh_in": 1500,
            "endpoints": {"api": BUSINESS_API},
        },
    )


def _prepare(case: Case, httpx_mock: HTTPXMock) -> None:
    """What the adapter asks before its first request (the Copilot token exchange)."""
    if case.exchanges:
        _exchange_answer(httpx_mock)


def _endpoints(adapter: ProviderAdapter) -> Iterator[tuple[str, str]]:
    """A concrete ``(method, path)`` for each of the adapter's endpoint rules."""
    adapter = adapter.serving()
    assert isinstance(adapter, BaseAdapter)
    for rule in type(adapter).endpoints:
        methods, pattern = rule.split(" ", 1)
        path = pattern.replace("**", "x/y").replace("*", "x")
        for method in methods.split(","):
            yield method, path


def _declared_dialects(adapter: ProviderAdapter) -> tuple[Dialect, ...]:
    adapter = adapter.serving()
    assert isinstance(adapter, BaseAdapter)
    return type(adapter).dialects


async def _auth(adapter: ProviderAdapter, context: RequestContext) -> Mapping[str, str]:
    auth = adapter.auth_headers(context)
    if inspect.isawaitable(auth):
        auth = await auth
    return auth


def test_every_adapter_class_runs_the_contract() -> None:
    tested = {type(case.make()) for case in CASES}
    exported = {
        cls
        for name in adapters_module.__all__
        if isinstance(cls := getattr(adapters_module, name), type)
        and (issubclass(cls, BaseAdapter) or cls is FirstAvailableAdapter)
    }
    assert exported <= tested, exported - tested


# -- shape -----------------------------------------------------------------------------


@every_adapter
def test_implements_the_protocol(case: Case) -> None:
    adapter = case.make()
    assert isinstance(adapter, Provider)
    assert isinstance(adapter.serving(), ProviderAdapter)
    assert adapter.availability().enabled
    assert adapter.current_availability().enabled
    assert isinstance(adapter.serving().base_url, httpx.URL)
    assert not case.keyless().availability().enabled or case.key_optional


@every_adapter
def test_each_endpoint_has_a_dialect(case: Case) -> None:
    adapter = case.make().serving()  # the adapter serving requests
    declared = _declared_dialects(adapter)
    endpoints = list(_endpoints(adapter))
    assert endpoints
    for method, path in endpoints:
        assert adapter.endpoint_allowed(method, path), (method, path)
        dialect = adapter.dialect_for(path)
        assert isinstance(dialect, Dialect), path
        assert dialect in declared, (path, dialect)
        # The format that recognises the path, when one of its formats does.
        if any(d.recognizes(path) for d in declared):
            assert dialect.recognizes(path), (path, dialect)
    for path, name in case.formats.items():
        assert adapter.dialect_for(path).name == name, path


@every_adapter
def test_administrative_endpoints_are_refused_by_default(case: Case) -> None:
    adapter = case.make().serving()  # the adapter serving requests
    for prefix, (method, path) in ((p, e) for p in PREFIXES for e in ADMIN):
        assert not adapter.endpoint_allowed(method, prefix + path), (method, prefix + path)


# -- credentials -----------------------------------------------------------------------


@every_adapter
async def test_auth_headers_never_carry_the_clients(case: Case, httpx_mock: HTTPXMock) -> None:
    _prepare(case, httpx_mock)
    adapter = case.make().serving()  # the adapter serving requests
    client = CLIENT_KEY.encode()
    context = RequestContext(
        adapter.name,
        "POST",
        "/chat/completions",
        b"key=" + client,
        [
            (b"authorization", b"Bearer " + client),
            (b"x-api-key", client),
            (b"api-key", client),
            (b"x-goog-api-key", client),
            (b"cookie", b"session=" + client),
        ],
        "rid-contract",
    )
    auth = await _auth(adapter, context)
    assert all(CLIENT_KEY not in name + value for name, value in auth.items()), auth
    header, value = case.auth
    assert dict(auth)[header] == value
    await adapter.aclose()


@every_adapter
async def test_repr_never_shows_a_key(case: Case, httpx_mock: HTTPXMock) -> None:
    _prepare(case, httpx_mock)
    adapter = case.make().serving()  # the adapter serving requests
    secrets = (KEY, GITHUB_TOKEN, COPILOT_TOKEN)
    assert not any(secret in repr(adapter) or secret in str(adapter) for secret in secrets)
    context = RequestContext(adapter.name, "POST", "/chat/completions", b"", [], "rid")
    await _auth(adapter, context)  # a key asked for, a token exchanged and cached
    assert not any(secret in repr(adapter) or secret in str(adapter) for secret in secrets)
    await adapter.aclose()


# -- the credential probe --------------------------------------------------------------


def _check_probe(case: Case, request: httpx.Request | None) -> None:
    assert request is not None
    method, url = case.probe
    assert (request.method, str(request.url)) == (method, url)
    header, value = case.auth
    assert request.headers[header] == value
    for name, expected in case.probe_headers.items():
        assert request.headers[name] == expected
    for name in case.not_sent:
        assert name not in request.headers
    assert KEY not in str(request.url)


@every_adapter
@pytest.mark.parametrize("status", sorted(STATES))
async def test_probe_answer_maps_to_a_state(case: Case, status: int, httpx_mock: HTTPXMock) -> None:
    _prepare(case, httpx_mock)
    method, url = case.probe
    httpx_mock.add_response(method=method, url=url, status_code=status, json={})
    adapter = case.make()
    async with httpx.AsyncClient() as client:
        check = await adapter.validate_credentials(client)
    expected = case.states.get(status, STATES[status])
    assert (check.state, check.status_code, check.detail) == (expected, status, case.detail)
    _check_probe(case, httpx_mock.get_requests()[-1])
    assert not any(secret in repr(check) for secret in (KEY, GITHUB_TOKEN, COPILOT_TOKEN))
    await adapter.aclose()


@every_adapter
@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.ReadError("reset")],
    ids=lambda error: type(error).__name__,
)
async def test_probe_network_error(
    case: Case, error: httpx.TransportError, httpx_mock: HTTPXMock
) -> None:
    _prepare(case, httpx_mock)
    httpx_mock.add_exception(error, url=case.probe[1])
    adapter = case.make()
    async with httpx.AsyncClient() as client:
        check = await adapter.validate_credentials(client)
    name = type(error).__name__
    assert check.state is CredentialState.NETWORK_ERROR
    assert check.detail == (f"{case.detail}: {name}" if case.detail else name)
    await adapter.aclose()


@every_adapter
async def test_probe_without_credentials(case: Case, httpx_mock: HTTPXMock) -> None:
    adapter = case.keyless()
    if case.key_optional:  # a local server: probed without a key
        httpx_mock.add_response(url=case.probe[1], json={"data": []})
    async with httpx.AsyncClient() as client:
        check = await adapter.validate_credentials(client)
    if case.key_optional:
        assert check.state is CredentialState.VALID
        (request,) = httpx_mock.get_requests()
        assert case.auth[0] not in request.headers
    else:
        assert check.state is CredentialState.NOT_CONFIGURED
        assert not httpx_mock.get_requests()  # nothing was sent anywhere
    await adapter.aclose()


GEMINI_KEY_INVALID = {
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ],
    }
}


@pytest.mark.parametrize(
    ("body", "state"),
    [
        # Google answers a key it does not know with 400 API_KEY_INVALID, not 401.
        (GEMINI_KEY_INVALID, CredentialState.AUTH_REJECTED),
        ({"error": {"code": 400, "status": "FAILED_PRECONDITION"}}, CredentialState.INCONCLUSIVE),
    ],
    ids=["API_KEY_INVALID", "other 400"],
)
async def test_gemini_reads_a_400s_reason(
    body: dict[str, Any], state: CredentialState, httpx_mock: HTTPXMock
) -> None:
    (case,) = (case for case in CASES if case.id == "gemini")
    httpx_mock.add_response(url=case.probe[1], status_code=400, json=body)
    async with httpx.AsyncClient() as client:
        check = await case.make().validate_credentials(client)
    assert (check.state, check.status_code) == (state, 400)
    _check_probe(case, httpx_mock.get_request())


@pytest.mark.parametrize(
    ("status", "state"),
    [(401, CredentialState.AUTH_REJECTED), (503, CredentialState.NETWORK_ERROR)],
)
async def test_copilot_reports_a_failed_exchange_without_probing(
    status: int, state: CredentialState, httpx_mock: HTTPXMock
) -> None:
    # A refused GitHub token is the credential's fault; GitHub failing is the network's.
    httpx_mock.add_response(url=TOKEN_URL, status_code=status)
    adapter = _copilot_exchange()
    async with httpx.AsyncClient() as client:
        check = await adapter.validate_credentials(client)
    assert check.state is state
    assert GITHUB_TOKEN not in repr(check)
    assert len(httpx_mock.get_requests()) == 1  # no probe with no token
    await adapter.aclose()


# -- closing ---------------------------------------------------------------------------


@every_adapter
async def test_aclose_is_awaitable_and_idempotent(case: Case, httpx_mock: HTTPXMock) -> None:
    _prepare(case, httpx_mock)
    adapter = case.make()
    context = RequestContext(adapter.name, "POST", "/chat/completions", b"", [], "rid")
    await _auth(adapter.serving(), context)  # whatever it opens for its credentials is open now
    closing = adapter.aclose()
    assert inspect.isawaitable(closing)
    await closing
    await adapter.aclose()
    await case.keyless().aclose()  # also one that never opened anything
