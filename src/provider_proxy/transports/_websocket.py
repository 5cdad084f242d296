"""The upstream WebSocket: one connection to a provider's socket.

Built on the ``websockets`` library (its asyncio client): maintained, the
client the providers' own SDKs use for their sockets, the one uvicorn serves
sockets with, and it reports a refused handshake with the status, headers and
body the provider answered (see the design doc for the choice).
Frames are handed over as the library delivers them (text as ``str``, binary
as ``bytes``); nothing here parses them.

Failures are three exceptions, each carrying only what is safe to show:

.. code-block:: text

   SocketError
    ├── SocketRefused      the provider answered the handshake with an HTTP status
    ├── SocketUnreachable  no connection, or no handshake in time
    └── SocketClosed       the provider closed the session (its code and reason)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection
    from websockets.exceptions import ConnectionClosed

logger = logging.getLogger("provider_proxy")
#: The websockets library's log of upstream sockets: under ``provider_proxy``, so the
#: app's filter scrubs keys from it (a URL it logs may carry one in its query).
_library_logger = logging.getLogger("provider_proxy.websockets")

#: The longest a provider may take to accept a socket.
DEFAULT_OPEN_TIMEOUT = 10.0
#: Keepalive pings to the provider, and how long its pong may take.
PING_INTERVAL = 20.0


class SocketError(Exception):
    """The upstream socket failed; ``str()`` never quotes the provider's bytes."""


class SocketRefused(SocketError):
    """The provider refused the handshake with ``status`` (its headers and body kept)."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__(f"The provider refused the WebSocket with HTTP {status}.")
        self.status = status
        self.headers = headers
        self.body = body


class SocketUnreachable(SocketError):
    """No socket: the connection or the handshake failed (``reason`` is a fixed text)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"Could not open a WebSocket to {host} ({reason}).")


class SocketClosed(SocketError):
    """The provider closed the session; ``code`` is ``1006`` when it just went away."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"The provider closed the WebSocket ({code}).")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SocketOptions:
    """How upstream sockets are opened: message size cap and handshake timeout."""

    max_message_bytes: int | None = 16 * 1024 * 1024
    open_timeout: float = DEFAULT_OPEN_TIMEOUT


class UpstreamSocket:
    """An open socket to a provider; use :func:`open_socket` to make one."""

    __slots__ = ("_connection", "_ended", "subprotocol")

    def __init__(self, connection: ClientConnection, subprotocol: str | None) -> None:
        from websockets.exceptions import ConnectionClosed

        self._connection = connection
        #: The library's end-of-session exception, looked up once rather than per
        #: frame (its package resolves names lazily, at a cost on every import).
        self._ended = ConnectionClosed
        #: The subprotocol the provider chose, for the client's handshake.
        self.subprotocol = subprotocol

    async def recv(self) -> str | bytes:
        """The next message; raises :class:`SocketClosed` when the session is over."""
        try:
            return await self._connection.recv()
        except self._ended as closed:
            raise _closed(closed) from None

    async def send(self, message: str | bytes) -> None:
        """Send one message (``str``: a text frame, ``bytes``: a binary frame)."""
        try:
            await self._connection.send(message)
        except self._ended as closed:
            raise _closed(closed) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the session (at once if the provider does not answer the close)."""
        try:
            await self._connection.close(code, reason)
        except Exception:  # already gone: nothing is left to free
            logger.debug("the upstream socket was gone before its close", exc_info=True)


def _closed(closed: ConnectionClosed) -> SocketClosed:
    received = closed.rcvd
    if received is None:
        return SocketClosed(1006, "")
    return SocketClosed(int(received.code), str(received.reason))


def websocket_url(url: httpx.URL) -> str:
    """``url`` with ``ws``/``wss`` for ``http``/``https``."""
    scheme = {"http": "ws", "https": "wss"}.get(url.scheme, url.scheme)
    return str(url.copy_with(scheme=scheme))


async def open_socket(
    url: httpx.URL,
    headers: Sequence[tuple[str, str]],
    subprotocols: Sequence[str],
    options: SocketOptions,
) -> UpstreamSocket:
    """Open the provider's socket at ``url`` (``http(s)`` or ``ws(s)``).

    :raises SocketRefused: the provider answered the handshake with a status.
    :raises SocketUnreachable: no connection, or no answer in time.
    """
    try:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus
        from websockets.typing import Subprotocol
    except ImportError as exc:  # pragma: no cover - the websockets extra is missing
        raise RuntimeError(
            "Relaying WebSockets needs the websockets package: "
            "pip install 'provider-proxy[websockets]'."
        ) from exc
    host = url.host
    try:
        connection = await connect(
            websocket_url(url),
            additional_headers=list(headers),
            subprotocols=[Subprotocol(p) for p in subprotocols] or None,
            user_agent_header=None,
            proxy=None,
            open_timeout=options.open_timeout,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_INTERVAL,
            close_timeout=5,
            max_size=options.max_message_bytes,
            logger=_library_logger,
        )
    except InvalidStatus as refused:
        response = refused.response
        raw = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.raw_items()
        ]
        raise SocketRefused(response.status_code, raw, bytes(response.body or b"")) from None
    except TimeoutError:
        raise SocketUnreachable(host, "no handshake in time") from None
    except OSError as exc:
        logger.warning("could not open a WebSocket to %s: %s", host, exc)
        raise SocketUnreachable(host, "connection failed") from None
    except InvalidHandshake as exc:  # its text may quote the URL: only its kind is logged
        logger.warning("could not open a WebSocket to %s: %s", host, type(exc).__name__)
        raise SocketUnreachable(host, "invalid handshake") from None
    return UpstreamSocket(connection, connection.subprotocol)
