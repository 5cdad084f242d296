"""A provider whose upstream keeps the conversation, in one module: ``python
examples/stateful_provider.py``, then chat with ``http://127.0.0.1:8000/llm/memo/v1``
as an OpenAI base URL (any model name); each request carries the whole history,
as OpenAI clients send it, and the upstream gets only the new turn.

The upstream here is :class:`MemoChat`, a made-up stateful chat service served
by the same process under ``/memo-api``. Its protocol:

- ``POST /conversations`` → ``{"id": <conversation id>}``;
- ``POST /conversations/{id}/messages`` with ``{"parent": <message id or null>,
  "text": ...}`` → server-sent events ``{"delta": "..."}``, then ``{"done": true,
  "message_id": ...}``: the id the next message names as its ``parent``. An
  unknown conversation or parent is a 404 ``{"error": "unknown_parent"}``.

``MEMO_BASE_URL`` points the adapter at another upstream.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from collections.abc import Mapping
from typing import Any

import httpx
import uvicorn

from provider_proxy import make_asgi_app
from provider_proxy.adapters import (
    AnswerReader,
    StaleConversation,
    StatefulAdapter,
    Turn,
    Upstream,
    UpstreamRefused,
)
from provider_proxy.dialects.canonical import Finish, FinishReason, TextDelta

# -- the adapter: how to speak to the stateful upstream -------------------------------------


class MemoAdapter(StatefulAdapter):
    """MemoChat behind an OpenAI Chat facade, at ``{mount}/memo/v1/chat/completions``."""

    default_name = "memo"
    default_base_url = "http://127.0.0.1:8000/memo-api"
    default_key_optional = True  # the made-up service needs no key

    async def open_conversation(self, upstream: Upstream, turn: Turn) -> Mapping[str, Any]:
        response = await upstream.send("POST", "/conversations", json={})
        body = await upstream.read(response)
        if response.status_code != 200:
            raise UpstreamRefused(
                f"MemoChat could not open a conversation ({response.status_code})."
            )
        return {"conversation": json.loads(body)["id"], "parent": None}

    async def send_turn(
        self, upstream: Upstream, ids: Mapping[str, Any], turn: Turn
    ) -> httpx.Response:
        response = await upstream.send(
            "POST",
            f"/conversations/{ids['conversation']}/messages",
            json={"parent": ids["parent"], "text": turn.text},
        )
        if response.status_code == 404:
            await upstream.read(response)
            raise StaleConversation  # the proxy opens a fresh one and sends the turn again
        if response.status_code != 200:
            await upstream.read(response)
            raise UpstreamRefused(f"MemoChat answered {response.status_code}.")
        return response

    def answer_reader(self, ids: Mapping[str, Any], turn: Turn) -> AnswerReader:
        return MemoReader(ids["conversation"])


class MemoReader(AnswerReader):
    """MemoChat's events as text deltas; the last one names where the next turn goes."""

    def __init__(self, conversation: str) -> None:
        self._conversation = conversation
        self._buffer = b""
        self._next: dict[str, Any] | None = None

    def feed(self, data: bytes) -> list[Any]:
        self._buffer += data
        events: list[Any] = []
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            if not block.startswith(b"data: "):
                continue
            event = json.loads(block[6:])
            if "delta" in event:
                events.append(TextDelta(event["delta"]))
            elif event.get("done"):
                self._next = {"conversation": self._conversation, "parent": event["message_id"]}
                events.append(Finish(FinishReason.STOP))
        return events

    def end(self) -> list[Any]:
        return []

    @property
    def next_ids(self) -> Mapping[str, Any] | None:
        return self._next


# -- the made-up upstream -------------------------------------------------------------------


class MemoChat:
    """A tiny stateful chat service (an ASGI app): it remembers each conversation's
    messages and answers with what it has been told so far."""

    def __init__(self) -> None:
        self.conversations: dict[str, dict[str, str]] = {}  # id -> message id -> its text
        self.received: list[dict[str, Any]] = []
        self._conversation_ids = itertools.count(1)
        self._message_ids = itertools.count(1)

    def forget(self) -> None:
        """Drop every conversation (as a service does when they expire)."""
        self.conversations.clear()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"].removeprefix("/memo-api")
        if path == "/conversations":
            conversation = f"conv-{next(self._conversation_ids)}"
            self.conversations[conversation] = {}
            await _json(send, 200, {"id": conversation})
            return
        parts = path.strip("/").split("/")
        payload = json.loads(body or b"{}")
        messages = self.conversations.get(parts[1]) if len(parts) == 3 else None
        parent = payload.get("parent")
        if messages is None or (parent is not None and parent not in messages):
            await _json(send, 404, {"error": "unknown_parent"})
            return
        self.received.append({"conversation": parts[1], **payload})
        user_id = f"msg-{next(self._message_ids)}"
        messages[user_id] = payload["text"]
        # It answers with the last paragraph it was sent (a replay's new turn).
        answer = f"Message {len(messages)} of {parts[1]}: {payload['text'].split(chr(10) * 2)[-1]}"
        answer_id = f"msg-{next(self._message_ids)}"
        messages[answer_id] = answer
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for word in answer.split(" "):
            event = json.dumps({"delta": word + " "}).encode()
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + event + b"\n\n",
                    "more_body": True,
                }
            )
        done = json.dumps({"done": True, "message_id": answer_id}).encode()
        await send({"type": "http.response.body", "body": b"data: " + done + b"\n\n"})


async def _json(send: Any, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(base_url: str | None = None, **options: Any) -> Any:
    """The proxy under ``/llm`` and the made-up upstream under ``/memo-api``, in one app."""
    memo = MemoChat()
    proxy = make_asgi_app([MemoAdapter(base_url=base_url)], validate_credentials="off", **options)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await proxy(scope, receive, send)
        elif scope["path"].startswith("/memo-api"):
            await memo(scope, receive, send)
        elif scope["path"].startswith("/llm"):
            await proxy(dict(scope, root_path=scope.get("root_path", "") + "/llm"), receive, send)

    app.memo = memo  # type: ignore[attr-defined]
    app.proxy = proxy  # type: ignore[attr-defined]
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve the proxy with a stateful provider.")
    parser.add_argument("--port", type=int, default=8000)
    port = parser.parse_args().port
    base = os.environ.get("MEMO_BASE_URL") or f"http://127.0.0.1:{port}/memo-api"
    uvicorn.run(create_app(base), host="127.0.0.1", port=port)
