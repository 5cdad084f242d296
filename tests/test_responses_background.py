"""Background responses on translated models, through a real server and the openai SDK.

``responses.create(background=True)`` is answered at once (``queued``), runs in
a task of the app, and is fetched (``responses.retrieve``) and cancelled
(``responses.cancel``) by id; the fake provider's open-stream count shows a
cancel closes the upstream request. Two app instances on a real Redis share
the records (and a cancel on one stops the run on the other); a graceful drain
waits for a run, or aborts it at its timeout.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import openai
import pytest

from provider_proxy import (
    Deployment,
    Guards,
    MemoryStore,
    ProxyApp,
    RedisStore,
    Route,
    make_asgi_app,
)
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter, OpenAICompatibleAdapter
from provider_proxy.dialects import Dialect, OpenAIChat
from provider_proxy.dialects.openai_responses import OpenAIResponsesCodec
from provider_proxy.engine._background_events import TRUNCATED, EventLog, follow
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY, OPENAI_KEY, TRANSPORTS
from .redis_server import RedisServer
from .servers import ServerThread, serve, wait_until

CLAUDE = "anthropic/claude-sonnet-4-5"
LOCAL = "local/qwen3-8b"
GPT = "openai/gpt-5"
TEXT = "Hello from the fake upstream, streamed one piece at a time."
KEYS = {"key-alice": "alice", "key-bob": "bob"}
#: A stream of the fake's that runs for about ten seconds unless it is closed.
SLOW = {"x-fake-chunks": "200", "x-fake-gap": "0.05"}


class ChatOnly(OpenAICompatibleAdapter):
    """An OpenAI-compatible server without the Responses API (vLLM's Chat, Ollama, ...)."""

    dialects: ClassVar[tuple[Dialect, ...]] = (OpenAIChat(),)


@pytest.fixture
def fake(own_upstream: tuple[FakeUpstream, ServerThread]) -> FakeUpstream:
    """Each test's own fake: these tests count its open streams, and their runs in
    the background must not move another test's counts."""
    return own_upstream[0]


@pytest.fixture
def upstream(own_upstream: tuple[FakeUpstream, ServerThread]) -> ServerThread:
    return own_upstream[1]


def _adapters(upstream: ServerThread) -> list[Any]:
    return [
        OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
        AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
        ChatOnly(name="local", base_url=upstream.url + "/v1", api_key="local-key-0123456789"),
    ]


@pytest.fixture
def proxy(upstream: ServerThread, transport_kind: str) -> ProxyApp:
    return make_asgi_app(
        _adapters(upstream),
        transport=TRANSPORTS[transport_kind](),
        validate_credentials="off",
        guards=Guards(client_keys=KEYS),
    )


@pytest.fixture
def gateway(proxy: ProxyApp) -> Iterator[ServerThread]:
    with serve(proxy) as server:
        yield server


def _client(server: ServerThread, key: str = "key-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


@pytest.fixture
def client(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with _client(gateway) as sdk:
        yield sdk


def _settled(client: openai.OpenAI, response_id: str, timeout: float = 15) -> Any:
    """The response once it is over (polled as a client polls it)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress") or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def _streams_open(fake: FakeUpstream, count: int) -> bool:
    return wait_until(lambda: fake.open_streams == count)


@pytest.mark.parametrize(
    ("model", "path"), [(CLAUDE, "/v1/messages"), (LOCAL, "/v1/chat/completions")]
)
def test_a_background_response_is_queued_then_completes(
    client: openai.OpenAI, fake: FakeUpstream, model: str, path: str
) -> None:
    begun = client.responses.create(model=model, input="Hi.", background=True)
    assert begun.status in ("queued", "in_progress")
    assert begun.background is True
    assert begun.output == []
    assert begun.id.startswith("resp_")
    done = _settled(client, begun.id)
    assert done.status == "completed"
    assert done.id == begun.id
    assert done.background is True
    assert done.output_text == TEXT
    assert done.usage is not None
    assert done.usage.output_tokens > 0
    assert done.created_at == begun.created_at  # when it was made, not when it was run
    assert fake.last.path == path
    assert "background" not in json.loads(fake.last.body)
    # A finished background response is kept: it is continued and its input listed.
    follow = client.responses.create(model=model, previous_response_id=begun.id, input="More.")
    assert follow.output_text == TEXT
    assert [i.type for i in client.responses.input_items.list(begun.id).data] == ["message"]


def test_cancel_closes_the_upstream_request_at_once(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    before = fake.open_streams
    begun = client.responses.create(model=CLAUDE, input="Hi.", background=True, extra_headers=SLOW)
    assert _streams_open(fake, before + 1)
    cancelled = client.responses.cancel(begun.id)
    assert cancelled.status == "cancelled"
    assert cancelled.id == begun.id
    # Closed well before the ten seconds the stream would have run.
    assert wait_until(lambda: fake.open_streams == before, timeout=3)
    assert client.responses.retrieve(begun.id).status == "cancelled"
    assert client.responses.cancel(begun.id).status == "cancelled"  # idempotent
    time.sleep(0.3)  # the run settled: it did not write over the cancel
    assert client.responses.retrieve(begun.id).status == "cancelled"
    with pytest.raises(openai.NotFoundError):  # a cancelled answer is not continued
        client.responses.create(model=CLAUDE, previous_response_id=begun.id, input="More.")


def test_a_cancel_right_after_create_stays_cancelled(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    before = fake.open_streams
    begun = client.responses.create(model=CLAUDE, input="Hi.", background=True, extra_headers=SLOW)
    assert client.responses.cancel(begun.id).status == "cancelled"
    assert wait_until(lambda: fake.open_streams == before, timeout=3)
    time.sleep(0.3)  # whether or not it had begun, the run settled without writing over it
    assert client.responses.retrieve(begun.id).status == "cancelled"


def test_what_cannot_be_cancelled_is_refused_as_openai_refuses_it(
    client: openai.OpenAI,
) -> None:
    plain = client.responses.create(model=CLAUDE, input="Hi.")
    with pytest.raises(openai.BadRequestError, match="background=true"):
        client.responses.cancel(plain.id)
    done = _settled(client, client.responses.create(model=CLAUDE, input="Hi.", background=True).id)
    assert done.status == "completed"
    with pytest.raises(openai.BadRequestError, match="completed"):
        client.responses.cancel(done.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_" + "0" * 32)


def test_background_is_isolated_between_client_keys(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    before = fake.open_streams
    with _client(gateway, "key-alice") as alice, _client(gateway, "key-bob") as bob:
        mine = alice.responses.create(
            model=CLAUDE, input="Secret.", background=True, extra_headers=SLOW
        )
        assert _streams_open(fake, before + 1)
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.cancel(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.delete(mine.id)
        assert alice.responses.retrieve(mine.id).status == "in_progress"
        alice.responses.delete(mine.id)  # deleting a running one stops it
        assert wait_until(lambda: fake.open_streams == before, timeout=3)
        with pytest.raises(openai.NotFoundError):
            alice.responses.retrieve(mine.id)


def test_a_failed_background_response_says_why(client: openai.OpenAI) -> None:
    begun = client.responses.create(
        model=CLAUDE, input="Hi.", background=True, extra_headers={"x-fake-status": "500"}
    )
    done = _settled(client, begun.id)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.message


def test_refused_combinations_are_clear_400s(client: openai.OpenAI, fake: FakeUpstream) -> None:
    seen = len(fake.requests)
    with pytest.raises(openai.BadRequestError, match="store"):
        client.responses.create(model=CLAUDE, input="Hi.", background=True, store=False)
    with pytest.raises(openai.BadRequestError, match="temperature"):  # checked before queued
        client.responses.create(model=CLAUDE, input="Hi.", background=True, temperature="hot")
    assert len(fake.requests) == seen  # nothing was sent


def test_a_bad_key_is_refused_before_anything_runs(gateway: ServerThread) -> None:
    with _client(gateway, "key-mallory") as mallory, pytest.raises(openai.AuthenticationError):
        mallory.responses.create(model=CLAUDE, input="Hi.", background=True)


def test_background_on_an_openai_model_goes_to_openai(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    """A provider that speaks Responses runs its own background: the field is passed on."""
    answer = client.responses.create(model=GPT, input="Hi.", background=True)
    assert answer.id.startswith("resp_")  # the provider's answer, as it gave it
    assert fake.last.path == "/v1/responses"
    assert json.loads(fake.last.body)["background"] is True


def test_a_kept_response_shows_when_it_was_made(client: openai.OpenAI) -> None:
    made = client.responses.create(model=CLAUDE, input="Hi.")
    time.sleep(1.1)  # a second later, by the clock created_at counts in
    assert client.responses.retrieve(made.id).created_at == made.created_at


# -- two instances on one Redis -------------------------------------------------------------


def _instance(upstream: ServerThread, redis: RedisServer, prefix: str, **options: Any) -> Any:
    return make_asgi_app(
        [AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY)],
        validate_credentials="off",
        guards=Guards(client_keys=KEYS),
        store=RedisStore.from_url(redis.url, prefix=prefix),
        **options,
    )


@pytest.fixture
def two_instances(
    upstream: ServerThread, redis_server: RedisServer
) -> Iterator[tuple[ServerThread, ServerThread]]:
    prefix = f"t-{uuid.uuid4().hex}:"
    first, second = (
        _instance(upstream, redis_server, prefix),
        _instance(upstream, redis_server, prefix),
    )
    with serve(first) as one, serve(second) as other:
        yield one, other


def test_a_background_response_is_seen_from_the_other_instance(
    two_instances: tuple[ServerThread, ServerThread],
) -> None:
    first, second = two_instances
    with _client(first) as on_first, _client(second) as on_second:
        begun = on_first.responses.create(model=CLAUDE, input="Hi.", background=True)
        done = _settled(on_second, begun.id)
        assert done.status == "completed"
        assert done.output_text == TEXT
        with _client(second, "key-bob") as bob, pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(begun.id)


def test_a_cancel_on_one_instance_stops_the_run_on_the_other(
    two_instances: tuple[ServerThread, ServerThread], fake: FakeUpstream
) -> None:
    first, second = two_instances
    before = fake.open_streams
    with _client(first) as on_first, _client(second) as on_second:
        begun = on_first.responses.create(
            model=CLAUDE, input="Hi.", background=True, extra_headers=SLOW
        )
        assert _streams_open(fake, before + 1)
        assert on_second.responses.cancel(begun.id).status == "cancelled"
        # The run on the first instance reads the mark within its poll, then closes.
        assert wait_until(lambda: fake.open_streams == before, timeout=3)
        assert on_first.responses.retrieve(begun.id).status == "cancelled"


# -- a graceful drain with a background response running ------------------------------------


@pytest.mark.parametrize(("drain", "status"), [(10.0, "completed"), (0.2, "failed")])
def test_a_drain_waits_for_a_background_response_or_aborts_it(
    upstream: ServerThread,
    redis_server: RedisServer,
    fake: FakeUpstream,
    drain: float,
    status: str,
) -> None:
    prefix = f"t-{uuid.uuid4().hex}:"
    before = fake.open_streams
    # Twenty chunks 50 ms apart: a second of streaming, inside a 10 s drain, not a 0.2 s one.
    slow = {"x-fake-chunks": "20", "x-fake-gap": "0.05"}
    with serve(_instance(upstream, redis_server, prefix)) as other:
        first = serve(_instance(upstream, redis_server, prefix, drain_timeout=drain))
        with first as one, _client(one) as on_first:
            begun = on_first.responses.create(
                model=CLAUDE, input="Hi.", background=True, extra_headers=slow
            )
            assert _streams_open(fake, before + 1)
        # The first instance has shut down (its lifespan drained it).
        assert wait_until(lambda: fake.open_streams == before, timeout=3)
        with _client(other) as on_other:
            done = on_other.responses.retrieve(begun.id)
        assert done.status == status
        if status == "completed":
            assert done.output_text.startswith("Hello from the fake upstream")
        else:
            assert done.error is not None
            assert "shut down" in done.error.message


def test_a_stream_is_resumed_only_for_a_streamed_background_response(
    gateway: ServerThread, client: Any
) -> None:
    begun = client.responses.create(model=CLAUDE, input="Hi.", background=True)
    assert _settled(client, begun.id).status == "completed"
    url, auth = f"{gateway.url}/v1/responses/{begun.id}", {"authorization": "Bearer key-alice"}
    answer = httpx.get(url, params={"stream": "true"}, headers=auth)
    assert answer.status_code == 400
    assert "stream=true" in answer.json()["error"]["message"]
    bad = httpx.get(url, params={"stream": "true", "starting_after": "x"}, headers=auth)
    assert bad.status_code == 400
    assert "starting_after" in bad.json()["error"]["message"]


# -- streamed background responses, resumed -------------------------------------------------

#: Thirty chunks 50 ms apart: a stream of about a second and a half.
STEADY = {"x-fake-chunks": "30", "x-fake-gap": "0.05"}


def _deltas(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_a_streamed_background_response_streams_and_is_kept(client: openai.OpenAI) -> None:
    with client.responses.create(model=CLAUDE, input="Hi.", background=True, stream=True) as stream:
        events = list(stream)
    assert events[0].type == "response.created"
    assert events[0].response.background is True
    assert events[-1].type == "response.completed"
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))
    assert _deltas(events) == TEXT
    response_id = events[0].response.id
    assert events[-1].response.id == response_id
    done = client.responses.retrieve(response_id)
    assert (done.status, done.output_text, done.background) == ("completed", TEXT, True)
    # The whole stream again, from the start, as it was kept.
    again = list(client.responses.retrieve(response_id, stream=True))
    assert [e.sequence_number for e in again] == numbers
    assert _deltas(again) == TEXT


def _read_some_then_leave(client: openai.OpenAI, count: int) -> tuple[str, list[Any]]:
    """The first ``count`` events of a steady streamed background response; then the
    client goes away (the response goes on)."""
    seen: list[Any] = []
    with client.responses.create(
        model=CLAUDE, input="Hi.", background=True, stream=True, extra_headers=STEADY
    ) as stream:
        for event in stream:
            seen.append(event)
            if len(seen) == count:
                break
    return seen[0].response.id, seen


def test_a_client_that_leaves_resumes_where_it_left(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    response_id, seen = _read_some_then_leave(client, 6)
    assert client.responses.retrieve(response_id).status == "in_progress"  # not stopped
    last = seen[-1].sequence_number
    rest = list(client.responses.retrieve(response_id, stream=True, starting_after=last))
    assert rest[0].sequence_number == last + 1
    assert [e.sequence_number for e in rest] == list(range(last + 1, last + 1 + len(rest)))
    assert rest[-1].type == "response.completed"
    done = client.responses.retrieve(response_id)
    assert done.status == "completed"
    assert _deltas(seen) + _deltas(rest) == done.output_text
    assert len(done.output_text.split()) == 30


def test_a_stream_left_on_one_instance_resumes_on_the_other(
    two_instances: tuple[ServerThread, ServerThread],
) -> None:
    first, second = two_instances
    with _client(first) as on_first, _client(second) as on_second:
        response_id, seen = _read_some_then_leave(on_first, 4)
        last = seen[-1].sequence_number
        rest = list(on_second.responses.retrieve(response_id, stream=True, starting_after=last))
        assert rest[0].sequence_number == last + 1
        assert rest[-1].type == "response.completed"
        assert _deltas(seen) + _deltas(rest) == rest[-1].response.output_text
        with _client(second, "key-bob") as bob, pytest.raises(openai.NotFoundError):
            list(bob.responses.retrieve(response_id, stream=True))


def test_a_cancelled_streamed_response_ends_its_resumed_stream(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    before = fake.open_streams
    seen: list[Any] = []
    with client.responses.create(
        model=CLAUDE, input="Hi.", background=True, stream=True, extra_headers=SLOW
    ) as stream:
        for event in stream:
            seen.append(event)
            if len(seen) == 3:
                client.responses.cancel(seen[0].response.id)
    # The stream ended once the run was stopped, long before its two hundred chunks.
    assert "response.completed" not in [e.type for e in seen]
    assert len(_deltas(seen).split()) < 100
    assert wait_until(lambda: fake.open_streams == before, timeout=3)
    response_id = seen[0].response.id
    assert client.responses.retrieve(response_id).status == "cancelled"
    rest = list(client.responses.retrieve(response_id, stream=True, starting_after=2))
    assert [e.sequence_number for e in rest] == [e.sequence_number for e in seen[3:]]


# -- events, and routed models --------------------------------------------------------------


def test_a_run_is_an_event_of_its_own_with_its_usage(
    upstream: ServerThread, transport_kind: str, fake: FakeUpstream
) -> None:
    events: list[Any] = []
    proxy = make_asgi_app(
        _adapters(upstream),
        transport=TRANSPORTS[transport_kind](),
        validate_credentials="off",
        guards=Guards(client_keys=KEYS),
        sinks=[events.append],
    )
    with serve(proxy) as gateway, _client(gateway) as client:
        done = _settled(
            client, client.responses.create(model=CLAUDE, input="Hi.", background=True).id
        )
        assert done.status == "completed"
        assert wait_until(lambda: any(e.provider == "anthropic" for e in events))
        run = next(e for e in events if e.provider == "anthropic")
        assert run.translated is True
        assert run.client_dialect == "openai-responses"
        assert run.identity == "alice"
        assert run.usage is not None
        assert run.usage.input_tokens == 10
        before = fake.open_streams
        slow = client.responses.create(
            model=CLAUDE, input="Hi.", background=True, extra_headers=SLOW
        )
        assert _streams_open(fake, before + 1)
        client.responses.cancel(slow.id)
        assert wait_until(lambda: any(e.error_kind == "cancelled" for e in events))


def test_background_on_a_routed_model(upstream: ServerThread, transport_kind: str) -> None:
    proxy = make_asgi_app(
        _adapters(upstream),
        transport=TRANSPORTS[transport_kind](),
        validate_credentials="off",
        guards=Guards(client_keys=KEYS),
        routes={"smart": Route([Deployment(CLAUDE), Deployment(LOCAL)])},
    )
    with serve(proxy) as gateway, _client(gateway) as client:
        begun = client.responses.create(model="smart", input="Hi.", background=True)
        assert begun.status == "queued"
        done = _settled(client, begun.id)
        assert done.status == "completed"
        assert done.id == begun.id
        assert done.output_text == TEXT


# -- kept events, bounded -----------------------------------------------------------------


@pytest.mark.anyio
async def test_kept_events_are_bounded_and_a_resume_says_where_they_end() -> None:

    store = MemoryStore()
    log = EventLog(store, "k", ttl=60, max_bytes=100)
    events = [f'event: e\ndata: {{"n": {n}}}\n\n'.encode() for n in range(10)]
    fit = 100 // len(events[0])  # the events that fit in the bound
    assert 2 < fit < 10
    for number, event in enumerate(events[:2]):
        log.add(number, event)
    await log.flush()
    for number, event in enumerate(events[2:], start=2):
        log.add(number, event)
    await log.flush()
    finished = True

    async def over() -> bool:
        return finished

    got = [chunk async for chunk in follow(store, "k", 0, over, 0.01)]
    assert got == [*events[1:fit], TRUNCATED]  # after sequence number 0
    everything = [chunk async for chunk in follow(store, "k", -1, over, 0.01)]
    assert everything == [*events[:fit], TRUNCATED]


def test_a_kept_answer_says_the_creation_time_it_is_kept_under(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The answer is encoded a second after the request was kept (a second boundary
    # crossed meanwhile): both must still say the same time.
    def a_second_later(codec: OpenAIResponsesCodec) -> int:
        return int(time.time()) + 1 if codec.created is None else codec.created

    monkeypatch.setattr(OpenAIResponsesCodec, "_created", a_second_later)
    made = client.responses.create(model=CLAUDE, input="Hi.")
    streamed = list(client.responses.create(model=CLAUDE, input="Hi.", stream=True))
    monkeypatch.undo()
    assert client.responses.retrieve(made.id).created_at == made.created_at
    done = streamed[-1].response  # type: ignore[union-attr]
    assert client.responses.retrieve(done.id).created_at == done.created_at
