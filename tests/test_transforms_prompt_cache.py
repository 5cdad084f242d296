"""AnthropicPromptCache: where breakpoints go, the limit of four, TTLs and the beta header."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import pytest

from provider_proxy import RequestContext
from provider_proxy.transforms import EXTENDED_TTL_BETA, MAX_BREAKPOINTS, AnthropicPromptCache

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
FIVE = {"type": "ephemeral", "ttl": "5m"}


def ctx(
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    path: str = "/v1/messages",
    method: str = "POST",
) -> RequestContext:
    return RequestContext("anthropic", method, path, b"", list(headers), "rid")


def conversation() -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "tools": [{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}}],
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
            {"role": "user", "content": [{"type": "text", "text": "last"}]},
        ],
    }


def where(body: dict[str, Any]) -> dict[str, Any]:
    """The ``cache_control`` at each of the four places (``None`` where there is none)."""

    def mark(block: Any) -> Any:
        return block.get("cache_control") if isinstance(block, dict) else None

    system = body.get("system")
    first = body["messages"][0]["content"]
    return {
        "tools": mark(body["tools"][-1]),
        "system": mark(system[-1]) if isinstance(system, list) else None,
        "first": mark(first[-1]) if isinstance(first, list) else None,
        "tail": mark(body["messages"][-1]["content"][-1]),
    }


def apply(cache: AnthropicPromptCache, body: Any, context: RequestContext | None = None) -> Any:
    original = copy.deepcopy(body)
    result = cache(body, context or ctx())
    assert body == original  # the input is never changed
    return result


def count(body: Any) -> int:
    """Every ``cache_control`` object in the body (none of the fixtures nest them otherwise)."""
    if isinstance(body, dict):
        own = isinstance(body.get("cache_control"), dict)
        return own + sum(count(v) for k, v in body.items() if k != "cache_control")
    if isinstance(body, list):
        return sum(count(v) for v in body)
    return 0


def test_fresh_conversation_gets_all_four() -> None:
    result = apply(AnthropicPromptCache(), conversation())
    assert result == {
        "model": "claude-sonnet-4-5",
        "tools": [
            {"name": "a", "input_schema": {}},
            {"name": "b", "input_schema": {}, "cache_control": EPHEMERAL},
        ],
        "system": [{"type": "text", "text": "Be brief.", "cache_control": EPHEMERAL}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "first", "cache_control": EPHEMERAL}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "last", "cache_control": EPHEMERAL}],
            },
        ],
    }
    assert count(result) == MAX_BREAKPOINTS


def _with_client_marks(n: int) -> dict[str, Any]:
    body = conversation()
    body["messages"][1]["content"] = [
        {"type": "text", "text": str(i), "cache_control": dict(EPHEMERAL)} for i in range(n)
    ]
    return body


@pytest.mark.parametrize(
    ("client", "placed"),
    [
        (0, {"tail", "system", "tools", "first"}),
        (1, {"tail", "system", "tools"}),
        (2, {"tail", "system"}),
        (3, {"tail"}),
    ],
)
def test_priority_when_the_client_used_some(client: int, placed: set[str]) -> None:
    result = apply(AnthropicPromptCache(), _with_client_marks(client))
    assert {name for name, mark in where(result).items() if mark} == placed
    assert count(result) == MAX_BREAKPOINTS


def test_nothing_when_the_client_used_all_four() -> None:
    assert apply(AnthropicPromptCache(), _with_client_marks(4)) is None
    assert apply(AnthropicPromptCache(), _with_client_marks(5)) is None


def test_breakpoints_nested_in_tool_results_count() -> None:
    body = conversation()
    body["messages"][1] = {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "t",
                "content": [
                    {"type": "text", "text": str(i), "cache_control": dict(EPHEMERAL)}
                    for i in range(3)
                ],
            }
        ],
    }
    result = apply(AnthropicPromptCache(), body)
    assert {name for name, mark in where(result).items() if mark} == {"tail"}


def test_automatic_caching_takes_the_tail_slot() -> None:
    body = {**conversation(), "cache_control": dict(EPHEMERAL)}
    result = apply(AnthropicPromptCache(), body)
    assert where(result) == {
        "tools": EPHEMERAL,
        "system": EPHEMERAL,
        "first": EPHEMERAL,
        "tail": None,
    }


def test_a_place_already_marked_costs_no_slot() -> None:
    body = conversation()
    body["system"] = [{"type": "text", "text": "Be brief.", "cache_control": dict(FIVE)}]
    result = apply(AnthropicPromptCache(), body)
    assert result["system"] == body["system"]  # left as the client wrote it
    assert where(result)["tools"] == EPHEMERAL
    assert where(result)["first"] == EPHEMERAL
    assert count(result) == MAX_BREAKPOINTS


def test_single_message_is_one_place() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert apply(AnthropicPromptCache(), body) == {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": EPHEMERAL}],
            }
        ]
    }


@pytest.mark.parametrize(
    ("content", "marked"),
    [
        # thinking blocks and blank text cannot carry a breakpoint: the last other block does
        (
            [
                {"type": "text", "text": "q"},
                {"type": "thinking", "thinking": "...", "signature": "s"},
                {"type": "redacted_thinking", "data": "x"},
                {"type": "text", "text": "  "},
            ],
            0,
        ),
        ([{"type": "image", "source": {}}, {"type": "text", "text": ""}], 0),
        ([{"type": "tool_result", "tool_use_id": "t", "content": "out"}], 0),
        ([{"type": "text", "text": "a"}, {"type": "document", "source": {}}], 1),
    ],
)
def test_last_cacheable_block(content: list[dict[str, Any]], marked: int) -> None:
    body = {"messages": [{"role": "user", "content": content}]}
    result = apply(AnthropicPromptCache(), body)["messages"][0]["content"]
    assert [i for i, block in enumerate(result) if "cache_control" in block] == [marked]
    assert result[marked] == {**content[marked], "cache_control": EPHEMERAL}


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": ""}]},
        {"messages": [{"role": "user", "content": [{"type": "thinking", "thinking": "x"}]}]},
        {"messages": []},
        {"system": "   ", "messages": [{"role": "user", "content": None}]},
        {"tools": [], "messages": [{"role": "user"}]},
        {"messages": "not a list"},
        {"model": "claude"},
        ["not", "a", "body"],
        None,
    ],
)
def test_nothing_to_mark(body: Any) -> None:
    assert apply(AnthropicPromptCache(), body) is None


def test_system_blocks_mark_the_last_text_block() -> None:
    body = {
        "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        "messages": [{"role": "user", "content": [{"type": "thinking", "thinking": "x"}]}],
    }
    assert apply(AnthropicPromptCache(), body)["system"] == [
        {"type": "text", "text": "a"},
        {"type": "text", "text": "b", "cache_control": EPHEMERAL},
    ]


# -- TTLs ------------------------------------------------------------------------------


def test_hour_before_the_tail_and_the_beta_flag_merged() -> None:
    context = ctx([(b"anthropic-beta", b"tools-2024-04-04, other-2025-01-01")])
    result = apply(AnthropicPromptCache(ttl="1h"), conversation(), context)
    assert where(result) == {"tools": HOUR, "system": HOUR, "first": HOUR, "tail": EPHEMERAL}
    assert context.upstream_headers == {
        "anthropic-beta": f"tools-2024-04-04,other-2025-01-01,{EXTENDED_TTL_BETA}"
    }


def test_an_hour_for_the_tail_too() -> None:
    result = apply(AnthropicPromptCache(ttl="1h", tail_ttl="1h"), conversation())
    assert set(map(str, where(result).values())) == {str(HOUR)}


def test_five_minutes_is_written_as_the_default() -> None:
    context = ctx()
    result = apply(AnthropicPromptCache(ttl="5m", tail_ttl="5m"), conversation(), context)
    assert set(map(str, where(result).values())) == {str(EPHEMERAL)}
    assert context.upstream_headers == {}


@pytest.mark.parametrize(
    ("upgrade", "expected"),
    [
        (False, {"prefix": EPHEMERAL, "explicit": FIVE, "tail": EPHEMERAL}),
        (True, {"prefix": HOUR, "explicit": FIVE, "tail": EPHEMERAL}),
    ],
)
def test_upgrade_raises_the_clients_ephemeral_breakpoints(
    upgrade: bool, expected: dict[str, Any]
) -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "p", "cache_control": {"type": "ephemeral"}}],
            },
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "e", "cache_control": FIVE}],
            },
            {
                "role": "user",
                "content": [{"type": "text", "text": "t", "cache_control": {"type": "ephemeral"}}],
            },
        ]
    }
    context = ctx()
    result = apply(AnthropicPromptCache(ttl="1h", upgrade=upgrade), body, context)
    if not upgrade:
        assert result is None  # every place is marked already
        return
    marks = [m["content"][0]["cache_control"] for m in result["messages"]]
    # The explicit five minutes stays; an hour before it is the order the API wants.
    assert marks == [expected["prefix"], expected["explicit"], expected["tail"]]
    assert EXTENDED_TTL_BETA in context.upstream_headers["anthropic-beta"]


def test_upgrade_of_the_tail_follows_tail_ttl() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "t", "cache_control": {"type": "ephemeral"}}],
            }
        ]
    }
    assert apply(AnthropicPromptCache(ttl="1h", upgrade=True), body) is None
    result = apply(AnthropicPromptCache(ttl="1h", tail_ttl="1h", upgrade=True), body)
    assert result["messages"][0]["content"][0]["cache_control"] == HOUR


def test_added_marks_before_a_clients_hour_get_an_hour() -> None:
    body = conversation()
    body["messages"][-1]["content"][-1]["cache_control"] = dict(HOUR)
    context = ctx()
    result = apply(AnthropicPromptCache(), body, context)
    assert where(result) == {"tools": HOUR, "system": HOUR, "first": HOUR, "tail": HOUR}
    assert context.upstream_headers == {"anthropic-beta": EXTENDED_TTL_BETA}


def test_added_marks_after_a_clients_five_minutes_get_five_minutes() -> None:
    body = conversation()
    body["tools"][0]["cache_control"] = dict(FIVE)
    context = ctx()
    result = apply(AnthropicPromptCache(ttl="1h"), body, context)
    assert where(result) == {
        "tools": EPHEMERAL,
        "system": EPHEMERAL,
        "first": None,  # no slot left: the client's mark and three of ours
        "tail": EPHEMERAL,
    }
    assert context.upstream_headers == {}  # no hour was written


def _in_render_order(body: dict[str, Any]) -> list[int]:
    """The TTL (seconds) of every breakpoint: tools, then system, then messages."""
    blocks = [*body.get("tools", []), *body.get("system", [])]
    for message in body["messages"]:
        if isinstance(message["content"], list):
            blocks.extend(message["content"])
    marks = [b["cache_control"] for b in blocks if "cache_control" in b]
    return [3600 if mark.get("ttl") == "1h" else 300 for mark in marks]


@pytest.mark.parametrize("client_mark", [HOUR, FIVE, EPHEMERAL])
@pytest.mark.parametrize("at", [0, 1, 2])
@pytest.mark.parametrize(
    "cache",
    [
        AnthropicPromptCache(),
        AnthropicPromptCache(ttl="1h"),
        AnthropicPromptCache(ttl="1h", upgrade=True),
        AnthropicPromptCache(ttl="1h", tail_ttl="1h", upgrade=True),
    ],
    ids=repr,
)
def test_ttls_never_increase_in_render_order(
    cache: AnthropicPromptCache, at: int, client_mark: dict[str, str]
) -> None:
    body = conversation()
    body["messages"][at]["content"] = [
        {"type": "text", "text": "x", "cache_control": dict(client_mark)}
    ]
    result = apply(cache, body)
    seconds = _in_render_order(result)
    assert seconds == sorted(seconds, reverse=True)
    assert len(seconds) == MAX_BREAKPOINTS


def test_beta_flag_merges_with_what_an_earlier_transform_set() -> None:
    context = ctx([(b"anthropic-beta", b"from-client")])
    context.upstream_headers["anthropic-beta"] = "from-transform," + EXTENDED_TTL_BETA.upper()
    apply(AnthropicPromptCache(ttl="1h"), conversation(), context)
    assert context.upstream_headers == {
        "anthropic-beta": "from-transform," + EXTENDED_TTL_BETA.upper()
    }


def test_repeated_client_headers_are_joined_and_deduplicated() -> None:
    context = ctx(
        [(b"anthropic-beta", b"a,b"), (b"anthropic-beta", f"b, {EXTENDED_TTL_BETA}".encode())]
    )
    apply(AnthropicPromptCache(ttl="1h"), conversation(), context)
    assert context.upstream_headers == {"anthropic-beta": f"a,b,{EXTENDED_TTL_BETA}"}


def test_beta_flag_can_be_left_out() -> None:
    context = ctx()
    result = apply(AnthropicPromptCache(ttl="1h", extended_ttl_beta=None), conversation(), context)
    assert where(result)["system"] == HOUR
    assert context.upstream_headers == {}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": "1d"}, "'5m' or '1h'"),
        ({"tail_ttl": 60}, "'5m' or '1h'"),
        ({"ttl": "5m", "tail_ttl": "1h"}, "shorter TTL"),
        ({"tail_ttl": "1h"}, "shorter TTL"),
        ({"upgrade": True}, "ttl='1h'"),
        ({"ttl": "5m", "upgrade": True}, "ttl='1h'"),
        ({"extended_ttl_beta": "a,b"}, "one beta flag"),
        ({"extended_ttl_beta": " "}, "one beta flag"),
    ],
)
def test_bad_configuration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnthropicPromptCache(**options)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/messages", True),
        ("POST", "/v1/messages/", True),
        ("POST", "/v1/messages/count_tokens", False),
        ("POST", "/v1/messages/batches", False),
        ("POST", "/chat/completions", False),
        ("GET", "/v1/messages", False),
    ],
)
def test_applies_to(method: str, path: str, expected: bool) -> None:
    assert AnthropicPromptCache().applies_to(ctx(path=path, method=method)) is expected
