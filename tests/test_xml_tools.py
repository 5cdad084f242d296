"""XmlToolCalls: the parser (tables, any chunk split), the request rewrite, the answer."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider_proxy import RequestContext
from provider_proxy.transforms import XmlCall, XmlCallParser, XmlToolCalls, XmlToolsError

# Roo Code's own tools, as its OpenAI-format definitions describe them.
ROO_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }
    for name, description, properties, required in [
        ("read_file", "Read a file.", {"path": {"type": "string"}}, ["path"]),
        (
            "write_to_file",
            "Write a whole file.",
            {
                "path": {"type": "string"},
                "content": {"type": "string"},
                "line_count": {"type": "integer"},
            },
            ["path", "content", "line_count"],
        ),
        ("execute_command", "Run a command.", {"command": {"type": "string"}}, ["command"]),
        (
            "search_files",
            "Search with a regex.",
            {
                "path": {"type": "string"},
                "regex": {"type": "string"},
                "file_pattern": {"type": "string"},
            },
            ["path", "regex"],
        ),
        (
            "list_files",
            "List a directory.",
            {"path": {"type": "string"}, "recursive": {"type": "boolean"}},
            ["path"],
        ),
        ("attempt_completion", "Finish.", {"result": {"type": "string"}}, ["result"]),
    ]
]
# An arbitrary JSON-schema tool: nested objects and arrays, numbers.
JSON_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "plot",
        "parameters": {
            "type": "object",
            "properties": {
                "points": {"type": "array", "items": {"type": "number"}},
                "style": {"type": "object", "properties": {"color": {"type": "string"}}},
                "scale": {"type": "number"},
                "title": {"type": ["string", "null"]},
            },
        },
    },
}
TOOLS = [*ROO_TOOLS, JSON_TOOL]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def _parse_whole(text: str) -> list[Any]:
    parser = XmlCallParser(SCHEMAS)
    return _joined([*parser.feed(text), *parser.end()])


def _joined(segments: list[Any]) -> list[Any]:
    out: list[Any] = []
    for segment in segments:
        if isinstance(segment, str) and out and isinstance(out[-1], str):
            out[-1] += segment
        elif segment != "":
            out.append(segment)
    return out


PYTHON = 'def f(x):\n    if x < 3 and x > 1:\n        return "<b>"\n    return x\n'

CASES: list[tuple[str, list[Any]]] = [
    ("plain answer", ["plain answer"]),
    (
        "Reading it.\n<read_file>\n<path>src/a.py</path>\n</read_file>",
        ["Reading it.\n", XmlCall("read_file", {"path": "src/a.py"})],
    ),
    (
        f"<write_to_file>\n<path>f.py</path>\n<content>\n{PYTHON}</content>\n"
        "<line_count>4</line_count>\n</write_to_file>",
        # The line breaks the convention puts around a value are not part of it.
        [XmlCall("write_to_file", {"path": "f.py", "content": PYTHON[:-1], "line_count": 4})],
    ),
    (
        "<execute_command><command>ls -la | grep '<x>'</command></execute_command>",
        [XmlCall("execute_command", {"command": "ls -la | grep '<x>'"})],
    ),
    (
        "<list_files><path>.</path><recursive>true</recursive></list_files>"
        "<search_files><path>src</path><regex>def \\w+</regex></search_files>",
        [
            XmlCall("list_files", {"path": ".", "recursive": True}),
            XmlCall("search_files", {"path": "src", "regex": "def \\w+"}),
        ],
    ),
    (
        '<plot><points>[1, 2.5]</points><style>{"color": "red"}</style><scale>2</scale>'
        "<title>null</title></plot>",
        [
            XmlCall(
                "plot",
                {"points": [1, 2.5], "style": {"color": "red"}, "scale": 2, "title": "null"},
            )
        ],
    ),
    ("<attempt_completion></attempt_completion>", [XmlCall("attempt_completion", {})]),
    # Not calls: prose naming a tool, unknown tags, stray text, unclosed calls.
    (
        "Use <read_file> to read files, and a < b.",
        ["Use <read_file> to read files, and a < b."],
    ),
    ("<unknown><path>x</path></unknown>", ["<unknown><path>x</path></unknown>"]),
    (
        "<read_file><path>a</path> then more</read_file>",
        ["<read_file><path>a</path> then more</read_file>"],
    ),
    ("<read_file><path>a</path>", ["<read_file><path>a</path>"]),
    (
        "<read_file><path>a</path><path>b</path></read_file>",
        ["<read_file><path>a</path><path>b</path></read_file>"],
    ),
    ("text then <read_fi", ["text then <read_fi"]),
    (
        "bad then good <read_file><x y></read_file><read_file><path>ok</path></read_file>",
        [
            "bad then good <read_file><x y></read_file>",
            XmlCall("read_file", {"path": "ok"}),
        ],
    ),
    (
        "<read_file><path>a</path></read_file> trailing",
        [XmlCall("read_file", {"path": "a"}), " trailing"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:40] for c in CASES])
def test_the_parser_reads_calls_and_leaves_the_rest_as_text(text: str, expected: list[Any]) -> None:
    assert _parse_whole(text) == expected


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:40] for c in CASES])
def test_one_character_at_a_time_gives_the_same(text: str, expected: list[Any]) -> None:
    parser = XmlCallParser(SCHEMAS)
    out: list[Any] = []
    for character in text:
        out += parser.feed(character)
    out += parser.end()
    assert _joined(out) == expected


def test_text_streams_as_it_comes_and_only_a_possible_tag_is_held() -> None:
    parser = XmlCallParser(SCHEMAS)
    assert parser.feed("Let me look") == ["Let me look"]
    assert parser.feed(" at x < 3 and <re") == [" at x < 3 and "]  # "<re" could be read_file
    assert parser.feed("x>") == ["<rex>"]  # it was not
    assert parser.feed("<read_file><path>a") == []  # a call in progress is held
    assert parser.feed("</path></read_file>ok") == [XmlCall("read_file", {"path": "a"}), "ok"]


_TEXT = st.text(alphabet=st.sampled_from(list("ab <>/\n_")), max_size=12)
_CALL = st.sampled_from(
    [
        "<read_file><path>a.py</path></read_file>",
        "<execute_command>\n<command>echo '<hi>'</command>\n</execute_command>",
        f"<write_to_file><path>f</path><content>\n{PYTHON}</content>"
        "<line_count>4</line_count></write_to_file>",
        "<list_files><path>.</path><recursive>false</recursive></list_files>",
        "<plot><points>[1,2]</points></plot>",
        "<read_file><path>a</path>",  # never closed
        "<read_file>oops</read_file>",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.one_of(_TEXT, _CALL), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_any_split_into_chunks_gives_the_same_calls_and_text(
    pieces: list[str], cuts: list[int]
) -> None:
    text = "".join(pieces)
    expected = _parse_whole(text)
    bounds = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    parser = XmlCallParser(SCHEMAS)
    out: list[Any] = []
    for start, end in itertools.pairwise(bounds):
        out += parser.feed(text[start:end])
    out += parser.end()
    assert _joined(out) == expected
    # Nothing is lost: a call that did not parse is still there, as text.
    assert "".join(s for s in expected if isinstance(s, str)).count("oops") == text.count("oops")


# -- the request ------------------------------------------------------------------------------


def _context(dialect: str = "openai-chat", path: str = "/chat/completions") -> RequestContext:
    return RequestContext("model", "POST", path, b"", [], "rid", dialect=dialect)


def test_tools_become_a_system_prompt_section_and_leave_the_request() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "tools": TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    }
    context = _context()
    out = XmlToolCalls()(body, context)
    assert "tools" not in out
    assert "tool_choice" not in out
    assert "parallel_tool_calls" not in out
    system = out["messages"][0]["content"]
    assert system.startswith("Be brief.\n\nTOOL USE")
    for tool in TOOLS:
        assert f"## {tool['function']['name']}" in system
    assert "- line_count (integer, required)" in system
    assert "<read_file>\n<path>...</path>\n</read_file>" in system
    assert "Use at most one tool per message." in system
    assert out["messages"][1] == {"role": "user", "content": "hi"}
    assert body["tools"] is TOOLS  # the client's body is not changed
    assert len(context.answer_rewriters) == 1
    assert context.upstream_headers == {"accept-encoding": "identity"}


def test_without_a_system_prompt_one_is_added_and_tool_choice_is_an_instruction() -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": ROO_TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "read_file"}},
    }
    out = XmlToolCalls()(body, _context())
    assert out["messages"][0]["role"] == "system"
    assert "You must use the read_file tool in this answer." in out["messages"][0]["content"]
    required = XmlToolCalls()(dict(body, tool_choice="required"), _context())
    assert "You must use one of the tools" in required["messages"][0]["content"]


def test_tool_choice_none_teaches_no_tools_and_reads_no_calls() -> None:
    context = _context()
    out = XmlToolCalls()(
        {"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS, "tool_choice": "none"},
        context,
    )
    assert out["messages"] == [{"role": "user", "content": "hi"}]
    assert context.answer_rewriters == []


def test_history_tool_calls_and_results_are_rendered_in_the_convention() -> None:
    body = {
        "tools": ROO_TOOLS,
        "messages": [
            {"role": "user", "content": "fix it"},
            {
                "role": "assistant",
                "content": "Looking.",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {
                            "name": "write_to_file",
                            "arguments": json.dumps(
                                {"path": "b.py", "content": "x = 1\ny = 2", "line_count": 2}
                            ),
                        },
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "print(1)"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "ok"}]},
        ],
    }
    before = copy.deepcopy(body)
    out = XmlToolCalls()(body, _context())
    assert body == before  # the client's body is never changed
    messages = out["messages"]
    assert messages[2] == {
        "role": "assistant",
        "content": "Looking.\n\n<read_file>\n<path>a.py</path>\n</read_file>\n\n"
        "<write_to_file>\n<path>b.py</path>\n<content>\nx = 1\ny = 2\n</content>\n"
        "<line_count>2</line_count>\n</write_to_file>",
    }
    assert messages[3] == {
        "role": "user",
        "content": "[read_file] Result:\nprint(1)\n\n[write_to_file] Result:\nok",
    }
    assert len(messages) == 4
    # What the model is shown reads back as the calls it stands for.
    rendered = _parse_whole(messages[2]["content"])
    assert rendered[1:] == [
        XmlCall("read_file", {"path": "a.py"}),
        "\n\n",
        XmlCall("write_to_file", {"path": "b.py", "content": "x = 1\ny = 2", "line_count": 2}),
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"n": 2}, "n"),
        ({"functions": []}, "functions"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        (
            {"tools": [{"type": "function", "function": {"name": "a", "strict": True}}]},
            "tools[0].function.strict",
        ),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "x", "function": {"name": "a", "arguments": "{"}}],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_what_the_convention_cannot_carry_is_refused_by_name(
    change: dict[str, Any], field: str
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": ROO_TOOLS, **change}
    with pytest.raises(XmlToolsError) as raised:
        XmlToolCalls()(body, _context())
    assert raised.value.field == field
    assert raised.value.status_code == 400


def test_it_applies_only_to_routed_openai_chat_requests() -> None:
    transform = XmlToolCalls()
    assert transform.applies_to(_context())
    assert not transform.applies_to(_context(dialect="anthropic-messages", path="/v1/messages"))
    assert not transform.applies_to(_context(path="/embeddings"))
    unrouted = RequestContext(
        "", "POST", "/v1/chat/completions", b"", [], "r", dialect="openai-chat"
    )
    assert not transform.applies_to(unrouted)
    assert transform({"messages": [{"role": "user", "content": "hi"}]}, _context()) is None


# -- the answer -------------------------------------------------------------------------------


def _rewriter() -> Any:
    context = _context()
    XmlToolCalls()({"messages": [], "tools": TOOLS}, context)
    return context.answer_rewriters[0]


ANSWER = (
    "I'll read the file first.\n\n<read_file>\n<path>src/main.py</path>\n</read_file>"
    "\n<execute_command><command>pytest -q</command></execute_command>"
)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _stream(text: str, size: int) -> bytes:
    return _stream_of([text[i : i + size] for i in range(0, len(text), size)])


def _stream_of(pieces: list[str]) -> bytes:
    events = [_chunk({"role": "assistant", "content": ""})]
    events += [_chunk({"content": piece}) for piece in pieces]
    events.append(_chunk({}, "stop"))
    events.append({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 3}})
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"


def _read_stream(raw: bytes) -> tuple[str, list[dict[str, Any]], list[str | None], bool]:
    text, calls, finishes, done = "", [], [], False
    for block in raw.split(b"\n\n"):
        if not block:
            continue
        assert block.startswith(b"data: ")
        if block == b"data: [DONE]":
            done = True
            continue
        chunk = json.loads(block[6:])
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            calls += delta.get("tool_calls") or []
            finishes.append(choice["finish_reason"])
    return text, calls, [f for f in finishes if f], done


def test_a_whole_answer_gets_tool_calls_and_finish_reason() -> None:
    answer = {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1},
    }
    out = json.loads(_rewriter().whole(json.dumps(answer).encode()))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll read the file first."
    calls = choice["message"]["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("read_file", {"path": "src/main.py"}),
        ("execute_command", {"command": "pytest -q"}),
    ]
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    assert len({c["id"] for c in calls}) == 2
    assert out["usage"] == {"prompt_tokens": 1}


def test_a_whole_answer_without_calls_or_unreadable_is_left_as_it_came() -> None:
    plain = json.dumps({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]})
    assert _rewriter().whole(plain.encode()) == plain.encode()
    assert _rewriter().whole(b"not json") == b"not json"


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_a_stream_split_at_every_byte_gives_the_same_calls(size: int) -> None:
    raw = _stream(ANSWER, size)
    whole_text, _whole_calls, whole_finish, done = _read_stream(_rewriter().chunk(raw) + b"")
    for cut in range(0, len(raw), max(1, len(raw) // 97)):
        rewriter = _rewriter()
        out = rewriter.chunk(raw[:cut]) + rewriter.chunk(raw[cut:]) + rewriter.end()
        text, calls, finish, done = _read_stream(out)
        assert text == whole_text == "I'll read the file first.\n\n\n"
        assert [(c["index"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
            (0, "read_file", '{"path":"src/main.py"}'),
            (1, "execute_command", '{"command":"pytest -q"}'),
        ]
        assert finish == whole_finish == ["tool_calls"]
        assert done


def test_a_stream_without_calls_keeps_its_text_and_stop() -> None:
    rewriter = _rewriter()
    text, calls, finish, _ = _read_stream(
        rewriter.chunk(_stream("a < b, see <b>", 2)) + rewriter.end()
    )
    assert (text, calls, finish) == ("a < b, see <b>", [], ["stop"])


def test_a_stream_cut_short_sends_what_it_held_as_text() -> None:
    rewriter = _rewriter()
    raw = b"".join(
        b"data: " + json.dumps(_chunk({"content": piece})).encode() + b"\n\n"
        for piece in ["see ", "<read_file><path>a"]
    )
    out = rewriter.chunk(raw) + rewriter.end()
    text, calls, _, _ = _read_stream(out)
    assert (text, calls) == ("see <read_file><path>a", [])


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(ANSWER)), max_size=15))
def test_any_split_of_the_models_stream_gives_the_same_tool_calls(cuts: list[int]) -> None:
    bounds = sorted({0, len(ANSWER), *cuts})
    rewriter = _rewriter()
    raw = _stream_of([ANSWER[a:b] for a, b in itertools.pairwise(bounds)])
    text, calls, finish, done = _read_stream(rewriter.chunk(raw) + rewriter.end())
    assert text == "I'll read the file first.\n\n\n"
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("read_file", {"path": "src/main.py"}),
        ("execute_command", {"command": "pytest -q"}),
    ]
    assert (finish, done) == (["tool_calls"], True)
