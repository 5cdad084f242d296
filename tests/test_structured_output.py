"""Structured output through the gateway: each API's format field, both ways, and real SDKs.

Codec tables per direction (Chat ``response_format``, Responses ``text.format``,
Gemini ``responseMimeType``/``responseJsonSchema``/``responseSchema``, Anthropic
``output_config.format``), the schema rule for Claude (closed objects; keywords
it does not enforce refused when strict, described otherwise), refusals by name;
the fake provider refusing malformed formats as the real APIs do; and, through a
real server, the ``openai`` SDK's ``chat.completions.parse``/``responses.parse``
(and their streams) with a pydantic model on Claude and Gemini, the Agents SDK's
``output_type`` on Claude, ``google-genai``'s ``response_schema`` on an OpenAI
Chat model (streamed too) and on Claude, the ``anthropic`` SDK's
``messages.parse``/``stream`` on GPT and Gemini, and a provider flagged without
JSON schemas refusing one by name.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any, Literal

import anthropic
import anyio
import httpx
import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled
from google import genai
from google.genai import types
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from provider_proxy import make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, GeminiAdapter, OpenAIAdapter, VLLMAdapter
from provider_proxy.dialects import _output_format as output
from provider_proxy.dialects import _responses_items as responses_items
from provider_proxy.dialects.anthropic_messages import AnthropicMessagesCodec
from provider_proxy.dialects.canonical import (
    FinishReason,
    Message,
    OutputFormat,
    Request,
    Response,
    Text,
    Unsupported,
)
from provider_proxy.dialects.gemini import GeminiCodec
from provider_proxy.dialects.openai_chat import OpenAIChatCodec
from provider_proxy.dialects.openai_responses import OpenAIResponsesCodec
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY, OPENAI_KEY
from .servers import ServerThread, serve

GEMINI_KEY = "gemini-test-key-0123456789"
GPT, CLAUDE, FLASH = "openai/gpt-4.1", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"

CHAT, RESPONSES = OpenAIChatCodec(), OpenAIResponsesCodec()
ANTHROPIC, GEMINI = AnthropicMessagesCodec(), GeminiCodec()

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
FORMAT = OutputFormat("json_schema", name="weather", schema=SCHEMA, strict=True)


class Place(BaseModel):
    city: str
    country: str


class Forecast(BaseModel):
    place: Place
    days: int
    sunny: bool
    unit: Literal["celsius", "fahrenheit"]
    temperatures: list[float]
    note: str | None


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "Hi, in JSON."}], **fields}


def _responses(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "input": "Hi, in JSON.", **fields}


def _anthropic(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi."}]} | (
        fields
    )


def _gemini(**config: Any) -> dict[str, Any]:
    contents = [{"role": "user", "parts": [{"text": "Hi."}]}]
    return {"model": "m", "contents": contents, "generationConfig": config}


def _request(form: OutputFormat | None) -> Request:
    return Request("m", (Message("user", (Text("Hi, in JSON."),)),), output_format=form)


# -- decoding: each client format to the canonical format -------------------------------

DECODED: list[tuple[Any, dict[str, Any], OutputFormat | None]] = [
    (CHAT, _chat(), None),
    (CHAT, _chat(response_format={"type": "text"}), None),
    (CHAT, _chat(response_format={"type": "json_object"}), OutputFormat("json_object")),
    (
        CHAT,
        _chat(
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "weather",
                    "schema": SCHEMA,
                    "strict": True,
                    "description": "The forecast.",
                },
            }
        ),
        OutputFormat("json_schema", "weather", SCHEMA, True, "The forecast."),
    ),
    (RESPONSES, _responses(text={"format": {"type": "text"}}), None),
    (RESPONSES, _responses(text={"format": {"type": "json_object"}}), OutputFormat("json_object")),
    (
        RESPONSES,
        _responses(text={"format": {"type": "json_schema", "name": "weather", "schema": SCHEMA}}),
        OutputFormat("json_schema", "weather", SCHEMA),
    ),
    (
        ANTHROPIC,
        _anthropic(output_config={"format": {"type": "json_schema", "schema": SCHEMA}}),
        OutputFormat("json_schema", schema=SCHEMA, strict=True),
    ),
    (
        ANTHROPIC,
        _anthropic(output_format={"type": "json_schema", "schema": SCHEMA}),
        OutputFormat("json_schema", schema=SCHEMA, strict=True),
    ),
    (GEMINI, _gemini(responseMimeType="text/plain"), None),
    (GEMINI, _gemini(responseMimeType="application/json"), OutputFormat("json_object")),
    (
        GEMINI,
        _gemini(responseMimeType="application/json", responseJsonSchema=SCHEMA),
        OutputFormat("json_schema", schema=SCHEMA),
    ),
    (
        GEMINI,
        _gemini(
            response_mime_type="application/json",
            response_schema={
                "type": "OBJECT",
                "properties": {
                    "city": {"type": "STRING"},
                    "note": {"type": "STRING", "nullable": True},
                },
                "required": ["city"],
                "propertyOrdering": ["city", "note"],
            },
        ),
        OutputFormat(
            "json_schema",
            schema={
                "type": "object",
                "properties": {"city": {"type": "string"}, "note": {"type": ["string", "null"]}},
                "required": ["city"],
            },
        ),
    ),
]


@pytest.mark.parametrize(("codec", "body", "expected"), DECODED)
def test_each_client_format_decodes_to_the_canonical_format(
    codec: Any, body: dict[str, Any], expected: OutputFormat | None
) -> None:
    request, dropped = codec.decode_request(body)
    assert request.output_format == expected
    assert dropped == ()


REFUSED: list[tuple[Any, dict[str, Any], str]] = [
    (CHAT, _chat(response_format={"type": "grammar"}), "response_format.type"),
    (
        CHAT,
        _chat(response_format={"type": "json_schema", "json_schema": {"schema": SCHEMA}}),
        "response_format.json_schema.name",
    ),
    (
        CHAT,
        _chat(response_format={"type": "json_schema", "json_schema": {"name": "a b"}}),
        "response_format.json_schema.name",
    ),
    (
        CHAT,
        _chat(response_format={"type": "json_schema", "json_schema": {"name": "w"}}),
        "response_format.json_schema.schema",
    ),
    (
        RESPONSES,
        _responses(text={"format": {"type": "json_schema", "name": "w", "schema": SCHEMA, "x": 1}}),
        "text.format.x",
    ),
    (
        ANTHROPIC,
        _anthropic(output_config={"effort": "low"}),
        "output_config.effort",
    ),
    (
        ANTHROPIC,
        _anthropic(output_config={"format": {"type": "json_object"}}),
        "output_config.format.type",
    ),
    (
        GEMINI,
        _gemini(responseMimeType="text/x.enum", responseSchema={"type": "STRING"}),
        "generationConfig.responseMimeType",
    ),
    (GEMINI, _gemini(responseJsonSchema=SCHEMA), "generationConfig.responseJsonSchema"),
    (
        GEMINI,
        _gemini(responseMimeType="application/json", responseJsonSchema=SCHEMA, responseSchema={}),
        "generationConfig.responseSchema",
    ),
]


@pytest.mark.parametrize(("codec", "body", "name"), REFUSED)
def test_a_malformed_or_untranslatable_format_is_refused_by_name(
    codec: Any, body: dict[str, Any], name: str
) -> None:
    with pytest.raises(Unsupported) as refused:
        codec.decode_request(body)
    assert refused.value.field == name
    assert refused.value.status_code == 400


# -- encoding: the canonical format to each provider format -----------------------------


def test_to_openai_chat_and_responses_the_format_is_sent_as_given() -> None:
    chat = CHAT.encode_request(_request(FORMAT))
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True},
    }
    responses = RESPONSES.encode_request(_request(FORMAT))
    assert responses["text"] == {
        "format": {"type": "json_schema", "name": "weather", "schema": SCHEMA, "strict": True}
    }
    assert CHAT.encode_request(_request(OutputFormat("json_object")))["response_format"] == {
        "type": "json_object"
    }
    assert "response_format" not in CHAT.encode_request(_request(None))
    assert "text" not in RESPONSES.encode_request(_request(None))


def test_a_format_without_a_name_is_named_for_openai_from_its_title() -> None:
    titled = OutputFormat("json_schema", schema={**SCHEMA, "title": "Forecast"})
    assert CHAT.encode_request(_request(titled))["response_format"]["json_schema"]["name"] == (
        "Forecast"
    )
    untitled = OutputFormat("json_schema", schema={**SCHEMA, "title": "Not a name!"})
    spec = RESPONSES.encode_request(_request(untitled))["text"]["format"]
    assert spec["name"] == output.DEFAULT_NAME
    assert "strict" not in spec


def test_to_gemini_the_schema_goes_intact_as_response_json_schema() -> None:
    config = GEMINI.encode_request(_request(FORMAT))["generationConfig"]
    assert config == {
        "responseMimeType": "application/json",
        "responseJsonSchema": {**SCHEMA, "title": "weather"},
    }
    described = OutputFormat("json_schema", schema=SCHEMA, description="The forecast.")
    sent = GEMINI.encode_request(_request(described))["generationConfig"]["responseJsonSchema"]
    assert sent["description"] == "The forecast."
    plain = GEMINI.encode_request(_request(OutputFormat("json_object")))["generationConfig"]
    assert plain == {"responseMimeType": "application/json"}


def test_to_anthropic_the_schema_goes_as_output_config_format_with_objects_closed() -> None:
    open_schema = {
        "type": "object",
        "properties": {"place": {"$ref": "#/$defs/Place"}, "days": {"type": "integer"}},
        "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
    body = ANTHROPIC.encode_request(
        _request(OutputFormat("json_schema", name="w", schema=open_schema))
    )
    assert body["output_config"] == {
        "format": {
            "type": "json_schema",
            "schema": {
                "type": "object",
                "properties": {"place": {"$ref": "#/$defs/Place"}, "days": {"type": "integer"}},
                "$defs": {
                    "Place": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "additionalProperties": False,
                    }
                },
                "title": "w",
                "additionalProperties": False,
            },
        }
    }
    assert "output_config" not in ANTHROPIC.encode_request(_request(None))


def test_an_unenforced_keyword_is_refused_when_strict_and_described_otherwise() -> None:
    schema = {
        "type": "object",
        "properties": {"days": {"type": "integer", "minimum": 1, "description": "How many."}},
        "required": ["days"],
        "additionalProperties": False,
    }
    strict = OutputFormat("json_schema", schema=schema, strict=True, source="text.format")
    with pytest.raises(Unsupported) as refused:
        ANTHROPIC.encode_request(_request(strict))
    assert refused.value.field == "text.format.schema.properties.days.minimum"
    loose = OutputFormat("json_schema", schema=schema, source="text.format")
    sent = ANTHROPIC.encode_request(_request(loose))["output_config"]["format"]["schema"]
    assert sent["properties"]["days"] == {
        "type": "integer",
        "description": "How many.\n\n{minimum: 1}",
    }


def test_claude_gets_type_lists_as_any_of_and_annotations_in_descriptions() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "note": {"type": ["string", "null"], "default": None},
            "kind": {"oneOf": [{"const": "a"}, {"const": "b"}]},
            "code": {"type": "string", "pattern": "^[A-Z]+$", "description": "Upper case."},
        },
        "required": ["note", "kind", "code"],
        "additionalProperties": False,
    }
    loose = OutputFormat("json_schema", schema=schema, source="text.format")
    sent = ANTHROPIC.encode_request(_request(loose))["output_config"]["format"]["schema"]
    assert sent["properties"] == {
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "{default: None}"},
        "kind": {"anyOf": [{"const": "a"}, {"const": "b"}]},
        "code": {"type": "string", "description": "Upper case.\n\n{pattern: '^[A-Z]+$'}"},
    }
    with pytest.raises(Unsupported) as refused:
        ANTHROPIC.encode_request(_request(dataclasses.replace(loose, strict=True)))
    assert refused.value.field == "text.format.schema.properties.kind.oneOf"
    del schema["properties"]["kind"]
    schema["required"] = ["note", "code"]
    with pytest.raises(Unsupported) as refused:
        ANTHROPIC.encode_request(_request(dataclasses.replace(loose, schema=schema, strict=True)))
    assert refused.value.field == "text.format.schema.properties.code.pattern"


@pytest.mark.parametrize(
    ("schema", "name"),
    [
        (
            {"type": "object", "properties": {}, "additionalProperties": True},
            "response_format.json_schema.schema.additionalProperties",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "tags": {"type": "object", "additionalProperties": {"type": "string"}}
                },
            },
            "response_format.json_schema.schema.properties.tags.additionalProperties",
        ),
        (
            {
                "$ref": "#/$defs/Node",
                "$defs": {
                    "Node": {
                        "type": "object",
                        "properties": {"next": {"$ref": "#/$defs/Node"}},
                    }
                },
            },
            "response_format.json_schema.schema.$ref",
        ),
    ],
)
def test_what_claude_cannot_take_is_refused_naming_the_client_field(
    schema: dict[str, Any], name: str
) -> None:
    form = OutputFormat("json_schema", schema=schema, source="response_format.json_schema")
    with pytest.raises(Unsupported) as refused:
        ANTHROPIC.encode_request(_request(form))
    assert refused.value.field == name


def test_a_json_object_without_a_schema_is_refused_for_claude() -> None:
    with pytest.raises(Unsupported) as refused:
        ANTHROPIC.encode_request(_request(OutputFormat("json_object", source="response_format")))
    assert refused.value.field == "response_format"


def test_the_responses_object_echoes_the_requested_format() -> None:
    request, _ = RESPONSES.decode_request(
        _responses(text={"format": {"type": "json_schema", "name": "w", "schema": SCHEMA}})
    )
    answer = Response("resp_1", "m", (Text("{}"),), FinishReason.STOP)
    echoed = responses_items.encode_response(answer, request=request)
    assert echoed["text"] == {"format": {"type": "json_schema", "name": "w", "schema": SCHEMA}}
    plain = responses_items.encode_response(answer, request=_request(None))
    assert plain["text"] == {"format": {"type": "text"}}


# -- properties -------------------------------------------------------------------------

_names = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
_leaf = st.sampled_from(
    [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"}]
)


def _objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.dictionaries(st.text("abcdefgh", min_size=1, max_size=5), children, max_size=4).map(
        lambda properties: {"type": "object", "properties": properties}
    )


_schemas = st.recursive(_leaf, _objects, max_leaves=8).map(
    lambda s: s if s.get("type") == "object" else {"type": "object", "properties": {"v": s}}
)
_formats = st.one_of(
    st.builds(OutputFormat, st.just("json_object")),
    st.builds(
        OutputFormat,
        st.just("json_schema"),
        name=_names,
        schema=_schemas,
        strict=st.sampled_from([None, True, False]),
        description=st.one_of(st.none(), st.text(max_size=20)),
    ),
)


@given(_formats)
def test_openai_formats_round_trip(form: OutputFormat) -> None:
    assert output.from_chat(output.to_chat(form)) == form
    assert output.from_responses(output.to_responses(form)) == form


@given(_formats)
def test_gemini_formats_round_trip_with_name_and_description_in_the_schema(
    form: OutputFormat,
) -> None:
    back = output.from_gemini(output.to_gemini(form))
    assert back is not None
    assert back.kind == form.kind
    if form.kind == "json_object":
        assert back.schema is None
        return
    expected = dict(form.schema or {}, title=form.name)
    if form.description is not None:
        expected["description"] = form.description
    assert back.schema == expected
    assert back.strict is None  # Gemini has no flag: it always holds the answer to the schema


@given(_schemas)
def test_every_object_claude_is_sent_is_closed(schema: dict[str, Any]) -> None:
    sent = output.anthropic_schema(schema, strict=True, where="s")

    def closed(node: Any) -> bool:
        if not isinstance(node, dict):
            return True
        if node.get("type") == "object" and node.get("additionalProperties") is not False:
            return False
        return all(closed(sub) for sub in (node.get("properties") or {}).values())

    assert closed(sent)
    assert output.anthropic_schema(sent, strict=True, where="s") == sent


# -- the fake provider checks the formats as the real APIs do ---------------------------


@pytest.mark.parametrize(
    ("path", "body", "headers", "message"),
    [
        (
            "/v1/chat/completions",
            _chat(
                model="gpt-4.1",
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
                },
            ),
            {},
            "'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            "/v1/chat/completions",
            {
                "model": "gpt-4.1",
                "messages": [{"role": "user", "content": "Hi."}],
                "response_format": {"type": "json_object"},
            },
            {},
            "must contain the word 'json'",
        ),
        (
            "/v1/responses",
            _responses(model="gpt-4.1", text={"format": {"type": "json_schema", "schema": SCHEMA}}),
            {},
            "Missing required parameter: 'text.format.name'.",
        ),
        (
            "/v1/messages",
            _anthropic(
                output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}}
            ),
            {},
            "'additionalProperties' must be explicitly set to false",
        ),
        (
            "/v1/messages",
            _anthropic(output_format={"type": "json_schema", "schema": SCHEMA}),
            {},
            "output_format: Extra inputs are not permitted",
        ),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            _gemini(
                responseMimeType="application/json",
                responseSchema={"type": "OBJECT", "additionalProperties": False},
            ),
            {},
            'Unknown name "additionalProperties"',
        ),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            _gemini(responseJsonSchema=SCHEMA),
            {},
            "must be application/json",
        ),
    ],
)
def test_the_fake_refuses_a_malformed_format_as_the_real_api(
    upstream: ServerThread, path: str, body: dict[str, Any], headers: dict[str, str], message: str
) -> None:
    answer = httpx.post(upstream.url + path, json=body, headers=headers)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert message in error["message"]
    if path.endswith("/messages"):
        assert answer.json()["type"] == "error"
        assert error["type"] == "invalid_request_error"
    elif "gemini" in path:
        assert error["status"] == "INVALID_ARGUMENT"
    else:
        assert error["type"] == "invalid_request_error"


def test_the_fake_answers_json_that_fits_the_schema(upstream: ServerThread) -> None:
    body = _anthropic(
        output_format={"type": "json_schema", "schema": SCHEMA},
        model="claude-sonnet-4-5",
    )
    beta = {"anthropic-beta": "structured-outputs-2025-11-13"}
    answer = httpx.post(upstream.url + "/v1/messages", json=body, headers=beta)
    assert answer.status_code == 200
    assert json.loads(answer.json()["content"][0]["text"]) == {"city": "fake-city", "days": 1}


# -- real SDKs through a real server ----------------------------------------------------


@pytest.fixture(scope="module")
def gateway(upstream: ServerThread) -> Iterator[ServerThread]:
    proxy = make_asgi_app(
        [
            OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
            GeminiAdapter(base_url=upstream.url, api_key=GEMINI_KEY),
        ],
        validate_credentials="off",
    )
    with serve(proxy) as server:
        yield server


@pytest.fixture
def client(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


QUESTION: Any = [{"role": "user", "content": "The forecast for Paris, please."}]


def _sent(fake: FakeUpstream) -> Any:
    return json.loads(fake.last.body)


def _check_forecast(forecast: Forecast | None) -> None:
    assert forecast == Forecast(
        place=Place(city="fake-city", country="fake-country"),
        days=1,
        sunny=True,
        unit="celsius",
        temperatures=[1.5],
        note="fake-note",
    )


def _claude_received(fake: FakeUpstream) -> dict[str, Any]:
    sent = _sent(fake)
    assert fake.last.path == "/v1/messages"
    schema: dict[str, Any] = sent["output_config"]["format"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Place"]["additionalProperties"] is False
    return schema


def _gemini_received(fake: FakeUpstream) -> dict[str, Any]:
    config = _sent(fake)["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    schema: dict[str, Any] = config["responseJsonSchema"]
    assert schema["properties"]["place"] == {"$ref": "#/$defs/Place"}
    return schema


@pytest.mark.parametrize("model", [CLAUDE, FLASH])
def test_chat_completions_parse(client: openai.OpenAI, fake: FakeUpstream, model: str) -> None:
    completion = client.chat.completions.parse(
        model=model, messages=QUESTION, response_format=Forecast
    )
    _check_forecast(completion.choices[0].message.parsed)
    if model == CLAUDE:
        _claude_received(fake)
    else:
        assert _gemini_received(fake)["title"] == "Forecast"


@pytest.mark.parametrize("model", [CLAUDE, FLASH])
def test_chat_completions_stream_with_a_format(
    client: openai.OpenAI, fake: FakeUpstream, model: str
) -> None:
    with client.chat.completions.stream(
        model=model, messages=QUESTION, response_format=Forecast
    ) as stream:
        deltas = [e for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 3  # the JSON arrived in pieces
    _check_forecast(final.choices[0].message.parsed)
    (_claude_received if model == CLAUDE else _gemini_received)(fake)


@pytest.mark.parametrize("model", [CLAUDE, FLASH])
def test_responses_parse(client: openai.OpenAI, fake: FakeUpstream, model: str) -> None:
    response = client.responses.parse(model=model, input=QUESTION, text_format=Forecast)
    _check_forecast(response.output_parsed)
    assert response.text is not None
    assert response.text.format is not None
    assert response.text.format.type == "json_schema"  # the request's format, echoed
    (_claude_received if model == CLAUDE else _gemini_received)(fake)


@pytest.mark.parametrize("model", [CLAUDE, FLASH])
def test_responses_stream_with_a_format(
    client: openai.OpenAI, fake: FakeUpstream, model: str
) -> None:
    with client.responses.stream(model=model, input=QUESTION, text_format=Forecast) as stream:
        deltas = [e for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 3
    _check_forecast(final.output_parsed)
    assert final.text is not None
    assert final.text.format is not None
    assert final.text.format.type == "json_schema"  # the request's format, echoed
    (_claude_received if model == CLAUDE else _gemini_received)(fake)


class Bounded(BaseModel):
    days: int = Field(ge=1)


def test_a_strict_constraint_claude_cannot_enforce_is_a_400_naming_it(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.parse(model=CLAUDE, input=QUESTION, text_format=Bounded)
    assert "text.format.schema.properties.days.minimum" in refused.value.message
    assert len(fake.requests) == before  # nothing forwarded


def test_json_mode_on_claude_is_a_400_naming_response_format(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=CLAUDE, messages=QUESTION, response_format={"type": "json_object"}
        )
    assert "'response_format'" in refused.value.message


def test_json_mode_on_gemini(client: openai.OpenAI, fake: FakeUpstream) -> None:
    completion = client.chat.completions.create(
        model=FLASH, messages=QUESTION, response_format={"type": "json_object"}
    )
    assert json.loads(completion.choices[0].message.content or "") == {"answer": "fake"}
    assert _sent(fake)["generationConfig"] == {"responseMimeType": "application/json"}


@pytest.fixture
def google(gateway: ServerThread) -> genai.Client:
    options = types.HttpOptions(base_url=gateway.url, api_version="v1beta")
    return genai.Client(api_key="unused", http_options=options)


def test_google_genai_response_schema_on_gpt(google: genai.Client, fake: FakeUpstream) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=Forecast
    )
    response = google.models.generate_content(
        model=GPT, contents="The forecast for Paris, please.", config=config
    )
    assert isinstance(response.parsed, Forecast)
    sent = _sent(fake)
    assert fake.last.path == "/v1/chat/completions"
    form = sent["response_format"]
    assert form["type"] == "json_schema"
    assert form["json_schema"]["name"] == "Forecast"
    assert set(form["json_schema"]["schema"]["properties"]) == set(Forecast.model_fields)


def test_google_genai_stream_with_a_schema_on_gpt(google: genai.Client, fake: FakeUpstream) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=Forecast
    )
    chunks = list(
        google.models.generate_content_stream(
            model=GPT, contents="The forecast for Paris, please.", config=config
        )
    )
    assert len(chunks) > 3
    text = "".join(chunk.text or "" for chunk in chunks)
    forecast = Forecast.model_validate_json(text)
    assert forecast.place.city == "fake-city"
    assert _sent(fake)["response_format"]["type"] == "json_schema"


def test_anthropic_output_config_on_gpt(gateway: ServerThread, fake: FakeUpstream) -> None:
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as client:
        message = client.messages.create(
            model=GPT,
            max_tokens=200,
            messages=[{"role": "user", "content": "The forecast, please."}],
            extra_body={"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}},
        )
    block = message.content[0]
    assert block.type == "text"
    assert json.loads(block.text) == {"city": "fake-city", "days": 1}
    sent = _sent(fake)["response_format"]
    assert sent == {
        "type": "json_schema",
        "json_schema": {"name": output.DEFAULT_NAME, "schema": SCHEMA, "strict": True},
    }


def test_google_genai_response_json_schema_on_claude(
    google: genai.Client, fake: FakeUpstream
) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=SCHEMA
    )
    response = google.models.generate_content(
        model=CLAUDE, contents="The forecast for Paris, please.", config=config
    )
    assert json.loads(response.text or "") == {"city": "fake-city", "days": 1}
    assert _sent(fake)["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}


def test_the_agents_sdk_output_type_on_claude(gateway: ServerThread, fake: FakeUpstream) -> None:
    set_tracing_disabled(True)  # no traces exported anywhere

    async def run() -> Any:
        async with openai.AsyncOpenAI(
            base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0
        ) as client:
            agent = Agent(
                name="forecaster",
                instructions="Give the forecast.",
                output_type=Forecast,
                model=OpenAIResponsesModel(model=CLAUDE, openai_client=client),
            )
            return (await Runner.run(agent, "Paris?")).final_output

    _check_forecast(anyio.run(run))
    _claude_received(fake)


class JsonModeOnly(VLLMAdapter):
    """A Chat-only server with JSON mode but no JSON schemas."""

    output_formats = frozenset({"json_object"})


@pytest.fixture(scope="module")
def json_mode_gateway(upstream: ServerThread) -> Iterator[ServerThread]:
    adapter = JsonModeOnly(name="local", base_url=upstream.url + "/v1")
    with serve(make_asgi_app([adapter], validate_credentials="off")) as server:
        yield server


def test_a_provider_flagged_without_schemas_refuses_one_by_name(
    json_mode_gateway: ServerThread, fake: FakeUpstream
) -> None:
    before = len(fake.requests)
    with openai.OpenAI(
        base_url=f"{json_mode_gateway.url}/v1", api_key="unused", max_retries=0
    ) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.parse(model="local/qwen3", input=QUESTION, text_format=Forecast)
        assert "'text.format'" in refused.value.message
        assert "json_schema" in refused.value.message
        assert len(fake.requests) == before  # nothing forwarded
        response = client.responses.create(
            model="local/qwen3",
            input="Answer in JSON.",
            text={"format": {"type": "json_object"}},
        )
    assert json.loads(response.output_text) == {"answer": "fake"}
    assert _sent(fake)["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("model", [GPT, FLASH])
def test_anthropic_messages_parse(gateway: ServerThread, fake: FakeUpstream, model: str) -> None:
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as client:
        message = client.messages.parse(
            model=model,
            max_tokens=200,
            messages=[{"role": "user", "content": "The forecast for Paris, please."}],
            output_format=Forecast,
        )
    _check_forecast(message.parsed_output)
    sent = _sent(fake)
    if model == GPT:
        spec = sent["response_format"]["json_schema"]
        assert spec["strict"] is True  # Claude's formats always hold the answer to the schema
        assert spec["schema"]["$defs"]["Place"]["additionalProperties"] is False
    else:
        assert _gemini_received(fake)["additionalProperties"] is False


def test_anthropic_messages_stream_with_a_format_on_gpt(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    with (
        anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as client,
        client.messages.stream(
            model=GPT,
            max_tokens=200,
            messages=[{"role": "user", "content": "The forecast for Paris, please."}],
            output_format=Forecast,
        ) as stream,
    ):
        deltas = [e for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert len(deltas) > 3
    _check_forecast(final.parsed_output)
    assert _sent(fake)["stream"] is True
    assert _sent(fake)["response_format"]["type"] == "json_schema"


def test_google_genai_response_schema_on_claude(google: genai.Client, fake: FakeUpstream) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=Forecast
    )
    response = google.models.generate_content(
        model=CLAUDE, contents="The forecast for Paris, please.", config=config
    )
    _check_forecast(response.parsed)  # type: ignore[arg-type]
    schema = _sent(fake)["output_config"]["format"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["place"]["additionalProperties"] is False
    note = schema["properties"]["note"]  # Gemini's nullable, as Claude reads it
    assert note["anyOf"] == [{"type": "string"}, {"type": "null"}]
