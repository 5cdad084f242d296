"""The Responses socket's messages (``dialects/_responses_socket.py``), pure functions."""

from __future__ import annotations

import json

import pytest

from provider_proxy.dialects import _responses_socket as wire


def test_a_create_becomes_a_streamed_post_body_without_the_envelope() -> None:
    event = {"type": "response.create", "model": "m", "input": "Hi", "stream_id": "a"}
    assert wire.request_body({**event, "generate": True}) == {
        "model": "m",
        "input": "Hi",
        "stream": True,
    }


def test_a_continuation_puts_the_kept_conversation_first() -> None:
    kept = {"input": [{"role": "user", "content": "One"}], "previous_response_id": "resp_0"}
    event = {"type": "response.create", "previous_response_id": "resp_1", "input": "Two"}
    assert wire.continued(event, kept) == {
        "type": "response.create",
        "previous_response_id": "resp_0",
        "input": [{"role": "user", "content": "One"}, {"role": "user", "content": "Two"}],
    }
    assert "previous_response_id" not in wire.continued(event, {"input": "One"})


def test_a_finished_turn_is_kept_as_its_input_then_its_output() -> None:
    output = [{"type": "message", "role": "assistant", "content": []}]
    completed = json.dumps(
        {"type": "response.completed", "response": {"id": "r", "output": output}}
    )
    assert wire.kept_turn({"input": "Hi"}, completed) == (
        "r",
        {"input": [{"role": "user", "content": "Hi"}, *output]},
    )
    assert wire.kept_turn({"input": "Hi"}, "not json") is None
    assert wire.kept_turn({"input": "Hi"}, json.dumps({"type": "response.completed"})) is None


def test_a_prepared_request_answers_created_then_completed_with_no_output() -> None:
    answer_id, frames = wire.prepared_events({"model": "m", "stream_id": "lane"})
    created, completed = (json.loads(frame) for frame in frames)
    assert answer_id.startswith("resp_")
    assert (created["type"], created["response"]["status"]) == ("response.created", "in_progress")
    assert (completed["type"], completed["response"]["output"]) == ("response.completed", [])
    assert {created["stream_id"], completed["response"]["id"]} == {"lane", answer_id}


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (502, "server_error"),
    ],
)
def test_error_events_carry_the_status_and_its_type(status: int, kind: str) -> None:
    event = json.loads(wire.error_event(status, "No.", code="c", stream_id="s"))
    assert event == {
        "type": "error",
        "status": status,
        "error": {"type": kind, "code": "c", "message": "No.", "param": None},
        "stream_id": "s",
    }


def test_an_error_answer_keeps_its_error_object_or_its_text() -> None:
    body = json.dumps({"error": {"type": "invalid_request_error", "message": "Bad."}}).encode()
    kept = json.loads(wire.answer_error(400, body))
    assert kept == {"type": "error", "status": 400, "error": json.loads(body)["error"]}
    plain = json.loads(wire.answer_error(502, b"<html>bad gateway</html>"))
    assert (plain["status"], plain["error"]["message"]) == (502, "<html>bad gateway</html>")
    assert json.loads(wire.answer_error(500, b""))["error"]["message"] == "HTTP 500"


def test_a_lane_is_marked_on_an_event_and_its_kind_read() -> None:
    data = json.dumps({"type": "response.output_text.delta", "delta": "x"})
    assert json.loads(wire.with_stream_id(data, "a"))["stream_id"] == "a"
    assert wire.with_stream_id("not json", "a") == "not json"
    assert wire.event_kind(None, data)[0] == "response.output_text.delta"
    assert wire.event_kind("response.completed", "{}") == ("response.completed", None)
    assert wire.event_kind(None, "[1]") == (None, None)
