"""Turns a provider paused, continued by the gateway so that its client gets one answer.

A provider running a long loop of its own tools (a web search that goes on)
may stop with the turn *paused* (:class:`~provider_proxy.dialects.canonical.Paused`,
``Response.paused``): its client is meant to send the answer so far back, as the
last assistant message, for the turn to go on. A client of another format has
no such stop, so the gateway continues the turn itself, at most
:data:`MAX_CONTINUATIONS` times: the events of each continuation follow the
earlier ones in the same answer (one message, one start, one finish, usage
summed), and a whole answer is the content of every part joined. A turn still
paused after that fails (502) rather than end half-done.
"""

from __future__ import annotations

import dataclasses

from .._adapter import Usage as ProxyUsage
from ..dialects.canonical import (
    Finish,
    FinishReason,
    Message,
    MessageStart,
    Part,
    Paused,
    Request,
    Response,
    StreamEvent,
    UntranslatableResponse,
    Usage,
    UsageReport,
)
from ._report import Report
from ._responses_state import AnswerCollector

#: How many times the gateway sends a paused turn back to be continued, per answer.
MAX_CONTINUATIONS = 5


#: The counts of an answer (the fields of both usage classes, in their order), each summed.
_COUNTS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Usage))


def _plus(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


def add_usage(a: Usage, b: Usage) -> Usage:
    """The counts of two answers (two calls of one paused turn) added."""
    return Usage(*(_plus(getattr(a, f), getattr(b, f)) for f in _COUNTS))


def too_often() -> UntranslatableResponse:
    return UntranslatableResponse(
        f"The provider paused the turn more than {MAX_CONTINUATIONS} times; "
        "it was not continued further."
    )


class PausedTurn:
    """One answer of a turn the provider may pause: what the parts before this one said.

    For a stream, :meth:`feed` each decoded event: it says what the client gets
    of it (``None``: nothing); at the provider's end of it, :meth:`ended` says
    whether the part paused (and sets :attr:`continuation`). For a whole answer,
    :meth:`whole` joins it to the earlier parts, or holds it back and sets
    :attr:`continuation`.
    """

    def __init__(self, request: Request) -> None:
        self._request = request
        #: How many times the turn was continued so far.
        self.continued = 0
        #: The request that continues the turn, once a part ended paused.
        self.continuation: Request | None = None
        self._parts: tuple[Part, ...] = ()
        #: The usage of the parts before this one, and of this one so far (a stream's).
        self._before = Usage()
        self._now = Usage()
        self._collector = AnswerCollector("")
        #: The open stream's part paused (its last usage may follow).
        self._paused = False

    def feed(self, event: StreamEvent) -> StreamEvent | None:
        """``event`` as the client's stream gets it (the usage summed), or ``None``."""
        if isinstance(event, Paused):
            self._paused = True
            return None
        if isinstance(event, MessageStart) and self.continued:
            return None  # the client's answer began with the first part
        if isinstance(event, UsageReport):
            self._now = self._now.merge(event.usage)
            event = UsageReport(add_usage(self._before, self._now))
        self._collector.feed(event)
        return event

    def ended(self) -> bool:
        """Whether the stream that just ended paused: if so, the turn goes on.

        :raises UntranslatableResponse: the turn paused once too often.
        """
        if not self._paused:
            return False
        self._paused = False
        self._collector.feed(Finish(FinishReason.STOP))
        answer = self._collector.response()
        self._pause(answer.parts if answer is not None else ())
        return True

    def whole(self, response: Response) -> Response | None:
        """``response`` after the earlier parts, as one answer; ``None`` when it paused.

        :raises UntranslatableResponse: the turn paused once too often.
        """
        if response.paused:
            self._now = response.usage
            self._pause(response.parts)
            return None
        return dataclasses.replace(
            response,
            parts=(*self._parts, *response.parts),
            usage=add_usage(self._before, response.usage),
        )

    def _pause(self, parts: tuple[Part, ...]) -> None:
        if self.continued >= MAX_CONTINUATIONS:
            raise too_often()
        self.continued += 1
        self._parts = (*self._parts, *parts)
        self._before, self._now = add_usage(self._before, self._now), Usage()
        self._collector = AnswerCollector("")
        self.continuation = self._with_answer_so_far()

    def _with_answer_so_far(self) -> Request:
        """The request with the answer so far as its last assistant message."""
        messages = self._request.messages
        last = messages[-1] if messages else None
        if last is not None and last.role == "assistant":  # the client's own start of it
            said = Message("assistant", (*last.parts, *self._parts))
            return dataclasses.replace(self._request, messages=(*messages[:-1], said))
        said = Message("assistant", self._parts)
        return dataclasses.replace(self._request, messages=(*messages, said))


def joined_report(earlier: Report, later: Report) -> Report:
    """The report of one answer made by two calls (a paused turn, then its continuation):
    the later one's, with the bytes and usage of both."""
    before, after = earlier.outcome, later.outcome
    usage = before.usage
    if usage is None or after.usage is None:
        usage = after.usage or usage
    else:
        usage = ProxyUsage(*(_plus(getattr(usage, f), getattr(after.usage, f)) for f in _COUNTS))
    outcome = dataclasses.replace(
        after,
        usage=usage,
        response_bytes=before.response_bytes + after.response_bytes,
        sent_at=before.sent_at if before.sent_at is not None else after.sent_at,
        headers_at=before.headers_at if before.headers_at is not None else after.headers_at,
        first_byte_at=before.first_byte_at
        if before.first_byte_at is not None
        else after.first_byte_at,
    )
    return dataclasses.replace(later, outcome=outcome)
