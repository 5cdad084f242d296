"""The Gemini codec: requests, responses, streams and errors, to and from canonical."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import RawMessageStreamEvent
from google.genai import types as genai
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk
from pydantic import TypeAdapter

from provider_proxy.dialects import (
    EMBEDDINGS,
    AnthropicMessages,
    Gemini,
    OpenAIChat,
    gateway_in_path,
)
from provider_proxy.dialects import _gemini_codec as codec
from provider_proxy.dialects._gemini_schema import (
    NAME_PREFIX,
    from_gemini_name,
    to_gemini,
    to_gemini_name,
    to_json_schema,
)
from provider_proxy.dialects.canonical import (
    Document,
    Finish,
    FinishReason,
    Image,
    Message,
    MessageStart,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    ReasoningSignature,
    Request,
    Response,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    Unsupported,
    UntranslatableResponse,
    Usage,
    UsageReport,
)
from provider_proxy.observe._sse import SSEParser

CODEC = Gemini.codec
assert CODEC is not None
GOLDEN = Path(__file__).parent / "golden" / "gemini_thinking_tools.sse"
HELLO = {"role": "user", "parts": [{"text": "Hi."}]}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "openai/gpt-4.1", "contents": [HELLO], **fields}


def decode(**fields: Any) -> Request:
    request, dropped = CODEC.decode_request(body(**fields))
    assert dropped == ()
    return request


# -- decoding a Gemini client's request: each field --------------------------------------

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}

DECODE_ROWS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"systemInstruction": {"parts": [{"text": "Be brief."}]}}, {"system": (Text("Be brief."),)}),
    ({"system_instruction": {"parts": [{"text": "snake"}]}}, {"system": (Text("snake"),)}),
    ({"generationConfig": {"temperature": 0.5}}, {"temperature": 0.5}),
    ({"generationConfig": {"topP": 0.8}}, {"top_p": 0.8}),
    ({"generationConfig": {"max_output_tokens": 77}}, {"max_tokens": 77}),
    ({"generationConfig": {"stopSequences": ["END"]}}, {"stop": ("END",)}),
    (
        {"generationConfig": {"thinkingConfig": {"thinkingBudget": 2048}}},
        {"reasoning": ReasoningConfig(budget_tokens=2048)},
    ),
    (
        {"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
        {"reasoning": ReasoningConfig(budget_tokens=0)},
    ),
    ({"generationConfig": {"thinkingConfig": {"thinkingBudget": -1}}}, {"reasoning": None}),
    (
        {"generationConfig": {"thinkingConfig": {"thinkingLevel": "HIGH"}}},
        {"reasoning": ReasoningConfig(effort="high")},
    ),
    (
        {"toolConfig": {"functionCallingConfig": {"mode": "ANY"}}},
        {"tool_choice": ToolChoice("required")},
    ),
    (
        {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}},
        {"tool_choice": ToolChoice("none")},
    ),
    (
        {
            "toolConfig": {
                "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}
            }
        },
        {"tool_choice": ToolChoice("tool", "weather")},
    ),
    (
        {
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": "weather",
                            "description": "Weather.",
                            "parameters": {
                                "type": "OBJECT",
                                "properties": {"city": {"type": "STRING", "nullable": True}},
                                "propertyOrdering": ["city"],
                            },
                        },
                        {"name": "now"},
                        {"name": "raw", "parametersJsonSchema": {"type": "object", "$defs": {}}},
                    ]
                }
            ]
        },
        {
            "tools": (
                Tool(
                    "weather",
                    "Weather.",
                    {"type": "object", "properties": {"city": {"type": ["string", "null"]}}},
                ),
                Tool("now", None, {"type": "object", "properties": {}}),
                Tool("raw", None, {"type": "object", "$defs": {}}),
            )
        },
    ),
]


@pytest.mark.parametrize(("fields", "canonical"), DECODE_ROWS)
def test_each_request_field_decodes(fields: dict[str, Any], canonical: dict[str, Any]) -> None:
    request = decode(**fields)
    for name, value in canonical.items():
        assert getattr(request, name) == value, name


def test_the_model_is_the_paths_without_models_prefix() -> None:
    assert decode(model="models/anthropic/claude-sonnet-4-5").model == "anthropic/claude-sonnet-4-5"


def test_a_conversation_with_calls_thoughts_and_images_decodes() -> None:
    contents = [
        {
            "role": "user",
            "parts": [{"text": "Look:"}, {"inlineData": {"mimeType": "image/png", "data": "iVBO"}}],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Thinking ", "thought": True},
                {"text": "hard.", "thought": True, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                {"functionCall": {"id": "given-id", "name": "now", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "now", "response": {"output": "noon"}}},
                {"functionResponse": {"name": "weather", "response": {"temp": 21}}},
            ],
        },
        {
            "role": "user",
            "parts": [{"inline_data": {"mime_type": "application/pdf", "data": "JVBE"}}],
        },
    ]
    request = decode(contents=contents)
    assert request.messages == (
        Message("user", (Text("Look:"), Image(data="iVBO", media_type="image/png"))),
        Message(
            "assistant",
            (
                Reasoning("Thinking hard.", "c2ln"),
                ToolCall("call_1_0", "weather", '{"city":"Paris"}'),
                ToolCall("given-id", "now", "{}"),
            ),
        ),
        Message(
            "user",
            (
                ToolResult("given-id", (Text("noon"),)),
                ToolResult("call_1_0", (Text('{"temp":21}'),)),
            ),
        ),
        Message("user", (Document(media_type="application/pdf", data="JVBE"),)),
    )


def test_a_signature_on_a_call_signs_the_thinking_before_it_or_stands_alone() -> None:
    parts = [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"}]
    request = decode(contents=[HELLO, {"role": "model", "parts": parts}])
    assert request.messages[1].parts == (Reasoning("", "c2ln"), ToolCall("call_1_0", "f", "{}"))


def test_an_error_response_is_an_error_result() -> None:
    contents = [
        HELLO,
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "f", "response": {"error": "boom"}}}],
        },
    ]
    result = decode(contents=contents).messages[2].parts[0]
    assert result == ToolResult("call_1_0", (Text("boom"),), is_error=True)


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"cachedContent": "cachedContents/x"}, "cachedContent"),
    ({"generationConfig": {"topK": 3}}, "generationConfig.topK"),
    ({"generationConfig": {"candidateCount": 2}}, "generationConfig.candidateCount"),
    (
        {"generationConfig": {"responseSchema": {"type": "OBJECT"}}},
        "generationConfig.responseSchema",
    ),
    ({"generationConfig": {"bogus": 1}}, "generationConfig.bogus"),
    ({"tools": [{"codeExecution": {}}]}, "tools[0].codeExecution"),
    ({"tools": [{"codeExecution": {}}]}, "tools[0].codeExecution"),
    (
        {"toolConfig": {"functionCallingConfig": {"mode": "VALIDATED"}}},
        "toolConfig.functionCallingConfig.mode",
    ),
    (
        {
            "toolConfig": {
                "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["a", "b"]}
            }
        },
        "toolConfig.functionCallingConfig.allowedFunctionNames",
    ),
    (
        {"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": "files/x"}}]}]},
        "contents[0].parts[0].fileData",
    ),
    (
        {
            "contents": [
                {"role": "user", "parts": [{"inlineData": {"mimeType": "audio/wav", "data": "x"}}]}
            ]
        },
        "contents[0].parts[0].inlineData.mimeType",
    ),
    (
        {
            "contents": [
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}
            ]
        },
        "contents[0].parts[0].functionResponse.name",
    ),
    ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents[0].role"),
]


@pytest.mark.parametrize(("fields", "field"), REFUSED)
def test_what_does_not_translate_is_refused_naming_it(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(Unsupported) as refused:
        CODEC.decode_request(body(**fields))
    assert refused.value.field == field
    assert refused.value.status_code == 400


def test_dropped_fields_are_named() -> None:
    _, dropped = CODEC.decode_request(
        body(
            safetySettings=[{"category": "X", "threshold": "BLOCK_NONE"}],
            generationConfig={"seed": 1},
        )
    )
    assert dropped == ("safetySettings", "generationConfig.seed")


# -- encoding for a Gemini provider ------------------------------------------------------


def _request(*messages: Message, **fields: Any) -> Request:
    return Request("gemini-2.5-flash", messages, **fields)


USER = Message("user", (Text("Hi."),))


def test_a_request_encodes_as_generate_content() -> None:
    request = _request(
        USER,
        system=(Text("Be brief."),),
        max_tokens=100,
        temperature=0.3,
        top_p=0.9,
        stop=("END",),
        tools=(Tool("weather", "Weather.", WEATHER_SCHEMA),),
        tool_choice=ToolChoice("tool", "weather"),
        reasoning=ReasoningConfig(budget_tokens=2048),
    )
    assert CODEC.encode_request(request) == {
        "contents": [{"role": "user", "parts": [{"text": "Hi."}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "weather", "description": "Weather.", "parameters": WEATHER_SCHEMA}
                ]
            }
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}
        },
        "generationConfig": {
            "maxOutputTokens": 100,
            "temperature": 0.3,
            "topP": 0.9,
            "stopSequences": ["END"],
            "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
        },
    }
    assert "model" not in CODEC.encode_request(request)


@pytest.mark.parametrize(("effort", "budget"), list(codec.THINKING_BUDGETS.items()))
def test_an_effort_is_a_budget(effort: Any, budget: int) -> None:
    body = CODEC.encode_request(_request(USER, reasoning=ReasoningConfig(effort=effort)))
    assert body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": budget,
        "includeThoughts": budget != 0,
    }


def test_a_tool_loop_encodes_with_names_signatures_and_responses() -> None:
    request = _request(
        USER,
        Message(
            "assistant",
            (
                Reasoning("Thought.", "c2ln"),
                Text("Checking."),
                ToolCall("call_a", "get weather", '{"city":"Paris"}'),
                ToolCall("call_b", "now", ""),
            ),
        ),
        Message(
            "user",
            (
                ToolResult("call_a", (Text('{"temp": 21}'),)),
                ToolResult("call_b", (Text("noon"),)),
            ),
        ),
    )
    body = CODEC.encode_request(request)
    name = to_gemini_name("get weather", "")
    assert name.startswith(NAME_PREFIX)
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {"text": "Checking."},
            {"functionCall": {"name": name, "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "now", "args": {}}},
        ],
    }
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": name, "response": {"temp": 21}}},
        {"functionResponse": {"name": "now", "response": {"output": "noon"}}},
    ]
    assert CODEC.dropped_by_encoding(request) == ("reasoning.text",)


def test_a_signature_with_nothing_after_it_is_sent_on_an_empty_part() -> None:
    body = CODEC.encode_request(
        _request(USER, Message("assistant", (Reasoning("x", "c2ln"),)), USER)
    )
    assert body["contents"][1]["parts"] == [{"text": "", "thoughtSignature": "c2ln"}]


def test_a_result_of_an_unknown_call_is_refused() -> None:
    request = _request(USER, Message("user", (ToolResult("nope", (Text("x"),)),)))
    with pytest.raises(Unsupported) as refused:
        CODEC.encode_request(request)
    assert refused.value.field == "tool_result.call_id"


def test_images_go_inline_and_urls_are_refused() -> None:
    inline = _request(Message("user", (Image(url="data:image/jpeg;base64,/9j/"),)))
    assert CODEC.encode_request(inline)["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}}
    ]
    with pytest.raises(Unsupported) as refused:
        CODEC.encode_request(_request(Message("user", (Image(url="http://10.0.0.1/a.png"),))))
    assert refused.value.field == "image.url"


def test_two_tools_of_one_gemini_name_are_refused() -> None:
    tools = (Tool("weather", parameters=WEATHER_SCHEMA), Tool("weather", parameters=WEATHER_SCHEMA))
    with pytest.raises(Unsupported) as refused:
        CODEC.encode_request(_request(USER, tools=tools))
    assert refused.value.field == "tools[1].name"


@pytest.mark.parametrize("name", ["é" * 40, "a" * 65])
def test_a_name_too_long_to_encode_is_refused(name: str) -> None:
    with pytest.raises(Unsupported) as refused:
        CODEC.encode_request(_request(USER, tools=(Tool(name),)))
    assert refused.value.field == "tools[0].name"


# -- names and schemas -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "unchanged"),
    [
        ("get_weather", True),
        ("ns.tool:v2-b", True),
        ("_private", True),
        ("a" * 64, True),
        ("a" * 40, True),
        ("1tool", False),
        ("-dash", False),
        ("get weather", False),
        ("mcp/files", False),
        ("pp_lookalike", False),
        ("", False),
    ],
)
def test_tool_names(name: str, unchanged: bool) -> None:
    encoded = to_gemini_name(name, "x")
    assert (encoded == name) is unchanged
    assert from_gemini_name(encoded) == name
    assert len(encoded) <= 64


@given(st.text(max_size=40))
def test_every_name_that_fits_maps_back(name: str) -> None:
    try:
        encoded = to_gemini_name(name, "x")
    except Unsupported:
        assert len(name.encode()) > 40
        return
    assert from_gemini_name(encoded) == name
    assert encoded[0].isalpha() or encoded[0] == "_"


SCHEMA_ROWS: list[tuple[dict[str, Any], dict[str, Any] | None, list[str]]] = [
    (
        {
            "type": "object",
            "properties": {
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
            },
        },
        {
            "type": "object",
            "properties": {"note": {"nullable": True, "type": "string", "default": None}},
        },
        [],
    ),
    (
        {
            "type": "object",
            "properties": {
                "v": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}
            },
        },
        {
            "type": "object",
            "properties": {
                "v": {"nullable": True, "anyOf": [{"type": "string"}, {"type": "integer"}]}
            },
        },
        [],
    ),
    (
        {
            "type": "object",
            "properties": {"pair": {"type": "array", "items": [{"type": "string"}]}},
        },
        {"type": "object", "properties": {"pair": {"type": "array"}}},
        ["items"],
    ),
    # (JSON Schema, Gemini parameters, what was stripped)
    (
        {"$schema": "https://json-schema.org/draft/2020-12/schema", **WEATHER_SCHEMA},
        WEATHER_SCHEMA,
        ["$schema"],
    ),
    (
        {**WEATHER_SCHEMA, "additionalProperties": False, "required": ["city"]},
        {**WEATHER_SCHEMA, "required": ["city"]},
        ["additionalProperties"],
    ),
    ({"type": "object", "properties": {}}, None, []),
    ({"type": "object"}, None, []),
    (
        {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}},
        {"type": "object", "properties": {"n": {"nullable": True, "type": "integer"}}},
        [],
    ),
    (
        {"type": "object", "properties": {"v": {"type": ["string", "integer"]}}},
        {
            "type": "object",
            "properties": {"v": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        },
        [],
    ),
    (
        {"type": "object", "properties": {"k": {"const": "fixed"}}},
        {"type": "object", "properties": {"k": {"enum": ["fixed"], "type": "string"}}},
        [],
    ),
    (
        {"type": "object", "properties": {"k": {"type": "integer", "enum": [1, 2]}}},
        {"type": "object", "properties": {"k": {"type": "integer"}}},
        ["enum"],
    ),
    (
        {
            "type": "object",
            "properties": {
                "when": {"type": "string", "format": "date-time"},
                "site": {"type": "string", "format": "uri"},
            },
        },
        {
            "type": "object",
            "properties": {
                "when": {"type": "string", "format": "date-time"},
                "site": {"type": "string"},
            },
        },
        ["format"],
    ),
    (
        {
            "type": "object",
            "properties": {"pet": {"$ref": "#/$defs/Pet", "description": "The pet."}},
            "$defs": {
                "Pet": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}},
                    "description": "A pet.",
                }
            },
        },
        {
            "type": "object",
            "properties": {
                "pet": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}},
                    "description": "The pet.",
                }
            },
        },
        [],
    ),
    (
        {
            "type": "object",
            "properties": {"x": {"oneOf": [{"type": "string"}, {"type": "number"}]}},
        },
        {
            "type": "object",
            "properties": {"x": {"anyOf": [{"type": "string"}, {"type": "number"}]}},
        },
        [],
    ),
    (
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"b": {"type": "number"}}, "required": ["b"]},
            ]
        },
        {
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
        [],
    ),
    (
        {
            "type": "object",
            "properties": {
                "tags": {"type": "array", "items": {"type": "string", "examples": ["x"]}}
            },
        },
        {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}},
        ["examples"],
    ),
]


@pytest.mark.parametrize(("schema", "expected", "stripped"), SCHEMA_ROWS)
def test_the_schema_rule(
    schema: dict[str, Any], expected: dict[str, Any] | None, stripped: list[str]
) -> None:
    assert to_gemini(schema, "tools[0].parameters") == (expected, stripped)


def test_a_recursive_reference_is_refused() -> None:
    schema = {
        "type": "object",
        "properties": {"node": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
    }
    with pytest.raises(Unsupported) as refused:
        to_gemini(schema, "tools[0].parameters")
    assert refused.value.field == "tools[0].parameters"


def test_stripped_schema_keys_are_named_as_dropped() -> None:
    tools = (Tool("f", parameters={**WEATHER_SCHEMA, "additionalProperties": False}, strict=True),)
    assert CODEC.dropped_by_encoding(_request(USER, tools=tools)) == (
        "tools.strict",
        "tool schema keywords",
    )


def test_a_gemini_schema_reads_as_json_schema() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
            "n": {"type": "INTEGER", "nullable": True},
        },
        "required": ["tags"],
        "propertyOrdering": ["tags", "n"],
    }
    assert to_json_schema(schema) == {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "n": {"type": ["integer", "null"]},
        },
        "required": ["tags"],
    }


# -- responses ---------------------------------------------------------------------------

ANSWER: dict[str, Any] = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "Plan.", "thought": True},
                    {
                        "functionCall": {"name": "weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "c2ln",
                    },
                    {"functionCall": {"name": "now", "args": {}}},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 40,
        "candidatesTokenCount": 10,
        "thoughtsTokenCount": 5,
        "cachedContentTokenCount": 8,
        "toolUsePromptTokenCount": 2,
        "totalTokenCount": 57,
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "resp-1",
}


def test_a_response_decodes_with_stable_ids_and_tool_calls_finish() -> None:
    response = CODEC.decode_response(ANSWER)
    first = codec.call_id("resp-1", 0, "weather", '{"city":"Paris"}')
    second = codec.call_id("resp-1", 1, "now", "{}")
    assert response == Response(
        "resp-1",
        "gemini-2.5-flash",
        (
            Reasoning("Plan.", "c2ln"),
            ToolCall(first, "weather", '{"city":"Paris"}'),
            ToolCall(second, "now", "{}"),
        ),
        FinishReason.TOOL_CALLS,
        Usage(input_tokens=42, output_tokens=15, cache_read_tokens=8, reasoning_tokens=5),
    )
    assert CODEC.decode_response(ANSWER) == response  # stable
    assert first != second
    assert first.startswith("call_")


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", FinishReason.STOP),
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("SAFETY", FinishReason.CONTENT_FILTER),
        ("RECITATION", FinishReason.CONTENT_FILTER),
        ("PROHIBITED_CONTENT", FinishReason.CONTENT_FILTER),
    ],
)
def test_finish_reasons(reason: str, finish: FinishReason) -> None:
    answer = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert CODEC.decode_response(answer).finish is finish


@pytest.mark.parametrize("reason", ["MALFORMED_FUNCTION_CALL", "OTHER", "NEW_REASON", None])
def test_failed_and_unknown_finishes_are_errors(reason: str | None) -> None:
    answer = {"candidates": [{"content": {"parts": []}, "finishReason": reason}]}
    with pytest.raises(UntranslatableResponse) as failed:
        CODEC.decode_response(answer)
    assert failed.value.status_code == 502
    if reason == "MALFORMED_FUNCTION_CALL":
        assert "malformed function call" in failed.value.message


def test_a_blocked_prompt_is_a_content_filter_finish() -> None:
    answer = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}
    response = CODEC.decode_response(answer)
    assert (response.parts, response.finish) == ((), FinishReason.CONTENT_FILTER)


def test_a_response_for_a_gemini_client_is_valid_for_google_genai() -> None:
    response = Response(
        "msg_1",
        "claude-sonnet-4-5",
        (
            Reasoning("Hmm.", "c2lnbmVk"),
            Text("Sure."),
            ToolCall("toolu_1", "weather", '{"city":"Paris"}'),
        ),
        FinishReason.TOOL_CALLS,
        Usage(input_tokens=30, output_tokens=12, cache_read_tokens=10, reasoning_tokens=4),
    )
    encoded = CODEC.encode_response(response)
    sdk = genai.GenerateContentResponse.model_validate(encoded)
    assert sdk.text == "Sure."
    assert sdk.function_calls is not None
    assert [(c.id, c.name, c.args) for c in sdk.function_calls] == [
        ("toolu_1", "weather", {"city": "Paris"})
    ]
    assert sdk.candidates is not None
    assert sdk.candidates[0].content is not None
    parts = sdk.candidates[0].content.parts or []
    assert parts[0].thought is True
    assert parts[0].thought_signature == b"signed"
    assert sdk.usage_metadata is not None
    usage = sdk.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.thoughts_token_count) == (
        30,
        8,
        4,
    )
    assert usage.cached_content_token_count == 10
    # What the client sends back next turn decodes to the same parts.
    history = {"role": "model", "parts": encoded["candidates"][0]["content"]["parts"]}
    again = decode(contents=[HELLO, history]).messages[1].parts
    assert again == response.parts


# -- round trips -------------------------------------------------------------------------

words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
gemini_texts = st.lists(words, min_size=1, max_size=3)


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(st.sampled_from(["user", "assistant"]), gemini_texts), min_size=1, max_size=4
    ),
    st.one_of(st.none(), st.integers(1, 10_000)),
    st.one_of(st.none(), st.floats(0, 2, allow_nan=False)),
    st.lists(words, max_size=2),
)
def test_text_requests_survive_gemini_both_ways(
    turns: list[tuple[Any, list[str]]],
    max_tokens: int | None,
    temperature: float | None,
    stop: list[str],
) -> None:
    request = Request(
        "m",
        tuple(Message(role, tuple(Text(t) for t in texts)) for role, texts in turns),
        system=(Text("sys"),),
        max_tokens=max_tokens,
        temperature=temperature,
        stop=tuple(stop),
    )
    encoded = CODEC.encode_request(request)
    decoded, dropped = CODEC.decode_request({**encoded, "model": "m"})
    assert decoded == request
    assert dropped == ()


@settings(max_examples=60)
@given(
    st.lists(
        st.one_of(
            words.map(Text),
            st.tuples(
                words, st.dictionaries(st.sampled_from("abc"), st.integers(-(2**53), 2**53))
            ).map(lambda t: ToolCall("id-" + t[0], "f", json.dumps(t[1], separators=(",", ":")))),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_answers_survive_a_gemini_client_both_ways(parts: list[Any]) -> None:
    called = any(isinstance(p, ToolCall) for p in parts)
    finish = FinishReason.TOOL_CALLS if called else FinishReason.STOP
    response = Response("r", "m", tuple(parts), finish, Usage(3, 4, None, None, None))
    assert CODEC.decode_response(CODEC.encode_response(response)) == response


# -- the golden stream -------------------------------------------------------------------

CALL_1 = codec.call_id(
    "mPq1aKyQEoqtz7IP1N3k-Qw", 0, "get_weather", '{"city":"Paris","unit":"celsius"}'
)
CALL_2 = codec.call_id("mPq1aKyQEoqtz7IP1N3k-Qw", 1, "get_time", '{"tz":"Europe/Paris"}')
SIGNATURE = "CiQB0e2Kb9v1x3yZ4kq8m1Z2YmF0aG9uIHNpZ25hdHVyZQ=="
EXPECTED: list[StreamEvent] = [
    MessageStart("mPq1aKyQEoqtz7IP1N3k-Qw", "gemini-2.5-flash"),
    ReasoningDelta("**Checking the weather**\n\nThe user wants Paris."),
    UsageReport(Usage(input_tokens=52)),
    TextDelta("Let me look that up — "),
    UsageReport(Usage(input_tokens=52, output_tokens=64, reasoning_tokens=58)),
    TextDelta("one moment."),
    UsageReport(Usage(input_tokens=52, output_tokens=67, reasoning_tokens=58)),
    ReasoningSignature(SIGNATURE),
    ToolCallStart(0, CALL_1, "get_weather"),
    ToolCallDelta(0, '{"city":"Paris","unit":"celsius"}'),
    ToolCallEnd(0),
    ToolCallStart(1, CALL_2, "get_time"),
    ToolCallDelta(1, '{"tz":"Europe/Paris"}'),
    ToolCallEnd(1),
    Finish(FinishReason.TOOL_CALLS),
    UsageReport(
        Usage(input_tokens=64, output_tokens=89, cache_read_tokens=12, reasoning_tokens=58)
    ),
]


def decode_stream(chunks: list[bytes]) -> list[StreamEvent]:
    parser, decoder = SSEParser(), CODEC.stream_decoder()
    events: list[StreamEvent] = []
    for chunk in chunks:
        for sse in parser.feed(chunk):
            events.extend(decoder.feed_text(sse.event, sse.data))
    return events + decoder.end()


def test_the_golden_stream_decodes_at_every_split() -> None:
    raw = GOLDEN.read_bytes()
    assert decode_stream([raw]) == EXPECTED
    for cut in range(1, len(raw)):
        assert decode_stream([raw[:cut], raw[cut:]]) == EXPECTED, cut
    assert decode_stream([raw[i : i + 1] for i in range(len(raw))]) == EXPECTED


def test_the_golden_stream_agrees_with_the_whole_answer() -> None:
    """The ids a stream gives its calls are those the whole answer would have."""
    raw = GOLDEN.read_bytes()
    chunks = [json.loads(e.data) for e in SSEParser().feed(raw)]
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    whole = {
        **chunks[-1],
        "candidates": [{**chunks[-1]["candidates"][0], "content": {"parts": parts}}],
    }
    response = CODEC.decode_response(whole)
    assert [p.id for p in response.parts if isinstance(p, ToolCall)] == [CALL_1, CALL_2]


def test_a_stream_cut_short_ends_in_an_error() -> None:
    raw = GOLDEN.read_bytes()
    events = decode_stream([raw[: raw.rindex(b"data: ")]])
    assert isinstance(events[-1], StreamError)
    assert events[-1].status == 502


def test_an_error_event_becomes_a_canonical_error() -> None:
    events = CODEC.stream_decoder().feed(
        "", {"error": {"code": 429, "message": "Quota", "status": "RESOURCE_EXHAUSTED"}}
    )
    assert events == [StreamError(500, "rate_limit", "Quota")]


def test_a_malformed_call_in_a_stream_is_an_error() -> None:
    decoder = CODEC.stream_decoder()
    events = decoder.feed("", {"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL"}]})
    assert isinstance(events[-1], StreamError)
    assert events[-1].status == 502
    assert decoder.end() == []


def test_the_golden_stream_translated_to_openai_chat_is_valid_for_the_openai_sdk() -> None:
    target = OpenAIChat.codec
    assert target is not None
    encoder = target.stream_encoder(Request("m", (), stream=True, stream_usage=True))
    out = b"".join(encoder.feed(e) for e in EXPECTED) + encoder.close()
    events = SSEParser().feed(out)
    assert events[-1].data == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(e.data) for e in events[:-1]]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "Let me look that up — one moment."
    calls = [
        (call.index, call.id, call.function.name if call.function else None)
        for c in chunks
        if c.choices
        for call in c.choices[0].delta.tool_calls or []
        if call.id
    ]
    assert calls == [(0, CALL_1, "get_weather"), (1, CALL_2, "get_time")]
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["tool_calls"]
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (64, 89)


def test_the_golden_stream_translated_to_anthropic_signs_its_thinking() -> None:
    target = AnthropicMessages.codec
    assert target is not None
    encoder = target.stream_encoder(Request("m", (), stream=True))
    out = b"".join(encoder.feed(e) for e in EXPECTED) + encoder.close()
    events = [
        TypeAdapter(RawMessageStreamEvent).validate_json(e.data) for e in SSEParser().feed(out)
    ]
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert any(d.type == "signature_delta" and d.signature == SIGNATURE for d in deltas)
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["thinking", "text", "thinking", "tool_use", "tool_use"]


def encode_stream(events: list[StreamEvent]) -> list[genai.GenerateContentResponse]:
    encoder = CODEC.stream_encoder(Request("m", (), stream=True))
    out = b"".join(encoder.feed(e) for e in events) + encoder.close()
    return [
        genai.GenerateContentResponse.model_validate_json(e.data) for e in SSEParser().feed(out)
    ]


def test_the_encoder_writes_chunks_google_genai_reads() -> None:
    chunks = encode_stream(EXPECTED)
    texts = "".join(c.text or "" for c in chunks)
    assert texts == "Let me look that up — one moment."
    calls = [call for c in chunks for call in c.function_calls or []]
    assert [(c.id, c.name, c.args) for c in calls] == [
        (CALL_1, "get_weather", {"city": "Paris", "unit": "celsius"}),
        (CALL_2, "get_time", {"tz": "Europe/Paris"}),
    ]
    last = chunks[-1]
    assert last.candidates is not None
    assert last.candidates[0].finish_reason == genai.FinishReason.STOP
    assert last.usage_metadata is not None
    assert last.usage_metadata.prompt_token_count == 64
    assert last.usage_metadata.thoughts_token_count == 58
    assert all(c.response_id == "mPq1aKyQEoqtz7IP1N3k-Qw" for c in chunks)


def test_encoded_then_decoded_gives_the_same_content() -> None:
    encoder = CODEC.stream_encoder(Request("m", (), stream=True))
    out = b"".join(encoder.feed(e) for e in EXPECTED) + encoder.close()
    again = decode_stream([out])
    content = (TextDelta, ReasoningDelta, ReasoningSignature, ToolCallStart, ToolCallDelta, Finish)
    assert [e for e in again if isinstance(e, content)] == [
        e for e in EXPECTED if isinstance(e, content)
    ]


def test_a_stream_that_ends_without_a_finish_ends_in_an_error_event() -> None:
    encoder = CODEC.stream_encoder(Request("m", (), stream=True))
    out = encoder.feed(MessageStart("r", "m")) + encoder.feed(TextDelta("Hi")) + encoder.close()
    last = json.loads(SSEParser().feed(out)[-1].data)
    assert last["error"]["code"] == 502
    assert encoder.close() == b""


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "kind"),
    [
        (400, "INVALID_ARGUMENT", "invalid_request"),
        (400, "FAILED_PRECONDITION", "invalid_request"),
        (401, "UNAUTHENTICATED", "authentication"),
        (403, "PERMISSION_DENIED", "permission"),
        (404, "NOT_FOUND", "not_found"),
        (429, "RESOURCE_EXHAUSTED", "rate_limit"),
        (500, "INTERNAL", "server_error"),
        (503, "UNAVAILABLE", "overloaded"),
        (504, "DEADLINE_EXCEEDED", "timeout"),
    ],
)
def test_errors_both_ways(status: int, name: str, kind: str) -> None:
    google = {"error": {"code": status, "message": "It failed.", "status": name}}
    assert CODEC.decode_error(status, google) == StreamError(status, kind, "It failed.")
    assert CODEC.decode_error(status, [google]) == StreamError(status, kind, "It failed.")
    encoded_status, encoded = CODEC.encode_error(status, kind, "It failed.")
    assert encoded_status == status
    assert encoded["error"]["code"] == status
    assert encoded["error"]["message"] == "It failed."


def test_anthropics_overloaded_is_unavailable() -> None:
    assert CODEC.encode_error(529, "overloaded", "busy") == (
        503,
        {"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}},
    )


def test_an_error_body_that_is_not_googles_still_decodes() -> None:
    assert CODEC.decode_error(502, b"<html>") == StreamError(
        502, "server_error", "The provider answered 502."
    )


# -- the gateway's paths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "model", "stream"),
    [
        ("/v1beta/models/openai/gpt-4.1:generateContent", b"", "openai/gpt-4.1", False),
        ("/v1beta/models/openai%2Fgpt-4.1:generateContent", b"", "openai/gpt-4.1", False),
        ("/v1beta/models/models/openai/gpt-4.1:generateContent", b"", "openai/gpt-4.1", False),
        (
            "/v1/models/anthropic/claude-sonnet-4-5:streamGenerateContent",
            b"alt=sse",
            "anthropic/claude-sonnet-4-5",
            True,
        ),
        (
            "/v1beta/models/gemini/gemini-2.5-flash:streamGenerateContent",
            b"key=k&alt=sse",
            "gemini/gemini-2.5-flash",
            True,
        ),
    ],
)
def test_gateway_paths_name_the_model(path: str, query: bytes, model: str, stream: bool) -> None:
    call = gateway_in_path(path, query)
    assert call is not None
    assert (call.model, call.stream, call.refusal, call.dialect) == (model, stream, None, Gemini())


@pytest.mark.parametrize(
    ("method", "operation"),
    [
        ("generateContent", "generate"),
        ("streamGenerateContent", "stream"),
        ("countTokens", "count_tokens"),
        ("embedContent", "embed_content"),
        ("batchEmbedContents", "embed"),
    ],
)
def test_each_served_method_is_its_operation(method: str, operation: str) -> None:
    call = gateway_in_path(f"/v1beta/models/openai/gpt-4.1:{method}", b"alt=sse")
    assert call is not None
    assert (call.operation, call.refusal) == (operation, None)


@pytest.mark.parametrize("method", ["batchGenerateContent", "predict"])
def test_other_methods_of_a_model_are_refused_saying_what_is_served(method: str) -> None:
    call = gateway_in_path(f"/v1beta/models/openai/gpt-4.1:{method}", b"")
    assert call is not None
    assert call.refusal is not None
    assert method in call.refusal
    assert "generateContent" in call.refusal


@pytest.mark.parametrize(
    "path",
    [
        "/v1beta/models/:generateContent",
        "/v1/models/ollama/llama3:8b",
        "/v1beta/tunedModels/x:generateContent",
        "/v2/models/x:generateContent",
        "/v1/chat/completions",
    ],
)
def test_other_paths_are_not_the_gateways(path: str) -> None:
    assert gateway_in_path(path, b"") is None


def test_a_stream_without_sse_is_refused() -> None:
    call = gateway_in_path("/v1beta/models/openai/gpt-4.1:streamGenerateContent", b"")
    assert call is not None
    assert call.refusal is not None
    assert "alt=sse" in call.refusal


# -- embeddings ----------------------------------------------------------------------------

EMBED = EMBEDDINGS[("openai-chat", "gemini")]


def test_an_embeddings_request_becomes_a_batch() -> None:
    body, dropped = EMBED.decode_request(
        {"model": "gemini/text-embedding-004", "input": ["a", "b"], "dimensions": 8, "user": "u"}
    )
    assert dropped == ("user",)
    assert EMBED.encode_request(body, "text-embedding-004") == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": text}]},
                "outputDimensionality": 8,
            }
            for text in ("a", "b")
        ]
    }


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_come_back_in_openais_list(encoding: str) -> None:
    request = {"model": "m", "input": "a", "encoding_format": encoding}
    answer = EMBED.decode_response(
        {"embeddings": [{"values": [0.5, -1.25, 3]}, {"values": [0.0]}]}, request, "m"
    )
    vectors = [item["embedding"] for item in answer["data"]]
    if encoding == "base64":
        vectors = [
            list(struct.unpack(f"<{len(base64.b64decode(v)) // 4}f", base64.b64decode(v)))
            for v in vectors
        ]
    assert vectors == [[0.5, -1.25, 3.0], [0.0]]
    assert [item["index"] for item in answer["data"]] == [0, 1]
    assert answer["usage"] == {"prompt_tokens": 0, "total_tokens": 0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "m", "input": [[1, 2]]}, "input[0]"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "m", "input": "a", "dimensions": -1}, "dimensions"),
        ({"model": "m", "input": "a", "truncate": True}, "body.truncate"),
    ],
)
def test_embeddings_that_do_not_translate_are_refused(body: dict[str, Any], field: str) -> None:
    with pytest.raises(Unsupported) as refused:
        EMBED.decode_request(body)
    assert refused.value.field == field


def test_a_restored_signature_goes_on_the_first_call_not_the_text_before_it() -> None:
    """A Chat client's turn comes back as text then calls, its reasoning put in front."""
    turn = Message(
        "assistant",
        (
            Reasoning("Plan.", "c2ln"),
            Text("Let me look."),
            ToolCall("call_a", "weather", "{}"),
            ToolCall("call_b", "now", "{}"),
        ),
    )
    parts = CODEC.encode_request(_request(USER, turn))["contents"][1]["parts"]
    assert parts == [
        {"text": "Let me look."},
        {"functionCall": {"name": "weather", "args": {}}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "now", "args": {}}},
    ]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (
            "ZmFrZV3vzl7bG2F-GMHaazOla_1KdmUB3jp7jaqgPo4VYbtj",
            "ZmFrZV3vzl7bG2F+GMHaazOla/1KdmUB3jp7jaqgPo4VYbtj",
        ),
        (
            "ZmFrZV3vzl7bG2F+GMHaazOla/1KdmUB3jp7jaqgPo4VYbtj",
            "ZmFrZV3vzl7bG2F+GMHaazOla/1KdmUB3jp7jaqgPo4VYbtj",
        ),
        ("c2ln", "c2ln"),
        ("c2lnbg", "c2lnbg=="),
        ("not base64!", "not base64!"),
    ],
)
def test_a_clients_signature_is_read_as_the_bytes_it_stands_for(sent: str, kept: str) -> None:
    """google-genai sends signatures back URL-safe and unpadded: the same bytes."""
    parts = [{"text": "Plan.", "thought": True, "thoughtSignature": sent}]
    request = decode(contents=[HELLO, {"role": "model", "parts": parts}, HELLO])
    assert request.messages[1].parts == (Reasoning("Plan.", kept),)


def test_a_return_schema_is_dropped_and_named() -> None:
    tools = [
        {
            "functionDeclarations": [
                {
                    "name": "weather",
                    "parametersJsonSchema": WEATHER_SCHEMA,
                    "responseJsonSchema": {"type": "string"},
                }
            ]
        }
    ]
    request, dropped = CODEC.decode_request(body(tools=tools))
    assert dropped == ("functionDeclarations.response",)
    assert request.tools == (Tool("weather", None, WEATHER_SCHEMA),)


def test_usage_after_the_finish_is_read_and_content_is_not() -> None:
    decoder = CODEC.stream_decoder()
    decoder.feed(
        "", {"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}]}
    )
    late = decoder.feed(
        "",
        {
            "candidates": [{"content": {"parts": [{"text": "more"}]}}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
        },
    )
    assert late == [UsageReport(Usage(input_tokens=3, output_tokens=1))]
    assert decoder.end() == []
