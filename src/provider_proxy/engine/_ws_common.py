"""What every WebSocket of the proxy shares: limits, close codes, counting and refusals.

Close codes are RFC 6455's (§7.4.1) and IANA's registry: the proxy closes
with 1001 when a socket was idle or lived too long, 1008 for a policy refusal,
1009 for a message over the size limit, 1011 when the provider failed,
1013 when the proxy is at its socket limits, 1014 when the provider could not
be reached.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .._exceptions import ProxyError
from ..dialects import Dialect
from ..types import Receive, Scope, Send
from ._heads import send_error

logger = logging.getLogger("provider_proxy")

NORMAL = 1000
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
BAD_GATEWAY = 1014

#: Codes that never travel in a close frame (RFC 6455 §7.4.1): "none", "abnormal", "TLS".
_RESERVED = frozenset({1004, 1005, 1006, 1015})

#: The ASGI extension that lets an app answer a WebSocket handshake with HTTP.
WS_HTTP_RESPONSE = "websocket.http.response"

#: The longest close reason a frame can carry, in bytes (125 less the code's 2).
_MAX_REASON = 123

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_MAX_LIFETIME = 3600.0
DEFAULT_MAX_SOCKETS = 1000
DEFAULT_MAX_SOCKETS_PER_CLIENT = 20


@dataclass(frozen=True, slots=True)
class SocketLimits:
    """The limits of relayed provider sockets (``make_asgi_app(ws_...=)``).

    :param max_frame_bytes: the largest message either side may send (closed with 1009).
    :param idle_timeout: seconds without a message either way before the socket
        is closed (1001); ``None``: never.
    :param max_lifetime: seconds a socket may stay open (1001); ``None``: no limit.
    :param max_sockets: relayed sockets open at once over all clients (1013 beyond).
    :param max_sockets_per_client: open at once per client identity, or IP without
        client auth (1013 beyond).
    """

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    max_lifetime: float | None = DEFAULT_MAX_LIFETIME
    max_sockets: int = DEFAULT_MAX_SOCKETS
    max_sockets_per_client: int = DEFAULT_MAX_SOCKETS_PER_CLIENT

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 1 or self.max_sockets < 1 or self.max_sockets_per_client < 1:
            raise ValueError("ws_max_frame_bytes and the socket counts must be 1 or more.")
        for name in ("idle_timeout", "max_lifetime"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"ws_{name} must be a number of seconds above 0, or None.")


class SocketPeer(Protocol):
    """The far side of a relayed socket: a provider's socket
    (:class:`~provider_proxy.transports._websocket.UpstreamSocket`), or one the
    proxy answers itself, turn by turn, over HTTP (a gateway socket)."""

    #: The subprotocol to accept the client's socket with.
    subprotocol: str | None

    async def recv(self) -> str | bytes:
        """The next message; raises ``SocketClosed`` when the session is over."""
        ...

    async def send(self, message: str | bytes) -> None:
        """Deliver one of the client's messages."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """End the session (the client closed, or a limit did)."""
        ...


class SocketCount:
    """Open sockets, over all and per client; one per kind of socket per app."""

    def __init__(self, total: int, per_client: int | None) -> None:
        self._total = total
        self._per_client = per_client
        self._open: Counter[str] = Counter()
        self.open = 0

    def take(self, client: str) -> str | None:
        """Count a new socket of ``client``; the refusal's reason when at a limit."""
        if self.open >= self._total:
            return f"The proxy has {self._total} sockets open, its limit; retry later."
        if self._per_client is not None and self._open[client] >= self._per_client:
            return f"This client has {self._per_client} sockets open, its limit."
        self.open += 1
        self._open[client] += 1
        return None

    def give(self, client: str) -> None:
        self.open -= 1
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


@functools.lru_cache(maxsize=32)
def hint_finder(hints: tuple[str, ...]) -> Callable[[str], bool]:
    """A test of whether a frame's text holds any of ``hints``, in one scan of it.

    Every relayed text frame is tested, both ways: one regular expression over
    a 1 KB frame takes about half the time that testing each hint in turn does
    (five scans of the frame for the Realtime format's hints).
    """
    if len(hints) == 1:
        (hint,) = hints
        return lambda text: hint in text
    search = re.compile("|".join(map(re.escape, hints))).search
    return lambda text: search(text) is not None


def close_code(code: int | None) -> int:
    """A code that may be sent in a close frame: reserved ones become 1011."""
    if code is None:
        return NORMAL
    if code in _RESERVED or not (1000 <= code <= 4999):
        return INTERNAL_ERROR
    return code


def close_reason(reason: str) -> str:
    """``reason`` cut to what one close frame holds (UTF-8 bytes, whole characters)."""
    data = reason.encode("utf-8")
    if len(data) <= _MAX_REASON:
        return reason
    return data[:_MAX_REASON].decode("utf-8", "ignore")


def status_close_code(status: int) -> int:
    """The close code for a refusal that could not be answered as HTTP ``status``."""
    if status in (429, 503):
        return TRY_AGAIN_LATER
    if status in (502, 504):
        return BAD_GATEWAY
    if status >= 500:
        return INTERNAL_ERROR
    return POLICY_VIOLATION


class ClientSocket:
    """The client's side of a socket: ASGI messages, sends that never raise once it left."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self._send = send
        self.accepted = False
        self.closed = False
        #: The close code the socket ended with (sent by either side).
        self.code: int | None = None
        self.frames = 0
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def http_response(self) -> bool:
        """Whether the server can answer the handshake with an HTTP response."""
        return WS_HTTP_RESPONSE in (self.scope.get("extensions") or {})

    async def accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> bool:
        """Accept the handshake; ``False`` when the client went away meanwhile."""
        message: dict[str, Any] = {"type": "websocket.accept", "headers": headers}
        if subprotocol is not None:
            message["subprotocol"] = subprotocol
        try:
            await self._send(message)
        except Exception:  # gone during the upstream handshake
            self.closed = True
            return False
        self.accepted = True
        return True

    async def send(self, data: str | bytes) -> bool:
        """Send one message; ``False`` when the client is gone."""
        if self.closed:
            return False
        message = (
            {"type": "websocket.send", "text": data}
            if isinstance(data, str)
            else {"type": "websocket.send", "bytes": data}
        )
        try:
            await self._send(message)
        except Exception:  # the client went away: its disconnect ends the session
            self.closed = True
            return False
        self.frames += 1
        self.bytes_out += len(data)
        return True

    async def close(self, code: int, reason: str = "") -> None:
        """Close (once), with ``code`` and ``reason`` as a close frame can carry them."""
        if self.closed:
            return
        self.closed = True
        self.code = close_code(code)
        try:
            await self._send(
                {"type": "websocket.close", "code": self.code, "reason": close_reason(reason)}
            )
        except Exception:
            logger.debug("the client socket was gone before its close", exc_info=True)

    async def refuse(self, dialect: Dialect, error: ProxyError, request_id: str) -> int:
        """Refuse the handshake: as HTTP in ``dialect``'s format where the server can,
        else accept and close with the error's close code and its message."""
        if not self.accepted and self.http_response:
            self.closed = True
            self.code = None
            return await send_error(
                self._send, dialect, error, request_id, message=WS_HTTP_RESPONSE
            )
        if not self.accepted:
            await self.accept(None, [])
        await self.close(status_close_code(error.status_code), error.message)
        return 0

    async def refuse_with(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, reason: str
    ) -> None:
        """Refuse the handshake with a given HTTP answer (a provider's), where possible."""
        if not self.accepted and self.http_response:
            self.closed = True
            try:
                await self._send(
                    {"type": "websocket.http.response.start", "status": status, "headers": headers}
                )
                await self._send({"type": "websocket.http.response.body", "body": body})
            except Exception:
                logger.debug("the client left before the refusal", exc_info=True)
            return
        if not self.accepted:
            await self.accept(None, [])
        await self.close(status_close_code(status), reason)
