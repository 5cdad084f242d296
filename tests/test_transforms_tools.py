"""DropTools: tool definitions, tool_choice, and mentions in system text."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from provider_proxy import RequestContext
from provider_proxy.transforms import DropTools


def ctx(path: str = "/chat/completions", method: str = "POST") -> RequestContext:
    return RequestContext("openai", method, path, b"", [], "rid")


def chat_tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {}}}


def apply(transform: DropTools, body: Any) -> Any:
    original = copy.deepcopy(body)
    result = transform(body, ctx())
    assert body == original  # the input is never changed
    return result


DROP = DropTools(["bash", "web_search"])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # OpenAI chat
        (
            {"tools": [chat_tool("bash"), chat_tool("read")], "tool_choice": "auto"},
            {"tools": [chat_tool("read")], "tool_choice": "auto"},
        ),
        (
            {
                "tools": [chat_tool("bash"), chat_tool("read")],
                "tool_choice": {"type": "function", "function": {"name": "bash"}},
            },
            {"tools": [chat_tool("read")]},
        ),
        (
            {
                "tools": [chat_tool("bash"), chat_tool("read")],
                "tool_choice": {"type": "function", "function": {"name": "read"}},
            },
            {
                "tools": [chat_tool("read")],
                "tool_choice": {"type": "function", "function": {"name": "read"}},
            },
        ),
        # none left: tools and the keys that need them go
        (
            {
                "model": "m",
                "tools": [chat_tool("bash"), chat_tool("web_search")],
                "tool_choice": "required",
                "parallel_tool_calls": False,
            },
            {"model": "m"},
        ),
        # Responses API tools are flat, and built-in tools have no name to match
        (
            {
                "tools": [{"type": "function", "name": "bash"}, {"type": "web_search"}],
                "tool_choice": {"type": "function", "name": "bash"},
            },
            {"tools": [{"type": "web_search"}]},
        ),
        # Anthropic
        (
            {
                "tools": [{"name": "bash", "input_schema": {}}, {"name": "edit"}],
                "tool_choice": {"type": "tool", "name": "bash"},
            },
            {"tools": [{"name": "edit"}]},
        ),
        (
            {
                "tools": [{"name": "web_search", "type": "web_search_20250305"}],
                "tool_choice": {"type": "any"},
            },
            {},
        ),
        # allowed_tools choices lose the dropped tools (chat nests them, Responses does not)
        (
            {
                "tools": [chat_tool("read"), chat_tool("bash"), chat_tool("grep")],
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {
                        "mode": "auto",
                        "tools": [
                            {"type": "function", "function": {"name": "bash"}},
                            {"type": "function", "function": {"name": "read"}},
                        ],
                    },
                },
            },
            {
                "tools": [chat_tool("read"), chat_tool("grep")],
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {
                        "mode": "auto",
                        "tools": [{"type": "function", "function": {"name": "read"}}],
                    },
                },
            },
        ),
        (
            {
                "tools": [{"type": "function", "name": "bash"}, {"type": "function", "name": "x"}],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "required",
                    "tools": [{"type": "function", "name": "bash"}],
                },
            },
            {"tools": [{"type": "function", "name": "x"}]},
        ),
        # a choice naming a dropped tool goes even when the client sent no such tool
        ({"tool_choice": {"type": "tool", "name": "bash"}}, {}),
        # nothing to drop
        ({"tools": [chat_tool("read")], "tool_choice": "auto"}, None),
        ({"tools": [], "tool_choice": "none"}, None),
        ({"tools": "bash"}, None),
        ({"tools": [None, 1, {"function": "bash"}]}, None),
        ("bash", None),
    ],
)
def test_tools_and_tool_choice(body: Any, expected: Any) -> None:
    assert apply(DROP, body) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Use bash to run commands.", "Use to run commands."),
        ("Use bash or web_search; bashful is fine.", "Use or; bashful is fine."),
        ("bash first", "first"),
        ("last: bash", "last:"),
        ("Quoted `bash` tool", "Quoted tool"),
        ("(bash)", "()"),
        ("bash_exec and my-bash and bash-like and Bash stay", None),
        ("bash bash", ""),
        ("line one\nbash\nline three", "line one\n\nline three"),
    ],
)
def test_mentions_in_system_text(text: str, expected: str | None) -> None:
    body = {"messages": [{"role": "system", "content": text}]}
    result = apply(DROP, body)
    if expected is None:
        assert result is None
    else:
        assert result == {"messages": [{"role": "system", "content": expected}]}


def test_mentions_everywhere_system_text_lives() -> None:
    body = {
        "system": [{"type": "text", "text": "Call bash."}, {"type": "text", "text": "Fine."}],
        "instructions": "Never bash.",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Prefer bash."}]},
            {"role": "user", "content": "Run bash please."},
            {"role": "assistant", "content": "I will use bash."},
        ],
        "input": [{"role": "system", "content": "web_search is off."}],
    }
    assert apply(DROP, body) == {
        "system": [{"type": "text", "text": "Call."}, {"type": "text", "text": "Fine."}],
        "instructions": "Never.",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Prefer."}]},
            {"role": "user", "content": "Run bash please."},  # only system text is scrubbed
            {"role": "assistant", "content": "I will use bash."},
        ],
        "input": [{"role": "system", "content": "is off."}],
    }


def test_names_with_regex_characters_are_literal() -> None:
    drop = DropTools(["a.b"])
    body = {"system": "use a.b, not axb", "tools": [{"name": "a.b"}, {"name": "axb"}]}
    assert apply(drop, body) == {"system": "use, not axb", "tools": [{"name": "axb"}]}


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ("bash", "list of strings"),
        ([], "at least one"),
        ([""], "non-empty"),
        (["ok", 3], "non-empty strings"),
    ],
)
def test_bad_configuration(names: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DropTools(names)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/chat/completions", True),
        ("POST", "/responses", True),
        ("POST", "/v1/messages", True),
        ("POST", "/v1/messages/count_tokens", True),
        ("POST", "/embeddings", False),
        ("GET", "/v1/messages", False),
    ],
)
def test_applies_to(method: str, path: str, expected: bool) -> None:
    assert DROP.applies_to(ctx(path, method)) is expected
