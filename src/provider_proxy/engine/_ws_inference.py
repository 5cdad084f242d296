"""``{mount}/ws``: a streaming inference socket for browsers and simple clients.

A small JSON protocol (the seed service's): the client sends
``{"type": "inference_request", "id", "data": {"model", "messages", ...}}``;
the proxy answers ``inference_response`` frames for that id (content deltas,
then ``finish_reason``, ``usage``, ``model``, ``created``), ``error`` frames,
``heartbeat`` frames, and ``close`` before it closes. Requests on one socket
run at once, multiplexed by id; ``{"type": "cancel", "id"}`` stops one.

Each request goes through the gateway as ``POST {mount}/v1/chat/completions``
with ``"stream": true`` would (routing by model, translation, guards,
transforms, one event per request); its answer is read with the client
format's stream decoder, so this module sees canonical events only.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from .._exceptions import ProxyError
from .._json import dumps, loads
from ..dialects import GATEWAY, KEY_SUBPROTOCOLS, Dialect
from ..dialects.canonical import Finish, MessageStart, StreamError, TextDelta, UsageReport
from ..guards import Guards
from ..guards._guards import client_ip
from ..observe import SSEParser
from ..policy import request_id_from
from ..state import Store
from ..types import Message, Receive, Scope, Send
from ._drain import Drain
from ._gateway import Gateway
from ._report import Arrival, Outcome, Report
from ._ws_common import (
    GOING_AWAY,
    MESSAGE_TOO_BIG,
    NORMAL,
    POLICY_VIOLATION,
    TRY_AGAIN_LATER,
    ClientSocket,
    SocketCount,
)

logger = logging.getLogger("provider_proxy")

#: The gateway endpoint each request of the socket is served as.
_ENDPOINT = "/v1/chat/completions"

DEFAULT_HEARTBEAT_INTERVAL = 30.0
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_CONNECTIONS_PER_MINUTE = 5
#: Requests in flight on one socket at once.
MAX_REQUESTS_PER_SOCKET = 32

_HANDSHAKE_PREFIX = b"sec-websocket-"


@dataclass(frozen=True, slots=True)
class InferenceSocketOptions:
    """The ``/ws`` options: ``make_asgi_app(ws_heartbeat_interval=, ws_max_connections=,
    ws_connections_per_minute=)``."""

    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    connections_per_minute: int | None = DEFAULT_CONNECTIONS_PER_MINUTE
    max_frame_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.heartbeat_interval <= 0:
            raise ValueError("ws_heartbeat_interval must be a number of seconds above 0.")
        if self.max_connections < 1:
            raise ValueError("ws_max_connections must be 1 or more.")
        if self.connections_per_minute is not None and self.connections_per_minute < 1:
            raise ValueError("ws_connections_per_minute must be 1 or more, or None.")


def error_type(status: int, upstream: bool) -> str:
    """The protocol's error type for an answer of ``status``."""
    if upstream or status in (502, 504):
        return "upstream"
    if status in (429, 503):
        return "rate_limit"
    if 400 <= status < 500:
        return "validation"
    return "internal"


class InferenceSocket:
    """Serves ``{mount}/ws`` for a :class:`~provider_proxy.ProxyApp`; one per app.

    :param finish: the app's bookkeeping of each request's report (its event).
    """

    def __init__(
        self,
        gateway: Gateway,
        options: InferenceSocketOptions,
        *,
        guards: Guards | None,
        store: Store,
        finish: Callable[[Arrival, Report], None],
    ) -> None:
        self._gateway = gateway
        self.options = options
        self._guards = guards
        self._store = store
        self._finish = finish
        self.count = SocketCount(options.max_connections, None)
        #: The app's drain, which closes open sockets with 1001 at its timeout.
        self.drain: Drain | None = None
        client, operation = GATEWAY[_ENDPOINT]
        self._client: Dialect = client
        self._operation = operation

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one socket (its ``websocket.connect`` already received) to its end."""
        client = ClientSocket(scope, receive, send)
        scope = with_subprotocol_key(scope)
        ip = client_ip(scope, [])
        refusal = await self._refusal(scope, ip)
        if refusal is not None:
            code, reason = refusal
            await client.accept(None, [])
            await _send_close(client, code, reason)
            return
        self.count.open += 1
        try:
            protocol = protocol_offered(scope)
            await client.accept(protocol, [])
            connection = _Connection(self, client, scope)
            drain = self.drain
            with contextlib.nullcontext() if drain is None else drain.socket(connection.leave):
                await connection.run()
        finally:
            self.count.open -= 1

    async def _refusal(self, scope: Scope, ip: str) -> tuple[int, str] | None:
        """Why a new socket is refused (its close code and reason), else ``None``."""
        if self.count.open >= self.options.max_connections:
            return TRY_AGAIN_LATER, (
                f"The proxy has {self.options.max_connections} sockets open, its limit."
            )
        per_minute = self.options.connections_per_minute
        if per_minute is not None:
            result = await self._store.rate(f"ws-connect|ip:{ip}", 1, per_minute, 60.0)
            if not result.allowed:
                return TRY_AGAIN_LATER, (
                    f"More than {per_minute} new sockets a minute from this address; retry in "
                    f"{max(1, round(result.retry_after))} s."
                )
        if self._guards is not None:
            try:
                await self._guards.identify(scope)
            except ProxyError as error:
                return POLICY_VIOLATION, error.message
        return None


class _Connection:
    """One ``/ws`` socket: its reader, its heartbeat, and the requests in flight."""

    def __init__(self, socket: InferenceSocket, client: ClientSocket, scope: Scope) -> None:
        self.socket = socket
        self.client = client
        self.scope = scope
        self.lock = anyio.Lock()
        self.running: dict[str, anyio.CancelScope] = {}
        self._going_away = anyio.Event()

    def leave(self) -> None:
        """The proxy shuts down: a ``close`` frame, then the close, both 1001."""
        self._going_away.set()

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.lock:
            await self.client.send(dumps(frame).decode("utf-8"))

    async def error(self, request_id: Any, code: int, message: str, kind: str) -> None:
        await self.send(
            {
                "type": "error",
                "id": request_id,
                "error": {"code": code, "message": message, "type": kind},
            }
        )

    async def run(self) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._heartbeat)
            group.start_soon(self._away, group)
            try:
                await self._read(group)
            finally:
                group.cancel_scope.cancel()

    async def _away(self, group: anyio.abc.TaskGroup) -> None:
        await self._going_away.wait()
        async with self.lock:  # between two frames
            await _send_close(self.client, GOING_AWAY, "The proxy is shutting down.")
        group.cancel_scope.cancel()  # the requests in flight end, each with its event

    async def _heartbeat(self) -> None:
        interval = self.socket.options.heartbeat_interval
        while True:
            await anyio.sleep(interval)
            await self.send({"type": "heartbeat", "timestamp": int(time.time() * 1000)})

    async def _read(self, group: anyio.abc.TaskGroup) -> None:
        limit = self.socket.options.max_frame_bytes
        while True:
            message = await self.client.receive()
            if message["type"] == "websocket.disconnect":
                self.client.closed = True
                self.client.code = message.get("code", NORMAL)
                return
            if message["type"] != "websocket.receive":
                continue
            text = message.get("text")
            if text is None:
                data = message.get("bytes") or b""
                text = data.decode("utf-8", "replace")
            if len(text) > limit:
                await _send_close(
                    self.client, MESSAGE_TOO_BIG, f"A frame was over the limit of {limit} bytes."
                )
                return
            try:
                frame = loads(text)
            except ValueError:
                await self.error(None, 400, "The frame is not valid JSON.", "validation")
                continue
            if not isinstance(frame, dict):
                await self.error(None, 400, "A frame must be a JSON object.", "validation")
                continue
            kind = frame.get("type")
            if kind == "inference_request":
                await self._start(group, frame)
            elif kind == "cancel":
                scope = self.running.get(str(frame.get("id")))
                if scope is None:
                    await self.error(
                        frame.get("id"), 404, "No request with that id is running.", "validation"
                    )
                else:
                    scope.cancel()
            elif kind == "close":
                await _send_close(self.client, NORMAL, "Client requested close")
                return
            elif kind == "heartbeat":
                continue
            else:
                await self.error(
                    frame.get("id"),
                    400,
                    f"Unknown frame type {kind!r}: send inference_request, cancel, heartbeat "
                    "or close.",
                    "validation",
                )

    async def _start(self, group: anyio.abc.TaskGroup, frame: dict[str, Any]) -> None:
        request_id, data = frame.get("id"), frame.get("data")
        if not isinstance(request_id, str) or not request_id:
            await self.error(
                request_id, 400, 'An inference_request needs an "id" string.', "validation"
            )
            return
        if not isinstance(data, dict):
            await self.error(
                request_id, 400, 'An inference_request needs a "data" object.', "validation"
            )
            return
        if request_id in self.running:
            await self.error(request_id, 409, "A request with that id is running.", "validation")
            return
        if len(self.running) >= MAX_REQUESTS_PER_SOCKET:
            await self.error(
                request_id,
                429,
                f"At most {MAX_REQUESTS_PER_SOCKET} requests run at once on one socket.",
                "rate_limit",
            )
            return
        scope = anyio.CancelScope()
        self.running[request_id] = scope
        group.start_soon(self._serve, request_id, data, scope)

    async def _serve(
        self, request_id: str, data: dict[str, Any], cancel: anyio.CancelScope
    ) -> None:
        answer = _Answer(self, request_id)
        arrival = Arrival(request_id_from(self.scope["headers"]), "POST")
        reported = False
        try:
            with cancel:
                reported = await self._exchange(request_id, data, answer, arrival)
            if cancel.cancelled_caught:
                await self.send(
                    {
                        "type": "inference_response",
                        "id": request_id,
                        "data": {"finish_reason": "cancelled", "created": int(time.time())},
                    }
                )
        finally:
            self.running.pop(request_id, None)
            if not reported:  # cancelled, or the socket closed, before its answer ended
                model = data.get("model")
                self.socket._finish(
                    arrival,
                    Report(
                        Outcome.client_left(),
                        path=_ENDPOINT,
                        model=model if isinstance(model, str) else None,
                        client_dialect=self.socket._client.name,
                    ),
                )

    async def _exchange(
        self, request_id: str, data: dict[str, Any], answer: _Answer, arrival: Arrival
    ) -> bool:
        """Serve one request through the gateway; whether its report went to the app."""
        body = dumps({**data, "stream": True, "stream_options": {"include_usage": True}})
        scope = http_scope(self.scope, len(body), _ENDPOINT)
        try:
            report = await self.socket._gateway.handle(
                scope,
                receive_once(body),
                answer,
                self.socket._client,
                self.socket._operation,
                arrival,
            )
        except ProxyError as error:
            self.socket._finish(
                arrival,
                Report(
                    Outcome.refused(error, 0, None),
                    path=_ENDPOINT,
                    client_dialect=self.socket._client.name,
                ),
            )
            await self.error(
                request_id, error.status_code, error.message, error_type(error.status_code, False)
            )
            return True
        except Exception:
            logger.exception("the /ws request %s failed", request_id)
            outcome = Outcome(500, error_kind="internal_error")
            self.socket._finish(arrival, Report(outcome, path=_ENDPOINT))
            await self.error(request_id, 500, "The proxy failed to serve the request.", "internal")
            return True
        self.socket._finish(arrival, report)
        await answer.end(report)
        return True


class _Answer:
    """A ``send`` for the gateway's answer, as ``inference_response`` frames."""

    def __init__(self, connection: _Connection, request_id: str) -> None:
        self._connection = connection
        self._id = request_id
        self._status = 200
        self._parser = SSEParser()
        codec = connection.socket._client.codec
        assert codec is not None  # the gateway's endpoint formats all have one
        self._codec = codec
        self._decoder = codec.stream_decoder()
        self._error: bytes = b""
        self._model: str | None = None
        self._finish: str | None = None
        self._usage: dict[str, int] | None = None
        self._failed: StreamError | None = None
        self._done = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._status = message["status"]
            return
        if message["type"] != "http.response.body":
            return
        chunk: bytes = message.get("body", b"")
        if self._status >= 400:
            self._error += chunk
            return
        for event in self._parser.feed(chunk):
            for item in self._decoder.feed_text(event.event, event.data):
                await self._event(item)

    async def _event(self, item: object) -> None:
        if isinstance(item, MessageStart):
            self._model = item.model
        elif isinstance(item, TextDelta) and item.text:
            await self._connection.send(
                {"type": "inference_response", "id": self._id, "data": {"content": item.text}}
            )
        elif isinstance(item, Finish):
            self._finish = item.reason.value
        elif isinstance(item, UsageReport):
            usage = item.usage
            prompt, completion = usage.input_tokens or 0, usage.output_tokens or 0
            self._usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        elif isinstance(item, StreamError):
            self._failed = item

    async def end(self, report: Report | None) -> None:
        """The request's last frame: its finish, or its error."""
        connection = self._connection
        if self._status >= 400:
            try:
                parsed = loads(self._error) if self._error else None
            except ValueError:
                parsed = None
            failure = self._codec.decode_error(self._status, parsed)
            upstream = report is not None and report.outcome.upstream_status is not None
            await connection.error(
                self._id, self._status, failure.message, error_type(self._status, upstream)
            )
            return
        if self._failed is None and self._finish is None:
            for item in self._decoder.end():
                await self._event(item)
        if self._failed is not None or (report is not None and report.outcome.abort is not None):
            message = (
                self._failed.message
                if self._failed is not None
                else "The provider's stream failed before it finished."
            )
            await connection.error(self._id, 502, message, "upstream")
            return
        data: dict[str, Any] = {
            "finish_reason": self._finish,
            "usage": self._usage,
            "model": self._model,
            "created": int(time.time()),
        }
        await connection.send({"type": "inference_response", "id": self._id, "data": data})


def receive_once(body: bytes) -> Receive:
    """The request's ``receive``: its body, then nothing (a cancel ends the request)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    return receive


def http_scope(scope: Scope, length: int, endpoint: str, socket_path: str = "/ws") -> Scope:
    """The socket's handshake as a ``POST`` of the gateway's ``endpoint`` (its
    credentials and client kept); ``socket_path``: the socket's path below the mount."""
    path: str = scope["path"]
    prefix = path.rstrip("/").removesuffix(socket_path)
    headers = [
        (name, value)
        for name, value in scope["headers"]
        if not name.startswith(_HANDSHAKE_PREFIX)
        and name not in (b"upgrade", b"connection", b"content-length", b"content-type")
    ]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "ws"), "http")
    return {
        **scope,
        "type": "http",
        "http_version": scope.get("http_version", "1.1"),
        "method": "POST",
        "scheme": scheme,
        "path": prefix + endpoint,
        "raw_path": (prefix + endpoint).encode("utf-8"),
        "headers": headers,
    }


def with_subprotocol_key(scope: Scope) -> Scope:
    """``scope`` with a key sent as a subprotocol (browsers cannot set headers) as a header."""
    for protocol in scope.get("subprotocols") or ():
        for prefix in KEY_SUBPROTOCOLS:
            if protocol.startswith(prefix) and len(protocol) > len(prefix):
                key = protocol[len(prefix) :].encode("latin-1")
                return dict(
                    scope, headers=[*scope["headers"], (b"authorization", b"Bearer " + key)]
                )
    return scope


def protocol_offered(scope: Scope) -> str | None:
    """The subprotocol to accept: a browser that sent its key in one must get one back."""
    for protocol in scope.get("subprotocols") or ():
        if not protocol.startswith(KEY_SUBPROTOCOLS):
            return str(protocol)
    return None


async def _send_close(client: ClientSocket, code: int, reason: str) -> None:
    """The protocol's ``close`` frame, then the socket's close with the same code."""
    await client.send(dumps({"type": "close", "reason": reason, "code": code}).decode("utf-8"))
    await client.close(code, reason)
