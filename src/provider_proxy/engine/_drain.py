"""Graceful drain: on shutdown, refuse new requests, let open ones finish, then abort.

With ``make_asgi_app(..., drain_timeout=seconds)``, the first SIGTERM (or
SIGINT) the process gets while the app runs under a server in the main
thread (uvicorn, ``provider-proxy serve``) starts a drain instead of stopping
at once: ``/health`` answers 503 ``{"status": "draining"}`` so a load balancer
moves away, any other new request gets 503 with ``Retry-After`` in its
route's format, and open requests (streams) go on. When they are done, or
``drain_timeout`` seconds later, the ones left are aborted (each with its
event) and the signal is handed to the server's own handler, which stops it.
Open WebSockets (relayed provider sockets, ``{mount}/ws``) go on too; at the
timeout each is closed with 1001 ("going away"), ``{mount}/ws`` after its
``close`` frame, and ends with its event.
A second signal stops at once. A host that closes the app itself
(:meth:`~provider_proxy.ProxyApp.aclose`, its lifespan) drains the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import anyio

from .._exceptions import ProxyError
from ..types import Message, Send

logger = logging.getLogger("provider_proxy")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)

#: Seconds the aborted requests get to unwind before the server is told to stop.
_UNWIND = 1.0


class Draining(ProxyError):
    """The proxy is shutting down: another instance will answer (``Retry-After``)."""

    status_code = 503
    kind = "draining"
    retryable = True


class Tracked:
    """One request the drain watches: a ``send`` that notes what went out, and its scope."""

    __slots__ = ("_send", "response_bytes", "scope", "status", "streamed")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.scope = anyio.CancelScope()
        self.status: int | None = None
        self.response_bytes = 0
        self.streamed = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.streamed = any(
                k == b"content-type" and v.startswith(b"text/event-stream")
                for k, v in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            self.response_bytes += len(message.get("body", b""))
        await self._send(message)

    @property
    def aborted(self) -> bool:
        return self.scope.cancelled_caught


class _Socket:
    """One WebSocket the drain watches, by the way to close it."""

    __slots__ = ("going_away",)

    def __init__(self, going_away: Callable[[], None]) -> None:
        self.going_away = going_away


class Drain:
    """The app's drain state: whether it is draining, and the requests open now.

    :param timeout: seconds open requests get to finish once the drain began.
    """

    def __init__(self, timeout: float) -> None:
        if timeout < 0:
            raise ValueError("drain_timeout is a number of seconds (0 or more).")
        self.timeout = timeout
        self.draining = False
        self._open: set[Tracked] = set()
        self._sockets: set[_Socket] = set()
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, Any] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def open(self) -> int:
        return len(self._open) + len(self._sockets)

    @contextlib.contextmanager
    def socket(self, going_away: Callable[[], None]) -> Iterator[None]:
        """Watch one open WebSocket for the length of the block; at the drain's
        timeout ``going_away`` is called, to close it with 1001."""
        entry = _Socket(going_away)
        self._sockets.add(entry)
        try:
            yield
        finally:
            self._sockets.discard(entry)
            self._settle()

    def _settle(self) -> None:
        if not self._open and not self._sockets and self._idle is not None:
            self._idle.set()

    @contextlib.contextmanager
    def track(self, send: Send) -> Iterator[Tracked]:
        """Watch one request for the length of the block; a drain may cancel it."""
        tracked = Tracked(send)
        self._open.add(tracked)
        try:
            with tracked.scope:
                yield tracked
        finally:
            self._open.discard(tracked)
            self._settle()

    async def drain(self) -> None:
        """Stop taking requests, wait for the open ones up to :attr:`timeout`, abort the rest."""
        self.draining = True
        idle = self._idle = asyncio.Event()
        if self.open:
            logger.warning(
                "draining: %d open request(s) and %d socket(s) get up to %.3g s",
                len(self._open),
                len(self._sockets),
                self.timeout,
            )
            with anyio.move_on_after(self.timeout):
                await idle.wait()
        if self._sockets:
            logger.warning("drained: closing %d socket(s) still open", len(self._sockets))
            for entry in list(self._sockets):
                entry.going_away()
        if self._open:
            logger.warning("drained: aborting %d request(s) still open", len(self._open))
            for tracked in list(self._open):
                tracked.scope.cancel()
        if self.open:
            with anyio.move_on_after(_UNWIND):
                await idle.wait()

    # -- signals ------------------------------------------------------------------------

    def install(self) -> None:
        """Put the drain before the server's own SIGTERM/SIGINT handlers (main thread only)."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._signalled)

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._signalled:
                signal.signal(signum, previous)
        self._previous.clear()

    def _signalled(self, signum: int, frame: FrameType | None) -> None:
        loop = self._loop
        if self._task is not None or loop is None or loop.is_closed():
            self._hand_on(signum, frame)  # a second signal: stop now
            return
        logger.warning("received signal %d: draining before shutdown", signum)
        self.draining = True
        loop.call_soon_threadsafe(self._begin, signum)

    def _begin(self, signum: int) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain_then_stop(signum))

    async def _drain_then_stop(self, signum: int) -> None:
        try:
            await self.drain()
        finally:
            self._hand_on(signum, None)

    def _hand_on(self, signum: int, frame: FrameType | None) -> None:
        """The signal, to the handler the drain stood before."""
        previous = self._previous.get(signum)
        self.uninstall()
        if callable(previous):
            previous(signum, frame)
        else:
            signal.raise_signal(signum)
