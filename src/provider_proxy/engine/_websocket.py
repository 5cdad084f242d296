"""Provider sockets relayed: ``ws(s)://{host}{mount}/{adapter}/{path}`` to the provider's.

A socket is relayed when the adapter opens one at the path
(:meth:`~provider_proxy.ProviderAdapter.opens_socket`); any other is refused
as before (426). The handshake is checked as an HTTP request is (provider configured,
path confined, client identified by the guards, from a header, ``?key=`` or
the key subprotocol of the path's format) and the provider's socket opened
with the adapter's credentials; a provider that refuses gives the client its
status and body. Then messages go both ways as they come, text and binary,
unparsed, except those the format's :attr:`~provider_proxy.dialects.Dialect.socket_hints`
name: a turn's start (the client's request for an answer) passes the guards
and the transforms, its end (the provider's last event of the answer) gives its usage and one
:class:`~provider_proxy.ProxyEvent`. The socket ends in an event of its own.

The session (the two pumps, the turns, the limits) talks to a
:class:`~provider_proxy.engine._ws_common.SocketPeer`, so a socket the proxy
answers itself (turns run over HTTP through the gateway, their events sent
back as frames) is relayed by the same code as a provider's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import anyio

from .._adapter import JSON, RequestContext, Usage
from .._exceptions import (
    ProviderNotConfigured,
    ProxyError,
    UpstreamUnreachable,
    WebSocketNotRelayed,
)
from .._json import dumps, loads
from ..adapters import Provider, ProviderAdapter
from ..dialects import KEY_PARAMS, KEY_SUBPROTOCOLS, PRIVATE_HEADERS, Dialect
from ..guards import Admission, Guards
from ..guards._guards import client_ip
from ..observe import ProxyEvent
from ..policy import (
    REQUEST_ID,
    apply_headers,
    confine,
    param_value,
    query_without,
    request_headers_for_upstream,
    request_id_from,
    response_headers_for_client,
    upstream_url,
)
from ..transforms._compose import run_transform
from ..transports._websocket import (
    SocketClosed,
    SocketOptions,
    SocketRefused,
    SocketUnreachable,
    open_socket,
)
from ..types import Receive, Scope, Send
from ._drain import Drain
from ._forward import Forwarder
from ._report import Arrival
from ._ws_common import (
    GOING_AWAY,
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    NORMAL,
    POLICY_VIOLATION,
    TRY_AGAIN_LATER,
    ClientSocket,
    SocketCount,
    SocketLimits,
    SocketPeer,
    close_code,
    hint_finder,
    status_close_code,
)

logger = logging.getLogger("provider_proxy")

#: The client's handshake headers: the upstream handshake sets its own.
_HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)


class SocketRelay:
    """Relays provider sockets for a :class:`~provider_proxy.ProxyApp`; one per app.

    :param limits: frame size, idle and lifetime limits, socket counts.
    :param guards: the app's guards, for the handshake and each turn.
    :param forwarder: the app's forwarder, whose transforms each turn's request passes.
    :param emit: hands an event to the app's sinks.
    """

    def __init__(
        self,
        *,
        limits: SocketLimits,
        guards: Guards | None,
        forwarder: Forwarder,
        emit: Callable[[ProxyEvent], None],
    ) -> None:
        self.limits = limits
        self._guards = guards
        self._forwarder = forwarder
        self._emit = emit
        self.count = SocketCount(limits.max_sockets, limits.max_sockets_per_client)
        self._options = SocketOptions(max_message_bytes=limits.max_frame_bytes)
        #: The app's drain, which closes open sockets with 1001 at its timeout.
        self.drain: Drain | None = None

    def relays(self, provider: Provider, rest: bytes) -> bool:
        """Whether ``rest`` (below the provider's name) is a socket this relay opens."""
        try:
            path = confine(rest).decode("ascii")
        except ProxyError:
            return True  # refused by handle() with the path's error
        return provider.serving().opens_socket(path)

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, provider: Provider, rest: bytes
    ) -> None:
        """Relay one socket (its ``websocket.connect`` already received) to its end."""
        arrival = Arrival(_request_id(scope), "GET")
        client = ClientSocket(scope, receive, send)
        adapter = provider.serving()
        path = rest.decode("ascii", "replace")
        session = _Session(self, client, provider.name, arrival)
        session.adapter = adapter
        dialect: Dialect = adapter.dialect_for(path.partition("?")[0])
        counted: str | None = None
        upstream: SocketPeer | None = None
        try:
            try:
                availability = provider.availability()
                if not availability.enabled:
                    raise ProviderNotConfigured(
                        f"The provider {provider.name!r} is not configured: {availability.reason}"
                    )
                path = confine(rest).decode("ascii")
                session.path = path
                dialect = adapter.dialect_for(path)
                session.dialect = dialect
                if not adapter.opens_socket(path):  # pragma: no cover - the app checks
                    raise WebSocketNotRelayed("The proxy does not relay a WebSocket here.")
                identity = await self._identify(scope)
                session.identity = identity
                who = identity if identity is not None else client_ip(scope, [])
                reason = self.count.take(who)
                if reason is not None:
                    await client.accept(None, [])
                    await client.close(TRY_AGAIN_LATER, reason)
                    session.status = 429
                    return
                counted = who
                query = query_without(scope.get("query_string", b""), KEY_PARAMS)
                query = query_without(query, dialect.credential_params)
                session.model = param_value(query, ("model",))
                context = RequestContext(
                    provider.name,
                    "GET",
                    path,
                    query,
                    scope["headers"],
                    arrival.request_id,
                    identity=identity,
                    path_model=dialect.model_in_path(path),
                    dialect=dialect.name,
                )
                if session.model is not None:  # the handshake's model, as a turn's would be
                    context = await self._handshake_model(session, context)
                session.context = context
                try:
                    upstream = await self._open(adapter, dialect, context, scope)
                except (ProxyError, SocketRefused, SocketUnreachable):
                    raise
                except Exception as exc:
                    # A bug or misconfiguration in adapter code: a clear 500, with the
                    # details in the log rather than in the answer.
                    logger.exception(
                        "could not open the %s socket %s", provider.name, arrival.request_id
                    )
                    raise ProxyError(
                        f"The proxy could not open the socket to {provider.name!r} "
                        f"({type(exc).__name__}); its log has the details under request id "
                        f"{arrival.request_id}."
                    ) from exc
            except SocketRefused as refused:
                session.status = refused.status
                session.upstream_status = refused.status
                await client.refuse_with(
                    refused.status,
                    response_headers_for_client(refused.headers),
                    refused.body,
                    f"The provider refused the socket (HTTP {refused.status}).",
                )
                return
            except SocketUnreachable as failed:
                error = UpstreamUnreachable(str(failed))
                session.status, session.error_kind = error.status_code, error.kind
                await client.refuse(dialect, error, arrival.request_id)
                return
            except ProxyError as error:
                session.status, session.error_kind = error.status_code, error.kind
                session.response_bytes = await client.refuse(dialect, error, arrival.request_id)
                return
            session.status = session.upstream_status = 101
            accepted = await client.accept(
                upstream.subprotocol, [(REQUEST_ID, arrival.request_id.encode("ascii"))]
            )
            if not accepted:
                session.status, session.error_kind = 499, "client_disconnected"
                return
            drain = self.drain
            with (
                contextlib.nullcontext() if drain is None else drain.socket(session.going_away.set)
            ):
                await session.run(upstream)
        finally:
            with anyio.CancelScope(shield=True):
                if upstream is not None:
                    await upstream.close(close_code(client.code), "")
                await session.end_turns()
            if counted is not None:
                self.count.give(counted)
            self._emit(session.event())

    async def _identify(self, scope: Scope) -> str | None:
        """The client's identity from its handshake, the key subprotocol included."""
        if self._guards is None:
            return None
        key = _subprotocol_key(scope)
        if key is not None:
            headers = [*scope["headers"], (b"authorization", b"Bearer " + key.encode("latin-1"))]
            scope = dict(scope, headers=headers)
        return await self._guards.identify(scope)

    async def _open(
        self, adapter: ProviderAdapter, dialect: Dialect, context: RequestContext, scope: Scope
    ) -> SocketPeer:
        """The provider's socket, opened with the adapter's credentials."""
        auth = adapter.auth_headers(context)
        if inspect.isawaitable(auth):
            auth = await auth
        url = adapter.rewrite_url(
            upstream_url(adapter.base_url, context.path.encode("ascii"), context.query), context
        )
        auth, url = adapter.socket_auth(auth, url)
        private = PRIVATE_HEADERS | dialect.credential_headers | dialect.account_headers
        policy = adapter.header_policy.never_forwarding(private)
        headers = request_headers_for_upstream(scope["headers"], policy, also_drop=_HANDSHAKE)
        apply_headers(headers, {**adapter.headers, **auth}, adapter.default_headers)
        headers.append((REQUEST_ID, context.request_id.encode("ascii")))
        offered = [p for p in scope.get("subprotocols") or () if not p.startswith(KEY_SUBPROTOCOLS)]
        return await open_socket(
            url,
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers],
            offered,
            self._options,
        )

    async def admit_turn(self, session: _Session, payload: JSON, size: int) -> Admission | None:
        """A turn's request through the guards; raises the refusal."""
        if self._guards is None:
            return None
        return await self._guards.admit(
            session.client.scope,
            provider=session.provider,
            model=session.model_of(payload),
            request_bytes=size,
            identity=session.identity,
        )

    async def _handshake_model(self, session: _Session, context: RequestContext) -> RequestContext:
        """The context after the transforms had their say on the handshake's ``?model=``
        (an allowlist refuses it; an alias renames it in the upstream's query)."""
        session.context, session_model = context, session.model
        changed = await self.transformed(session, {"model": session_model})
        model = changed.get("model") if isinstance(changed, dict) else None
        if not isinstance(model, str) or model == session_model:
            return context
        session.model = model
        query = query_without(context.query, ("model",))
        query += (b"&" if query else b"") + b"model=" + quote(model).encode("ascii")
        return dataclasses.replace(context, query=query)

    async def transformed(self, session: _Session, payload: dict[str, Any]) -> JSON | None:
        """A turn's request after the transforms that apply to it (``None``: unchanged)."""
        context, adapter = session.context, session.adapter
        if context is None or adapter is None:
            return None
        # A turn is transformed as a POST of its request to the socket's path would be
        # (a turn's request is that endpoint's body), with the forwarder's choice of
        # transforms.
        context = dataclasses.replace(context, method="POST")
        transform = self._forwarder._transform_for(adapter, context)
        if transform is None:
            return None
        return await run_transform(transform, payload, context)


@dataclasses.dataclass
class _Turn:
    """One billed turn on a socket, from the client's request to the answer's end."""

    started: float
    started_at: float
    model: str | None
    admission: Admission | None
    #: The size of the turn's request message.
    request_bytes: int = 0


class _Session:
    """One relayed socket: the two pumps, the turns in flight, the facts for its events."""

    def __init__(self, relay: SocketRelay, client: ClientSocket, provider: str, arrival: Arrival):
        self.relay = relay
        self.client = client
        self.provider = provider
        self.arrival = arrival
        self.path = ""
        self.adapter: ProviderAdapter | None = None
        self.dialect: Dialect | None = None
        self.context: RequestContext | None = None
        self.identity: str | None = None
        self.model: str | None = None
        self.status = 101
        self.upstream_status: int | None = None
        self.error_kind: str | None = None
        self.response_bytes = 0
        self.turns: deque[_Turn] = deque()
        #: Whether this session admits and reports turns; a peer that serves its
        #: turns through the gateway does both itself.
        self.counts_turns = True
        self._last = time.monotonic()
        #: Set when the proxy shuts down: the socket is closed with 1001.
        self.going_away = anyio.Event()

    def model_of(self, payload: JSON) -> str | None:
        """The model a turn's message names, else the one the socket was opened for."""
        found = self.dialect.model_of(payload) if self.dialect is not None else None
        return found or self.model

    async def run(self, upstream: SocketPeer) -> None:
        """Relay until either side closes, or a limit ends the socket."""
        async with anyio.create_task_group() as group:

            async def client_then_stop() -> None:
                await self._from_client(upstream)
                group.cancel_scope.cancel()

            async def upstream_then_stop() -> None:
                await self._from_upstream(upstream)
                group.cancel_scope.cancel()

            async def watch_then_stop() -> None:
                await self._watch()
                group.cancel_scope.cancel()

            async def away_then_stop() -> None:
                await self.going_away.wait()
                await self._close_both(GOING_AWAY, "The proxy is shutting down.", upstream)
                group.cancel_scope.cancel()

            group.start_soon(client_then_stop)
            group.start_soon(upstream_then_stop)
            group.start_soon(watch_then_stop)
            group.start_soon(away_then_stop)

    def _hint_finder(self) -> Callable[[str], bool] | None:
        """The test for frames that may start or end a turn; ``None``: no frame does."""
        if self.dialect is None or not self.counts_turns or not self.dialect.socket_hints:
            return None
        return hint_finder(tuple(self.dialect.socket_hints))

    async def _from_client(self, upstream: SocketPeer) -> None:
        client, limit = self.client, self.relay.limits.max_frame_bytes
        names_hint = self._hint_finder()
        while True:
            message = await client.receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                client.closed = True
                client.code = message.get("code", NORMAL)
                await upstream.close(close_code(client.code), message.get("reason") or "")
                return
            if kind != "websocket.receive":
                continue
            text: str | None = message.get("text")
            data: str | bytes = text if text is not None else message.get("bytes") or b""
            self._last = time.monotonic()
            if len(data) > limit:
                await self._close_both(
                    MESSAGE_TOO_BIG, f"A message was over the limit of {limit} bytes.", upstream
                )
                return
            client.frames += 1
            client.bytes_in += len(data)
            if text is not None and names_hint is not None and names_hint(text):
                forwarded = await self._turn_start(text)
                if forwarded is None:
                    continue  # refused: the client was told
                data = forwarded
            try:
                await upstream.send(data)
            except SocketClosed:
                return  # the upstream pump reports the close

    async def _turn_start(self, text: str) -> str | None:
        """A client message that may start a turn: admitted and transformed, or refused."""
        assert self.dialect is not None
        try:
            payload = loads(text)
        except ValueError:
            return text  # not JSON: the provider answers it
        if self.dialect.socket_turn(payload) != "start":
            return text
        started, started_at = time.perf_counter(), time.time()
        model = self.model_of(payload)
        admission: Admission | None = None
        try:
            if isinstance(payload, dict):
                changed = await self.relay.transformed(self, payload)
                if changed is not None:
                    payload = changed
                    text = dumps(payload).decode("utf-8")
                    model = self.model_of(payload)
            size = len(text.encode("utf-8"))
            admission = await self.relay.admit_turn(self, payload, size)
        except ProxyError as error:
            size = len(text.encode("utf-8"))
            self._emit_turn(_Turn(started, started_at, model, None, size), None, error)
            message = self.dialect.socket_error(error)
            if message is None:
                await self.client.close(POLICY_VIOLATION, error.message)
            else:
                await self.client.send(message)
            return None
        self.turns.append(_Turn(started, started_at, model, admission, size))
        return text

    async def _from_upstream(self, upstream: SocketPeer) -> None:
        client = self.client
        names_hint = self._hint_finder()
        while True:
            try:
                data = await upstream.recv()
            except SocketClosed as closed:
                if closed.code in (1005, 1006):
                    await client.close(
                        INTERNAL_ERROR, "The provider's socket closed without a close frame."
                    )
                else:
                    await client.close(closed.code, closed.reason)
                return
            self._last = time.monotonic()
            refused: ProxyError | None = None
            if isinstance(data, str) and names_hint is not None and names_hint(data):
                refused = await self._turn_end(data)
            if not await client.send(data):
                return
            if refused is not None:  # over its limits: no more turns on this socket
                await self._close_both(
                    status_close_code(refused.status_code), refused.message, upstream
                )
                return

    async def _turn_end(self, text: str) -> ProxyError | None:
        """A provider message that may end a turn: its usage charged and its event sent.

        A turn the provider started on its own (voice activity, with no request
        the guards saw) is admitted now: counted and charged, and a client over
        its limits gets the refusal, which ends the socket.
        """
        assert self.dialect is not None
        try:
            payload = loads(text)
        except ValueError:
            return None
        if self.dialect.socket_turn(payload) != "end":
            return None
        usage = self.dialect.usage_of(payload)
        model = self.dialect.model_of(payload)
        refused: ProxyError | None = None
        if self.turns:
            turn = self.turns.popleft()
        else:
            turn = _Turn(time.perf_counter(), time.time(), model or self.model, None)
            try:
                turn.admission = await self.relay.admit_turn(self, payload, 0)
            except ProxyError as error:
                refused = error
        turn.model = model or turn.model or self.model
        if turn.admission is not None:
            await turn.admission.finish(usage, turn.request_bytes)
        self._emit_turn(turn, usage, refused)
        return refused

    async def _watch(self) -> None:
        """Close the socket when it was idle, or open, for too long."""
        limits = self.relay.limits
        opened = time.monotonic()
        while True:
            now = time.monotonic()
            deadlines: list[tuple[float, str]] = []
            if limits.idle_timeout is not None:
                deadlines.append(
                    (self._last + limits.idle_timeout, f"Idle for {limits.idle_timeout:g} s.")
                )
            if limits.max_lifetime is not None:
                deadlines.append(
                    (
                        opened + limits.max_lifetime,
                        f"Open for {limits.max_lifetime:g} s, the proxy's limit.",
                    )
                )
            if not deadlines:
                await anyio.sleep_forever()
            moment, reason = min(deadlines)
            if moment <= now:
                await self.client.close(GOING_AWAY, reason)
                return
            await anyio.sleep(moment - now)

    async def _close_both(self, code: int, reason: str, upstream: SocketPeer) -> None:
        await self.client.close(code, reason)
        await upstream.close(code, reason)

    async def end_turns(self) -> None:
        """Settle turns the provider never finished (the socket closed first)."""
        while self.turns:
            turn = self.turns.popleft()
            if turn.admission is not None:
                await turn.admission.finish(None, turn.request_bytes)

    def _emit_turn(self, turn: _Turn, usage: Usage | None, error: ProxyError | None) -> None:
        now = time.perf_counter()
        self.relay._emit(
            ProxyEvent(
                request_id=self.arrival.request_id,
                provider=self.provider,
                method="GET",
                path=self.path,
                model=turn.model,
                identity=self.identity,
                status=200 if error is None else error.status_code,
                upstream_status=None if error is not None else 200,
                error_kind=None if error is None else error.kind,
                streamed=True,
                started_at=turn.started_at,
                time_to_headers=None,
                time_to_first_byte=None,
                duration=now - turn.started,
                overhead=0.0,
                request_bytes=turn.request_bytes,
                response_bytes=0,
                usage=usage,
                dialect=self.dialect.name if self.dialect is not None else None,
                websocket="turn",
            )
        )

    def event(self) -> ProxyEvent:
        """The socket's own event, at its end."""
        now = time.perf_counter()
        client = self.client
        return ProxyEvent(
            request_id=self.arrival.request_id,
            provider=self.provider,
            method="GET",
            path=self.path,
            model=self.model,
            identity=self.identity,
            status=self.status,
            upstream_status=self.upstream_status,
            error_kind=self.error_kind,
            streamed=self.status == 101,
            started_at=self.arrival.started_at,
            time_to_headers=None,
            time_to_first_byte=None,
            duration=now - self.arrival.start,
            overhead=0.0,
            request_bytes=client.bytes_in,
            response_bytes=client.bytes_out or self.response_bytes,
            usage=None,  # the turns' events carry it: counted once, by sinks and metrics
            dialect=self.dialect.name if self.dialect is not None else None,
            websocket="connection",
            frames=client.frames,
            close_code=client.code,
        )


def _subprotocol_key(scope: Scope) -> str | None:
    for protocol in scope.get("subprotocols") or ():
        for prefix in KEY_SUBPROTOCOLS:
            if protocol.startswith(prefix) and len(protocol) > len(prefix):
                return str(protocol[len(prefix) :])
    return None


def _request_id(scope: Scope) -> str:
    return request_id_from(scope["headers"])
