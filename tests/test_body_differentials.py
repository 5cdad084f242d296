"""Bodies and paths the proxy read: the upstream gets what was checked, or nothing.

In-process (httpx's ASGI transport on both sides): no timing is involved, and the
fake upstream records the exact bytes it received.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import provider_proxy._json as json_module
import provider_proxy.engine._forward as forward_module
from provider_proxy import Guards, RateLimit, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream
from provider_proxy.transforms import ModelAliases, ParameterPolicy

from .conftest import ALL, ANTHROPIC_KEY, OPENAI_KEY

pytestmark = pytest.mark.anyio

CHAT = "/openai/chat/completions"
DEEP = b'{"model":"allowed","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.fixture(params=["orjson", "stdlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The forwarding path with orjson, and with the standard library's JSON."""
    if request.param == "stdlib":
        monkeypatch.setattr(forward_module, "loads", json_module._stdlib_loads)
        monkeypatch.setattr(forward_module, "dumps", json_module._stdlib_dumps)
    return str(request.param)


@pytest.fixture
def fake() -> FakeUpstream:
    return FakeUpstream()


def _client(fake: FakeUpstream, **options: Any) -> httpx.AsyncClient:
    base = "http://upstream.test"
    adapters = [
        OpenAIAdapter(base_url=base + "/v1", api_key=OPENAI_KEY, allow=[ALL]),
        AnthropicAdapter(base_url=base, api_key=ANTHROPIC_KEY),
    ]
    proxy = make_asgi_app(
        adapters,
        transport=httpx.ASGITransport(app=fake),
        validate_credentials="off",
        **options,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy), base_url="http://proxy")


@pytest.fixture
async def policed(fake: FakeUpstream, backend: str) -> AsyncIterator[httpx.AsyncClient]:
    """A proxy whose policy allows only the model ``allowed`` and clamps ``max_tokens``."""
    policy = ParameterPolicy(allowed_models=["allowed"], clamps={"max_tokens": 100})
    async with _client(fake, transforms=[policy]) as client:
        yield client


def _first_wins(raw: bytes) -> dict[str, Any]:
    """``raw`` as a parser that keeps the first of duplicate keys reads it."""

    def first(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            seen.setdefault(key, value)
        return seen

    result: dict[str, Any] = json.loads(raw, object_pairs_hook=first)
    return result


async def _post(client: httpx.AsyncClient, raw: bytes, path: str = CHAT) -> httpx.Response:
    return await client.post(path, content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # The policy reads the last "model" (both backends do): the upstream gets only that.
        (b'{"model":"forbidden","model":"allowed","messages":[]}', {"model": "allowed"}),
        # Two max_tokens: the one the clamp checked is the one forwarded.
        (
            b'{"model":"allowed","max_tokens":100000,"max_tokens":10,"messages":[]}',
            {"model": "allowed", "max_tokens": 10},
        ),
        # Escapes and spacing the policy parsed through are sent in one plain form.
        (b'{ "mod\\u0065l" : "allowed", "messages" : [ ] }', {"model": "allowed"}),
    ],
)
async def test_an_unchanged_body_is_forwarded_as_the_policy_read_it(
    policed: httpx.AsyncClient, fake: FakeUpstream, raw: bytes, expected: dict[str, Any]
) -> None:
    response = await _post(policed, raw)
    assert response.status_code == 200, response.text
    received = fake.last.body
    assert _first_wins(received) == {**expected, "messages": []}
    assert received.count(b'"model"') == 1
    assert fake.last.header("content-length") == str(len(received))


async def test_a_duplicate_naming_a_forbidden_model_last_is_refused(
    policed: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    response = await _post(policed, b'{"model":"allowed","model":"forbidden","messages":[]}')
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"
    assert fake.requests == []


async def test_an_alias_duplicated_with_a_real_model_forwards_the_resolved_one(
    fake: FakeUpstream, backend: str
) -> None:
    aliases = ModelAliases({"fast": "gpt-4o-mini"})
    async with _client(fake, transforms=[aliases]) as client:
        response = await _post(client, b'{"model":"gpt-4o","model":"fast","messages":[]}')
    assert response.status_code == 200, response.text
    assert _first_wins(fake.last.body)["model"] == "gpt-4o-mini"


async def test_a_per_model_limit_counts_the_model_forwarded(
    fake: FakeUpstream, backend: str
) -> None:
    # No transform: the guards alone read the body, and the upstream gets what they read.
    guards = Guards(rate_limits=[RateLimit(1, 60, per_model=True)])
    async with _client(fake, guards=guards) as client:
        assert (await _post(client, b'{"model":"a","messages":[]}')).status_code == 200
        dodge = await _post(client, b'{"model":"a","model":"b","messages":[]}')
        assert dodge.status_code == 200
        assert _first_wins(fake.last.body)["model"] == "b"
        again = await _post(client, b'{"model":"b","messages":[]}')
        assert again.status_code == 429


@pytest.mark.parametrize(
    ("path", "check"),
    [
        (CHAT, lambda error: error["code"] == "invalid_json"),
        ("/anthropic/v1/messages", lambda error: error["type"] == "invalid_request_error"),
    ],
)
async def test_json_nested_too_deeply_is_a_400_in_the_providers_format(
    fake: FakeUpstream, backend: str, path: str, check: Any
) -> None:
    policy = ParameterPolicy(allowed_models=["allowed"])
    async with _client(fake, transforms=[policy]) as client:
        response = await _post(client, DEEP, path)
    assert response.status_code == 400
    error = response.json()["error"]
    assert check(error)
    assert "not valid JSON" in error["message"]
    assert "depth limit exceeded" in error["message"]
    assert fake.requests == []


async def test_a_body_nested_deeper_than_orjson_writes_is_forwarded(
    policed: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    # orjson reads 1024 levels but writes 254; the standard library writes the rest.
    schema = b"[" * 300 + b"]" * 300
    raw = b'{"model":"allowed","messages":[],"schema":' + schema + b"}"
    response = await _post(policed, raw)
    assert response.status_code == 200, response.text
    assert fake.last.body == raw


async def test_json_nested_too_deeply_for_a_guard_alone_is_forwarded_as_sent(
    fake: FakeUpstream, backend: str
) -> None:
    # Guards read a body only for its model: one they cannot read goes as it came.
    guards = Guards(rate_limits=[RateLimit(5, 60, per_model=True)])
    async with _client(fake, guards=guards) as client:
        response = await _post(client, DEEP, "/openai/echo")
    assert response.status_code == 200, response.text
    assert fake.last.body == DEEP


async def test_a_body_a_guard_cannot_forward_as_read_counts_under_no_model(
    fake: FakeUpstream, backend: str
) -> None:
    # The standard library reads NaN but cannot write it; orjson does not read it.
    # Either way the body goes as sent, so the model read from it is not counted.
    guards = Guards(rate_limits=[RateLimit(1, 60, per_model=True)])
    raw = b'{"model":"a","model":"b","temperature":NaN}'
    async with _client(fake, guards=guards) as client:
        assert (await _post(client, raw, "/openai/echo")).status_code == 200
        assert fake.last.body == raw
        assert (await _post(client, b'{"model":"b"}', "/openai/echo")).status_code == 200
        assert (await _post(client, raw, "/openai/echo")).status_code == 429


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"allowed","messages":[],"temperature":NaN}',
        b'{"model":"allowed","messages":[],"temperature":1e400}',
        b'{"model":"allowed","messages":[{"content":"\\ud800"}]}',
    ],
)
async def test_json_without_a_json_form_is_a_400_with_either_backend(
    policed: httpx.AsyncClient, fake: FakeUpstream, raw: bytes
) -> None:
    # orjson refuses these when parsing; the standard library parses them but
    # cannot write them again as JSON.
    response = await _post(policed, raw)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert fake.requests == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/openai/..;/files", "'..;'"),
        ("/openai/v1/..;x=1/chat/completions", "'..;'"),
        ("/openai/files/%FF", "not UTF-8"),
        ("/openai/files/caf%E9", "not UTF-8"),
    ],
)
async def test_paths_servers_read_differently_are_refused(
    fake: FakeUpstream, path: str, message: str
) -> None:
    async with _client(fake) as client:
        response = await client.get(path)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "path_refused"
    assert message in error["message"]
    assert fake.requests == []
