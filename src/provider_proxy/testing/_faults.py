"""Scripted faults in front of a fake provider: "the next N requests fail like this".

:class:`Faults` wraps an ASGI app (a :class:`~provider_proxy.testing.FakeUpstream`)
and answers the next requests with the faults queued on it, in order, then
passes requests on as they are. It is what retry, fallback and cool-down
tests need: a provider that fails a known number of times, then recovers::

    faults = Faults(FakeUpstream())
    faults.fail(2, status=503)          # two 503s, then the fake answers
    faults.fail(1, status=429, retry_after=1)
    faults.hang(1, seconds=5)           # nothing for 5 s before the headers
    faults.error_event(1, "overloaded") # a 200 stream whose first event is an error
    faults.cut(1, after=2)              # a stream aborted after 2 content events
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import anyio

from .._json import dumps
from ..types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True, slots=True)
class _Fault:
    kind: str
    status: int = 503
    retry_after: float | None = None
    seconds: float = 0.0
    error: str = "overloaded"
    after: int = 0


class Faults:
    """An ASGI app: ``app`` behind a queue of faults for its next HTTP requests.

    :attr:`faulted` counts the requests answered with a fault; :attr:`passed`
    those that reached ``app``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._queue: collections.deque[_Fault] = collections.deque()
        self.faulted = 0
        self.passed = 0
        #: When each request arrived (``anyio.current_time()``), faulted or not.
        self.arrivals: list[float] = []

    @property
    def pending(self) -> int:
        """Faults still queued."""
        return len(self._queue)

    def clear(self) -> None:
        self._queue.clear()

    def fail(self, count: int = 1, status: int = 503, *, retry_after: float | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (and ``Retry-After``)."""
        self._queue.extend([_Fault("status", status=status, retry_after=retry_after)] * count)

    def hang(self, count: int = 1, seconds: float = 30.0) -> None:
        """Wait ``seconds`` before answering the next ``count`` requests' headers."""
        self._queue.extend([_Fault("hang", seconds=seconds)] * count)

    def error_event(self, count: int = 1, error: str = "overloaded") -> None:
        """Answer 200 and a stream whose first event is an error (``overloaded`` or
        ``rate_limit``), in the format the path speaks."""
        self._queue.extend([_Fault("event", error=error)] * count)

    def cut(self, count: int = 1, after: int = 1) -> None:
        """Abort the next ``count`` streams after ``after`` content events."""
        self._queue.extend([_Fault("cut", after=after)] * count)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._queue:
            if scope["type"] == "http":
                self.passed += 1
                self.arrivals.append(anyio.current_time())
            await self.app(scope, receive, send)
            return
        fault = self._queue.popleft()
        self.arrivals.append(anyio.current_time())
        body = await _read(receive)
        replay = _replaying(body, receive)
        if fault.kind == "hang":
            await anyio.sleep(fault.seconds)
            self.passed += 1
            await self.app(scope, replay, send)
            return
        if fault.kind == "cut":
            headers = [*scope["headers"], (b"x-fake-fail-after", str(fault.after).encode())]
            self.faulted += 1
            await self.app(dict(scope, headers=headers), replay, send)
            return
        self.faulted += 1
        anthropic = scope["path"].endswith("/messages")
        if fault.kind == "status":
            await _status(send, fault, anthropic)
        else:
            await _error_stream(send, fault.error, anthropic)


async def _read(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replaying(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


_ANTHROPIC_ERRORS = {"overloaded": "overloaded_error", "rate_limit": "rate_limit_error"}
_STATUS_OF = {"overloaded": 503, "rate_limit": 429}


def _error_payload(status: int, kind: str, anthropic: bool) -> dict[str, object]:
    message = f"fake upstream {kind} ({status})"
    if anthropic:
        return {
            "type": "error",
            "error": {"type": _ANTHROPIC_ERRORS.get(kind, "api_error"), "message": message},
        }
    return {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}


async def _status(send: Send, fault: _Fault, anthropic: bool) -> None:
    kind = (
        "rate_limit"
        if fault.status == 429
        else "overloaded"
        if fault.status in (503, 529)
        else "api"
    )
    body = dumps(_error_payload(fault.status, kind, anthropic))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if fault.retry_after is not None:
        headers.append((b"retry-after", f"{fault.retry_after:g}".encode()))
    await send({"type": "http.response.start", "status": fault.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _error_stream(send: Send, kind: str, anthropic: bool) -> None:
    head = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    payload = _error_payload(_STATUS_OF.get(kind, 500), kind, anthropic)
    if anthropic:
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_fault",
                "type": "message",
                "role": "assistant",
                "model": "fake-model",
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 1, "output_tokens": 0},
            },
        }
        events = b"event: message_start\ndata: " + dumps(start) + b"\n\n"
        events += b'event: ping\ndata: {"type": "ping"}\n\n'
        events += b"event: error\ndata: " + dumps(payload) + b"\n\n"
    else:
        events = b"data: " + dumps(payload) + b"\n\n"
    await send({"type": "http.response.body", "body": events, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
