"""Key failover in passthrough: a request sent again with another key of the adapter.

A passthrough body streams to the provider as it arrives, so it is kept (up to
``max_retry_body``) as it goes by; only error answers are held back from the
client (:class:`~provider_proxy.engine._holdback.Holdback` without ``streams``),
so a stream reaches the client as it comes. A key the provider answered 401, 403
or 429 is cooled in its pool, and the request sent again at once with another
key, while one is ready and the body was kept.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from ..adapters import KEY_STATUSES, BaseAdapter, Provider, forget_used_key, used_key
from ..policy import RetryPolicy, retry_after_seconds
from ..types import Message, Receive, Scope, Send
from ._circuits import SharedKeys
from ._holdback import ATTEMPTS_HEADER, Holdback
from ._report import Arrival, Report

logger = logging.getLogger("provider_proxy")

#: Key failovers of one request at most (each cools the key that failed).
MAX_KEY_RETRIES = 8


async def forward_with_keys(
    forward: Callable[..., Awaitable[Report]],
    request: tuple[Scope, Receive, Send, Provider, bytes, Arrival],
    keys: SharedKeys,
    policy: RetryPolicy,
    clock: Callable[[], float],
) -> Report:
    """A passthrough request to an adapter with several keys: a key answered
    401/403/429 is cooled, and the request sent again at once with another,
    while the client has received nothing and the body was small enough to keep.

    :param forward: the forwarder's ``forward``.
    :param keys: the pools' cool-downs shared through the store.
    """
    scope, receive, send, provider, rest, arrival = request
    name = provider.name
    shared = provider.key_pool if isinstance(provider, BaseAdapter) else None
    recorder = _Recorder(receive, policy.max_retry_body)
    current: Receive = recorder
    attempt = 0
    while True:
        attempt += 1
        forget_used_key()
        if shared is not None:
            await keys.load(name, shared)
        dialect = provider.serving().dialect_for(rest.decode("ascii", "replace"))
        holdback = Holdback(
            send, dialect, max_bytes=policy.hold_bytes, max_seconds=0, streams=False
        )
        if attempt > 1:
            holdback.extra_headers = [(ATTEMPTS_HEADER, str(attempt).encode("ascii"))]
        report = await forward(
            scope, current, holdback, provider, rest, arrival, repeat=attempt > 1
        )
        if attempt > 1:  # each try, by the adapter's name (the body was not read)
            report = replace(report, deployments=(name,) * attempt)
        used = used_key()
        status = report.outcome.upstream_status
        if holdback.state == "committed" or used is None or status not in KEY_STATUSES:
            await holdback.commit()
            return settle_key(report)
        pool, key = used
        retry_after = retry_after_seconds(holdback.headers, clock())
        pool.failed(key, status, retry_after)
        await keys.save(name, pool)
        forget_used_key()
        if pool.ready() == 0 or not recorder.complete or attempt > MAX_KEY_RETRIES:
            await holdback.commit()
            return replace(report, key=key)
        logger.warning(
            "%s key %s answered %d for request %s; trying another key",
            name,
            key,
            status,
            arrival.request_id,
        )
        current = recorder.replay()


class _Recorder:
    """``receive`` that keeps the request body as it passes (up to ``limit`` bytes),
    so a passthrough request can be sent again with another key."""

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
