"""The holdback: a routed attempt's answer is kept from the client until it is worth sending.

A retry or a fallback is only possible while the client has received nothing.
So the router puts a :class:`Holdback` between the forwarder and the client (or
the gateway's translator): it holds the provider's head and the first events
of a stream until the first meaningful one (text, reasoning, a tool call, the
finish), read with the provider dialect's stream decoder, then sends all it
held and gets out of the way. An error answer, or a stream whose first event
is an error, is held whole instead, for the router to retry or, out of
retries, to send on. What is held is bounded (``hold_bytes``, ``hold_seconds``
of :class:`~provider_proxy.RetryPolicy`): past either, the answer is committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from .._exceptions import ProxyError
from ..dialects import Dialect
from ..dialects.canonical import MessageStart, StreamDecoder, StreamError, UsageReport
from ..observe import SSEParser
from ..policy import RawHeaders, RetryPolicy, header_value
from ..types import Message, Send
from ._report import Outcome

State = Literal["holding", "committed", "failed"]

#: The response header counting the attempts an answer took, when more than one.
ATTEMPTS_HEADER = b"x-proxy-attempts"

#: The proxy's own error kinds that another attempt may cure (the provider, not the client).
RETRIED_KINDS = frozenset(
    {"upstream_unreachable", "upstream_timeout", "pool_exhausted", "provider_not_configured"}
)


class Abandoned(ProxyError):
    """Raised into the relay to stop reading a stream that failed before its content."""

    status_code = 502
    kind = "retrying"


class Holdback:
    """A ``send`` that holds one attempt's answer back until it commits (see the module).

    :param send: where a committed answer goes.
    :param dialect: the provider's format, whose decoder finds a stream's first event.
    :param on_commit: called once, when the answer goes to the client.
    :param streams: hold a stream until its first meaningful event (else only
        error answers are held).
    """

    def __init__(
        self,
        send: Send,
        dialect: Dialect,
        *,
        max_bytes: int,
        max_seconds: float,
        on_commit: Callable[[], None] | None = None,
        streams: bool = True,
    ) -> None:
        self._send = send
        # Without ``streams``, only error answers are held (a passthrough stream is
        # not read for its first event).
        self._codec = dialect.codec if streams else None
        self._max_bytes = max_bytes
        self._max_seconds = max_seconds
        self._on_commit = on_commit
        self._held: list[Message] = []
        self._bytes = 0
        self._since = 0.0
        self._stream: tuple[SSEParser, StreamDecoder] | None = None
        self.state: State = "holding"
        #: The provider's status and headers, once its head came.
        self.status: int | None = None
        self.headers: RawHeaders = []
        #: The error a stream began with.
        self.error: StreamError | None = None
        #: Headers added to the head when it is sent (``x-proxy-attempts``).
        self.extra_headers: RawHeaders = []

    @property
    def answered(self) -> bool:
        """Whether the provider's head arrived."""
        return self.status is not None

    async def __call__(self, message: Message) -> None:
        if self.state == "committed":
            await self._send(message)
            return
        if self.state == "failed" and self._stream is not None:
            return  # the rest of an abandoned stream, or the error the relay then answers
        self._held.append(message)
        kind = message["type"]
        if kind == "http.response.start":
            await self._start(message)
        elif kind == "http.response.body":
            await self._body(message.get("body", b""), message.get("more_body", False))

    async def _start(self, message: Message) -> None:
        self.status = int(message["status"])
        self.headers = list(message.get("headers", []))
        self._since = time.monotonic()
        content_type = (header_value(self.headers, b"content-type") or b"").lower()
        if self.status >= 400:
            self.state = "failed"  # an error answer: held whole, for the router to judge
        elif content_type.startswith(b"text/event-stream") and self._codec is not None:
            self._stream = (SSEParser(), self._codec.stream_decoder())
        else:
            await self.commit()  # a whole answer that succeeded

    async def _body(self, chunk: bytes, more: bool) -> None:
        self._bytes += len(chunk)
        if self.state == "failed":  # a whole error answer
            if self._bytes > self._max_bytes:
                await self.commit()  # too large to hold: the client gets it as it is
            return
        verdict = self._read(chunk, more)
        if verdict == "error":
            self.state = "failed"
            if more:
                raise Abandoned("The stream failed before its content; trying elsewhere.")
            return
        if (
            verdict == "content"
            or not more
            or self._bytes > self._max_bytes
            or time.monotonic() - self._since > self._max_seconds
        ):
            await self.commit()

    def _read(self, chunk: bytes, more: bool) -> str | None:
        """``"content"``, ``"error"``, or ``None`` while only preliminaries came."""
        assert self._stream is not None
        parser, decoder = self._stream
        try:
            events = [
                e for sse in parser.feed(chunk) for e in decoder.feed_text(sse.event, sse.data)
            ]
            if not more:
                events.extend(decoder.end())
        except ProxyError:
            return "content"  # not the decoder's to judge here: the client's translator says
        for event in events:
            if isinstance(event, StreamError):
                self.error = event
                return "error"
            if not isinstance(event, (MessageStart, UsageReport)):
                return "content"
        return None

    async def commit(self) -> None:
        """Send what is held, then pass everything on."""
        if self.state == "committed":
            return
        abandoned = self.state == "failed" and self._stream is not None
        self.state = "committed"
        if self._on_commit is not None:
            self._on_commit()
        held, self._held = self._held, []
        for message in held:
            if message["type"] == "http.response.start" and self.extra_headers:
                message = dict(message, headers=[*message.get("headers", []), *self.extra_headers])
            await self._send(message)
        if abandoned and held and held[-1].get("more_body", False):
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})


def worth_retrying(holdback: Holdback, outcome: Outcome, policy: RetryPolicy) -> bool:
    """Whether an attempt whose answer the holdback kept from the client may be tried
    again: the provider failed (a retried status, an error as the stream's first
    event, a cut before content, a connect error or timeout), not the request."""
    if holdback.error is not None:
        return policy.retries(holdback.error.status)
    status = outcome.upstream_status
    if status is not None and holdback.answered and holdback.status == status:
        return policy.retries(status)
    if outcome.abort is not None:
        return True  # cut before anything reached the client
    return outcome.error_kind in RETRIED_KINDS


def too_large_to_retry(size: int | None, limit: int) -> str:
    """Why a request is not retried: its body (``size`` bytes, when known) is over ``limit``."""
    body = "its body" if size is None else f"its body ({size} bytes)"
    return f"{body} is over max_retry_body ({limit} bytes), so it was not kept to send again"
