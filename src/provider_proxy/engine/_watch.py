"""The disconnect watch: the exchange is cancelled the moment the client goes away.

ASGI tells only the caller of ``receive`` that the client left, so during the
exchange the watch is ``receive``'s one caller, during the upload too.

For a body that came whole the watch starts late: its task (and the server's
``receive()`` machinery it sets going) is made only if the exchange still runs
after :data:`WATCH_AFTER`. An exchange done sooner (a token count, a listing, a
refusal, a cached or small model's answer) would pay for a task that never sees
anything; an LLM answer that takes longer gets the watch, and a client that
left in the meantime is seen as soon as it starts (``receive()`` answers
``http.disconnect`` at once): at most that delay late, the upstream then closed
as before. A streamed upload is read ahead from the start, since nothing else
would take its body.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from collections.abc import Callable
from typing import Any

from .._exceptions import BodyTooLarge, ClientDisconnected, ProxyError
from ..types import Receive
from ._body import RequestBody

logger = logging.getLogger("provider_proxy")

#: Seconds an exchange whose body came whole runs before its watcher task starts
#: (between half of it and all of it: see :class:`_Starter`). The task, its steps
#: and the server's ``receive()`` behind it cost tens of thousands of
#: instructions, and an exchange done sooner never needs them. A client leaving
#: meanwhile is noticed at most this late.
WATCH_AFTER = 0.02


class DisconnectWatch:
    """Cancels the forwarding task when the client goes away (or its body fails) mid-exchange.

    ASGI tells only the caller of ``receive`` that the client left, so the watch is
    its one caller during the exchange: a streamed body it reads ahead of the
    upload (:meth:`RequestBody.read_ahead`), since an upload blocked on a write to
    a provider that stopped reading calls nothing; then it waits for
    ``http.disconnect``. One small task, plain asyncio rather than a task group:
    this runs for every request, and the exchange's own task does the work. For a
    body that came whole the task starts only after :data:`WATCH_AFTER`.

    Use it as a context manager around the exchange: leaving it stops the watch.
    """

    __slots__ = (
        "_ahead",
        "_body",
        "_context",
        "_receive",
        "_starter",
        "_task",
        "_watcher",
        "active",
        "disconnected",
        "fired",
        "reason",
    )

    def __init__(self, body: RequestBody, receive: Receive) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - ASGI servers run apps in tasks
            raise RuntimeError("the proxy needs to run in an asyncio task")
        self._task = task
        self._body = body
        self.active = True
        #: A cancellation was requested and not yet taken back.
        self.fired = False
        #: The client went away while the exchange ran.
        self.disconnected = False
        #: Why the watch cancelled the exchange: the client left, or its body is too large.
        self.reason: ProxyError | ClientDisconnected | None = None
        self._receive = receive
        self._watcher: asyncio.Task[None] | None = None
        self._starter: _Starter | None = None
        self._context: contextvars.Context | None = None
        loop = task.get_loop()
        ahead = self._ahead = body.more
        if ahead:
            body.hand_over()  # before the transport can ask for the next chunk
            self._watcher = loop.create_task(self._watch(receive, ahead=True))
        else:
            starter = _starters.get(loop)
            if starter is None:
                starter = _starters[loop] = _Starter()
            self._starter = starter
            self._context = contextvars.copy_context()  # its task's, as if made here
            starter.new.add(self)  # (inline: this runs for every request)
            if not starter.armed:
                starter.arm(loop)

    @property
    def watching(self) -> bool:
        """Whether the watcher task was started (at once, or after :data:`WATCH_AFTER`)."""
        return self._watcher is not None

    def _start(self) -> None:
        """The exchange outlived :data:`WATCH_AFTER`: start waiting for ``http.disconnect``."""
        self._starter = None
        if self.active and self._context is not None:
            create = self._task.get_loop().create_task
            self._watcher = self._context.run(create, self._watch(self._receive, ahead=False))

    async def _watch(self, receive: Receive, *, ahead: bool) -> None:
        try:
            if ahead:
                await self._body.read_ahead()
            while (await receive())["type"] != "http.disconnect":
                pass
            self.reason = ClientDisconnected()
        except (ClientDisconnected, BodyTooLarge) as exc:
            self.reason = exc
        except Exception:  # a server that fails here cannot tell us anything more
            logger.debug("receive() failed while watching for a disconnect", exc_info=True)
            return
        if self.active:
            self.fired = True
            self._task.cancel()

    def __enter__(self) -> DisconnectWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """The exchange is over (or closing): a disconnect no longer cancels it.

        A watcher that only waits for the disconnect (the body came whole) is
        ended on the loop's next turn, not now: a server whose ``receive()``
        returns once the answer is complete (uvicorn's does) has woken it by
        then, and it ends by itself, with no cancellation to unwind. One reading
        a body ahead stops at once, so that it takes nothing more. A watcher not
        started yet never starts.
        """
        if self.active:
            self.active = False
            starter = self._starter
            if starter is not None:
                starter.new.discard(self)
                starter.due.discard(self)
                self._starter = None
            watcher = self._watcher
            if self._ahead:
                assert watcher is not None
                watcher.cancel()
                self._body.take_back()
            elif watcher is not None and not watcher.done():
                self._task.get_loop().call_soon(_end, watcher)

    def absorb(self) -> bool:
        """Whether a :class:`asyncio.CancelledError` was this watch's own, and is now spent."""
        if not self.fired:
            return False
        self._spend()
        return _uncancel(self._task) == 0

    def settle(self) -> None:
        """Take back a cancellation that fired but that the exchange swallowed."""
        if self.fired:
            self._spend()
            _uncancel(self._task)

    def _spend(self) -> None:
        self.fired = False
        self.disconnected = isinstance(self.reason, ClientDisconnected)


class _Starter:
    """Starts the watches of one loop that outlived :data:`WATCH_AFTER`, with one timer for all.

    A timer per exchange costs about as much as the task it saves (asyncio's
    timers are Python code: a handle, the heap, the cancellation, the loop's
    turns while it waits). Here each watch is put in a set and taken out when
    its exchange ends; a tick every half :data:`WATCH_AFTER` moves the new ones
    to the due ones and starts the due ones still there, so a watch starts
    between half the delay and the whole of it. The ticks stop while nothing
    waits.
    """

    __slots__ = ("armed", "due", "new")

    def __init__(self) -> None:
        #: Watches added since the last tick, and those added before it (due at the next).
        self.new: set[DisconnectWatch] = set()
        self.due: set[DisconnectWatch] = set()
        self.armed = False

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self.armed = True
        # In a context of its own, not that of the exchange that armed it.
        loop.call_later(WATCH_AFTER / 2, self._tick, loop, context=contextvars.Context())

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        due, self.due, self.new = self.due, self.new, set()
        for watch in due:
            watch._start()
        if self.due:
            loop.call_later(WATCH_AFTER / 2, self._tick, loop, context=contextvars.Context())
        else:
            self.armed = False


#: Each loop's starter; a loop that is gone takes its own with it.
_starters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Starter] = (
    weakref.WeakKeyDictionary()
)


def _end(watcher: asyncio.Task[None]) -> None:
    """Cancel a watcher still waiting (its server's ``receive()`` did not return)."""
    if not watcher.done():
        watcher.cancel()


def _uncancel(task: asyncio.Task[Any]) -> int:
    """``task.uncancel()`` (Python 3.11+); 3.10 keeps no count, so nothing is pending."""
    uncancel: Callable[[], int] | None = getattr(task, "uncancel", None)
    return 0 if uncancel is None else uncancel()
