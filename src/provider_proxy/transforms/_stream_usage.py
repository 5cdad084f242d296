"""`IncludeStreamUsage`: token counts at the end of every OpenAI stream.

OpenAI reports a streamed completion's usage only when asked
(``stream_options.include_usage``); without it the proxy cannot count the
tokens of streamed requests.
"""

from __future__ import annotations

from .._adapter import JSON, RequestContext
from ._compose import Transform
from ._util import COMPLETIONS, Cow, posts_to


class IncludeStreamUsage(Transform):
    """Set ``stream_options.include_usage = true`` on streamed OpenAI completions.

    Only when ``"stream": true``, and only when the client did not set
    ``include_usage`` itself (to either value); other ``stream_options`` keys
    are kept. The stream then ends with one more chunk, whose ``choices`` is
    empty and which carries ``usage``; the official SDKs expect it. Applies to
    ``POST`` chat completions and legacy completions (the Responses API always
    reports usage).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "IncludeStreamUsage()"

    def applies_to(self, context: RequestContext) -> bool:
        """``POST`` to chat completions or legacy completions."""
        return posts_to(context, COMPLETIONS)

    def __call__(self, body: JSON, context: RequestContext) -> JSON | None:
        if not isinstance(body, dict) or body.get("stream") is not True:
            return None
        options = body.get("stream_options")
        if options is None:
            cow = Cow(body)
            cow.at()["stream_options"] = {"include_usage": True}
            return cow.result
        if not isinstance(options, dict) or "include_usage" in options:
            return None
        cow = Cow(body)
        cow.at("stream_options")["include_usage"] = True
        return cow.result
