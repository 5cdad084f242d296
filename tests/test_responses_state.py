"""engine/_responses_state: kept conversations, in a store, per client identity.

The pure parts (canonical values as JSON, an answer collected from its stream
events) with tables and hypothesis; the store's rules (continuation, the TTL,
the size and per-client caps, deletion, isolation) on a MemoryStore with a
clock the test moves.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider_proxy import MemoryStore
from provider_proxy._json import dumps, loads
from provider_proxy.dialects import OpenAIResponsesCodec
from provider_proxy.dialects.canonical import (
    CacheControl,
    Document,
    Finish,
    FinishReason,
    Image,
    Message,
    MessageStart,
    Reasoning,
    ReasoningDelta,
    ReasoningSignature,
    RedactedReasoning,
    RedactedReasoningBlock,
    Refusal,
    RefusalDelta,
    Request,
    Response,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
    UsageReport,
)
from provider_proxy.engine._responses_state import (
    AnswerCollector,
    AnswerNotFound,
    AnswerStore,
    ConversationTooLarge,
    StoredResponses,
    TooManyStored,
    from_plain,
    to_plain,
)
from provider_proxy.state import Store

pytestmark = pytest.mark.anyio
CODEC = OpenAIResponsesCodec()

# -- canonical values as JSON ---------------------------------------------------------------

texts = st.text(max_size=8)
cache = st.none() | st.builds(CacheControl, st.just("ephemeral"), st.none() | st.just("1h"))
content = st.one_of(
    st.builds(Text, texts, cache),
    st.builds(Image, st.none() | texts, st.none() | texts, st.none() | texts, cache),
    st.builds(Document, st.none() | texts, st.none() | texts, st.none() | texts),
)
parts = st.one_of(
    content,
    st.builds(ToolCall, texts, texts, texts),
    st.builds(ToolResult, texts, st.lists(content, max_size=2).map(tuple), st.booleans()),
    st.builds(Reasoning, texts, st.none() | texts),
    st.builds(RedactedReasoning, texts),
    st.builds(Refusal, texts),
)
messages = st.lists(
    st.builds(
        Message, st.sampled_from(["user", "assistant"]), st.lists(parts, max_size=4).map(tuple)
    ),
    max_size=4,
).map(tuple)


@settings(max_examples=200, deadline=None)
@given(messages)
def test_kept_messages_come_back_equal(value: tuple[Message, ...]) -> None:
    assert from_plain(loads(dumps(to_plain(value)))) == value


@given(st.sampled_from(list(FinishReason)), st.builds(Usage, *[st.none() | st.integers(0, 99)] * 5))
def test_a_kept_answer_comes_back_equal(finish: FinishReason, usage: Usage) -> None:
    answer = Response("resp_1", "m", (Text("Hi."), ToolCall("c", "n", "{}")), finish, usage)
    assert from_plain(to_plain(answer)) == answer


# -- an answer collected from its stream ------------------------------------------------------

COLLECTED: list[tuple[list[StreamEvent], Response | None]] = [
    (
        [
            MessageStart("upstream-id", "claude"),
            ReasoningDelta("Let "),
            ReasoningDelta("me think."),
            ReasoningSignature("sig"),
            RedactedReasoningBlock("opaque"),
            TextDelta("Sunny"),
            TextDelta(" today."),
            RefusalDelta("No."),
            ToolCallStart(0, "c1", "weather"),
            ToolCallDelta(0, '{"city":'),
            ToolCallDelta(0, '"Paris"}'),
            ToolCallEnd(0),
            ToolCallStart(1, "c1", "now"),
            ToolCallEnd(1),
            Finish(FinishReason.TOOL_CALLS),
            UsageReport(Usage(10, 5)),
        ],
        Response(
            "resp_mine",
            "claude",
            (
                Reasoning("Let me think.", "sig"),
                RedactedReasoning("opaque"),
                Text("Sunny today."),
                Refusal("No."),
                ToolCall("c1", "weather", '{"city":"Paris"}'),
                ToolCall("c1", "now", "{}"),
            ),
            FinishReason.TOOL_CALLS,
            Usage(10, 5),
        ),
    ),
    (
        [
            MessageStart("i", "m"),
            ReasoningDelta("Unsigned."),
            TextDelta("Hi."),
            Finish(FinishReason.STOP),
        ],
        Response("resp_mine", "m", (Reasoning("Unsigned."), Text("Hi.")), FinishReason.STOP),
    ),
    ([MessageStart("i", "m"), TextDelta("Hi.")], None),
    (
        [MessageStart("i", "m"), TextDelta("Hi."), StreamError(502, "server_error", "cut")],
        None,
    ),
    (
        [MessageStart("i", "m"), Finish(FinishReason.STOP), StreamError(502, "server_error", "x")],
        None,
    ),
]


@pytest.mark.parametrize(("events", "expected"), COLLECTED)
def test_an_answer_is_collected_from_its_events(
    events: list[StreamEvent], expected: Response | None
) -> None:
    collector = AnswerCollector("resp_mine")
    for event in events:
        collector.feed(event)
    assert collector.response() == expected


# -- the store's rules --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _answers(clock: Clock, **config: Any) -> AnswerStore:
    store: Store = MemoryStore(clock=clock)
    return AnswerStore(store, StoredResponses(**config))


HELLO = Message("user", (Text("Hi."),))


async def _turn(answers: AnswerStore, who: str, request: Request, text: str = "Hello.") -> str:
    request, keeping = await answers.begin(who, request, CODEC)
    events: list[StreamEvent] = [
        MessageStart("up", "m"),
        TextDelta(text),
        Finish(FinishReason.STOP),
    ]
    for event in events:
        keeping.rename(event)
    await keeping.end()
    return keeping.answer_id


async def test_a_continuation_gets_the_kept_turns_first() -> None:
    answers = _answers(Clock())
    first = await _turn(answers, "alice", Request("m", (HELLO,), store=True))
    assert first.startswith("resp_")
    follow = Message("user", (Text("More."),))
    request, _ = await answers.begin("alice", Request("m", (follow,), continues=first), CODEC)
    assert request.messages == (HELLO, Message("assistant", (Text("Hello."),)), follow)
    fetched = await answers.fetch("alice", first)
    assert (fetched.id, fetched.parts) == (first, (Text("Hello."),))


async def test_kept_system_messages_are_carried_and_instructions_are_not() -> None:
    answers = _answers(Clock())
    first = Request(
        "m", (HELLO,), system=(Text("Be brief."), Text("Metric units.")), transient_system=1,
        store=True,
    )  # fmt: skip
    kept = await _turn(answers, "alice", first)
    follow = Request(
        "m", (HELLO,), system=(Text("Be kind."), Text("In French.")), transient_system=1,
        continues=kept, store=True,
    )  # fmt: skip
    request, _ = await answers.begin("alice", follow, CODEC)
    assert request.system == (Text("Be kind."), Text("Metric units."), Text("In French."))
    second = await _turn(answers, "alice", follow)
    third, _ = await answers.begin("alice", Request("m", (HELLO,), continues=second), CODEC)
    assert third.system == (Text("Metric units."), Text("In French."))


async def test_another_identity_finds_nothing() -> None:
    answers = _answers(Clock())
    mine = await _turn(answers, "alice", Request("m", (HELLO,), store=True))
    for call in (
        answers.fetch("bob", mine),
        answers.delete("bob", mine),
        answers.begin("bob", Request("m", (HELLO,), continues=mine), CODEC),
    ):
        with pytest.raises(AnswerNotFound):
            await call
    assert not await answers.has(None, mine)
    assert await answers.has("alice", mine)


async def test_kept_answers_expire_after_the_ttl() -> None:
    clock = Clock()
    answers = _answers(clock, ttl=60)
    kept = await _turn(answers, "alice", Request("m", (HELLO,), store=True))
    clock.now += 59
    assert await answers.has("alice", kept)
    clock.now += 2
    with pytest.raises(AnswerNotFound):
        await answers.fetch("alice", kept)


async def test_store_false_keeps_nothing_and_takes_no_slot() -> None:
    answers = _answers(Clock(), per_client=1)
    answer = await _turn(answers, "alice", Request("m", (HELLO,)))
    assert not await answers.has("alice", answer)
    await _turn(answers, "alice", Request("m", (HELLO,), store=True))


async def test_the_per_client_cap_frees_on_delete_and_on_expiry() -> None:
    clock = Clock()
    answers = _answers(clock, per_client=2, ttl=60)
    first = await _turn(answers, "alice", Request("m", (HELLO,), store=True))
    await _turn(answers, "alice", Request("m", (HELLO,), store=True))
    with pytest.raises(TooManyStored) as refused:
        await answers.begin("alice", Request("m", (HELLO,), store=True), CODEC)
    assert refused.value.status_code == 429
    await _turn(answers, "bob", Request("m", (HELLO,), store=True))  # each client has its own
    await answers.delete("alice", first)
    with pytest.raises(AnswerNotFound):
        await answers.fetch("alice", first)
    await _turn(answers, "alice", Request("m", (HELLO,), store=True))
    clock.now += 61
    await _turn(answers, "alice", Request("m", (HELLO,), store=True))


async def test_an_unfinished_answer_frees_its_slot_and_is_not_kept() -> None:
    answers = _answers(Clock(), per_client=1)
    _, keeping = await answers.begin("alice", Request("m", (HELLO,), store=True), CODEC)
    keeping.rename(MessageStart("up", "m"))
    keeping.rename(TextDelta("Hi"))
    await keeping.end()
    assert not await answers.has("alice", keeping.answer_id)
    await _turn(answers, "alice", Request("m", (HELLO,), store=True))


async def test_a_whole_answer_is_kept_under_the_issued_id() -> None:
    answers = _answers(Clock())
    _, keeping = await answers.begin("alice", Request("m", (HELLO,), store=True), CODEC)
    renamed = keeping.whole(Response("upstream", "m", (Text("Hi."),), FinishReason.STOP))
    assert renamed.id == keeping.answer_id
    await keeping.end()
    assert (await answers.fetch("alice", keeping.answer_id)).parts == (Text("Hi."),)


async def test_a_conversation_too_large_to_keep_is_refused_before_it_is_sent() -> None:
    answers = _answers(Clock(), max_bytes=200)
    big = Message("user", (Text("x" * 300),))
    with pytest.raises(ConversationTooLarge) as refused:
        await answers.begin("alice", Request("m", (big,), store=True), CODEC)
    assert refused.value.status_code == 413
    await answers.begin("alice", Request("m", (big,)), CODEC)  # not kept: not refused


async def test_an_answer_too_large_to_keep_is_served_but_not_kept() -> None:
    answers = _answers(Clock(), max_bytes=400, per_client=1)
    kept = await _turn(answers, "alice", Request("m", (HELLO,), store=True), text="y" * 500)
    assert not await answers.has("alice", kept)
    await _turn(answers, "alice", Request("m", (HELLO,), store=True))  # its slot was freed


@pytest.mark.parametrize("config", [{"ttl": 0}, {"max_bytes": 0}, {"per_client": -1}])
def test_the_limits_must_be_positive(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="positive"):
        StoredResponses(**config)


class BrokenWrites(MemoryStore):
    """A store whose writes fail (a backend gone away mid-request)."""

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        raise ConnectionError("the store is gone")


async def test_a_store_failing_after_the_answer_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = AnswerStore(BrokenWrites(), StoredResponses())
    _, keeping = await answers.begin("alice", Request("m", (HELLO,), store=True), CODEC)
    for event in (MessageStart("up", "m"), TextDelta("Hi."), Finish(FinishReason.STOP)):
        keeping.rename(event)
    with caplog.at_level("WARNING", logger="provider_proxy"):
        await keeping.end()
    assert f"could not store the response {keeping.answer_id}" in caplog.text
