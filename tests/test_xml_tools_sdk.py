"""XmlToolCalls through real servers: the openai SDK (and the anthropic SDK at the gateway)
on a fake model that has no tools and answers in XML."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from provider_proxy import make_asgi_app
from provider_proxy.adapters import OpenAICompatibleAdapter
from provider_proxy.transforms import XmlToolCalls
from provider_proxy.types import Receive, Scope, Send

from .servers import ServerThread, serve
from .test_xml_tools import ROO_TOOLS

ANSWER = (
    "I'll look at the file.\n\n<read_file>\n<path>src/main.py</path>\n</read_file>\n"
    "<execute_command>\n<command>pytest -q</command>\n</execute_command>"
)


class XmlModel:
    """An OpenAI-compatible model without tool calling: it answers with the text of the
    ``x-answer`` header (or a plain sentence), streamed a few characters at a time."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw)
        self.bodies.append(body)
        headers = dict(scope["headers"])
        if b"x-fail" in headers:
            error = b'{"error": {"message": "the model is overloaded", "type": "overloaded"}}'
            await _send(send, 503, b"application/json", error)
            return
        if "tools" in body:  # this model has none
            await _send(send, 400, b"application/json", b'{"error": {"message": "no tools"}}')
            return
        text = headers.get(b"x-answer", b"No tools needed.").decode().replace("\\n", "\n")
        base = {"id": "chatcmpl-x", "model": body["model"], "created": 1}
        if not body.get("stream"):
            answer = {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
            }
            await _send(send, 200, b"application/json", json.dumps(answer).encode())
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"content": text[i : i + 5]} for i in range(0, len(text), 5)]
        for number, delta in enumerate([*deltas, {}]):
            chunk = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "finish_reason": "stop" if number == len(deltas) else None,
                    }
                ],
            }
            event = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _send(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def model() -> XmlModel:
    return XmlModel()


@pytest.fixture(scope="module")
def proxy_server(model: XmlModel) -> Iterator[ServerThread]:
    with serve(model, lifespan="off") as upstream:
        adapter = OpenAICompatibleAdapter(
            "xml", upstream.url + "/v1", key_optional=True, transforms=[XmlToolCalls()]
        )
        proxy = make_asgi_app([adapter], validate_credentials="off")
        with serve(proxy) as server:
            yield server


@pytest.fixture
def client(proxy_server: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{proxy_server.url}/xml", api_key="unused", max_retries=0
    ) as client:
        yield client


def _calls(message: Any) -> list[tuple[str, Any]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


EXPECTED = [("read_file", {"path": "src/main.py"}), ("execute_command", {"command": "pytest -q"})]
HEADERS = {"x-answer": ANSWER.replace("\n", "\\n")}


def test_a_whole_answer_comes_back_as_tool_calls(client: openai.OpenAI, model: XmlModel) -> None:
    completion = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "run the tests"}],
        tools=ROO_TOOLS,
        extra_headers=HEADERS,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll look at the file."
    assert _calls(choice.message) == EXPECTED
    sent = model.bodies[-1]
    assert "tools" not in sent
    assert sent["messages"][0]["role"] == "system"
    assert "## execute_command" in sent["messages"][0]["content"]


def test_a_stream_comes_back_as_tool_call_deltas(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="m",
        messages=[{"role": "user", "content": "run the tests"}],
        tools=ROO_TOOLS,
        extra_headers=HEADERS,
    ) as stream:
        texts = [event.delta for event in stream if event.type == "content.delta" and event.delta]
        final = stream.get_final_completion()
    assert "".join(texts).strip() == "I'll look at the file."
    assert texts[:2] == ["I'll ", "look "]  # text before the calls streamed as it came
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert _calls(choice.message) == EXPECTED


def test_the_tool_loop_shows_the_model_its_calls_and_the_results(
    client: openai.OpenAI, model: XmlModel
) -> None:
    first = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "run the tests"}],
        tools=ROO_TOOLS,
        extra_headers=HEADERS,
    )
    message = first.choices[0].message
    calls = message.tool_calls or []
    second = client.chat.completions.create(
        model="m",
        messages=[
            {"role": "user", "content": "run the tests"},
            message.model_dump(exclude_none=True),  # type: ignore[misc]
            *[
                {"role": "tool", "tool_call_id": call.id, "content": f"result {n}"}
                for n, call in enumerate(calls)
            ],
        ],
        tools=ROO_TOOLS,
    )
    assert second.choices[0].message.content == "No tools needed."
    assert second.choices[0].finish_reason == "stop"
    sent = model.bodies[-1]["messages"]
    assert sent[2]["role"] == "assistant"
    assert "<read_file>\n<path>src/main.py</path>\n</read_file>" in sent[2]["content"]
    assert sent[3] == {
        "role": "user",
        "content": "[read_file] Result:\nresult 0\n\n[execute_command] Result:\nresult 1",
    }


def test_a_refused_field_is_an_openai_error_and_nothing_is_sent(
    client: openai.OpenAI, model: XmlModel
) -> None:
    before = len(model.bodies)
    strict = [dict(ROO_TOOLS[0], function={**ROO_TOOLS[0]["function"], "strict": True})]
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], tools=strict
        )
    assert "tools[0].function.strict" in str(raised.value)
    assert len(model.bodies) == before


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_client_at_the_gateway_gets_tool_use_blocks(
    proxy_server: ServerThread, stream: bool
) -> None:
    tools: Any = [
        {
            "name": t["function"]["name"],
            "description": t["function"]["description"],
            "input_schema": t["function"]["parameters"],
        }
        for t in ROO_TOOLS
    ]
    with anthropic.Anthropic(base_url=proxy_server.url, api_key="unused", max_retries=0) as client:
        arguments: Any = {
            "model": "xml/m",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "run the tests"}],
            "tools": tools,
            "extra_headers": HEADERS,
        }
        if stream:
            with client.messages.stream(**arguments) as events:
                message = events.get_final_message()
        else:
            message = client.messages.create(**arguments)
    assert message.stop_reason == "tool_use"
    uses = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert uses == EXPECTED
    assert next(b.text.strip() for b in message.content if b.type == "text") == (
        "I'll look at the file."
    )


def test_as_an_app_wide_transform_at_the_gateway_it_runs_once(model: XmlModel) -> None:
    with serve(model, lifespan="off") as upstream:
        adapter = OpenAICompatibleAdapter("xml", upstream.url + "/v1", key_optional=True)
        proxy = make_asgi_app([adapter], validate_credentials="off", transforms=[XmlToolCalls()])
        with (
            serve(proxy) as server,
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client,
        ):
            completion = client.chat.completions.create(
                model="xml/m",
                messages=[{"role": "user", "content": "run the tests"}],
                tools=ROO_TOOLS,
                extra_headers=HEADERS,
            )
    assert _calls(completion.choices[0].message) == EXPECTED
    system = model.bodies[-1]["messages"][0]["content"]
    assert system.count("TOOL USE") == 1


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_error_reaches_the_client_as_it_came(
    client: openai.OpenAI, stream: bool
) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "x"}],
            tools=ROO_TOOLS,
            stream=stream,
            extra_headers={"x-fail": "1"},
        )
    assert raised.value.status_code == 503
    assert raised.value.body == {"message": "the model is overloaded", "type": "overloaded"}
