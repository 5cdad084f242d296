"""The Responses API's WebSocket messages, for a socket the gateway answers itself.

The client sends ``{"type": "response.create", ...}`` with the fields of
``POST /v1/responses`` (``stream`` implicit; ``stream_id`` names a lane, echoed on
that turn's events; ``generate: false`` prepares a request without output, for a
later turn to continue by its id). The server's messages are the streamed
events of ``POST /v1/responses`` as they are, and ``error`` events
(``{"type": "error", "status", "error": {"type", "code", "message", "param"}}``).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from .._json import dumps, loads

#: The client message that starts a turn.
CREATE = "response.create"

#: The event that ends a turn's answer when it finished.
COMPLETED = "response.completed"

#: The events that end a turn's answer.
TERMINAL = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})

#: The socket's own fields of a ``response.create``, not ``POST /v1/responses``'s.
_ENVELOPE = ("type", "stream_id", "generate")


def request_body(event: dict[str, Any]) -> dict[str, Any]:
    """The ``POST /v1/responses`` body a ``response.create`` asks for (streamed)."""
    body = {k: v for k, v in event.items() if k not in _ENVELOPE}
    body["stream"] = True
    return body


def continued(event: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
    """``event`` continuing the ``prepared`` request: its input first, and the answer
    it continued (if any) as the one this continues."""
    event = {k: v for k, v in event.items() if k != "previous_response_id"}
    earlier = prepared.get("previous_response_id")
    if earlier is not None:
        event["previous_response_id"] = earlier
    event["input"] = [*_items(prepared.get("input")), *_items(event.get("input"))]
    return event


def kept_turn(request: dict[str, Any], completed: str) -> tuple[str, dict[str, Any]] | None:
    """A finished turn as a later turn continues it on the socket: the answer's id,
    and the conversation so far (the request's input, then the answer's output),
    or ``None`` when ``completed`` is not a ``response.completed`` event."""
    try:
        payload = loads(completed)
    except ValueError:
        return None
    response = payload.get("response") if isinstance(payload, dict) else None
    if not isinstance(response, dict) or not isinstance(response.get("id"), str):
        return None
    output = response.get("output")
    kept: dict[str, Any] = {
        "input": [*_items(request.get("input")), *(output if isinstance(output, list) else [])]
    }
    if request.get("previous_response_id") is not None:
        kept["previous_response_id"] = request["previous_response_id"]
    return response["id"], kept


def prepared_events(event: dict[str, Any]) -> tuple[str, list[str]]:
    """A ``generate: false`` request's answer id, and its two events (no output)."""
    answer_id = "resp_" + secrets.token_hex(16)
    response = {
        "id": answer_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": event.get("model"),
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": event.get("instructions"),
        "metadata": event.get("metadata") or {},
        "parallel_tool_calls": event.get("parallel_tool_calls", True),
        "tool_choice": event.get("tool_choice", "auto"),
        "tools": event.get("tools") or [],
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
    }
    stream_id = event.get("stream_id")
    frames = []
    for number, kind in enumerate(("response.created", "response.completed")):
        frame: dict[str, Any] = {
            "type": kind,
            "sequence_number": number,
            "response": dict(response, status="in_progress") if number == 0 else response,
        }
        if stream_id is not None:
            frame["stream_id"] = stream_id
        frames.append(dumps(frame).decode("utf-8"))
    return answer_id, frames


def event_kind(name: str | None, data: str) -> tuple[str | None, dict[str, Any] | None]:
    """A streamed event's type (its SSE name, else its JSON's), and the JSON when read."""
    if name is not None:
        return name, None
    try:
        payload = loads(data)
    except ValueError:
        return None, None
    if not isinstance(payload, dict):
        return None, None
    kind = payload.get("type")
    return (kind if isinstance(kind, str) else None), payload


def with_stream_id(data: str, stream_id: Any) -> str:
    """A streamed event marked with the lane (``stream_id``) its turn named."""
    try:
        payload = loads(data)
    except ValueError:
        return data
    if not isinstance(payload, dict):
        return data
    payload["stream_id"] = stream_id
    return dumps(payload).decode("utf-8")


def error_event(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    stream_id: Any = None,
) -> str:
    """The protocol's ``error`` event (the socket stays open)."""
    frame: dict[str, Any] = {
        "type": "error",
        "status": status,
        "error": {"type": error_type(status), "code": code, "message": message, "param": param},
    }
    if stream_id is not None:
        frame["stream_id"] = stream_id
    return dumps(frame).decode("utf-8")


def answer_error(status: int, body: bytes, stream_id: Any = None) -> str:
    """An error answer of ``POST /v1/responses`` (``{"error": {...}}``) as an ``error`` event."""
    try:
        parsed = loads(body) if body else None
    except ValueError:
        parsed = None
    detail = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(detail, dict) or not isinstance(detail.get("message"), str):
        text = body.decode("utf-8", "replace")[:500] or f"HTTP {status}"
        return error_event(status, text, stream_id=stream_id)
    frame: dict[str, Any] = {"type": "error", "status": status, "error": detail}
    if stream_id is not None:
        frame["stream_id"] = stream_id
    return dumps(frame).decode("utf-8")


def error_type(status: int) -> str:
    """The error ``type`` of an answer of ``status``."""
    if status == 429:
        return "rate_limit_error"
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if 400 <= status < 500:
        return "invalid_request_error"
    return "server_error"


def _items(given: Any) -> list[Any]:
    """A request's ``input`` as a list of items (a string is one user message)."""
    if given is None:
        return []
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    return list(given) if isinstance(given, list) else [given]
