"""Chat completion request bodies of an exact size, as JSON bytes.

A long body is a long chat history (many messages of prose), which is what
makes real requests large, so parsing costs what it costs in production.
"""

from __future__ import annotations

import itertools
from typing import Any

from provider_proxy._json import dumps

_TEXT = (
    "the quick brown fox jumps over a lazy dog while an assistant explains why "
    "streaming tokens matter for latency, résumé, naïve café, 42 tests and 7 retries"
)
_WORDS = _TEXT.split()

#: The key the benchmark transform adds; the fake upstream counts bodies that carry it.
TRANSFORM_MARKER = b'"bench_transformed":true'


def _prose(length: int, offset: int) -> str:
    words = itertools.islice(itertools.cycle(_WORDS), offset, None)
    parts: list[str] = []
    size = 0
    for word in words:
        parts.append(word)
        size += len(word) + 1
        if size >= length:
            break
    return " ".join(parts)[:length]


def chat_body(size: int, *, stream: bool = False, model: str = "gpt-bench") -> bytes:
    """A chat completion request of exactly ``size`` bytes (at least about 200)."""
    body: dict[str, Any] = {
        "model": model,
        "temperature": 0.7,
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "system", "content": "You are a helpful assistant."}],
    }
    messages: list[dict[str, str]] = body["messages"]
    turn = 0
    while len(dumps(body)) < size:
        role = "user" if turn % 2 == 0 else "assistant"
        messages.append({"role": role, "content": _prose(900, turn)})
        turn += 1
    # Trim the last message so the body is exactly ``size`` bytes long.
    while True:
        excess = len(dumps(body)) - size
        if excess <= 0:
            break
        last = messages[-1]
        last["content"] = last["content"][: max(len(last["content"]) - excess, 0)]
        if not last["content"] and excess > 0 and len(messages) > 1:
            messages.pop()
    pad = size - len(dumps(body))
    messages[-1]["content"] += "." * pad
    raw = dumps(body)
    assert len(raw) == size, (len(raw), size)
    return raw


def mark(body: Any, context: object) -> Any:
    """The benchmark's body transform: a trivial change, so the body is re-serialised."""
    body["bench_transformed"] = True
    return body
