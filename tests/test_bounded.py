"""Compression bombs against what the proxy reads for itself: the helper, the startup
credential probe, the model catalog and the Copilot token exchange, each served by a
real upstream on loopback whose small answer inflates far past the bound.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
import brotli
import httpx
import pytest

from provider_proxy import CredentialState, MemoryStore, ProxyApp, ProxyEvent, Secret, Usage
from provider_proxy._bounded import MAX_OWN_ANSWER_BYTES, AnswerTooLarge, send_bounded
from provider_proxy._exceptions import UpstreamUnreachable
from provider_proxy.adapters import OpenAIAdapter
from provider_proxy.adapters.copilot import TokenExchange
from provider_proxy.engine._catalog import ModelCatalog
from provider_proxy.engine._validation import CredentialsRejected, validate_all
from provider_proxy.observe._usage_tap import DEFAULT_MAX_TOTAL_BYTES

from .conftest import OPENAI_KEY
from .servers import ServerThread, serve, wait_until

pytestmark = pytest.mark.anyio

T = TypeVar("T")
#: What every bomb inflates to: 16 times the bound on the proxy's own answers.
INFLATED = 16 * MAX_OWN_ANSWER_BYTES
GITHUB_TOKEN = "gho_bomb-test-secret"
COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": lambda data: brotli.compress(data, quality=1),
}


class Bombs:
    """An upstream answering every request with ``body`` under ``encoding``."""

    def __init__(self) -> None:
        self.encoding = "gzip"
        self.content_type = "application/json"
        self.body = b""
        #: Sent in pieces this large, ``gap`` seconds apart (0: at once).
        self.piece = 0
        self.gap = 0.0
        self.requests: list[dict[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.requests.append({k.decode(): v.decode() for k, v in scope["headers"]})
        headers = [(b"content-type", self.content_type.encode())]
        if self.encoding != "identity":
            headers.append((b"content-encoding", self.encoding.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        step = self.piece or len(self.body)
        for start in range(0, len(self.body), step):
            await send(
                {
                    "type": "http.response.body",
                    "body": self.body[start : start + step],
                    "more_body": True,
                }
            )
            await anyio.sleep(self.gap)
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def bombs() -> Bombs:
    return Bombs()


@pytest.fixture(scope="module")
def bomb_server(bombs: Bombs) -> Iterator[ServerThread]:
    with serve(bombs, lifespan="off") as server:
        yield server


@pytest.fixture(autouse=True)
def plain_answers(bombs: Bombs) -> None:
    """Each test starts from a JSON answer sent at once."""
    bombs.content_type, bombs.piece, bombs.gap = "application/json", 0, 0.0


@pytest.fixture
def gzip_bomb(bombs: Bombs) -> Bombs:
    bombs.encoding, bombs.body = "gzip", _gzip_bomb()
    return bombs


_GZIP_BOMB: list[bytes] = []


def _gzip_bomb() -> bytes:
    """``INFLATED`` bytes of a JSON-looking answer, about 64 KiB gzipped (made once)."""
    if not _GZIP_BOMB:
        _GZIP_BOMB.append(gzip.compress(b'{"data": ["' + b"0" * INFLATED + b'"]}'))
    return _GZIP_BOMB[0]


async def _peak(call: Awaitable[T]) -> tuple[T, int]:
    """What ``call`` returns and the most memory traced while it ran."""
    tracemalloc.start()
    try:
        result = await call
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


async def _raises(call: Awaitable[Any]) -> BaseException:
    try:
        await call
    except Exception as exc:
        return exc
    raise AssertionError("expected an error")


# -- the helper ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", sorted(COMPRESS))
async def test_a_bomb_stops_the_read_just_past_the_limit(
    bomb_server: ServerThread, bombs: Bombs, encoding: str
) -> None:
    limit = 1024 * 1024
    bombs.encoding, bombs.body = encoding, COMPRESS[encoding](b"x" * (32 * limit))
    async with httpx.AsyncClient() as client:
        request = client.build_request("GET", bomb_server.url + "/anything")
        error, peak = await _peak(_raises(send_bounded(client, request, limit=limit)))
    assert isinstance(error, AnswerTooLarge)
    assert str(error) == (
        "the answer from 127.0.0.1 is over 1 MiB once decoded; it was not read further"
    )
    assert peak < 4 * limit  # 32 MiB of output was never held
    # Only encodings it can bound are asked for.
    assert bombs.requests[-1]["accept-encoding"] == "gzip, deflate, br"


@pytest.mark.parametrize("encoding", sorted(COMPRESS))
async def test_an_answer_within_the_limit_is_read_decoded(
    bomb_server: ServerThread, bombs: Bombs, encoding: str
) -> None:
    payload = {"data": [{"id": f"model-{n}"} for n in range(2000)]}
    plain = json.dumps(payload).encode()
    bombs.encoding, bombs.body = encoding, COMPRESS[encoding](plain)
    async with httpx.AsyncClient() as client:
        request = client.build_request("GET", bomb_server.url + "/models")
        response = await send_bounded(client, request, limit=len(plain))
    assert response.status_code == 200
    assert response.json() == payload
    assert "content-encoding" not in response.headers
    assert response.headers["content-type"] == "application/json"


async def test_an_encoding_it_cannot_bound_is_refused(
    bomb_server: ServerThread, bombs: Bombs
) -> None:
    bombs.encoding, bombs.body = "zstd", b"(not decoded)"
    async with httpx.AsyncClient() as client:
        request = client.build_request("GET", bomb_server.url + "/x")
        error = await _raises(send_bounded(client, request))
    assert isinstance(error, AnswerTooLarge)
    assert "Content-Encoding ('zstd')" in str(error)


# -- the three places ----------------------------------------------------------------------


async def test_the_credential_probe_of_a_bomb_fails_without_inflating_it(
    bomb_server: ServerThread, gzip_bomb: Bombs
) -> None:
    adapter = OpenAIAdapter(base_url=bomb_server.url + "/v1", api_key=OPENAI_KEY)
    async with httpx.AsyncClient() as client:
        check, peak = await _peak(adapter.validate_credentials(client))
    assert check.state is CredentialState.NETWORK_ERROR
    assert check.detail == (
        "the answer from 127.0.0.1 is over 4 MiB once decoded; it was not read further"
    )
    assert peak < INFLATED // 4
    assert OPENAI_KEY not in repr(check)


async def test_strict_validation_says_why_a_bomb_failed_the_probe(
    bomb_server: ServerThread, gzip_bomb: Bombs
) -> None:
    adapter = OpenAIAdapter(base_url=bomb_server.url + "/v1", api_key=OPENAI_KEY)
    async with httpx.AsyncClient() as client:
        error = await _raises(validate_all([adapter], client, "strict"))
    assert isinstance(error, CredentialsRejected)
    assert str(error) == (
        "Provider credentials failed their check: openai: network_error: the answer from "
        "127.0.0.1 is over 4 MiB once decoded; it was not read further."
    )


async def test_the_catalog_reports_a_bomb_as_a_failed_listing(
    bomb_server: ServerThread, gzip_bomb: Bombs
) -> None:
    adapter = OpenAIAdapter(base_url=bomb_server.url + "/v1", api_key=OPENAI_KEY)
    catalog = ModelCatalog({"openai": adapter}, MemoryStore(), client_factory=httpx.AsyncClient)
    listing, peak = await _peak(catalog.listing())
    assert listing["data"] == []
    assert listing["failed"] == {
        "openai": "the answer from 127.0.0.1 is over 4 MiB once decoded; it was not read further"
    }
    assert peak < INFLATED // 4
    await catalog.aclose()


async def test_the_copilot_token_exchange_of_a_bomb_is_a_clear_502(
    bomb_server: ServerThread, gzip_bomb: Bombs
) -> None:
    exchange = TokenExchange(Secret(GITHUB_TOKEN), bomb_server.url + "/copilot_internal/v2/token")
    error, peak = await _peak(_raises(exchange.token()))
    await exchange.aclose()
    assert isinstance(error, UpstreamUnreachable)
    assert error.status_code == 502
    assert error.message == (
        "The Copilot token exchange failed: the answer from 127.0.0.1 is over 4 MiB once "
        "decoded; it was not read further."
    )
    assert GITHUB_TOKEN not in str(error)
    assert peak < INFLATED // 4


# -- the usage tap ---------------------------------------------------------------------------


def _stream(decoded: int) -> bytes:
    """A chat completion stream of about ``decoded`` bytes, its usage in the last event."""
    delta = b'data: {"choices": [{"delta": {"content": "' + b"x" * 80 + b'"}}]}\n\n'
    usage = b'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 6}}\n\n'
    head = b'data: {"model": "m-1", "choices": []}\n\n'
    return head + delta * (decoded // len(delta)) + usage + b"data: [DONE]\n\n"


@pytest.mark.parametrize(
    ("decoded", "usage"),
    [(1024 * 1024, Usage(5, 6)), (DEFAULT_MAX_TOTAL_BYTES + 4 * 1024 * 1024, None)],
    ids=["under", "over"],
)
def test_a_paced_gzip_stream_past_the_bound_is_relayed_whole_without_usage(
    make_proxy: Callable[..., ProxyApp],
    bomb_server: ServerThread,
    bombs: Bombs,
    decoded: int,
    usage: Usage | None,
) -> None:
    # 3 KB at a time, each well under what one chunk may inflate to: only the
    # bound on the whole answer stops the tap.
    bombs.content_type, bombs.encoding = "text/event-stream", "gzip"
    bombs.body, bombs.piece, bombs.gap = gzip.compress(_stream(decoded)), 3000, 0.002
    events: list[ProxyEvent] = []
    adapter = OpenAIAdapter(base_url=bomb_server.url + "/v1", api_key=OPENAI_KEY)
    with serve(make_proxy(adapters=[adapter], sinks=[events.append])) as server:
        with httpx.stream(
            "POST",
            server.url + "/openai/chat/completions",
            json={"model": "m-1", "stream": True, "messages": []},
            headers={"accept-encoding": "gzip"},
            timeout=30,
        ) as response:
            relayed = b"".join(response.iter_raw())
        assert wait_until(lambda: len(events) == 1)
    assert response.status_code == 200
    assert relayed == bombs.body  # the relay went on, byte for byte
    assert events[0].usage == usage
