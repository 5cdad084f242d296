"""TokenSource: any adapter sends short-lived tokens it fetches with a long-lived credential."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from provider_proxy import ProviderNotConfigured, Secret, UpstreamUnreachable, make_asgi_app
from provider_proxy.adapters import ApiKey, IssuedToken, OpenAICompatibleAdapter, TokenSource
from provider_proxy.testing import FakeUpstream

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Counting(TokenSource):
    """Issues ``token-{n}`` for the credential, valid 100 s, renewed after 60 s."""

    def __init__(self, credential: ApiKey, clock: Clock) -> None:
        super().__init__(credential, clock=clock, what="login")
        self.clock = clock
        self.fetched: list[str] = []
        self.fail = False
        self.closed = 0

    async def fetch(self, credential: Secret) -> IssuedToken:
        await asyncio.sleep(0.01)  # requests arriving meanwhile wait for this one
        if self.fail:
            raise UpstreamUnreachable("the issuer is down")
        self.fetched.append(credential.reveal())
        now = self.clock()
        return IssuedToken(
            Secret(f"token-{len(self.fetched)}-{credential.reveal()}"),
            now + 100,
            now + 60,
            source=credential,
        )

    async def close(self) -> None:
        self.closed += 1


def _app(source: TokenSource, fake: FakeUpstream) -> tuple[httpx.AsyncClient, object]:
    adapter = OpenAICompatibleAdapter("gw", "http://upstream.test/v1", token_source=source)
    proxy = make_asgi_app(
        [adapter], transport=httpx.ASGITransport(fake), validate_credentials="off"
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(proxy), base_url="http://proxy")
    return client, proxy


async def _chat(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(
        "/gw/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )


async def test_tokens_are_fetched_once_sent_and_renewed() -> None:
    clock, fake = Clock(), FakeUpstream()
    source = Counting("login-1", clock)
    client, proxy = _app(source, fake)
    async with client:
        answers = await asyncio.gather(*(_chat(client) for _ in range(5)))
        assert [a.status_code for a in answers] == [200] * 5
        assert source.fetched == ["login-1"]  # five requests, one fetch
        assert {r.header("authorization") for r in fake.requests} == {"Bearer token-1-login-1"}
        clock.now += 70  # past refresh_at: served by the old one, renewed meanwhile
        await _chat(client)
        await asyncio.sleep(0.05)
        assert source.fetched == ["login-1", "login-1"]
        await _chat(client)
        assert fake.last.header("authorization") == "Bearer token-2-login-1"
        await proxy.aclose()  # type: ignore[attr-defined]
    assert source.closed == 1


async def test_a_rotated_credential_fetches_at_once() -> None:
    clock, fake = Clock(), FakeUpstream()
    login = ["a-login"]
    source = Counting(lambda: login[0], clock)
    client, _ = _app(source, fake)
    async with client:
        await _chat(client)
        login[0] = "b-login"
        await _chat(client)
    assert source.fetched == ["a-login", "b-login"]
    assert fake.last.header("authorization") == "Bearer token-2-b-login"


async def test_a_failed_fetch_is_answered_again_for_a_while() -> None:
    clock, fake = Clock(), FakeUpstream()
    source = Counting("login-1", clock)
    source.fail = True
    client, _ = _app(source, fake)
    async with client:
        first, second = await _chat(client), await _chat(client)
        assert first.status_code == second.status_code == 502
        assert "issuer is down" in first.json()["error"]["message"]
        assert source.exchanges == 1  # the second was answered from the remembered failure
        source.fail = False
        clock.now += 11
        assert (await _chat(client)).status_code == 200
    assert len(fake.requests) == 1


async def test_no_credential_means_not_configured() -> None:
    source = Counting(lambda: None, Clock())
    with pytest.raises(ProviderNotConfigured, match="No login"):
        source.credential()
    adapter = OpenAICompatibleAdapter("gw", "http://upstream.test/v1", token_source=source)
    assert adapter.availability().enabled  # a callable may have one later
    with pytest.raises(ValueError, match="not both"):
        OpenAICompatibleAdapter("gw", "http://x.test/v1", api_key="k", token_source=source)
