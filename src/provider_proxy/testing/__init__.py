"""A fake LLM provider for tests: this project's, and those of apps that embed the proxy.

:class:`FakeUpstream` is an ASGI app that answers like OpenAI, Anthropic and
Gemini, records every request, and streams, fails, stalls or aborts as asked
(see :mod:`provider_proxy.testing`'s guide in the docs). Point an adapter's
``base_url`` at it, in process (``transport=httpx.ASGITransport(fake)``) or on a
loopback server. :class:`FakeSocketUpstream` is its WebSocket counterpart: the
Realtime and Responses sockets and Gemini Live.
"""

from ._fake import FakeAbort, FakeUpstream, RecordedRequest
from ._fake_qwen import FakeQwenChat
from ._fake_ws import FakeCrash, FakeSocketUpstream, RecordedSocket
from ._faults import Faults

__all__ = [
    "FakeAbort",
    "FakeCrash",
    "FakeQwenChat",
    "FakeSocketUpstream",
    "FakeUpstream",
    "Faults",
    "RecordedRequest",
    "RecordedSocket",
]
