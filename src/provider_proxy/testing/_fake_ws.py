"""A fake provider socket: OpenAI's Realtime and Responses sockets and Gemini Live.

An ASGI app (serve it on loopback, as :class:`~provider_proxy.testing.FakeUpstream`)
that speaks enough of each protocol to test a relay, records every socket it
accepted, and checks that none brought a forbidden value (the client's key),
in its headers, query, subprotocols or messages: such a socket is closed with
4403 and counted in :attr:`FakeSocketUpstream.violations`.

The protocol is picked by the path: ending in ``/realtime`` (Realtime:
``session.created`` first; ``response.create`` answered with
``response.created``, text deltas and ``response.done`` with usage), in
``/responses`` (``response.created``, ``response.output_text.delta`` events and
``response.completed``), or in ``BidiGenerateContent`` (Gemini Live:
``setup`` answered with ``setupComplete``, ``clientContent`` with
``serverContent`` parts and a ``turnComplete`` message with ``usageMetadata``).
In every protocol:

- a binary message is echoed back as binary;
- ``{"type": "fake.echo", ...}`` is echoed back as sent;
- ``{"type": "fake.close", "code": 4001, "reason": "..."}`` closes with that code;
- ``{"type": "fake.crash"}`` fails the socket (the server closes it with 1011);
- a ``response.create`` with ``"fake_wait": true`` gets its ``response.created``
  at once but its end only after ``{"type": "fake.release"}``;
- on the Realtime socket, ``input_audio_buffer.commit`` is answered with a
  response, as server voice activity detection starts one (no ``response.create``).

A handshake with ``x-fake-status: 429`` is refused with that status and a JSON body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._json import dumps, loads
from ..types import Receive, Scope, Send

_FAKE_TEXT = ("Hello", " from", " the", " socket")


@dataclass
class RecordedSocket:
    """One socket the fake accepted (or refused)."""

    path: str
    query: str
    headers: dict[str, str]
    subprotocols: list[str]
    #: Messages from the relay, in order (text as ``str``, binary as ``bytes``).
    received: list[str | bytes] = field(default_factory=list)
    #: The close code the relay sent, once it closed.
    close_code: int | None = None
    closed: bool = False


class FakeCrash(Exception):
    """Raised by the fake to fail a socket mid-session, as a provider that dies."""


class FakeSocketUpstream:
    """The fake provider socket; see the module's docstring.

    :param forbidden: values that must never reach the provider (a client's key).
    :param subprotocol: the subprotocol to pick when the relay offers it.
    """

    def __init__(self, forbidden: Sequence[str] = (), subprotocol: str | None = None) -> None:
        self.forbidden = tuple(value for value in forbidden if value)
        self.subprotocol = subprotocol
        self.sockets: list[RecordedSocket] = []
        self.violations: list[str] = []

    @property
    def open_sockets(self) -> int:
        return sum(1 for socket in self.sockets if not socket.closed)

    @property
    def last(self) -> RecordedSocket:
        return self.sockets[-1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if (await receive())["type"] != "websocket.connect":
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        record = RecordedSocket(
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            list(scope.get("subprotocols") or ()),
        )
        self.sockets.append(record)
        try:
            await self._serve(scope, receive, send, record)
        finally:
            record.closed = True

    def _leaked(self, text: str) -> str | None:
        return next((value for value in self.forbidden if value in text), None)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, record: RecordedSocket
    ) -> None:
        seen = " ".join([record.query, *record.headers.values(), *record.subprotocols])
        leaked = self._leaked(seen)
        status = record.headers.get("x-fake-status")
        if status is not None:
            body = dumps({"error": {"message": "refused by the fake", "code": int(status)}})
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": int(status),
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
            return
        chosen = self.subprotocol if self.subprotocol in record.subprotocols else None
        await send({"type": "websocket.accept", "subprotocol": chosen})
        if leaked is not None:
            self.violations.append(f"the handshake carried {leaked!r}")
            await send({"type": "websocket.close", "code": 4403, "reason": "credential leaked"})
            return
        path = record.path
        kind = (
            "realtime"
            if path.endswith("/realtime")
            else "gemini"
            if "BidiGenerateContent" in path
            else "responses"
        )
        if kind == "realtime":
            await _send_json(send, {"type": "session.created", "session": {"id": "sess_fake"}})
        turn = 0
        held: list[tuple[dict[str, Any], int]] = []
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                record.close_code = message.get("code", 1000)
                return
            if message["type"] != "websocket.receive":
                continue
            text: str | None = message.get("text")
            if text is None:
                data: bytes = message.get("bytes") or b""
                record.received.append(data)
                await send({"type": "websocket.send", "bytes": data})
                continue
            record.received.append(text)
            leaked = self._leaked(text)
            if leaked is not None:
                self.violations.append(f"a message carried {leaked!r}")
                await send({"type": "websocket.close", "code": 4403, "reason": "credential leaked"})
                return
            try:
                payload = loads(text)
            except ValueError:
                payload = None
            if not isinstance(payload, dict):
                continue
            action = payload.get("type")
            if action == "fake.echo":
                await send({"type": "websocket.send", "text": text})
            elif action == "fake.close":
                await send(
                    {
                        "type": "websocket.close",
                        "code": int(payload.get("code", 1000)),
                        "reason": str(payload.get("reason", "")),
                    }
                )
                return
            elif action == "fake.crash":
                raise FakeCrash("the fake provider failed the socket")
            elif kind == "gemini":
                await _gemini(send, payload)
            elif action == "fake.release":
                for waiting, number in held:
                    await _response(send, kind, waiting, number, created=False)
                held.clear()
            elif action == "input_audio_buffer.commit" and kind == "realtime":
                turn += 1
                await _response(send, kind, payload, turn)
            elif action == "response.create":
                turn += 1
                if payload.get("fake_wait") is True:
                    await _created(send, payload, turn)
                    held.append((payload, turn))
                else:
                    await _response(send, kind, payload, turn)


async def _send_json(send: Send, payload: dict[str, Any]) -> None:
    await send({"type": "websocket.send", "text": dumps(payload).decode("utf-8")})


def _usage(turn: int) -> dict[str, int]:
    return {
        "input_tokens": 10 * turn,
        "output_tokens": len(_FAKE_TEXT),
        "total_tokens": 10 * turn + 4,
    }


def _created_response(payload: dict[str, Any], turn: int) -> dict[str, Any]:
    model = payload.get("model") or (payload.get("response") or {}).get("model") or "fake-model"
    return {"id": f"resp_{turn}", "object": "response", "status": "in_progress", "model": model}


async def _created(send: Send, payload: dict[str, Any], turn: int) -> None:
    await _send_json(
        send, {"type": "response.created", "response": _created_response(payload, turn)}
    )


async def _response(
    send: Send, kind: str, payload: dict[str, Any], turn: int, *, created: bool = True
) -> None:
    """A Realtime or Responses-socket answer to one ``response.create``."""
    if created:
        await _created(send, payload, turn)
    response = _created_response(payload, turn)
    delta = "response.output_text.delta"
    for piece in _FAKE_TEXT:
        await _send_json(send, {"type": delta, "response_id": response["id"], "delta": piece})
    done = dict(response, status="completed", usage=_usage(turn))
    end = "response.done" if kind == "realtime" else "response.completed"
    await _send_json(send, {"type": end, "response": done})


async def _gemini(send: Send, payload: dict[str, Any]) -> None:
    """Gemini Live: ``setup`` and ``clientContent``."""
    if "setup" in payload:
        await _send_json(send, {"setupComplete": {}})
        return
    if "clientContent" not in payload:
        return
    for piece in _FAKE_TEXT:
        await _send_json(send, {"serverContent": {"modelTurn": {"parts": [{"text": piece}]}}})
    await _send_json(
        send,
        {
            "serverContent": {"turnComplete": True},
            "usageMetadata": {
                "promptTokenCount": 7,
                "candidatesTokenCount": len(_FAKE_TEXT),
                "totalTokenCount": 7 + len(_FAKE_TEXT),
            },
        },
    )
