"""StripAnsi and strip_ansi: which sequences go, and from which parts of a request."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from provider_proxy import RequestContext
from provider_proxy.transforms import StripAnsi, strip_ansi

RED = "\x1b[31merror\x1b[0m: \x1b]8;;http://x\x07link\x1b]8;;\x1b\\ done\x1b(B"
CLEAN = "error: link done"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x1b[1;31mbold red\x1b[0m", "bold red"),
        ("\x1b[2K\x1b[1Gprogress 50%", "progress 50%"),  # erase line, cursor column
        ("\x1b[?25lhidden cursor\x1b[?25h", "hidden cursor"),  # private parameters
        ("\x9b31mC1 CSI\x9b0m", "C1 CSI"),
        ("\x1b]0;window title\x07prompt$ ", "prompt$ "),  # OSC ended by BEL
        ("\x1b]8;;https://e.x\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 ended by ST
        ("\x9d0;title\x9cafter", "after"),  # C1 OSC and ST
        ("\x1bP1$r0m\x1b\\dcs", "dcs"),  # a device control string
        ("\x1b(Bcharset \x1b)0", "charset "),
        ("\x1b7saved\x1b8 \x1bc\x1b=", "saved "),  # save/restore cursor, reset, keypad
        ("lone \x1b escape", "lone  escape"),
        ("\x1b\x1b[31m[0m", "[0m"),  # no escape survives to start another sequence
        ("tab\tand\nnewline and ünïcödé ✓", "tab\tand\nnewline and ünïcödé ✓"),
        ("[31m not an escape", "[31m not an escape"),
        ("", ""),
    ],
)
def test_strip_ansi(text: str, expected: str) -> None:
    assert strip_ansi(text) == expected
    assert strip_ansi(expected) == expected


def ctx(path: str = "/chat/completions", method: str = "POST") -> RequestContext:
    return RequestContext("openai", method, path, b"", [], "rid")


def tool_message(content: Any) -> dict[str, Any]:
    return {"messages": [{"role": "tool", "tool_call_id": "1", "content": content}]}


def tool_result(content: Any) -> dict[str, Any]:
    return {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": content},
                    {"type": "text", "text": RED},
                ],
            }
        ]
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # OpenAI chat: tool (and legacy function) messages, string or text parts
        (tool_message(RED), tool_message(CLEAN)),
        (
            tool_message([{"type": "text", "text": RED}, {"type": "image_url", "text": RED}]),
            tool_message([{"type": "text", "text": CLEAN}, {"type": "image_url", "text": RED}]),
        ),
        (
            {"messages": [{"role": "function", "name": "f", "content": RED}]},
            {"messages": [{"role": "function", "name": "f", "content": CLEAN}]},
        ),
        # Anthropic tool_result blocks; the message's other text is not a tool result
        (
            tool_result(RED),
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t", "content": CLEAN},
                            {"type": "text", "text": RED},
                        ],
                    }
                ]
            },
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "text", "text": RED}],
                            },
                            {"type": "mcp_tool_result", "content": [{"type": "text", "text": RED}]},
                        ],
                    }
                ]
            },
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "text", "text": CLEAN}],
                            },
                            {
                                "type": "mcp_tool_result",
                                "content": [{"type": "text", "text": CLEAN}],
                            },
                        ],
                    }
                ]
            },
        ),
        # Responses API: function call outputs, string or parts
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": RED}]},
            {"input": [{"type": "function_call_output", "call_id": "c", "output": CLEAN}]},
        ),
        (
            {
                "input": [
                    {
                        "type": "function_call_output",
                        "output": [{"type": "input_text", "text": RED}],
                    }
                ]
            },
            {
                "input": [
                    {
                        "type": "function_call_output",
                        "output": [{"type": "input_text", "text": CLEAN}],
                    }
                ]
            },
        ),
        # left alone: other roles, arguments, clean results, other bodies
        ({"messages": [{"role": "user", "content": RED}], "system": RED}, None),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": RED}}]}]},
            None,
        ),
        ({"input": RED, "instructions": RED}, None),
        (tool_message("clean output"), None),
        (tool_message(None), None),
        ({"messages": [None, 3, "x", {"role": "tool"}]}, None),
        ([RED], None),
    ],
)
def test_tool_results(body: Any, expected: Any) -> None:
    original = copy.deepcopy(body)
    assert StripAnsi()(body, ctx()) == expected
    assert body == original  # the input is never changed


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"system": RED, "messages": [{"role": "user", "content": RED}]},
            {"system": CLEAN, "messages": [{"role": "user", "content": CLEAN}]},
        ),
        (
            {
                "system": [{"type": "text", "text": RED}],
                "messages": [{"role": "assistant", "content": [{"type": "text", "text": RED}]}],
            },
            {
                "system": [{"type": "text", "text": CLEAN}],
                "messages": [{"role": "assistant", "content": [{"type": "text", "text": CLEAN}]}],
            },
        ),
        (
            {"input": RED, "instructions": RED},
            {"input": CLEAN, "instructions": CLEAN},
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": RED}]}]},
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": CLEAN}]}]},
        ),
        (tool_message(RED), tool_message(CLEAN)),
        # tool call arguments are JSON, not text: never touched
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "input": {"x": RED}}]}
                ]
            },
            None,
        ),
    ],
)
def test_all_text(body: Any, expected: Any) -> None:
    original = copy.deepcopy(body)
    assert StripAnsi(all_text=True)(body, ctx()) == expected
    assert body == original


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/chat/completions", True),
        ("POST", "/responses", True),
        ("POST", "/v1/messages", True),
        ("POST", "/v1/messages/count_tokens", True),
        ("POST", "/embeddings", False),
        ("POST", "/completions", False),
        ("GET", "/chat/completions", False),
    ],
)
def test_applies_to(method: str, path: str, expected: bool) -> None:
    assert StripAnsi().applies_to(ctx(path, method)) is expected
