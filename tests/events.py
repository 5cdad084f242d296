"""One :class:`ProxyEvent` for the tests of what consumes events (sinks, metrics)."""

from __future__ import annotations

import dataclasses
from typing import Any

from provider_proxy import ProxyEvent, Usage

#: A streamed chat completion with cached input; its times have more digits than
#: the sinks keep, to show their rounding.
EVENT = ProxyEvent(
    request_id="req-1",
    provider="openai",
    method="POST",
    path="/chat/completions",
    model="gpt-4o",
    identity="team-a",
    status=200,
    upstream_status=200,
    error_kind=None,
    streamed=True,
    started_at=1_700_000_000.123456789,
    time_to_headers=0.2501234567,
    time_to_first_byte=0.3,
    duration=1.5,
    overhead=0.0004,
    request_bytes=120,
    response_bytes=3400,
    usage=Usage(1200, 20, 1024, 0),
)


def event(**changes: Any) -> ProxyEvent:
    """:data:`EVENT` with ``changes``."""
    return dataclasses.replace(EVENT, **changes)
