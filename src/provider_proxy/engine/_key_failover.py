"""Retries in passthrough: a request sent again to its adapter, with the same key or another.

A passthrough body streams to the provider as it arrives, so it is kept (up to
``max_retry_body``) as it goes by. The answer goes through a
:class:`~provider_proxy.engine._holdback.Holdback`: an error answer is held
whole, and, when the policy retries at all, a stream is held until its first
meaningful event (read with the path's dialect), so a 200 stream whose first
event is an error is retried too. While the client has received nothing and
the body was kept:

- a key the provider answered 401, 403 or 429 is cooled in its pool, and the
  request sent again at once with another key, while one is ready;
- a failure the policy retries (its statuses, a connect error, a timeout
  before the answer, an error as the first event, a cut before content) is
  tried again on the same adapter after the policy's backoff, ``Retry-After``
  honoured, until ``attempts`` or the ``deadline`` run out.

Once a byte went to the client, nothing is retried.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import replace

import anyio

from .._exceptions import UpstreamTimeout
from ..adapters import KEY_STATUSES, BaseAdapter, Provider, forget_used_key, used_key
from ..observe import AttemptSpan
from ..policy import RetryPolicy, retry_after_seconds
from ..types import Message, Receive, Scope, Send
from ._circuits import SharedKeys
from ._heads import send_error
from ._holdback import ATTEMPTS_HEADER, Holdback, too_large_to_retry, worth_retrying
from ._report import Arrival, Outcome, Report

logger = logging.getLogger("provider_proxy")

#: Key failovers of one request at most (each cools the key that failed).
MAX_KEY_RETRIES = 8

_Request = tuple[Scope, Receive, Send, Provider, bytes, Arrival]


async def forward_with_retries(
    forward: Callable[..., Awaitable[Report]],
    request: _Request,
    keys: SharedKeys,
    policy: RetryPolicy,
    clock: Callable[[], float],
    rng: random.Random,
    trace: Callable[[str, int], AbstractContextManager[AttemptSpan]],
) -> Report:
    """A passthrough request, tried again under ``policy`` (see the module).

    :param forward: the forwarder's ``forward``.
    :param keys: the pools' cool-downs shared through the store.
    :param clock: epoch seconds, to read an HTTP-date ``Retry-After``.
    :param rng: the jitter's draws.
    :param trace: each attempt's span, by the adapter's name and the attempt's number.
    """
    scope, receive, send, provider, rest, arrival = request
    name = provider.name
    path = rest.decode("ascii", "replace")
    shared = provider.key_pool if isinstance(provider, BaseAdapter) else None
    recorder = _Recorder(receive, policy.max_retry_body)
    current: Receive = recorder
    retrying = policy.attempts > 1
    started = anyio.current_time()
    attempt = tries = key_retries = 0
    while True:
        attempt += 1
        forget_used_key()
        if shared is not None:
            await keys.load(name, shared)
        remaining = None
        if policy.deadline is not None:
            remaining = policy.deadline - (anyio.current_time() - started)
        limit = policy.attempt_timeout
        if remaining is not None:
            limit = remaining if limit is None else min(limit, remaining)
        cancel = anyio.CancelScope(
            deadline=math.inf if limit is None else anyio.current_time() + limit
        )
        holdback = Holdback(
            send,
            provider.serving().dialect_for(path),
            max_bytes=policy.hold_bytes,
            max_seconds=policy.hold_seconds if retrying else 0,
            streams=retrying,
            on_commit=_lifting(cancel),
        )
        if attempt > 1:
            holdback.extra_headers = [(ATTEMPTS_HEADER, str(attempt).encode("ascii"))]
        report: Report | None = None
        with trace(name, attempt) as span:
            with cancel:
                report = await forward(
                    scope, current, holdback, provider, rest, arrival, repeat=attempt > 1
                )
            if report is None:
                span.error = "upstream_timeout"
            else:
                describe_attempt(span, holdback, report)
        used = used_key()
        if report is None:  # no answer within the attempt's time: nothing was sent
            logger.warning(
                "%s gave no answer to request %s within %.3g s", name, arrival.request_id, limit
            )
            retry_after = None
        elif holdback.state == "committed" or report.outcome.error_kind == "client_disconnected":
            await holdback.commit()
            return _tried(settle_key(report), name, attempt)
        else:
            retry_after = retry_after_seconds(holdback.headers, clock())
        status = None if report is None else report.outcome.upstream_status
        if used is not None and status is not None and status in KEY_STATUSES:
            forget_used_key()
            pool, key = used
            pool.failed(key, status, retry_after)
            await keys.save(name, pool)
            if report is not None:
                report = replace(report, key=key)
            if pool.ready() > 0 and key_retries < MAX_KEY_RETRIES and await recorder.finish():
                key_retries += 1
                logger.warning(
                    "%s key %s answered %d for request %s; trying another key",
                    name,
                    key,
                    status,
                    arrival.request_id,
                )
                current = recorder.replay()
                continue  # another key, at once
        tries += 1
        again = report is None or worth_retrying(holdback, report.outcome, policy)
        wait = None
        if again and tries < policy.attempts:
            if policy.deadline is not None:
                remaining = policy.deadline - (anyio.current_time() - started)
            wait = policy.wait(tries, rng.random(), retry_after, remaining)
        if wait is not None and not await recorder.finish():
            if recorder.too_large and report is not None:
                reason = too_large_to_retry(None, policy.max_retry_body)
                logger.info("request %s: %s: not retried", arrival.request_id, reason)
                report = replace(report, not_retried=reason)
            wait = None
        if wait is None:
            if report is None:
                forget_used_key()  # the key did not fail: the provider was slow
                return _tried(await _timed_out(request, name, path, attempt), name, attempt)
            await holdback.commit()  # the last failure's answer: nothing else will serve
            return _tried(report, name, attempt)
        logger.warning(
            "%s failed request %s (attempt %d, %s); trying again in %.3g s",
            name,
            arrival.request_id,
            attempt,
            status or holdback.status or "no answer",
            wait,
        )
        await anyio.sleep(wait)
        current = recorder.replay()


def describe_attempt(span: AttemptSpan, holdback: Holdback | None, report: Report) -> None:
    """An attempt's status and error, for its span: the provider's status (or the
    proxy's), and the error kind, the failing status, or the error its stream began with."""
    if holdback is not None and holdback.error is not None:
        span.status = holdback.status
        span.error = holdback.error.kind
        return
    outcome = report.outcome
    status = outcome.upstream_status if outcome.upstream_status is not None else outcome.status
    span.status = status
    if outcome.error_kind is not None:
        span.error = outcome.error_kind
    elif status >= 400:
        span.error = str(status)


def _lifting(cancel: anyio.CancelScope) -> Callable[[], None]:
    """Once the answer commits, the attempt's time limit no longer applies."""

    def lift() -> None:
        cancel.deadline = math.inf

    return lift


def _tried(report: Report, name: str, attempts: int) -> Report:
    """The report naming each try by the adapter's name (the body was not read)."""
    return report if attempts == 1 else replace(report, deployments=(name,) * attempts)


async def _timed_out(request: _Request, name: str, path: str, attempts: int) -> Report:
    """No attempt answered in time (nothing went out): a 504 in the path's format."""
    _, _, send, provider, _, arrival = request
    headers = {"x-proxy-attempts": str(attempts)} if attempts > 1 else None
    error = UpstreamTimeout(f"{name} gave no answer in time.", headers=headers)
    size = await send_error(send, provider.serving().dialect_for(path), error, arrival.request_id)
    return Report(Outcome.refused(error, size, None), name, path)


class _Recorder:
    """``receive`` that keeps the request body as it passes (up to ``limit`` bytes),
    so a passthrough request can be sent again."""

    __slots__ = ("_parts", "_receive", "_size", "complete", "limit")

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._parts: list[bytes] | None = []
        self._size = 0
        self.limit = limit
        #: The whole body passed, and is kept.
        self.complete = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request" and self._parts is not None:
            chunk: bytes = message.get("body", b"")
            self._size += len(chunk)
            if self._size > self.limit:
                self._parts = None  # too large to keep: sent once
            else:
                self._parts.append(chunk)
                self.complete = not message.get("more_body", False)
        return message

    @property
    def too_large(self) -> bool:
        """Whether the body passed ``limit``: it is not kept."""
        return self._parts is None

    async def finish(self) -> bool:
        """Read what the provider did not of the body (a connect error before it was
        sent), while it may be kept; whether all of it is."""
        while self._parts is not None and not self.complete:
            if (await self())["type"] != "http.request":
                break  # the client left
        return self.complete

    def replay(self) -> Receive:
        """The kept body, then the client's ``receive`` (for its disconnect)."""
        assert self._parts is not None
        assert self.complete
        pending: list[Message] = [
            {"type": "http.request", "body": b"".join(self._parts), "more_body": False}
        ]

        async def receive() -> Message:
            return pending.pop() if pending else await self._receive()

        return receive


def settle_key(report: Report) -> Report:
    """Tell the pool how the key a request took fared (outside the router: nothing is
    retried, but a key answered 429 or 401/403 cools), and name it in the report."""
    used = used_key()
    if used is None:
        return report
    forget_used_key()
    pool, name = used
    status = report.outcome.upstream_status
    if status is not None and status in KEY_STATUSES:
        pool.failed(name, status)
    elif status is not None and status < 400:
        pool.succeeded(name)
    return replace(report, key=name)
