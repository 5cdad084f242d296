"""A fake of the Qwen web chat service's API, as its protocol is publicly documented.

An ASGI app for tests of :class:`~provider_proxy.adapters.QwenChatAdapter`:

- every request must carry the operator's ``bx-umidtoken`` header, ``Cookie``
  and a browser ``User-Agent``; without them it answers an HTML challenge page
  (as the service does). A wrong token is refused (403, the token quoted back,
  as a careless upstream might); an expired login is a 401;
- ``POST /api/v2/chats/new`` with ``{"title", "models": [model], "chat_mode",
  "chat_type": "t2t", "timestamp"}`` opens a chat: ``{"success": true,
  "data": {"id": ...}}``;
- ``POST /api/v2/chat/completions?chat_id=<id>`` takes ONE new user message;
  its ``parent_id`` must be ``null`` for the chat's first message, then the
  ``parent_id`` of an earlier answer of that chat (never its ``message_id``),
  else ``{"success": false, "data": {"code": "Bad_Request", "details": "The
  chat parent_id ... is not exist"}}``. Streamed (SSE, incremental), the answer
  starts with ``{"response.created": {"chat_id", "parent_id", "message_id"}}``,
  then ``choices[0].delta`` pieces by ``phase`` (``think`` when thinking is
  enabled, then ``answer``), the last one ``"status": "finished"``, with
  ``usage``; whole, it is ``{"success": true, "data": {"parent_id",
  "message_id", "choices": [{"message": {"role", "content"}}]}}``;
- ``GET /api/models`` lists the models.

Answers say what the chat has seen: ``"Turn {n} of {chat}: {the message's last
line}"``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._json import dumps, loads
from ..types import Receive, Scope, Send

MODELS = ("qwen3-max", "qwen3-coder-plus", "qwen-plus")

_CHALLENGE = (
    b"<!DOCTYPE html><html><head><title>Verification</title></head><body>"
    b"<div id='nocaptcha'>Please slide to verify</div></body></html>"
)
_MESSAGE_KEYS = {
    "fid",
    "parentId",
    "childrenIds",
    "role",
    "content",
    "user_action",
    "files",
    "timestamp",
    "models",
    "chat_type",
    "feature_config",
    "sub_chat_type",
    "parent_id",
}


@dataclass
class FakeChat:
    """One chat the fake keeps: its model, answers' parent ids, and the messages it got."""

    model: str
    parents: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


class FakeQwenChat:
    """The fake service (an ASGI app) and what it has seen.

    :param token: the ``bx-umidtoken`` it accepts.
    :param cookie: a ``name=value`` the ``Cookie`` header must hold.
    :param gap: seconds between streamed pieces.

    Set :attr:`expired` to answer every request as for an expired login (401).
    Streams count in :attr:`open_streams` and :attr:`closed_streams`, and end
    when the client leaves.
    """

    def __init__(
        self,
        *,
        token: str = "fake-umid-token",
        cookie: str = "token=fake-session",
        gap: float = 0.0,
    ) -> None:
        self.token = token
        self.cookie = cookie
        self.gap = gap
        self.expired = False
        self.open_streams = 0
        self.closed_streams = 0
        #: Streams sent to their end (the others ended when the client left).
        self.completed_streams = 0
        self.chats: dict[str, FakeChat] = {}
        #: ``(path, json body)`` of every request that passed the checks.
        self.requests: list[tuple[str, Any]] = []
        self._ids = itertools.count(1)

    def forget_chats(self) -> None:
        """Drop every chat (as the service does with old ones)."""
        self.chats.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = [c.strip() for c in headers.get("cookie", "").split(";")]
        if (
            "bx-umidtoken" not in headers
            or self.cookie not in cookies
            or "Mozilla/" not in headers.get("user-agent", "")
        ):
            await _respond(send, 200, _CHALLENGE, b"text/html; charset=utf-8")
            return
        if headers["bx-umidtoken"] != self.token:
            details = f"bx-umidtoken {headers['bx-umidtoken']} rejected"
            await _json(send, 403, _failure("Forbidden", details))
            return
        if self.expired:
            await _json(send, 401, _failure("Unauthorized", "Login expired, please log in again"))
            return
        path = scope["path"]
        body = loads(raw) if raw else None
        if scope["method"] == "GET" and path == "/api/models":
            data = [{"id": m, "name": m.title(), "info": {"meta": {}}} for m in MODELS]
            await _json(send, 200, {"data": data})
            return
        self.requests.append((path, body))
        if scope["method"] == "POST" and path == "/api/v2/chats/new":
            await self._new_chat(send, body)
        elif scope["method"] == "POST" and path == "/api/v2/chat/completions":
            query = scope.get("query_string", b"").decode()
            chat_id = dict(p.partition("=")[::2] for p in query.split("&") if p).get("chat_id")
            await self._completion(receive, send, chat_id, body)
        else:
            await _json(send, 404, _failure("Not_Found", f"no route {path}"))

    async def _new_chat(self, send: Send, body: Any) -> None:
        valid = (
            isinstance(body, dict)
            and isinstance(body.get("title"), str)
            and isinstance(body.get("models"), list)
            and len(body["models"]) == 1
            and body.get("chat_mode") == "guest"
            and body.get("chat_type") == "t2t"
            and isinstance(body.get("timestamp"), int)
        )
        if not valid:
            await _json(send, 200, _failure("Bad_Request", "invalid chat"))
            return
        chat_id = f"chat-{next(self._ids)}"
        self.chats[chat_id] = FakeChat(body["models"][0])
        await _json(send, 200, {"success": True, "data": {"id": chat_id}})

    async def _completion(
        self, receive: Receive, send: Send, chat_id: str | None, body: Any
    ) -> None:
        chat = self.chats.get(chat_id or "")
        if chat is None or not isinstance(body, dict) or body.get("chat_id") != chat_id:
            await _json(send, 200, _failure("Not_Found", f"The chat {chat_id} is not exist"))
            return
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or len(messages) != 1
            or not isinstance(messages[0], dict)
            or set(messages[0]) != _MESSAGE_KEYS
            or messages[0]["role"] != "user"
            or body.get("incremental_output") is not True
            or body.get("model") != chat.model
        ):
            await _json(send, 200, _failure("Bad_Request", "one new user message is expected"))
            return
        message = messages[0]
        parent = body.get("parent_id")
        known = parent is None if not chat.parents else parent in chat.parents
        if not known or message["parent_id"] != parent or message["parentId"] != parent:
            details = f"The chat parent_id {parent} is not exist"
            await _json(send, 200, _failure("Bad_Request", details))
            return
        chat.messages.append(message["content"])
        number = next(self._ids)
        parent_id, message_id = f"parent-{number}", f"msg-{number}"
        chat.parents.append(parent_id)
        last_line = message["content"].strip().splitlines()[-1] if message["content"] else ""
        text = f"Turn {len(chat.messages)} of {chat_id}: {last_line}"
        thinking = bool(message["feature_config"].get("thinking_enabled"))
        if not body.get("stream"):
            data = {
                "parent_id": parent_id,
                "message_id": message_id,
                "choices": [{"message": {"role": "assistant", "content": text}}],
            }
            await _json(send, 200, {"success": True, "data": data})
            return
        events: list[Any] = [
            {
                "response.created": {
                    "chat_id": chat_id,
                    "parent_id": parent_id,
                    "message_id": message_id,
                }
            }
        ]
        if thinking:
            for piece in ("Let me ", "think."):
                events.append(_delta(piece, "think", "typing"))
            events.append(_delta("", "think", "finished"))
        words = text.split(" ")
        for index, word in enumerate(words):
            events.append(
                _delta(word + (" " if index < len(words) - 1 else ""), "answer", "typing")
            )
        finished = _delta("", "answer", "finished")
        finished["usage"] = {"input_tokens": 12, "output_tokens": len(words), "total_tokens": 0}
        events.append(finished)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
            }
        )
        self.open_streams += 1
        try:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()  # the client left: the stream ends

                group.start_soon(watch)
                for event in events:
                    chunk = b"data: " + dumps(event) + b"\n\n"
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if self.gap:
                        await anyio.sleep(self.gap)
                await send({"type": "http.response.body", "body": b""})
                self.completed_streams += 1
                group.cancel_scope.cancel()
        finally:
            self.open_streams -= 1
            self.closed_streams += 1


def _delta(content: str, phase: str, status: str) -> dict[str, Any]:
    delta = {"role": "assistant", "content": content, "phase": phase, "status": status}
    return {"choices": [{"delta": delta}]}


def _failure(code: str, details: str) -> dict[str, Any]:
    return {"success": False, "request_id": "fake", "data": {"code": code, "details": details}}


async def _json(send: Send, status: int, payload: Any) -> None:
    await _respond(send, status, dumps(payload), b"application/json")


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
