"""Reasoning a Chat client cannot carry, kept server-side between the turns of a tool loop.

The ``openai`` SDK on a thinking Claude model: the signed thinking in front of
a tool call is kept by the proxy, keyed by the client and the tool-call id,
and put back when the tool result comes in; the fake provider refuses a turn
whose thinking was lost, as Anthropic does. Another client sending the same
tool-call id gets nothing of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from provider_proxy import Guards, MemoryStore, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter
from provider_proxy.dialects.canonical import (
    Message,
    Reasoning,
    ReasoningDelta,
    ReasoningSignature,
    RedactedReasoning,
    Request,
    Text,
    TextDelta,
    ToolCall,
    ToolCallStart,
)
from provider_proxy.engine._reasoning import ReasoningMemory, StreamCapture
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY
from .servers import ServerThread, serve

CLAUDE = "anthropic/claude-sonnet-4-5"
MESSAGES: Any = [{"role": "user", "content": "What time is it?"}]
TOOLS: Any = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}]
THINKING = {"x-fake-thinking": "1"}
KEYS = {"key-alice": "alice", "key-bob": "bob"}


@pytest.fixture
def gateway(upstream: ServerThread) -> Iterator[ServerThread]:
    proxy = make_asgi_app(
        [AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY)],
        guards=Guards(client_keys=KEYS),
        validate_credentials="off",
    )
    with serve(proxy) as server:
        yield server


def _client(gateway: ServerThread, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def _first_turn(client: openai.OpenAI, *, stream: bool) -> list[Any]:
    """Ask with thinking and a tool; the history to send back with the tool's result."""
    headers = {**THINKING, "x-fake-tools": "now"}
    if stream:
        with client.chat.completions.stream(
            model=CLAUDE,
            messages=MESSAGES,
            tools=TOOLS,
            reasoning_effort="low",
            extra_headers=headers,
        ) as events:
            message = events.get_final_completion().choices[0].message
    else:
        message = (
            client.chat.completions.create(
                model=CLAUDE,
                messages=MESSAGES,
                tools=TOOLS,
                reasoning_effort="low",
                extra_headers=headers,
            )
            .choices[0]
            .message
        )
    assert message.tool_calls
    assistant = {
        "role": "assistant",
        "content": message.content,
        "tool_calls": [call.model_dump() for call in message.tool_calls],
    }
    return [
        *MESSAGES,
        assistant,
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "12:00"},
    ]


def _second_turn(client: openai.OpenAI, history: list[Any]) -> str | None:
    answer = client.chat.completions.create(
        model=CLAUDE,
        messages=history,
        tools=TOOLS,
        reasoning_effort="low",
        extra_headers=THINKING,
    )
    return answer.choices[0].message.content


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_tool_loop_on_a_thinking_model_keeps_its_signature(
    gateway: ServerThread, fake: FakeUpstream, stream: bool
) -> None:
    with _client(gateway, "key-alice") as alice:
        history = _first_turn(alice, stream=stream)
        signed = json.loads(fake.last.body)  # the first answer's thinking came from here
        assert signed["thinking"]["type"] == "enabled"
        assert _second_turn(alice, history)
    sent = json.loads(fake.last.body)["messages"][1]["content"]
    assert [block["type"] for block in sent][:2] == ["thinking", "tool_use"]
    assert sent[0]["signature"]


def test_another_client_gets_none_of_it(gateway: ServerThread, fake: FakeUpstream) -> None:
    with _client(gateway, "key-alice") as alice, _client(gateway, "key-bob") as bob:
        history = _first_turn(alice, stream=False)
        with pytest.raises(openai.BadRequestError):
            _second_turn(bob, history)  # Alice's tool call id, Bob's key: not restored
        sent = json.loads(fake.last.body)["messages"][1]["content"]
        assert all(block["type"] != "thinking" for block in sent)
        assert _second_turn(alice, history)  # still there for Alice


# -- the pieces --------------------------------------------------------------------------

pytestmark = pytest.mark.anyio


async def test_memory_restores_only_where_reasoning_is_missing() -> None:
    memory = ReasoningMemory(MemoryStore())
    kept = [Reasoning("hm", "sig-1"), RedactedReasoning("opaque"), Reasoning("unsigned")]
    await memory.remember("alice", "call_1", kept)
    lost = Message("assistant", (ToolCall("call_1", "now", "{}"),))
    whole = Message("assistant", (Reasoning("x", "sig-2"), ToolCall("call_1", "now", "{}")))
    request = Request("m", (Message("user", (Text("hi"),)), lost, whole))
    restored = await memory.restore("alice", request)
    assert restored.messages[1].parts == (
        Reasoning("hm", "sig-1"),
        RedactedReasoning("opaque"),
        ToolCall("call_1", "now", "{}"),
    )
    assert restored.messages[2] == whole  # it kept its own
    assert (await memory.restore("bob", request)) is request  # nothing for another client


def test_stream_capture_hands_over_the_reasoning_before_the_first_call() -> None:
    capture = StreamCapture()
    events = [
        ReasoningDelta("Let me "),
        ReasoningDelta("think."),
        ReasoningSignature("sig"),
        TextDelta("Checking."),
        ToolCallStart(0, "call_9", "now"),
        ToolCallStart(1, "call_10", "now"),
    ]
    found = [capture.feed(event) for event in events]
    assert found[:4] == [None] * 4
    assert found[4] == ("call_9", [Reasoning("Let me think.", "sig")])
    assert found[5] is None  # kept once, for the first call
