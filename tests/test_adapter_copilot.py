"""CopilotAdapter: hosts, headers, keys, probes, and the GitHub token exchange."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
from pytest_httpx import HTTPXMock

from provider_proxy import (
    ProviderAdapter,
    ProviderNotConfigured,
    ProxyApp,
    RequestContext,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from provider_proxy.adapters.copilot import (
    DEFAULT_EDITOR_VERSION,
    CopilotAdapter,
    CopilotTokenError,
    copilot_api_url,
    copilot_token_url,
)
from provider_proxy.testing import FakeUpstream

from .conftest import CLIENT_KEY
from .servers import ServerThread, serve

CONTEXT = RequestContext("copilot", "POST", "/chat/completions", b"", [], "rid-1")
TOKEN_URL = "https://api.github.com/copilot_internal/v2/token"
GITHUB_TOKEN = "gho_github-oauth-secret"
NOW = 1_800_000_000.0


class Clock:
    """Epoch seconds that move only when told."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _answer(
    token: str, *, expires_in: float = 1800, refresh_in: float | None = 1500, **extra: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {"token": token, "expires_at": int(NOW + expires_in), **extra}
    if refresh_in is not None:
        payload["refresh_in"] = refresh_in
    return payload


async def _auth(adapter: CopilotAdapter) -> dict[str, str]:
    auth = adapter.auth_headers(CONTEXT)
    assert isinstance(auth, Awaitable)
    return dict(await auth)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("COPILOT_API_KEY", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- hosts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("github_host", "api", "token_url"),
    [
        ("github.com", "https://api.githubcopilot.com", TOKEN_URL),
        ("GitHub.com", "https://api.githubcopilot.com", TOKEN_URL),
        ("https://github.com/", "https://api.githubcopilot.com", TOKEN_URL),
        (
            "acme.ghe.com",
            "https://copilot-api.acme.ghe.com",
            "https://api.acme.ghe.com/copilot_internal/v2/token",
        ),
        (
            "https://acme.ghe.com/orgs/x",
            "https://copilot-api.acme.ghe.com",
            "https://api.acme.ghe.com/copilot_internal/v2/token",
        ),
        (
            "ghes.corp.example",
            "https://api.enterprise.githubcopilot.com",
            "https://api.ghes.corp.example/copilot_internal/v2/token",
        ),
        (
            # Not *.ghe.com: a server of its own whose name merely contains it.
            "ghe.com.corp.example",
            "https://api.enterprise.githubcopilot.com",
            "https://api.ghe.com.corp.example/copilot_internal/v2/token",
        ),
    ],
)
def test_api_and_token_hosts_follow_the_github_server(
    github_host: str, api: str, token_url: str
) -> None:
    assert copilot_api_url(github_host) == api
    assert copilot_token_url(github_host) == token_url
    adapter = CopilotAdapter(api_key="k", github_host=github_host)
    assert str(adapter.base_url) == api
    exchanging = CopilotAdapter(github_token="t", github_host=github_host)
    assert exchanging.token_exchange is not None
    assert str(exchanging.token_exchange.url) == token_url


def test_base_url_and_token_url_override() -> None:
    adapter = CopilotAdapter(
        github_token="t",
        github_host="acme.ghe.com",
        base_url="https://copilot.internal.example/api",
        token_url="https://tokens.internal.example/exchange",
    )
    assert str(adapter.base_url) == "https://copilot.internal.example/api"
    assert adapter.token_exchange is not None
    assert str(adapter.token_exchange.url) == "https://tokens.internal.example/exchange"


@pytest.mark.parametrize("bad", ["", "not a host!", "https://", "exa mple.com"])
def test_invalid_github_host_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="github_host"):
        CopilotAdapter(api_key="k", github_host=bad)


# -- credentials and headers ------------------------------------------------------------


def test_headers_copilot_expects(no_env: pytest.MonkeyPatch) -> None:
    adapter = CopilotAdapter(api_key="cop-key")
    assert isinstance(adapter, ProviderAdapter)
    assert adapter.name == "copilot"
    assert adapter.auth_headers(CONTEXT) == {"authorization": "Bearer cop-key"}
    assert adapter.headers == {
        "copilot-integration-id": "vscode-chat",
        "editor-version": DEFAULT_EDITOR_VERSION,
    }
    custom = CopilotAdapter(
        api_key="k",
        integration_id="my-integration",
        editor_version="myeditor/2.0",
        user_agent="my-app/1.0",
        headers={"Editor-Plugin-Version": "my-plugin/3.1", "Editor-Version": "override/9"},
    )
    assert custom.headers == {
        "copilot-integration-id": "my-integration",
        "editor-version": "override/9",
        "editor-plugin-version": "my-plugin/3.1",
        "user-agent": "my-app/1.0",
    }


def test_key_from_copilot_api_key_but_never_github_token(no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv("GITHUB_TOKEN", "ghs_actions-token")
    adapter = CopilotAdapter()
    availability = adapter.availability()
    assert not availability.enabled
    assert availability.reason is not None
    assert "COPILOT_API_KEY" in availability.reason
    assert "ghs_actions" not in availability.reason

    no_env.setenv("COPILOT_API_KEY", "from-env")
    assert CopilotAdapter().auth_headers(CONTEXT) == {"authorization": "Bearer from-env"}
    # Opting in to GITHUB_TOKEN, used as it is or exchanged.
    direct = CopilotAdapter(api_key_env="GITHUB_TOKEN")
    assert direct.auth_headers(CONTEXT) == {"authorization": "Bearer ghs_actions-token"}
    exchanging = CopilotAdapter(github_token_env="GITHUB_TOKEN")
    assert exchanging.availability().enabled
    assert exchanging.token_exchange is not None
    assert exchanging.token_exchange.github_token().reveal() == "ghs_actions-token"


def test_exchange_mode_reasons(no_env: pytest.MonkeyPatch) -> None:
    named = CopilotAdapter(github_token_env="MY_GH_TOKEN_UNSET").availability()
    assert not named.enabled
    assert named.reason is not None
    assert "MY_GH_TOKEN_UNSET" in named.reason
    assert "github_token=" in named.reason
    # COPILOT_API_KEY is not looked at when a GitHub token is to be exchanged.
    no_env.setenv("COPILOT_API_KEY", "unused")
    assert not CopilotAdapter(github_token_env="MY_GH_TOKEN_UNSET").availability().enabled

    empty = CopilotAdapter(github_token=lambda: None)
    assert empty.availability().enabled  # asked per request, not here
    now = empty.current_availability()
    assert not now.enabled
    assert "returned none" in str(now.reason)


def test_github_tokens_are_stripped_and_line_breaks_refused() -> None:
    # A token read from a file keeps its newline: stripped. One with a line break
    # inside is refused at construction, or makes the adapter unavailable now.
    stripped = CopilotAdapter(github_token="ghu_file\n")
    assert stripped._exchange is not None
    assert stripped._exchange.github_token().reveal() == "ghu_file"
    with pytest.raises(ValueError, match="github_token contains a line break") as refused:
        CopilotAdapter(github_token="ghu_a\nghu_b")
    assert "ghu_a" not in str(refused.value)
    broken = CopilotAdapter(github_token=lambda: "ghu_cb\nx").current_availability()
    assert not broken.enabled
    assert "line break" in str(broken.reason)
    assert "ghu_cb" not in str(broken.reason)


def test_api_key_and_github_token_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        CopilotAdapter(api_key="k", github_token="t")
    with pytest.raises(ValueError, match="not both"):
        CopilotAdapter(api_key_env="X", github_token_env="Y")


def test_direct_key_rotates_through_a_callable() -> None:
    current = ["k1"]
    adapter = CopilotAdapter(api_key=lambda: current[0])
    assert adapter.auth_headers(CONTEXT) == {"authorization": "Bearer k1"}
    current[0] = "k2"
    assert adapter.auth_headers(CONTEXT) == {"authorization": "Bearer k2"}


def test_reprs_hide_credentials() -> None:
    adapter = CopilotAdapter(github_token=GITHUB_TOKEN)
    assert GITHUB_TOKEN not in repr(adapter)
    assert GITHUB_TOKEN not in repr(vars(adapter))
    assert GITHUB_TOKEN not in repr(vars(adapter.token_exchange))


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/chat/completions", True),
        ("POST", "/responses", True),
        ("POST", "/embeddings", True),
        ("GET", "/models", True),
        ("POST", "/v1/messages", True),
        ("GET", "/chat/completions", False),
        ("POST", "/completions", False),
        ("GET", "/models/gpt-4o", False),
        ("GET", "/copilot_internal/user", False),
        ("POST", "/v1/messages/count_tokens", False),
    ],
)
def test_endpoint_allowlist(method: str, path: str, allowed: bool) -> None:
    assert CopilotAdapter(api_key="k").endpoint_allowed(method, path) is allowed


# -- probe and models -----------------------------------------------------------------


@pytest.mark.anyio
async def test_fetch_models_maps_the_context_window(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url="https://api.githubcopilot.com/models",
        json={
            "object": "list",
            "data": [
                {
                    "id": "gpt-4o",
                    "name": "GPT-4o",
                    "object": "model",
                    "vendor": "Azure OpenAI",
                    "capabilities": {
                        "family": "gpt-4o",
                        "type": "chat",
                        "limits": {"max_context_window_tokens": 128000, "max_output_tokens": 4096},
                    },
                },
                {"id": "claude-sonnet-4", "name": "Claude Sonnet 4", "capabilities": {}},
                {"id": "odd", "capabilities": {"limits": {"max_context_window_tokens": True}}},
            ],
        },
    )
    async with httpx.AsyncClient() as client:
        models = await CopilotAdapter(api_key="k").fetch_models(client)
    assert [(m.id, m.provider, m.display_name, m.context_length) for m in models] == [
        ("gpt-4o", "copilot", "GPT-4o", 128000),
        ("claude-sonnet-4", "copilot", "Claude Sonnet 4", None),
        ("odd", "copilot", None, None),
    ]


def test_usage_of_openai_and_anthropic_answers() -> None:
    adapter = CopilotAdapter(api_key="k")
    openai_routes = adapter.dialect_for("/chat/completions")
    anthropic_routes = adapter.dialect_for("/v1/messages")
    chat = {"model": "gpt-4o", "usage": {"prompt_tokens": 12, "completion_tokens": 3}}
    usage = openai_routes.usage_of(chat)
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (12, 3)
    message = {
        "type": "message",
        "model": "claude-sonnet-4",
        "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 90},
    }
    usage = anthropic_routes.usage_of(message)
    assert usage is not None
    # Anthropic's counts, normalised: the cached prompt tokens are part of the input.
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (100, 4, 90)
    start = {"type": "message_start", "message": message}
    assert anthropic_routes.model_of(start) == "claude-sonnet-4"
    assert openai_routes.model_of(chat) == "gpt-4o"


# -- the token exchange ------------------------------------------------------------------


@pytest.mark.anyio
async def test_exchange_caches_and_follows_the_api_endpoint(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=TOKEN_URL,
        json=_answer("cop-1", endpoints={"api": "https://api.individual.githubcopilot.com"}),
    )
    clock = Clock()
    adapter = CopilotAdapter(github_token=GITHUB_TOKEN, clock=clock)
    assert str(adapter.base_url) == "https://api.githubcopilot.com"
    assert await _auth(adapter) == {"authorization": "Bearer cop-1"}
    request = httpx_mock.get_request()
    assert request is not None
    assert request.method == "GET"
    assert request.headers["authorization"] == f"token {GITHUB_TOKEN}"
    assert request.headers["editor-version"] == DEFAULT_EDITOR_VERSION
    assert request.headers["accept"] == "application/json"
    # The answer's endpoints.api is where requests go from now on.
    assert str(adapter.base_url) == "https://api.individual.githubcopilot.com"
    assert str(adapter.join("/models")) == "https://api.individual.githubcopilot.com/models"
    # Cached: no second exchange while the token is fresh.
    clock.now += 1000
    assert await _auth(adapter) == {"authorization": "Bearer cop-1"}
    assert len(httpx_mock.get_requests()) == 1
    await adapter.aclose()


@pytest.mark.anyio
async def test_pinned_base_url_ignores_the_answered_endpoint(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=TOKEN_URL, json=_answer("cop-1", endpoints={"api": "https://elsewhere.example"})
    )
    adapter = CopilotAdapter(
        github_token=GITHUB_TOKEN, base_url="https://pinned.example/copilot", clock=Clock()
    )
    await _auth(adapter)
    assert str(adapter.base_url) == "https://pinned.example/copilot"
    await adapter.aclose()


@pytest.mark.anyio
async def test_answered_endpoint_must_be_https(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=TOKEN_URL, json=_answer("cop-1", endpoints={"api": "http://plain.example"})
    )
    adapter = CopilotAdapter(github_token=GITHUB_TOKEN, clock=Clock())
    assert await _auth(adapter) == {"authorization": "Bearer cop-1"}
    assert str(adapter.base_url) == "https://api.githubcopilot.com"
    await adapter.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("refresh_in", "renew_after"),
    [
        (1500, 1500),  # refresh_in says when
        (None, 1800 - 60),  # else a minute before expires_at
        (1790, 1800 - 60),  # but never later than that
    ],
)
async def test_token_is_renewed_before_it_expires(
    httpx_mock: HTTPXMock, refresh_in: float | None, renew_after: float
) -> None:
    httpx_mock.add_response(url=TOKEN_URL, json=_answer("cop-1", refresh_in=refresh_in))
    httpx_mock.add_response(
        url=TOKEN_URL, json=_answer("cop-2", expires_in=renew_after + 1800, refresh_in=None)
    )
    clock = Clock()
    adapter = CopilotAdapter(github_token=GITHUB_TOKEN, clock=clock)
    assert await _auth(adapter) == {"authorization": "Bearer cop-1"}
    clock.now = NOW + renew_after - 1
    assert await _auth(adapter) == {"authorization": "Bearer cop-1"}
    assert len(httpx_mock.get_requests()) == 1
    # Due: the still valid token serves this request while the renewal runs.
    clock.now = NOW + renew_after
    assert await _auth(adapter) == {"authorization": "Bearer cop-1"}
    await anyio.wait_all_tasks_blocked()
    assert len(httpx_mock.get_requests()) == 2
    assert await _auth(adapter) == {"authorization": "Bearer cop-2"}
    assert len(httpx_mock.get_requests()) == 2
    await adapter.aclose()


@pytest.mark.anyio
async def test_expired_token_waits_for_a_new_one(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=TOKEN_URL, json=_answer("cop-1"))
    httpx_mock.add_response(url=TOKEN_URL, json=_answer("cop-2", expires_in=4000))
    clock = Clock()
    adapter = CopilotAdapter(github_token=GITHUB_TOKEN, clock=clock)
    await _auth(adapter)
    clock.now = NOW + 1800  # expired, and no renewal happened meanwhile
    assert await _auth(adapter) == {"authorization": "Bearer cop-2"}
    await adapter.aclose()


class SlowExchange:
    """A token endpoint that answers after ``gate`` opens, counting its calls."""

    def __init__(self) -> None:
        self.calls: list[httpx.Request] = []
        self.gate = anyio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        await self.gate.wait()
        return httpx.Response(
            200, json=_answer(f"cop-{len(self.calls)}", expires_in=3600 * len(self.calls))
        )


@pytest.mark.anyio
async def test_fifty_waiting_requests_share_one_exchange(httpx_mock: HTTPXMock) -> None:
    slow = SlowExchange()
    httpx_mock.add_callback(slow, url=TOKEN_URL, is_reusable=True)
    adapter = CopilotAdapter(github_token=GITHUB_TOKEN, clock=Clock())
    results: list[dict[str, str]] = []

    async def one() -> None:
        results.append(await _auth(adapter))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        assert len(slow.calls) == 1
        slow.gate.set()
    assert results == [{"authorization": "Bearer cop-1"}] * 50
    assert len(slow.calls) == 1
    assert adapter.token_exchange is not None
    assert adapter.token_exchange.exchanges == 1
    await adapter.aclose()


@pytest.mark.anyio
async def test_fifty_requests_during_a_renewal_trigger_one_exchange(
    httpx_mock: HTTPXMock,
) -> None:
    slow = SlowExchange()
    slow.gate.set()
    httpx_mock.add_callback(slow, url=TOKEN_URL, is_reusable=True)
    clock = Clock()
    adapter = CopilotAdapter(github_token=GITHUB_TOKEN, clock=clock)
    assert await _auth(adapter) == {"authorization": "Bearer cop-1"}
    slow.gate = anyio.Event()
    clock.now = NOW + 3600 - 30  # due for renewal, still valid
    results: list[dict[str, str]] = []

    async def one() -> None:
        results.append(await _auth(adapter))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(one)
    # Nobody waited for the renewal: the valid token served them all.
    assert results == [{"authorization": "Bearer cop-1"}] * 50
    await anyio.wait_all_tasks_blocked()
    assert len(slow.calls) == 2
    slow.gate.set()
    await anyio.wait_all_tasks_blocked()
    assert await _auth(adapter) == {"authorization": "Bearer cop-2"}
    assert len(slow.calls) == 2
    await adapter.aclose()


@pytest.mark.anyio
async def test_refused_exchange_is_a_clear_502_without_the_token(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=TOKEN_URL, status_code=401, json={"message": f"Bad credentials {GITHUB_TOKEN}"}
    )
    httpx_mock.add_response(url=TOKEN_URL, json=_answer("cop-1"))
    clock = Clock()
    adapter = CopilotAdapter(github_token=GITHUB_TOKEN, clock=clock)
    with pytest.raises(CopilotTokenError) as caught:
        await _auth(adapter)
    error = caught.value
    assert error.status_code == 502
    assert error.upstream_status == 401
    assert not error.retryable
    assert "HTTP 401" in error.message
    assert "api.github.com" in error.message
    body = adapter.dialect_for("/chat/completions").error_body(error, "rid")
    for text in (error.message, str(error), repr(error), body.decode()):
        assert GITHUB_TOKEN not in text
        assert "gho_" not in text
    assert json.loads(body)["error"]["code"] == "copilot_token_error"
    # Remembered for a while rather than asked again at every request...
    with pytest.raises(CopilotTokenError):
        await _auth(adapter)
    assert len(httpx_mock.get_requests()) == 1
    # ...then tried again.
    clock.now += 11
    assert await _auth(adapter) == {"authorization": "Bearer cop-1"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        ({"status_code": 503}, UpstreamUnreachable, "HTTP 503"),
        ({"status_code": 429}, UpstreamUnreachable, "HTTP 429"),
        ({"status_code": 404}, CopilotTokenError, "no Copilot access"),
        ({"json": {"expires_at": NOW + 100}}, CopilotTokenError, "without a token"),
        ({"text": "<html>not json</html>"}, CopilotTokenError, "without a token"),
        ({"json": {"token": "t", "expires_at": "soon"}}, CopilotTokenError, "without a token"),
        ({"json": {"token": "t", "expires_at": NOW - 10}}, CopilotTokenError, "clock"),
    ],
)
async def test_failed_exchanges(
    httpx_mock: HTTPXMock, answer: dict[str, Any], error: type[Exception], words: str
) -> None:
    httpx_mock.add_response(url=TOKEN_URL, **answer)
    adapter = CopilotAdapter(github_token=GITHUB_TOKEN, clock=Clock())
    with pytest.raises(error, match=words) as caught:
        await _auth(adapter)
    assert GITHUB_TOKEN not in str(caught.value)
    await adapter.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectError(f"refused for {GITHUB_TOKEN}"), UpstreamUnreachable),
        (httpx.ReadTimeout("slow"), UpstreamTimeout),
    ],
)
async def test_unreachable_exchange(
    httpx_mock: HTTPXMock, exc: Exception, error: type[Exception]
) -> None:
    httpx_mock.add_exception(exc, url=TOKEN_URL)
    adapter = CopilotAdapter(github_token=GITHUB_TOKEN, clock=Clock())
    with pytest.raises(error, match=r"api\.github\.com") as caught:
        await _auth(adapter)
    assert GITHUB_TOKEN not in str(caught.value)
    await adapter.aclose()


@pytest.mark.anyio
async def test_failed_renewal_keeps_the_valid_token(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=TOKEN_URL, json=_answer("cop-1"))
    httpx_mock.add_response(url=TOKEN_URL, status_code=502)
    httpx_mock.add_response(url=TOKEN_URL, json=_answer("cop-2", expires_in=4000))
    clock = Clock()
    adapter = CopilotAdapter(github_token=GITHUB_TOKEN, clock=clock)
    await _auth(adapter)
    clock.now = NOW + 1500
    assert await _auth(adapter) == {"authorization": "Bearer cop-1"}  # renewal fails behind
    await anyio.wait_all_tasks_blocked()
    assert len(httpx_mock.get_requests()) == 2
    assert await _auth(adapter) == {"authorization": "Bearer cop-1"}  # no retry yet
    assert len(httpx_mock.get_requests()) == 2
    clock.now += 11
    assert await _auth(adapter) == {"authorization": "Bearer cop-1"}
    await anyio.wait_all_tasks_blocked()
    assert await _auth(adapter) == {"authorization": "Bearer cop-2"}
    await adapter.aclose()


@pytest.mark.anyio
async def test_rotated_github_token_is_exchanged_at_once(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=TOKEN_URL, match_headers={"authorization": "token gho_one"}, json=_answer("cop-one")
    )
    httpx_mock.add_response(
        url=TOKEN_URL, match_headers={"authorization": "token gho_two"}, json=_answer("cop-two")
    )
    current = ["gho_one"]
    adapter = CopilotAdapter(github_token=lambda: current[0], clock=Clock())
    assert await _auth(adapter) == {"authorization": "Bearer cop-one"}
    assert await _auth(adapter) == {"authorization": "Bearer cop-one"}
    current[0] = "gho_two"
    assert await _auth(adapter) == {"authorization": "Bearer cop-two"}
    assert len(httpx_mock.get_requests()) == 2
    current[0] = ""
    with pytest.raises(ProviderNotConfigured, match="returned none"):
        await _auth(adapter)
    await adapter.aclose()


@pytest.mark.anyio
async def test_own_client_is_closed_and_reopened(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=TOKEN_URL, json=_answer("cop-1"))
    httpx_mock.add_response(url=TOKEN_URL, json=_answer("cop-2", expires_in=4000))
    clock = Clock()
    adapter = CopilotAdapter(github_token=GITHUB_TOKEN, clock=clock)
    exchange = adapter.token_exchange
    assert exchange is not None
    await _auth(adapter)
    client = exchange._client
    assert client is not None
    assert not client.is_closed
    await adapter.aclose()
    assert client.is_closed
    clock.now = NOW + 1800  # needs a new token: a new client is opened for it
    assert await _auth(adapter) == {"authorization": "Bearer cop-2"}
    assert exchange._client is not None
    assert exchange._client is not client
    await adapter.aclose()


@pytest.mark.anyio
async def test_a_given_client_is_used_and_left_open() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=_answer("cop-1"))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        adapter = CopilotAdapter(github_token=GITHUB_TOKEN, client=client, clock=Clock())
        assert await _auth(adapter) == {"authorization": "Bearer cop-1"}
        await adapter.aclose()
        assert not client.is_closed
    assert len(seen) == 1


# -- through the proxy ---------------------------------------------------------------------


@pytest.mark.parametrize("validate", ["warn", "off"])
def test_copilot_token_reaches_upstream_through_the_proxy(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, fake: FakeUpstream, validate: str
) -> None:
    """The app exchanges the GitHub token, follows endpoints.api to the fake upstream, and
    sends the Copilot token there, never the client's key nor the GitHub token.

    With ``validate="off"`` the first request does the exchange, and must already go
    to the host the exchange named.
    """
    exchanges: list[httpx.Request] = []

    def github(request: httpx.Request) -> httpx.Response:
        exchanges.append(request)
        expires = int(time.time()) + 1800
        return httpx.Response(
            200,
            json={
                "token": "copilot-session-token",
                "expires_at": expires,
                "refresh_in": 1500,
                "endpoints": {"api": upstream.url},
            },
        )

    token_client = httpx.AsyncClient(transport=httpx.MockTransport(github))
    adapter = CopilotAdapter(
        github_token=GITHUB_TOKEN,
        token_url="http://github.test/copilot_internal/v2/token",
        client=token_client,
    )
    proxy = make_proxy(adapters=[adapter], validate_credentials=validate)
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    with serve(proxy) as server, httpx.Client(base_url=server.url) as client:
        headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY}
        response = client.post("/copilot/chat/completions", json=chat, headers=headers)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"].startswith("Hello")
        sent = fake.last
        assert sent.path == "/chat/completions"
        assert sent.header("authorization") == "Bearer copilot-session-token"
        assert sent.header("copilot-integration-id") == "vscode-chat"
        assert sent.header("editor-version") == DEFAULT_EDITOR_VERSION
        assert sent.header("x-api-key") is None
        everything = repr(sent.headers)
        assert CLIENT_KEY not in everything
        assert GITHUB_TOKEN not in everything

        response = client.post(
            "/copilot/v1/messages", json={**chat, "model": "claude-sonnet-4", "max_tokens": 5}
        )
        assert response.status_code == 200
        assert response.json()["content"][0]["text"].startswith("Hello")
        assert fake.last.path == "/v1/messages"
        assert fake.last.header("authorization") == "Bearer copilot-session-token"

        assert client.get("/copilot/completions").status_code == 403
        status = client.get("/status").text
        assert "copilot-session-token" not in status
        assert GITHUB_TOKEN not in status
    # One exchange served the startup probe (if any) and every request.
    assert len(exchanges) == 1
    assert exchanges[0].headers["authorization"] == f"token {GITHUB_TOKEN}"
    # The app's shutdown closed the adapter; the client it was given stays open.
    assert not token_client.is_closed
