"""The gateway's published fidelity tables are the codecs' tables, and the codecs obey them.

``docs/gateway.rst`` renders each codec's ``REQUEST_FIELDS`` and
``ENCODE_FIELDS`` with the ``fidelity-table`` directive of
``docs/_ext/fidelity.py``, whose reST comes from ``docs/_ext/gateway_tables.py``
(read here without Sphinx). These tests check that every table is published
and every row rendered, then run each row against its codec: a refused field
raises :class:`~provider_proxy.dialects.canonical.Unsupported` naming it, a
dropped one is returned among the dropped names, a mapped one is accepted.
Every row has an explicit value below, so a new row fails here until it has one.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from provider_proxy.dialects import _anthropic_codec, _gemini_codec, _openai_chat_codec
from provider_proxy.dialects.canonical import (
    CacheControl,
    Citation,
    Codec,
    Document,
    Fidelity,
    Image,
    Message,
    OutputFormat,
    Reasoning,
    ReasoningConfig,
    RedactedReasoning,
    Refusal,
    Request,
    SearchResult,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    Unsupported,
    WebSearch,
    WebSearchCall,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"
GATEWAY_PAGE = DOCS / "gateway.rst"


def _load_tables() -> ModuleType:
    path = DOCS / "_ext" / "gateway_tables.py"
    spec = importlib.util.spec_from_file_location("gateway_tables", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tables = _load_tables()
CODECS: dict[str, Codec] = tables.CODECS
OPENAI, ANTHROPIC, GEMINI = "openai-chat", "anthropic-messages", "gemini"
RESPONSES = "openai-responses"

_DIRECTIVE = re.compile(r"^\.\. (fidelity-table|gateway-table):: *(.+?)\s*$", re.M)
_ROLE = re.compile(r":gateway-value:`([^`]+)`")


def _directives(name: str) -> list[tuple[str, ...]]:
    found = []
    for page in sorted(DOCS.glob("*.rst")):
        for directive, arguments in _DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            if directive == name:
                found.append(tuple(arguments.split()))
    return found


def _rows(table: tuple[str, str]) -> list[tuple[str, Fidelity]]:
    return [(name, rule.fate) for name, rule in tables.fidelity_table(*table).items()]


ALL_TABLES = [(dialect, direction) for dialect in CODECS for direction in tables.DIRECTIONS]
REQUEST_ROWS = [
    pytest.param(dialect, name, fate, id=f"{dialect}-{name}")
    for dialect in CODECS
    for name, fate in _rows((dialect, "request"))
]
ENCODE_ROWS = [
    pytest.param(dialect, name, fate, id=f"{dialect}-{name}")
    for dialect in CODECS
    for name, fate in _rows((dialect, "encode"))
]


# -- the published tables -----------------------------------------------------------------


def test_the_extension_is_registered() -> None:
    tree = ast.parse((DOCS / "conf.py").read_text(encoding="utf-8"))
    extensions = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "extensions" for t in node.targets)
    )
    assert "fidelity" in extensions


def test_every_fidelity_table_is_published_once() -> None:
    published = _directives("fidelity-table")
    assert sorted(published) == sorted(ALL_TABLES)


@pytest.mark.parametrize("arguments", _directives("fidelity-table"), ids=" ".join)
def test_every_fidelity_directive_renders_a_table(arguments: tuple[str, ...]) -> None:
    text = tables.fidelity_rst(*arguments)
    assert text.startswith(".. list-table::")
    assert tables.fidelity_table(*arguments), "an empty table"


@pytest.mark.parametrize("arguments", _directives("gateway-table"), ids=" ".join)
def test_every_gateway_directive_renders_a_table(arguments: tuple[str, ...]) -> None:
    text = tables.gateway_rst(*arguments)
    assert text.startswith(".. list-table::")
    assert text.count("   * - ") >= 2  # the header and a row at least


def test_every_cited_value_exists() -> None:
    cited = set(_ROLE.findall(GATEWAY_PAGE.read_text(encoding="utf-8")))
    assert cited
    assert cited <= set(tables.VALUES)


@pytest.mark.parametrize(("dialect", "direction"), ALL_TABLES)
def test_every_row_is_rendered_with_its_fate(dialect: str, direction: str) -> None:
    text = tables.fidelity_rst(dialect, direction)
    cells = [line.split(" - ", 1)[1] for line in text.splitlines() if " - " in line]
    table = tables.fidelity_table(dialect, direction)
    for name, rule in table.items():
        at = cells.index(f"``{name}``")
        assert cells[at + 1] == tables._FATES[rule.fate], name
        assert cells[at + 2] == (rule.note or "—"), name


def test_the_error_tables_cover_both_directions() -> None:
    assert sorted(a[1:] for a in _directives("gateway-table") if a[0] == "errors") == sorted(
        [
            (ANTHROPIC, OPENAI),
            (OPENAI, ANTHROPIC),
            (GEMINI, OPENAI),
            (GEMINI, ANTHROPIC),
            (OPENAI, GEMINI),
            (ANTHROPIC, GEMINI),
        ]
    )
    assert (429, "rate_limit", 429, "rate_limit_error") in tables.error_rows(GEMINI, OPENAI)
    assert (503, "overloaded", 529, "overloaded_error") in tables.error_rows(GEMINI, ANTHROPIC)
    assert (529, "overloaded", 503, "UNAVAILABLE") in tables.error_rows(ANTHROPIC, GEMINI)
    assert (529, "overloaded", 503, "server_error") in tables.error_rows(ANTHROPIC, OPENAI)
    assert (503, "overloaded", 529, "overloaded_error") in tables.error_rows(OPENAI, ANTHROPIC)


# -- request rows, against the codecs -------------------------------------------------------

BASE_BODIES: dict[str, dict[str, Any]] = {
    OPENAI: {"model": "m", "messages": [{"role": "user", "content": "Hi."}]},
    ANTHROPIC: {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi."}]},
    RESPONSES: {"model": "m", "input": "Hi."},
    GEMINI: {"model": "m", "contents": [{"role": "user", "parts": [{"text": "Hi."}]}]},
}


def _with_field(body: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """``body`` with the field ``name`` set; a dotted name (``generationConfig.topK``) nests."""
    head, dot, rest = name.partition(".")
    if not dot:
        return {**body, name: value}
    return {**body, head: _with_field(dict(body.get(head) or {}), rest, value)}


TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}

#: A plausible value for every row of every request table (refused ones away from their default).
REQUEST_VALUES: dict[str, dict[str, Any]] = {
    OPENAI: {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
        ],
        "max_tokens": 100,
        "max_completion_tokens": 200,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": TOOL_SCHEMA}}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "user": "user-1",
        "safety_identifier": "user-1",
        "n": 2,
        "logprobs": True,
        "top_logprobs": 5,
        "logit_bias": {"50256": -100},
        "frequency_penalty": 0.5,
        "presence_penalty": 0.5,
        "audio": {"voice": "alloy", "format": "wav"},
        "modalities": ["text", "audio"],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        "functions": [{"name": "weather", "parameters": TOOL_SCHEMA}],
        "function_call": "auto",
        "verbosity": "low",
        "web_search_options": {"search_context_size": "low"},
        "seed": 42,
        "metadata": {"purpose": "test"},
        "store": True,
        "service_tier": "flex",
        "prediction": {"type": "content", "content": "Sunny."},
        "prompt_cache_key": "tenant-1",
        "prompt_cache_retention": "24h",
    },
    ANTHROPIC: {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather?"}]}],
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "max_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": True,
        "tools": [{"name": "weather", "input_schema": TOOL_SCHEMA}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "metadata": {"user_id": "user-1"},
        "top_k": 40,
        "container": "container_1",
        "mcp_servers": [{"type": "url", "url": "https://mcp.example/sse", "name": "docs"}],
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        "output_format": {"type": "json_schema", "schema": {"type": "object"}},
        "service_tier": "auto",
        "inference_geo": "us",
        "speed": "fast",
        "cache_control": {"type": "ephemeral"},
    },
    RESPONSES: {
        "model": "claude-sonnet-4-5",
        "input": [{"role": "user", "content": "Weather in Paris?"}],
        "instructions": "Be brief.",
        "max_output_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "stream": True,
        "tools": [{"type": "function", "name": "weather", "parameters": TOOL_SCHEMA}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_object"}},
        "store": False,
        "previous_response_id": "resp_1",
        "include": ["reasoning.encrypted_content"],
        "user": "user-1",
        "safety_identifier": "user-1",
        "stream_options": {"include_obfuscation": False},
        "truncation": "auto",
        "top_logprobs": 5,
        "max_tool_calls": 3,
        "background": True,
        "conversation": "conv_1",
        "prompt": {"id": "pmpt_1"},
        "metadata": {"purpose": "test"},
        "client_metadata": {"session_id": "s-1"},
        "service_tier": "flex",
        "prompt_cache_key": "tenant-1",
        "prompt_cache_retention": "24h",
    },
    GEMINI: {
        "model": "openai/gpt-4.1",
        "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"functionDeclarations": [{"name": "weather", "parameters": TOOL_SCHEMA}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {"temperature": 0.2},
        "generationConfig.temperature": 0.2,
        "generationConfig.topP": 0.9,
        "generationConfig.maxOutputTokens": 100,
        "generationConfig.stopSequences": ["END"],
        "generationConfig.thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True},
        "generationConfig.candidateCount": 2,
        "generationConfig.topK": 40,
        "generationConfig.presencePenalty": 0.5,
        "generationConfig.frequencyPenalty": 0.5,
        "generationConfig.responseMimeType": "application/json",
        "generationConfig.responseSchema": {"type": "OBJECT"},
        "generationConfig.responseJsonSchema": {"type": "object"},
        "generationConfig.responseModalities": ["TEXT", "IMAGE"],
        "generationConfig.responseLogprobs": True,
        "generationConfig.logprobs": 5,
        "generationConfig.speechConfig": {"voiceConfig": {}},
        "generationConfig.imageConfig": {"aspectRatio": "16:9"},
        "generationConfig.seed": 42,
        "generationConfig.mediaResolution": "MEDIA_RESOLUTION_LOW",
        "cachedContent": "cachedContents/abc",
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "labels": {"team": "a"},
    },
}

#: Fields a row's value needs beside it (a schema is only read with the JSON MIME type).
COMPANIONS: dict[tuple[str, str], dict[str, Any]] = {
    (GEMINI, name): {"generationConfig.responseMimeType": "application/json"}
    for name in ("generationConfig.responseSchema", "generationConfig.responseJsonSchema")
}

#: The default of each refused field that is accepted at its default ("unless ..." in its note).
REFUSED_DEFAULTS: dict[str, dict[str, Any]] = {
    OPENAI: {
        "n": 1,
        "logprobs": False,
        "top_logprobs": 0,
        "logit_bias": {},
        "frequency_penalty": 0,
        "presence_penalty": 0,
        "modalities": ["text"],
    },
    ANTHROPIC: {},
    RESPONSES: {"truncation": "disabled", "top_logprobs": 0, "background": False},
    GEMINI: {
        "generationConfig.candidateCount": 1,
        "generationConfig.presencePenalty": 0,
        "generationConfig.frequencyPenalty": 0,
        "generationConfig.responseModalities": ["TEXT"],
        "generationConfig.responseLogprobs": False,
    },
}


@pytest.mark.parametrize("dialect", CODECS)
def test_every_request_row_has_a_value_here(dialect: str) -> None:
    assert set(REQUEST_VALUES[dialect]) == set(CODECS[dialect].request_fields)


@pytest.mark.parametrize(("dialect", "name", "fate"), REQUEST_ROWS)
def test_each_request_field_meets_its_fate(dialect: str, name: str, fate: Fidelity) -> None:
    codec = CODECS[dialect]
    body = _with_field(BASE_BODIES[dialect], name, REQUEST_VALUES[dialect][name])
    for other, value in COMPANIONS.get((dialect, name), {}).items():
        body = _with_field(body, other, value)
    if fate is Fidelity.REFUSED:
        with pytest.raises(Unsupported) as refused:
            codec.decode_request(body)
        assert refused.value.field == name
        assert refused.value.status_code == 400
        assert repr(name) in refused.value.message
        return
    request, dropped = codec.decode_request(body)
    if fate is Fidelity.DROPPED:
        assert name in dropped
    else:
        assert name not in dropped
        assert request.model


@pytest.mark.parametrize("dialect", CODECS)
def test_refused_fields_are_accepted_at_their_default(dialect: str) -> None:
    codec = CODECS[dialect]
    conditional = {
        name
        for name, rule in codec.request_fields.items()
        if rule.fate is Fidelity.REFUSED and rule.note.startswith("unless")
    }
    assert set(REFUSED_DEFAULTS[dialect]) == conditional
    for name, default in REFUSED_DEFAULTS[dialect].items():
        _, dropped = codec.decode_request(_with_field(BASE_BODIES[dialect], name, default))
        assert name not in dropped


@pytest.mark.parametrize("dialect", CODECS)
def test_a_field_in_no_table_is_refused(dialect: str) -> None:
    with pytest.raises(Unsupported) as refused:
        CODECS[dialect].decode_request({**BASE_BODIES[dialect], "frobnicate": 1})
    assert refused.value.field == "frobnicate"


#: Bodies whose content drops fields below the top level (named in the page's prose).
NESTED_DROPS: list[tuple[str, dict[str, Any]]] = [
    (OPENAI, {"model": "m", "messages": [{"role": "user", "name": "ann", "content": "Hi."}]}),
    (
        OPENAI,
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://x.example/a.png", "detail": "high"},
                        }
                    ],
                }
            ],
        },
    ),
    (
        GEMINI,
        {
            **BASE_BODIES[GEMINI],
            "tools": [
                {
                    "functionDeclarations": [
                        {"name": "weather", "responseJsonSchema": {"type": "string"}}
                    ]
                }
            ],
        },
    ),
]


NESTED_DROPS.append(
    (
        RESPONSES,
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "https://a", "detail": "low"}],
                },
                {"role": "assistant", "phase": "final_answer", "content": "Done."},
            ],
        },
    )
)
NESTED_DROPS.append(
    (
        RESPONSES,
        {
            "model": "m",
            "input": [
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "user",
                    "content": "Hi.",
                }
            ],
        },
    )
)


@pytest.mark.parametrize(("dialect", "body"), NESTED_DROPS)
def test_every_dropped_name_is_published(dialect: str, body: dict[str, Any]) -> None:
    _, dropped = CODECS[dialect].decode_request(body)
    assert dropped
    page = GATEWAY_PAGE.read_text(encoding="utf-8")
    for name in dropped:
        assert name in CODECS[dialect].request_fields or f"``{name}``" in page, name


# -- encode rows, against the codecs --------------------------------------------------------


def _request(*messages: Message, **fields: Any) -> Request:
    return Request(model="m", messages=messages, **fields)


def _user(*parts: Any) -> Message:
    return Message("user", parts)


def _assistant(*parts: Any) -> Message:
    return Message("assistant", parts)


def _text(body: dict[str, Any]) -> str:
    return json.dumps(body)


HELLO = _user(Text("Hi."))
CALL = _assistant(ToolCall("call_1", "weather", '{"city": "Paris"}'))


def _effort_for(budget: int) -> str:
    for bound, effort in _openai_chat_codec.EFFORT_FOR_BUDGET:
        if budget <= bound:
            return effort
    return _openai_chat_codec.EFFORT_FOR_BUDGET[-1][1]


Check = Callable[[dict[str, Any]], bool]

#: For every row of every encode table: a canonical request carrying that content, and
#: (unless the row is refused) what the encoded body must then say.
ENCODE_CASES: dict[str, dict[str, tuple[Request, Check | None]]] = {
    OPENAI: {
        "reasoning.signature": (
            _request(HELLO, _assistant(Reasoning("Thinking.", "sig-123"), Text("Done."))),
            lambda body: "sig-123" not in _text(body) and "Thinking." in _text(body),
        ),
        "redacted_reasoning": (
            _request(HELLO, _assistant(RedactedReasoning("opaque-456"), Text("Done."))),
            lambda body: "opaque-456" not in _text(body),
        ),
        "cache_control": (
            _request(_user(Text("Hi.", CacheControl())), system=(Text("Sys.", CacheControl()),)),
            lambda body: "cache_control" not in _text(body),
        ),
        "tool_result.is_error": (
            _request(HELLO, CALL, _user(ToolResult("call_1", (Text("Failed."),), is_error=True))),
            lambda body: "is_error" not in _text(body) and "Failed." in _text(body),
        ),
        "tool_result.image": (
            _request(
                HELLO,
                CALL,
                _user(ToolResult("call_1", (Image(data="iVBORw0KGgo=", media_type="image/png"),))),
            ),
            None,
        ),
        "document.url": (_request(_user(Document(url="https://x.example/a.pdf"))), None),
        "document.text": (_request(_user(Document(text="Notes.", media_type="text/plain"))), None),
        "reasoning.budget_tokens": (
            _request(HELLO, reasoning=ReasoningConfig(budget_tokens=2000)),
            lambda body: body["reasoning_effort"] == _effort_for(2000),
        ),
    },
    ANTHROPIC: {
        "reasoning.effort": (
            _request(HELLO, reasoning=ReasoningConfig(effort="low")),
            lambda body: (
                body["thinking"]
                == {"type": "enabled", "budget_tokens": _anthropic_codec.THINKING_BUDGETS["low"]}
            ),
        ),
        "reasoning without signature": (
            _request(HELLO, _assistant(Reasoning("Unsigned."), Text("Done.")), HELLO),
            lambda body: "Unsigned." not in _text(body) and "thinking" not in _text(body),
        ),
        "refusal": (
            _request(HELLO, _assistant(Refusal("I can't.")), HELLO),
            lambda body: {"type": "text", "text": "I can't."} in body["messages"][1]["content"],
        ),
        "stream_usage": (
            _request(HELLO, stream=True, stream_usage=True),
            lambda body: body["stream"] is True and "stream_options" not in body,
        ),
        "max_tokens": (
            _request(HELLO),
            lambda body: body["max_tokens"] == _anthropic_codec.DEFAULT_MAX_TOKENS,
        ),
        "output_format": (
            _request(HELLO, output_format=OutputFormat("json_schema", schema=TOOL_SCHEMA)),
            lambda body: (
                body["output_config"]["format"]
                == {"type": "json_schema", "schema": {**TOOL_SCHEMA, "additionalProperties": False}}
            ),
        ),
    },
    RESPONSES: {
        "reasoning without signature": (
            _request(HELLO, _assistant(Reasoning("Unsigned."), Text("Done.")), HELLO),
            lambda body: "Unsigned." not in _text(body) and "Done." in _text(body),
        ),
        "cache_control": (
            _request(_user(Text("Hi.", CacheControl())), system=(Text("Sys.", CacheControl()),)),
            lambda body: "cache_control" not in _text(body),
        ),
        "tool_result.is_error": (
            _request(HELLO, CALL, _user(ToolResult("call_1", (Text("Failed."),), is_error=True))),
            lambda body: "is_error" not in _text(body) and "Failed." in _text(body),
        ),
        "stop": (_request(HELLO, stop=("END",)), None),
        "document.text": (_request(_user(Document(text="Notes.", media_type="text/plain"))), None),
        "reasoning.budget_tokens": (
            _request(HELLO, reasoning=ReasoningConfig(budget_tokens=2000)),
            lambda body: body["reasoning"]["effort"] == _effort_for(2000),
        ),
        "stream_usage": (
            _request(HELLO, stream=True, stream_usage=True),
            lambda body: body["stream"] is True and "stream_options" not in body,
        ),
    },
}


def _gemini_has(body: dict[str, Any], text: str) -> bool:
    return text in _text(body)


GEMINI_CALL_PARTS = (
    _user(Text("Weather?")),
    _assistant(Reasoning("Thinking.", "sig-123"), ToolCall("call_1", "weather", "{}")),
)

ENCODE_CASES[GEMINI] = {
    "reasoning.effort": (
        _request(HELLO, reasoning=ReasoningConfig(effort="low")),
        lambda body: (
            body["generationConfig"]["thinkingConfig"]["thinkingBudget"]
            == _gemini_codec.THINKING_BUDGETS["low"]
        ),
    ),
    "reasoning.text": (
        _request(*GEMINI_CALL_PARTS),
        lambda body: (
            "Thinking." not in _text(body)
            and body["contents"][1]["parts"][0]["thoughtSignature"] == "sig-123"
        ),
    ),
    "reasoning without signature": (
        _request(HELLO, _assistant(Reasoning("Unsigned."), Text("Done.")), HELLO),
        lambda body: "Unsigned." not in _text(body) and "thought" not in _text(body),
    ),
    "redacted_reasoning": (
        _request(HELLO, _assistant(RedactedReasoning("opaque-456"), Text("Done.")), HELLO),
        lambda body: "opaque-456" not in _text(body),
    ),
    "cache_control": (
        _request(_user(Text("Hi.", CacheControl())), system=(Text("Sys.", CacheControl()),)),
        lambda body: "cache_control" not in _text(body) and "Sys." in _text(body),
    ),
    "user": (_request(HELLO, user="user-1"), lambda body: "user-1" not in _text(body)),
    "tools.strict": (
        _request(HELLO, tools=(Tool("weather", parameters=TOOL_SCHEMA, strict=True),)),
        lambda body: "strict" not in _text(body) and "weather" in _text(body),
    ),
    "tool schema keywords": (
        _request(
            HELLO,
            tools=(Tool("weather", parameters={**TOOL_SCHEMA, "additionalProperties": False}),),
        ),
        lambda body: "additionalProperties" not in _text(body) and "city" in _text(body),
    ),
    "tool_result.is_error": (
        _request(HELLO, CALL, _user(ToolResult("call_1", (Text("Failed."),), is_error=True))),
        lambda body: (
            body["contents"][2]["parts"][0]["functionResponse"]["response"] == {"error": "Failed."}
        ),
    ),
    "parallel_tool_calls": (_request(HELLO, parallel_tool_calls=False), None),
    "output_format": (
        _request(HELLO, output_format=OutputFormat("json_schema", schema=TOOL_SCHEMA)),
        lambda body: (
            body["generationConfig"]
            == {"responseMimeType": "application/json", "responseJsonSchema": TOOL_SCHEMA}
        ),
    ),
    "image.url": (_request(_user(Image(url="https://x.example/a.png"))), None),
    "document.url": (_request(_user(Document(url="https://x.example/a.pdf"))), None),
    "tool_result.image": (
        _request(
            HELLO,
            CALL,
            _user(ToolResult("call_1", (Image(data="iVBORw0KGgo=", media_type="image/png"),))),
        ),
        None,
    ),
}


# The web search rows (provider_proxy.dialects._web_search).
SEARCHED = _assistant(
    WebSearchCall("srvtoolu_1", ("q",), (SearchResult("https://a.example", "A", opaque="enc-1"),)),
    Text("Found.", citations=(Citation("https://a.example", "A", "quote", opaque="idx-1"),)),
)
UNSEALED = _assistant(
    WebSearchCall("ws_1", ("q",), (SearchResult("https://a.example"),)), Text("Found.")
)
ENCODE_CASES[OPENAI].update(
    {
        "web_search": (_request(HELLO, web_search=WebSearch()), None),
        "web_search_call": (
            _request(HELLO, SEARCHED, HELLO),
            lambda body: "srvtoolu_1" not in _text(body) and "Found." in _text(body),
        ),
    }
)
ENCODE_CASES[RESPONSES]["web_search_call"] = (
    _request(HELLO, SEARCHED, HELLO),
    lambda body: body["input"][1]["type"] == "web_search_call",
)
ENCODE_CASES[ANTHROPIC].update(
    {
        "web_search_call": (
            _request(HELLO, UNSEALED, HELLO),
            lambda body: "server_tool_use" not in _text(body) and "Found." in _text(body),
        ),
        "web_search.search_context_size": (
            _request(HELLO, web_search=WebSearch(context_size="high")),
            lambda body: body["tools"] == [{"type": "web_search_20250305", "name": "web_search"}],
        ),
    }
)
ENCODE_CASES[GEMINI].update(
    {
        "web_search_call": (
            _request(HELLO, SEARCHED, HELLO),
            lambda body: "srvtoolu_1" not in _text(body) and "Found." in _text(body),
        ),
        "web_search.search_context_size": (
            _request(HELLO, web_search=WebSearch(context_size="high")),
            lambda body: body["tools"] == [{"googleSearch": {}}],
        ),
    }
)


@pytest.mark.parametrize("dialect", CODECS)
def test_every_encode_row_has_a_case_here(dialect: str) -> None:
    assert set(ENCODE_CASES[dialect]) == set(CODECS[dialect].encode_fields)


@pytest.mark.parametrize(("dialect", "name", "fate"), ENCODE_ROWS)
def test_each_encode_row_meets_its_fate(dialect: str, name: str, fate: Fidelity) -> None:
    request, check = ENCODE_CASES[dialect][name]
    codec = CODECS[dialect]
    if fate is Fidelity.REFUSED:
        assert check is None
        with pytest.raises(Unsupported):
            codec.encode_request(request)
        return
    assert check is not None
    assert check(codec.encode_request(request)), name


REFUSED_ENCODE_ROWS = [
    pytest.param(dialect, name, id=f"{dialect}-{name}")
    for dialect in CODECS
    for name, fate in _rows((dialect, "encode"))
    if fate is Fidelity.REFUSED
]


@pytest.mark.parametrize(("dialect", "name"), REFUSED_ENCODE_ROWS)
def test_a_refused_encode_row_names_itself(dialect: str, name: str) -> None:
    request, _ = ENCODE_CASES[dialect][name]
    with pytest.raises(Unsupported) as refused:
        CODECS[dialect].encode_request(request)
    assert refused.value.field == name


def test_a_mapped_effort_without_max_tokens_is_a_valid_anthropic_body() -> None:
    codec = CODECS[ANTHROPIC]
    for effort, budget in _anthropic_codec.THINKING_BUDGETS.items():
        if budget is None:
            continue
        body = codec.encode_request(_request(HELLO, reasoning=ReasoningConfig(effort=effort)))  # type: ignore[arg-type]
        assert body["max_tokens"] > body["thinking"]["budget_tokens"], effort


def test_a_max_tokens_below_the_efforts_budget_is_refused_naming_it() -> None:
    request = _request(HELLO, reasoning=ReasoningConfig(effort="high"), max_tokens=1000)  # type: ignore[arg-type]
    with pytest.raises(Unsupported) as refused:
        CODECS[ANTHROPIC].encode_request(request)
    assert refused.value.field == "max_tokens"
