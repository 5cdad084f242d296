"""The pure rules behind the sockets: which paths open one, where keys go, what a turn
is, close codes and reasons, and the ``/ws`` error types."""

from __future__ import annotations

import json

import httpx
import pytest

from provider_proxy import RateLimited
from provider_proxy.adapters import (
    AnthropicAdapter,
    AzureOpenAIAdapter,
    BaseAdapter,
    CopilotAdapter,
    GeminiAdapter,
    OpenAIAdapter,
    OpenAICompatibleAdapter,
)
from provider_proxy.dialects import (
    KEY_SUBPROTOCOLS,
    AnthropicMessages,
    Gemini,
    OpenAIChat,
    OpenAIResponses,
)
from provider_proxy.engine._ws_common import (
    SocketCount,
    SocketLimits,
    close_code,
    close_reason,
    status_close_code,
)
from provider_proxy.engine._ws_inference import InferenceSocketOptions, error_type

LIVE = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


@pytest.mark.parametrize(
    ("adapter", "path", "opens"),
    [
        (OpenAIAdapter(api_key="k" * 10), "/realtime", True),
        (OpenAIAdapter(api_key="k" * 10), "/responses", True),
        (OpenAIAdapter(api_key="k" * 10), "/responses/", True),
        (OpenAIAdapter(api_key="k" * 10), "/chat/completions", False),
        (OpenAIAdapter(api_key="k" * 10), "/responses/abc", False),
        (
            AzureOpenAIAdapter(base_url="https://x.openai.azure.com", api_key="k" * 10),
            "/openai/realtime",
            True,
        ),
        (
            AzureOpenAIAdapter(base_url="https://x.openai.azure.com", api_key="k" * 10),
            "/openai/v1/responses",
            True,
        ),
        (
            AzureOpenAIAdapter(base_url="https://x.openai.azure.com", api_key="k" * 10),
            "/openai/deployments/d/chat/completions",
            False,
        ),
        (GeminiAdapter(api_key="k" * 10), LIVE, True),
        (GeminiAdapter(api_key="k" * 10), LIVE.replace("v1beta", "v1alpha") + "Constrained", True),
        (GeminiAdapter(api_key="k" * 10), "/ws/other.Service.BidiGenerateContent", False),
        (AnthropicAdapter(api_key="k" * 10), "/v1/messages", False),
        (CopilotAdapter(api_key="k" * 10), "/responses", False),
        (OpenAICompatibleAdapter("vllm", "http://127.0.0.1:8000/v1"), "/realtime", False),
    ],
)
def test_which_paths_open_a_socket(adapter: BaseAdapter, path: str, opens: bool) -> None:
    assert adapter.opens_socket(path) is opens


def test_a_subclass_declares_its_own_sockets() -> None:
    class Voice(BaseAdapter):
        default_name = "voice"
        default_base_url = "https://voice.example/v1"
        socket_endpoints = ("GET /live/*",)

    adapter = Voice(api_key="k" * 10)
    assert adapter.opens_socket("/live/session-1")
    assert not adapter.opens_socket("/live/a/b")


def test_gemini_live_takes_the_key_in_the_query_others_in_headers() -> None:
    url = httpx.URL("https://generativelanguage.googleapis.com" + LIVE + "?alt=x")
    headers, moved = GeminiAdapter(api_key="k" * 10).socket_auth(
        {"x-goog-api-key": "secret-key", "x-other": "1"}, url
    )
    assert dict(headers) == {"x-other": "1"}
    assert moved.params["key"] == "secret-key"
    assert moved.params["alt"] == "x"
    same = OpenAIAdapter(api_key="k" * 10).socket_auth({"authorization": "Bearer s"}, url)
    assert same == ({"authorization": "Bearer s"}, url)


@pytest.mark.parametrize(
    ("dialect", "payload", "turn"),
    [
        (OpenAIChat(), {"type": "response.create"}, "start"),
        (OpenAIChat(), {"type": "response.done", "response": {}}, "end"),
        (OpenAIResponses(), {"type": "response.create", "model": "m"}, "start"),
        (OpenAIResponses(), {"type": "response.completed"}, "end"),
        (OpenAIResponses(), {"type": "response.failed"}, "end"),
        (OpenAIResponses(), {"type": "response.incomplete"}, "end"),
        (OpenAIResponses(), {"type": "response.output_text.delta"}, None),
        (OpenAIChat(), ["response.create"], None),
        (Gemini(), {"serverContent": {"turnComplete": True}, "usageMetadata": {}}, "end"),
        (Gemini(), {"serverContent": {}}, None),
        (AnthropicMessages(), {"type": "response.create"}, None),
    ],
)
def test_what_a_turn_is_per_format(dialect: object, payload: object, turn: str | None) -> None:
    assert dialect.socket_turn(payload) == turn  # type: ignore[attr-defined]
    if turn is not None:  # the hints let such a message be found without parsing
        text = json.dumps(payload)
        assert any(hint in text for hint in dialect.socket_hints)  # type: ignore[attr-defined]


def test_socket_errors_in_openais_event_shape_and_none_elsewhere() -> None:
    error = RateLimited("Slow down.")
    event = json.loads(OpenAIResponses().socket_error(error) or "")
    assert event == {
        "type": "error",
        "status": 429,
        "error": {
            "type": "rate_limited",
            "code": "rate_limited",
            "message": "Slow down.",
            "param": None,
        },
    }
    assert Gemini().socket_error(error) is None
    assert KEY_SUBPROTOCOLS == ("openai-insecure-api-key.",)


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (None, 1000),
        (1000, 1000),
        (4001, 4001),
        (1005, 1011),
        (1006, 1011),
        (1015, 1011),
        (999, 1011),
        (5000, 1011),
    ],
)
def test_close_codes_that_cannot_travel_become_1011(given: int | None, sent: int) -> None:
    assert close_code(given) == sent


def test_close_reasons_fit_one_frame_in_whole_characters() -> None:
    assert close_reason("short") == "short"
    long = "é" * 100  # 200 bytes
    cut = close_reason(long)
    assert len(cut.encode()) <= 123
    assert long.startswith(cut)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, 1008),
        (403, 1008),
        (404, 1008),
        (429, 1013),
        (503, 1013),
        (502, 1014),
        (504, 1014),
        (500, 1011),
    ],
)
def test_refusals_map_to_close_codes(status: int, code: int) -> None:
    assert status_close_code(status) == code


def test_socket_count_per_client_and_overall() -> None:
    count = SocketCount(total=3, per_client=2)
    assert count.take("a") is None
    assert count.take("a") is None
    assert "This client" in (count.take("a") or "")
    assert count.take("b") is None
    assert "3 sockets" in (count.take("c") or "")
    count.give("a")
    assert count.take("c") is None
    assert count.open == 3


@pytest.mark.parametrize(
    ("status", "upstream", "kind"),
    [
        (400, False, "validation"),
        (404, False, "validation"),
        (413, False, "validation"),
        (429, False, "rate_limit"),
        (503, False, "rate_limit"),
        (502, False, "upstream"),
        (504, False, "upstream"),
        (429, True, "upstream"),
        (400, True, "upstream"),
        (500, False, "internal"),
    ],
)
def test_inference_socket_error_types(status: int, upstream: bool, kind: str) -> None:
    assert error_type(status, upstream) == kind


def test_limits_are_checked_when_given() -> None:
    with pytest.raises(ValueError, match="seconds"):
        SocketLimits(idle_timeout=0)
    with pytest.raises(ValueError, match="1 or more"):
        SocketLimits(max_sockets=0)
    with pytest.raises(ValueError, match="ws_heartbeat_interval"):
        InferenceSocketOptions(heartbeat_interval=0)
    with pytest.raises(ValueError, match="ws_connections_per_minute"):
        InferenceSocketOptions(connections_per_minute=0)


def test_the_operator_chooses_the_sockets_of_an_adapter() -> None:
    closed = OpenAIAdapter(api_key="k" * 10, sockets=[])
    assert not closed.opens_socket("/realtime")
    assert not closed.opens_socket("/responses")
    only = OpenAIAdapter(api_key="k" * 10, sockets=["GET /realtime"])
    assert only.opens_socket("/realtime")
    assert not only.opens_socket("/responses")
    local = OpenAICompatibleAdapter("vllm", "http://127.0.0.1:8000/v1", sockets=["GET /realtime"])
    assert local.opens_socket("/realtime")
    with pytest.raises(ValueError, match="list of strings"):
        OpenAIAdapter(api_key="k" * 10, sockets="GET /realtime")
