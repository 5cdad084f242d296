"""Which relayed frames the socket relay parses: those holding one of the format's hints."""

from __future__ import annotations

import pytest

from provider_proxy.engine._ws_common import hint_finder

REALTIME = ("response.create", "response.done", "response.completed", "response.failed")


@pytest.mark.parametrize(
    ("hints", "text", "found"),
    [
        (REALTIME, '{"type":"response.create"}', True),
        (REALTIME, '{"event_id":"e1","type":"response.failed","response":{}}', True),
        (REALTIME, '{"type":"response.created"}', True),  # a prefilter: the parse decides
        (REALTIME, '{"type":"input_audio_buffer.append","audio":"response"}', False),
        (REALTIME, "", False),
        (("usageMetadata",), '{"serverContent":{},"usageMetadata":{"totalTokenCount":3}}', True),
        (("usageMetadata",), '{"serverContent":{"turnComplete":true}}', False),
        (("usageMetadata",), "usage", False),
        (("a.b", "a*b"), "xa*b", True),  # hints are literal text, not patterns
        (("a.b", "a*b"), "axb aab", False),
    ],
)
def test_a_frame_is_parsed_when_it_holds_a_hint(
    hints: tuple[str, ...], text: str, found: bool
) -> None:
    finder = hint_finder(hints)
    assert finder(text) is found
    assert finder(text) == any(hint in text for hint in hints)
