"""``ws(s)://{host}{mount}/v1/responses``: the Responses socket, on any model.

The socket speaks the Responses WebSocket protocol (an SDK's
``client.responses.connect()``, a coding agent's built-in provider): each
``response.create`` message is served as ``POST {mount}/v1/responses`` with
``"stream": true`` would be, through :meth:`Gateway.handle
<provider_proxy.engine._gateway.Gateway.handle>` (routing by model, translation,
kept ``previous_response_id`` state, guards, transforms, one event per turn),
and the answer's server-sent events go back as the socket's text messages.

Every provider is reached over HTTP, those with a Responses socket of their own
too: one path for every model keeps the gateway's routes, retries, key pools and
kept answers (``previous_response_id`` works within and across sockets, and
across providers), and a Responses stream's events are the socket's messages as
they are. The provider socket's own memory of an unstored answer is kept here
instead, per socket (:meth:`_GatewayPeer._kept_turn`).

The socket itself (the pumps, frame size, idle and lifetime limits, socket
counts, the connection's event) is the relay's session, with this module's
:class:`_GatewayPeer` as its far side.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._exceptions import ProxyError
from .._json import dumps, loads
from ..dialects import GATEWAY, Dialect
from ..dialects import _responses_socket as wire
from ..guards import Guards
from ..guards._guards import client_ip
from ..observe import SSEParser
from ..policy import REQUEST_ID, request_id_from
from ..transports._websocket import SocketClosed
from ..types import Message, Receive, Scope, Send
from ._gateway import Gateway
from ._report import Arrival, Outcome, Report
from ._websocket import SocketRelay, _Session
from ._ws_common import NORMAL, TRY_AGAIN_LATER, ClientSocket
from ._ws_inference import http_scope, protocol_offered, receive_once, with_subprotocol_key

logger = logging.getLogger("provider_proxy")

#: The socket's path below the mount, and the gateway endpoint each turn is served as.
SOCKET_PATH = "/v1/responses"

#: Turns kept per socket for later turns to continue (the oldest go first).
_MAX_KEPT = 32

#: ``response.create`` messages running or waiting on one socket at once.
_MAX_WAITING = 8

#: Messages waiting for a slow client before a turn's stream waits for it.
_BUFFERED = 64


class ResponsesSocket:
    """Serves ``{mount}/v1/responses`` sockets for a :class:`~provider_proxy.ProxyApp`.

    :param relay: the app's socket relay, whose limits and socket counts apply.
    :param finish: the app's bookkeeping of each turn's report (its event).
    """

    def __init__(
        self,
        gateway: Gateway,
        relay: SocketRelay,
        *,
        guards: Guards | None,
        finish: Callable[[Arrival, Report], None],
    ) -> None:
        self._gateway = gateway
        self._relay = relay
        self._guards = guards
        self._finish = finish
        client, operation = GATEWAY[SOCKET_PATH]
        self.client: Dialect = client
        self.operation = operation

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one socket (its ``websocket.connect`` already received) to its end.

        The handshake names no model (clients send one per turn): it is
        checked for the client's identity and the socket limits only.
        """
        arrival = Arrival(request_id_from(scope["headers"]), "GET")
        client = ClientSocket(scope, receive, send)
        scope = with_subprotocol_key(scope)
        session = _Session(self._relay, client, "", arrival)
        session.path = SOCKET_PATH
        session.dialect = self.client
        session.counts_turns = False  # each turn is the gateway's request, with its event
        counted: str | None = None
        try:
            try:
                identity = None if self._guards is None else await self._guards.identify(scope)
            except ProxyError as error:
                session.status, session.error_kind = error.status_code, error.kind
                session.response_bytes = await client.refuse(self.client, error, arrival.request_id)
                return
            session.identity = identity
            who = identity if identity is not None else client_ip(scope, [])
            reason = self._relay.count.take(who)
            if reason is not None:
                await client.accept(None, [])
                await client.close(TRY_AGAIN_LATER, reason)
                session.status = 429
                return
            counted = who
            accepted = await client.accept(
                protocol_offered(scope), [(REQUEST_ID, arrival.request_id.encode("ascii"))]
            )
            if not accepted:
                session.status, session.error_kind = 499, "client_disconnected"
                return
            async with anyio.create_task_group() as group:
                peer = _GatewayPeer(self, scope, group)
                try:
                    await session.run(peer)
                finally:
                    await peer.close()
                    peer.release()
        finally:
            if counted is not None:
                self._relay.count.give(counted)
            # The socket reaches no one provider: its turns' events name theirs.
            self._relay._emit(dataclasses.replace(session.event(), provider=None))


class _GatewayPeer:
    """The far side of a gateway socket: turns served by the gateway, one at a time,
    their events queued as the socket's messages."""

    subprotocol: str | None = None

    def __init__(self, socket: ResponsesSocket, scope: Scope, group: anyio.abc.TaskGroup):
        self._socket = socket
        self._scope = scope
        self._group = group
        sending: MemoryObjectSendStream[str]
        receiving: MemoryObjectReceiveStream[str]
        sending, receiving = anyio.create_memory_object_stream[str](_BUFFERED)
        self._out = sending
        self._in = receiving
        #: The turns running or waiting, in the order they came (``_order``).
        self._turns: set[anyio.CancelScope] = set()
        self._order = anyio.Lock()
        self._closed: tuple[int, str] | None = None
        #: What this socket keeps for later turns to continue by id (as the provider's
        #: socket does): requests prepared with ``generate: false``, and the last
        #: answer not stored (``store: false``), by their ids.
        self._kept: dict[Any, dict[str, Any]] = {}
        self._last_unstored: str | None = None

    async def recv(self) -> str | bytes:
        try:
            return await self._in.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            code, reason = self._closed or (NORMAL, "")
            raise SocketClosed(code, reason) from None

    async def send(self, message: str | bytes) -> None:
        """One of the client's messages: a ``response.create`` starts a turn."""
        if isinstance(message, bytes):
            await self.frame(wire.error_event(400, "Send events as JSON text messages."))
            return
        try:
            event = loads(message)
        except ValueError:
            await self.frame(wire.error_event(400, "The message is not valid JSON."))
            return
        if not isinstance(event, dict):
            await self.frame(wire.error_event(400, "An event must be a JSON object."))
            return
        kind = event.get("type")
        if kind != wire.CREATE:
            await self.frame(
                wire.error_event(
                    400,
                    f"Unsupported event type {kind!r}: this socket takes {wire.CREATE}.",
                    param="type",
                )
            )
            return
        if len(self._turns) >= _MAX_WAITING:
            await self.frame(
                wire.error_event(
                    409,
                    f"{_MAX_WAITING} responses are running or waiting on this socket; send "
                    "the next one after the last event of one of them.",
                    code="response_in_progress",
                    stream_id=event.get("stream_id"),
                )
            )
            return
        cancel = anyio.CancelScope()
        self._turns.add(cancel)
        self._group.start_soon(self._next, event, cancel)

    async def _next(self, event: dict[str, Any], cancel: anyio.CancelScope) -> None:
        """One ``response.create``, once the ones before it are over (their answers
        kept), so that it may continue the one just before it."""
        try:
            with cancel:
                async with self._order:
                    earlier = self._kept.get(event.get("previous_response_id"))
                    if earlier is not None:
                        event = wire.continued(event, earlier)
                    if event.get("generate") is False:
                        await self._prepare(event)
                    else:
                        await self._serve(event)
        finally:
            self._turns.discard(cancel)

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        """End the session: the running turn is cancelled (and its upstream closed)."""
        if self._closed is None:
            self._closed = (code, reason)
        for turn in self._turns:
            turn.cancel()
        self._out.close()

    def release(self) -> None:
        """Free the queue's reading end (the session has stopped reading)."""
        self._in.close()

    async def frame(self, text: str) -> None:
        """Queue one message for the client (dropped once the session is over)."""
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self._out.send(text)

    async def _prepare(self, event: dict[str, Any]) -> None:
        """``generate: false``: the request kept on this socket and answered without
        output, for a later turn to continue by its id; no provider is asked."""
        answer_id, frames = wire.prepared_events(event)
        self._keep(answer_id, event)
        for frame in frames:
            await self.frame(frame)
        model = event.get("model")
        report = Report(
            Outcome(200),
            path=SOCKET_PATH,
            model=model if isinstance(model, str) else None,
            client_dialect=self._socket.client.name,
            websocket="turn",
        )
        self._socket._finish(Arrival(request_id_from([]), "POST"), report)

    def _keep(self, answer_id: str, conversation: dict[str, Any]) -> None:
        if len(self._kept) >= _MAX_KEPT:
            del self._kept[next(iter(self._kept))]  # the oldest
        self._kept[answer_id] = conversation

    def _kept_turn(self, request: dict[str, Any], completed: str) -> None:
        """A finished turn the gateway did not keep (``store: false``): the socket
        keeps it, the last one only, for the next turn to continue by its id."""
        kept = wire.kept_turn(request, completed)
        if kept is None:
            return
        if self._last_unstored is not None:
            self._kept.pop(self._last_unstored, None)
        self._last_unstored = kept[0]
        self._keep(*kept)

    async def _serve(self, event: dict[str, Any]) -> None:
        socket = self._socket
        stream_id = event.get("stream_id")
        raw = dumps(wire.request_body(event))
        model = event.get("model")
        named = model if isinstance(model, str) else None
        arrival = Arrival(request_id_from([]), "POST")
        answer = _Answer(self, stream_id)
        if event.get("store") is False:
            answer.completed = lambda text: self._kept_turn(event, text)
        reported = False

        def finish(report: Report) -> None:
            nonlocal reported
            reported = True
            socket._finish(arrival, dataclasses.replace(report, websocket="turn"))

        try:
            scope = http_scope(self._scope, len(raw), SOCKET_PATH, SOCKET_PATH)
            try:
                report = await socket._gateway.handle(
                    scope,
                    receive_once(raw),
                    answer,
                    socket.client,
                    socket.operation,
                    arrival,
                )
            except ProxyError as error:
                outcome = Outcome.refused(error, 0, None)
                finish(
                    Report(
                        outcome,
                        path=SOCKET_PATH,
                        model=named,
                        client_dialect=socket.client.name,
                    )
                )
                await self.frame(
                    wire.error_event(
                        error.status_code, error.message, code=error.kind, stream_id=stream_id
                    )
                )
                return
            except Exception:
                logger.exception("a turn of the Responses socket failed")
                finish(Report(Outcome(500, error_kind="internal_error"), path=SOCKET_PATH))
                await self.frame(
                    wire.error_event(
                        500, "The proxy failed to serve the response.", stream_id=stream_id
                    )
                )
                return
            finish(report)
            await answer.end(report)
        finally:
            if not reported:  # the socket closed before the turn's answer ended
                outcome = Outcome.client_left()
                finish(
                    Report(
                        outcome, path=SOCKET_PATH, model=named, client_dialect=socket.client.name
                    )
                )


class _Answer:
    """A ``send`` for the gateway's answer: each server-sent event as a message."""

    def __init__(self, peer: _GatewayPeer, stream_id: Any) -> None:
        self._peer = peer
        self._stream_id = stream_id
        self._status = 200
        self._parser = SSEParser()
        self._error = b""
        self._ended = False
        #: Called with the ``response.completed`` event, when set.
        self.completed: Callable[[str], None] | None = None

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
            if not event.data or event.data == "[DONE]":
                continue
            kind, _ = wire.event_kind(event.event, event.data)
            if kind in wire.TERMINAL:
                self._ended = True
                if kind == wire.COMPLETED and self.completed is not None:
                    self.completed(event.data)
            data = event.data
            if self._stream_id is not None:
                data = wire.with_stream_id(data, self._stream_id)
            await self._peer.frame(data)

    async def end(self, report: Report) -> None:
        """After the answer: its error, or a failure the stream did not report itself."""
        if self._status >= 400:
            await self._peer.frame(wire.answer_error(self._status, self._error, self._stream_id))
        elif not self._ended:
            message = (
                "The provider's stream failed before it finished."
                if report.outcome.abort is not None
                else "The provider's stream ended without a final event."
            )
            await self._peer.frame(wire.error_event(502, message, stream_id=self._stream_id))
