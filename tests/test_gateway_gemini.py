"""Gemini at the gateway, both roles, through a real server with the official SDKs.

As a client format: the ``google-genai`` SDK (``http_options={"base_url": mount}``)
on OpenAI- and Anthropic-backed models — ``generate_content``,
``generate_content_stream``, function calling and its loop, typed errors — and
on a Gemini model (a passthrough). As a provider: the ``openai`` and
``anthropic`` SDKs on ``gemini/...`` models through ``generateContent`` and
``streamGenerateContent?alt=sse``, with a three-turn tool loop on a thinking
model whose signatures a Chat client cannot carry, which the fake provider
refuses when they are not sent back, as Gemini does; the ``openai`` SDK's
Responses API on Gemini too, continued by ``previous_response_id``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from provider_proxy import Guards, Route, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, GeminiAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY, OPENAI_KEY, TRANSPORTS, OwnUpstream
from .servers import ServerThread, serve, wait_until

GEMINI_KEY = "gemini-test-key-0123456789"
TEXT = "Hello from the fake upstream, streamed one piece at a time."
GPT, CLAUDE, FLASH = "openai/gpt-4.1", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"
KEYS = {"key-alice": "alice", "key-bob": "bob"}
WEATHER = types.FunctionDeclaration(
    name="weather",
    description="The weather in a city.",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"city": types.Schema(type=types.Type.STRING)},
        required=["city"],
    ),
)
NO_AUTO = types.AutomaticFunctionCallingConfig(disable=True)


def _config(headers: dict[str, str] | None = None, **fields: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        http_options=types.HttpOptions(headers=headers or {}), **fields
    )


def _tools_config(headers: dict[str, str] | None = None) -> types.GenerateContentConfig:
    tools = [types.Tool(function_declarations=[WEATHER])]
    return _config(headers, tools=tools, automatic_function_calling=NO_AUTO)


@pytest.fixture
def gateway(upstream: ServerThread, transport_kind: str) -> Iterator[ServerThread]:
    proxy = make_asgi_app(
        [
            OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
            GeminiAdapter(base_url=upstream.url, api_key=GEMINI_KEY),
        ],
        guards=Guards(client_keys=KEYS),
        transport=TRANSPORTS[transport_kind](),
        validate_credentials="off",
    )
    with serve(proxy) as server:
        yield server


@pytest.fixture
def google(gateway: ServerThread) -> genai.Client:
    options = types.HttpOptions(
        base_url=gateway.url, retry_options=types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key="key-alice", http_options=options)


def _sent(fake: FakeUpstream) -> Any:
    return json.loads(fake.last.body)


# -- google-genai on OpenAI and Anthropic models --------------------------------------------


def test_generate_content_on_gpt(google: genai.Client, fake: FakeUpstream) -> None:
    response = google.models.generate_content(
        model=GPT,
        contents="Say hello.",
        config=_config(system_instruction="Be brief.", max_output_tokens=50, temperature=0.1),
    )
    assert response.text == TEXT
    assert response.usage_metadata is not None
    assert response.usage_metadata.prompt_token_count == 10
    assert fake.last.path == "/v1/chat/completions"
    sent = _sent(fake)
    assert sent["model"] == "gpt-4.1"
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello."},
    ]
    assert (sent["max_completion_tokens"], sent["temperature"]) == (50, 0.1)
    assert dict(fake.last.headers)[b"authorization"] == f"Bearer {OPENAI_KEY}".encode()
    assert b"key-alice" not in fake.last.body + fake.last.query + repr(fake.last.headers).encode()


def test_generate_content_stream_on_claude(google: genai.Client, fake: FakeUpstream) -> None:
    chunks = list(
        google.models.generate_content_stream(
            model=CLAUDE, contents="Say hello.", config=_config({"x-fake-chunks": "5"})
        )
    )
    assert "".join(c.text or "" for c in chunks) == "Hello from the fake upstream,"
    assert len(chunks) >= 5  # each piece as it came
    last = chunks[-1]
    assert last.candidates is not None
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None
    assert last.usage_metadata.candidates_token_count == 5
    assert fake.last.path == "/v1/messages"
    assert _sent(fake)["stream"] is True
    assert fake.last.query == b""  # the client's alt=sse is not the provider's


@pytest.mark.parametrize("model", [GPT, CLAUDE])
def test_a_function_calling_loop(google: genai.Client, fake: FakeUpstream, model: str) -> None:
    question = types.Content(role="user", parts=[types.Part.from_text(text="Weather in Paris?")])
    first = google.models.generate_content(
        model=model, contents=[question], config=_tools_config({"x-fake-tools": "weather"})
    )
    assert first.function_calls is not None
    [call] = first.function_calls
    assert (call.name, call.args) == ("weather", {"city": "fake-city"})
    assert call.id  # the provider's id, for the answer to name
    tool = _sent(fake)["tools"][0]
    schema = tool["function"]["parameters"] if "function" in tool else tool["input_schema"]
    assert schema == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    assert first.candidates is not None
    assert first.candidates[0].content is not None
    answer = types.Part.from_function_response(name="weather", response={"output": "sunny"})
    second = google.models.generate_content(
        model=model,
        contents=[
            question,
            first.candidates[0].content,
            types.Content(role="user", parts=[answer]),
        ],
        config=_tools_config(),
    )
    assert second.text == TEXT
    sent = _sent(fake)["messages"]
    if model == GPT:
        assert sent[1]["tool_calls"][0]["id"] == call.id
        assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    else:
        assert sent[1]["content"][0]["id"] == call.id
        assert sent[2]["content"] == [
            {
                "type": "tool_result",
                "tool_use_id": call.id,
                "content": [{"type": "text", "text": "sunny"}],
            }
        ]


def test_streamed_function_calls(google: genai.Client, fake: FakeUpstream) -> None:
    chunks = list(
        google.models.generate_content_stream(
            model=CLAUDE, contents="Weather?", config=_tools_config({"x-fake-tools": "weather"})
        )
    )
    calls = [call for chunk in chunks for call in chunk.function_calls or []]
    assert [(c.name, c.args) for c in calls] == [("weather", {"city": "fake-city"})]
    assert calls[0].id
    assert calls[0].id.startswith("toolu_fake")


def test_thinking_comes_back_as_signed_thought_parts(
    google: genai.Client, fake: FakeUpstream
) -> None:
    thinking = types.ThinkingConfig(thinking_budget=2048, include_thoughts=True)
    response = google.models.generate_content(
        model=CLAUDE,
        contents="Think.",
        config=_config({"x-fake-thinking": "1"}, thinking_config=thinking),
    )
    assert _sent(fake)["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert response.candidates is not None
    assert response.candidates[0].content is not None
    parts = response.candidates[0].content.parts or []
    assert parts[0].thought is True
    assert parts[0].text == "Let me think this through, one step at a time."
    assert parts[0].thought_signature
    assert response.text == TEXT


def test_a_provider_error_is_a_typed_google_error(google: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as raised:
        google.models.generate_content(
            model=GPT, contents="Hi.", config=_config({"x-fake-status": "429"})
        )
    assert raised.value.code == 429
    assert raised.value.status == "RESOURCE_EXHAUSTED"
    assert raised.value.message == "fake upstream error 429"


def test_a_refused_field_is_a_google_400_naming_it(google: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as raised:
        google.models.generate_content(model=GPT, contents="Hi.", config=_config(top_k=3))
    assert raised.value.code == 400
    assert raised.value.status == "INVALID_ARGUMENT"
    assert "generationConfig.topK" in (raised.value.message or "")


def test_an_unknown_provider_is_a_google_404(google: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as raised:
        google.models.generate_content(model="nowhere/x", contents="Hi.")
    assert raised.value.code == 404
    assert raised.value.status == "NOT_FOUND"


def test_a_gemini_model_is_a_passthrough(google: genai.Client, fake: FakeUpstream) -> None:
    response = google.models.generate_content(model=FLASH, contents="Hi.")
    assert response.text == TEXT
    assert fake.last.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert "model" not in _sent(fake)
    assert _sent(fake)["contents"] == [{"parts": [{"text": "Hi."}], "role": "user"}]
    assert dict(fake.last.headers)[b"x-goog-api-key"] == GEMINI_KEY.encode()
    chunks = list(google.models.generate_content_stream(model=FLASH, contents="Hi."))
    assert "".join(c.text or "" for c in chunks) == TEXT
    assert fake.last.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert fake.last.query == b"alt=sse"


def test_raw_paths_keys_and_sse(gateway: ServerThread, fake: FakeUpstream) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi."}]}]}
    with httpx.Client(base_url=gateway.url) as client:
        encoded = client.post(
            "/v1/models/openai%2Fgpt-4.1:generateContent?key=key-alice", json=body
        )
        assert encoded.status_code == 200
        assert encoded.json()["candidates"][0]["content"]["parts"] == [{"text": TEXT}]
        assert fake.last.query == b""  # the client's key stays with the proxy
        no_sse = client.post(
            "/v1beta/models/openai/gpt-4.1:streamGenerateContent",
            json=body,
            headers={"x-goog-api-key": "key-alice"},
        )
        assert no_sse.status_code == 400
        assert no_sse.json()["error"]["status"] == "INVALID_ARGUMENT"
        assert "alt=sse" in no_sse.json()["error"]["message"]
        unauthorized = client.post("/v1beta/models/openai/gpt-4.1:generateContent", json=body)
        assert unauthorized.status_code == 401
        assert unauthorized.json()["error"]["status"] == "UNAUTHENTICATED"


# -- the openai and anthropic SDKs on Gemini models -----------------------------------------


@pytest.fixture
def chat(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="key-alice", max_retries=0) as c:
        yield c


TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "parameters": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
]
QUESTION: Any = [{"role": "user", "content": "Weather in Paris?"}]


def test_openai_chat_on_gemini(chat: openai.OpenAI, fake: FakeUpstream) -> None:
    completion = chat.chat.completions.create(model=FLASH, messages=QUESTION, max_tokens=20)
    assert completion.choices[0].message.content == TEXT
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 10
    assert fake.last.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert _sent(fake)["generationConfig"] == {"maxOutputTokens": 20}
    assert dict(fake.last.headers)[b"x-goog-api-key"] == GEMINI_KEY.encode()
    stream = chat.chat.completions.create(
        model=FLASH, messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 11
    assert fake.last.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert fake.last.query == b"alt=sse"


def test_openai_tools_on_gemini_have_stable_ids_and_converted_schemas(
    chat: openai.OpenAI, fake: FakeUpstream
) -> None:
    raw = chat.chat.completions.with_raw_response.create(
        model=FLASH, messages=QUESTION, tools=TOOLS, extra_headers={"x-fake-tools": "weather"}
    )
    assert raw.headers["x-proxy-dropped-fields"] == "tools.strict, tool schema keywords"
    declaration = _sent(fake)["tools"][0]["functionDeclarations"][0]
    assert declaration == {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
    message = raw.parse().choices[0]
    assert message.finish_reason == "tool_calls"
    [call] = message.message.tool_calls or []
    assert call.id.startswith("call_")
    assert call.function.name == "weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "fake-city"}  # type: ignore[union-attr]


def test_an_image_url_is_refused_for_gemini(chat: openai.OpenAI, fake: FakeUpstream) -> None:
    before = len(fake.requests)
    image = {"type": "image_url", "image_url": {"url": "http://127.0.0.1/secret.png"}}
    with pytest.raises(openai.BadRequestError) as refused:
        chat.chat.completions.create(model=FLASH, messages=[{"role": "user", "content": [image]}])
    assert "image.url" in str(refused.value)
    assert len(fake.requests) == before  # nothing was sent, nothing fetched


def test_gemini_errors_are_openai_errors(chat: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as raised:
        chat.chat.completions.create(
            model=FLASH, messages=QUESTION, extra_headers={"x-fake-status": "429"}
        )
    assert "fake upstream error 429" in str(raised.value)


def _turn(client: openai.OpenAI, history: list[Any], *, stream: bool, call: bool) -> Any:
    headers = {"x-fake-thinking": "1", **({"x-fake-tools": "weather"} if call else {})}
    options: dict[str, Any] = {
        "model": FLASH,
        "messages": history,
        "tools": TOOLS,
        "reasoning_effort": "low",
        "extra_headers": headers,
    }
    if stream:
        with client.chat.completions.stream(**options) as events:
            return events.get_final_completion().choices[0].message
    return client.chat.completions.create(**options).choices[0].message


def _reply(history: list[Any], message: Any) -> list[Any]:
    assert message.tool_calls
    assistant = {
        "role": "assistant",
        "content": message.content,
        "tool_calls": [c.model_dump() for c in message.tool_calls],
    }
    result = {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"}
    return [*history, assistant, result]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_three_turn_tool_loop_on_thinking_gemini_keeps_its_signatures(
    gateway: ServerThread, fake: FakeUpstream, stream: bool
) -> None:
    with (
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="key-alice", max_retries=0) as alice,
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="key-bob", max_retries=0) as bob,
    ):
        first = _turn(alice, QUESTION, stream=stream, call=True)
        assert getattr(first, "reasoning_content", None)  # the thought summary
        assert _sent(fake)["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 1024
        history = _reply(QUESTION, first)
        second = _turn(alice, history, stream=stream, call=True)
        history = _reply(history, second)
        with pytest.raises(openai.BadRequestError) as refused:
            _turn(bob, history, stream=False, call=False)  # Alice's calls: nothing restored
        assert "thought_signature" in str(refused.value)
        third = _turn(alice, history, stream=stream, call=False)
        assert third.content == TEXT
    contents = _sent(fake)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    for turn in (contents[1], contents[3]):
        assert "functionCall" in turn["parts"][-1]
        assert turn["parts"][-1]["thoughtSignature"]  # restored on the call
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "weather", "response": {"output": "sunny"}}}
    ]


def test_anthropic_on_thinking_gemini(gateway: ServerThread, fake: FakeUpstream) -> None:
    tools: Any = [{"name": "weather", "input_schema": TOOLS[0]["function"]["parameters"]}]
    with anthropic.Anthropic(base_url=gateway.url, api_key="key-alice", max_retries=0) as client:
        options: dict[str, Any] = {
            "model": FLASH,
            "max_tokens": 4096,
            "tools": tools,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
        }
        first = client.messages.create(
            messages=QUESTION,
            extra_headers={"x-fake-thinking": "1", "x-fake-tools": "weather"},
            **options,
        )
        assert [b.type for b in first.content] == ["thinking", "tool_use"]
        assert first.stop_reason == "tool_use"
        thinking, call = first.content
        assert thinking.type == "thinking"
        assert thinking.signature
        assert call.type == "tool_use"
        history: Any = [
            *QUESTION,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
            },
        ]
        with client.messages.stream(
            messages=history, extra_headers={"x-fake-thinking": "1"}, **options
        ) as stream:
            final = stream.get_final_message()
        # Gemini signs an answer without calls on its last part: a signed block before it.
        assert [b.type for b in final.content] == ["thinking", "text", "thinking", "text"]
        assert "".join(b.text for b in final.content if b.type == "text") == TEXT
        assert final.content[2].type == "thinking"
        assert final.content[2].signature
    call_turn = _sent(fake)["contents"][1]["parts"]
    assert call_turn[0]["thoughtSignature"] == thinking.signature


# -- embeddings ------------------------------------------------------------------------------


def _expected(text: str, size: int = 4) -> list[float]:
    head = [b / 256 for b in text.encode()[: size - 1]]
    return [float(len(text)), *head, *([0.0] * (size - 1 - len(head)))]


def test_embeddings_on_gemini_are_translated(chat: openai.OpenAI, fake: FakeUpstream) -> None:
    raw = chat.embeddings.with_raw_response.create(  # the SDK asks for base64
        model="gemini/text-embedding-004", input=["hello", "hi there"], user="u-1"
    )
    assert raw.headers["x-proxy-dropped-fields"] == "user"
    result = raw.parse()
    assert [e.index for e in result.data] == [0, 1]
    assert result.data[0].embedding == pytest.approx(_expected("hello"))
    assert result.data[1].embedding == pytest.approx(_expected("hi there"))
    assert result.model == "text-embedding-004"
    assert fake.last.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert _sent(fake) == {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hi there"}]}},
        ]
    }
    floats = chat.embeddings.create(
        model="gemini/text-embedding-004", input="hey", dimensions=2, encoding_format="float"
    )
    assert floats.data[0].embedding == [3.0, ord("h") / 256]
    assert _sent(fake)["requests"][0]["outputDimensionality"] == 2


def test_embeddings_on_openai_pass_through(chat: openai.OpenAI, fake: FakeUpstream) -> None:
    result = chat.embeddings.create(model="openai/text-embedding-3-small", input="hello")
    assert result.data[0].embedding == pytest.approx(_expected("hello"))
    assert result.usage.prompt_tokens == 1
    assert fake.last.path == "/v1/embeddings"
    assert _sent(fake)["model"] == "text-embedding-3-small"


def test_embeddings_that_cannot_be_had_are_refused(chat: openai.OpenAI, fake: FakeUpstream) -> None:
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        chat.embeddings.create(model="gemini/text-embedding-004", input=[[1, 2, 3]])
    assert "input[0]" in str(refused.value)
    with pytest.raises(openai.APIStatusError) as unavailable:
        chat.embeddings.create(model=CLAUDE, input="hello")
    assert unavailable.value.status_code == 501
    assert len(fake.requests) == before


def test_a_thinking_tool_loop_on_claude_sends_the_signed_thoughts_back(
    google: genai.Client, fake: FakeUpstream
) -> None:
    """Claude refuses a tool turn without its signed thinking; the thought parts carry it."""
    thinking = types.ThinkingConfig(thinking_budget=2048, include_thoughts=True)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=NO_AUTO,
        thinking_config=thinking,
        http_options=types.HttpOptions(headers={"x-fake-thinking": "1", "x-fake-tools": "weather"}),
    )
    chat = google.chats.create(model=CLAUDE, config=config)
    first = chat.send_message("Weather in Paris?")
    assert first.function_calls is not None
    answer = types.Part.from_function_response(name="weather", response={"output": "sunny"})
    final = chat.send_message(
        answer,
        config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[WEATHER])],
            automatic_function_calling=NO_AUTO,
            thinking_config=thinking,
            http_options=types.HttpOptions(headers={"x-fake-thinking": "1"}),
        ),
    )
    assert final.text == TEXT
    turn = _sent(fake)["messages"][1]["content"]
    assert [block["type"] for block in turn] == ["thinking", "tool_use"]
    assert turn[0]["signature"]


def test_a_method_not_served_is_refused_in_googles_format(gateway: ServerThread) -> None:
    """(countTokens and the embedding methods: tests/test_gemini_client.py.)"""
    response = httpx.post(
        f"{gateway.url}/v1beta/models/{GPT}:batchGenerateContent",
        json={"batch": {}},
        headers={"x-goog-api-key": "key-alice"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert "batchGenerateContent" in error["message"]


def test_automatic_function_calling_runs_the_python_function(
    google: genai.Client, fake: FakeUpstream
) -> None:
    """google-genai's default with a Python tool: it calls, runs it, and sends the result back."""
    ran: list[str] = []

    def weather(city: str) -> str:
        """The weather in a city."""
        ran.append(city)
        return f"sunny in {city}"

    config = types.GenerateContentConfig(
        tools=[weather],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(maximum_remote_calls=2),
        http_options=types.HttpOptions(headers={"x-fake-tools": "weather"}),
    )
    google.models.generate_content(model=GPT, contents="Weather in Paris?", config=config)
    assert ran
    assert ran[0] == "fake-city"
    sent = _sent(fake)["messages"]
    tool_turns = [m for m in sent if m["role"] == "tool"]
    assert tool_turns
    assert tool_turns[0]["content"] == "sunny in fake-city"  # the SDK's {"result": ...}
    assert tool_turns[0]["tool_call_id"] == sent[1]["tool_calls"][0]["id"]


def test_openai_responses_on_thinking_gemini_continue_with_signatures(
    chat: openai.OpenAI, fake: FakeUpstream
) -> None:
    """A Responses client on Gemini: text, a stream, and a tool loop by previous_response_id."""
    whole = chat.responses.create(model=FLASH, input="Hi.")
    assert whole.output_text == TEXT
    assert fake.last.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    with chat.responses.stream(model=FLASH, input="Hi.") as events:
        assert events.get_final_response().output_text == TEXT
    assert fake.last.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    tools: Any = [
        {"type": "function", "name": "weather", "parameters": TOOLS[0]["function"]["parameters"]}
    ]
    thinking = {"x-fake-thinking": "1"}
    first = chat.responses.create(
        model=FLASH,
        input="Weather in Paris?",
        tools=tools,
        reasoning={"effort": "low"},
        extra_headers={**thinking, "x-fake-tools": "weather"},
    )
    [call] = [item for item in first.output if item.type == "function_call"]
    second = chat.responses.create(
        model=FLASH,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=tools,
        reasoning={"effort": "low"},
        extra_headers=thinking,
    )
    assert second.output_text == TEXT
    turn = _sent(fake)["contents"][1]["parts"]
    assert turn[0]["functionCall"]["name"] == "weather"
    assert turn[0]["thoughtSignature"]  # the fake refuses the turn without it


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_route_serves_a_gemini_client(
    upstream: ServerThread, fake: FakeUpstream, stream: bool
) -> None:
    """A model that names a route (not a provider) in the path, whole and streamed."""
    proxy = make_asgi_app(
        [OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY)],
        routes={"smart": Route([GPT])},
        validate_credentials="off",
    )
    with serve(proxy) as server:
        client = genai.Client(api_key="unused", http_options={"base_url": server.url})
        if stream:
            chunks = client.models.generate_content_stream(model="smart", contents="Hi.")
            text = "".join(c.text or "" for c in chunks)
        else:
            text = client.models.generate_content(model="smart", contents="Hi.").text or ""
    assert text == TEXT
    assert fake.last.path == "/v1/chat/completions"
    assert _sent(fake)["model"] == "gpt-4.1"
    assert _sent(fake).get("stream", False) is stream


class TestOnItsOwnUpstream(OwnUpstream):
    """Tests that count the fake's streams, each on a fake of its own."""

    def test_a_gemini_client_that_leaves_mid_stream_closes_the_upstream_stream(
        self, gateway: ServerThread, fake: FakeUpstream
    ) -> None:
        closed = fake.closed_streams
        body = {"contents": [{"role": "user", "parts": [{"text": "Talk."}]}]}
        # The whole stream would take 30 s: it ends at once only because the client left.
        headers = {"x-goog-api-key": "key-alice", "x-fake-chunks": "1000", "x-fake-gap": "0.03"}
        path = f"/v1beta/models/{CLAUDE}:streamGenerateContent?alt=sse"
        with (
            httpx.Client(base_url=gateway.url) as client,
            client.stream("POST", path, json=body, headers=headers) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first[6:])["candidates"][0]["content"]["parts"]
        assert wait_until(lambda: fake.closed_streams > closed, timeout=5)
        assert wait_until(lambda: fake.open_streams == 0, timeout=5)
