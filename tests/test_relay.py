"""relay_response: chunks go out as they come; a broken upstream aborts, never ends cleanly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from provider_proxy import UpstreamStreamError
from provider_proxy.engine._relay import relay_response
from provider_proxy.transports import HttpxResponse
from provider_proxy.types import Message

pytestmark = pytest.mark.anyio


class Stream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes], fail: bool = False) -> None:
        self.chunks = chunks
        self.fail = fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.fail:
            raise httpx.RemoteProtocolError("peer closed connection")


async def _relay(stream: Stream) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    response = HttpxResponse(httpx.Response(200, stream=stream))
    await relay_response(
        response, send, [(b"content-type", b"text/event-stream")], provider="p", request_id="r"
    )
    return sent


async def test_each_chunk_sent_raw_then_the_end() -> None:
    sent = await _relay(Stream([b"data: 1\n\n", b"", b"\x1f\x8b raw"]))
    assert sent[0] == {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/event-stream")],
    }
    assert [m["body"] for m in sent[1:]] == [b"data: 1\n\n", b"\x1f\x8b raw", b""]
    assert [m["more_body"] for m in sent[1:]] == [True, True, False]


async def test_failure_mid_stream_raises_without_ending_the_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    response = HttpxResponse(httpx.Response(200, stream=Stream([b"data: 1\n\n"], fail=True)))
    with pytest.raises(UpstreamStreamError, match="request r"):
        await relay_response(response, send, [], provider="p", request_id="r")
    assert all(m.get("more_body", True) for m in sent)
    assert "RemoteProtocolError" in caplog.text
