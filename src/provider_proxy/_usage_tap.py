"""Reading token usage from a response as it is relayed, on a copy of each chunk.

The tap never holds a chunk back and never raises: the engine feeds it after
each chunk was sent, and any surprise (a body that is not JSON, a decoding
error, a body over the size bound) just turns it off for that response.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from typing import Any, Protocol

from ._adapter import Usage
from ._json import loads
from ._sse import SSEParser

logger = logging.getLogger("provider_proxy")

#: A JSON body (decompressed) larger than this is not read for usage.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class _Decoder(Protocol):
    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


def _brotli() -> Any:
    try:
        import brotli
    except ImportError:
        try:
            import brotlicffi as brotli
        except ImportError:
            return None
    return brotli


class _Brotli:
    def __init__(self, module: Any) -> None:
        self._decoder = module.Decompressor()

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes:
        process = getattr(self._decoder, "process", None) or self._decoder.decompress
        return bytes(process(data))


class _Deflate:
    """``deflate`` as servers send it: zlib-wrapped, or (wrongly but commonly) raw."""

    def __init__(self) -> None:
        self._decoder: Any = None

    def decompress(self, data: bytes, max_length: int = 0, /) -> bytes:
        if self._decoder is None:
            raw = bool(data) and (data[0] & 0x0F) != 8
            self._decoder = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        return bytes(self._decoder.decompress(data, max_length))


def _decoder(encoding: str | None) -> _Decoder | bool | None:
    """A decoder for ``encoding``; ``None`` for identity, ``False`` when unsupported."""
    if not encoding or encoding.strip().lower() == "identity":
        return None
    name = encoding.strip().lower()
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if name == "deflate":
        return _Deflate()
    if name == "br":
        module = _brotli()
        return False if module is None else _Brotli(module)
    return False


class UsageTap:
    """Usage and model of one response, read from the relayed bytes.

    :param extract_usage: the adapter's usage reader for one parsed payload.
    :param extract_model: the adapter's model reader for one parsed payload.
    :param max_bytes: the most decompressed bytes kept of a JSON body, and the
        most any body may decompress to, so a compression bomb stops the tap.
    """

    __slots__ = (
        "_body",
        "_decoder",
        "_extract_model",
        "_extract_usage",
        "_max_bytes",
        "_model",
        "_parser",
        "_seen",
        "_usage",
        "active",
        "streamed",
    )

    def __init__(
        self,
        extract_usage: Callable[[Any], Usage | None],
        extract_model: Callable[[Any], str | None],
        *,
        content_type: str | None,
        content_encoding: str | None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._extract_usage = extract_usage
        self._extract_model = extract_model
        self._max_bytes = max_bytes
        self._usage: Usage | None = None
        self._model: str | None = None
        self._seen = 0
        self._body: list[bytes] = []
        media = (content_type or "").partition(";")[0].strip().lower()
        #: Whether the response is a stream of server-sent events.
        self.streamed = media == "text/event-stream"
        self._parser = SSEParser() if self.streamed else None
        decoder = _decoder(content_encoding)
        #: False once the tap gave up on this response.
        self.active = decoder is not False and (self.streamed or media.endswith("json"))
        self._decoder: Any = decoder or None

    def feed(self, chunk: bytes) -> None:
        """Read a copy of one relayed chunk."""
        if not self.active:
            return
        try:
            self._feed(chunk)
        except Exception as exc:
            self._stop(f"{type(exc).__name__}: {exc}")

    def _feed(self, chunk: bytes) -> None:
        if self._decoder is not None:
            room = self._max_bytes - self._seen + 1
            chunk = self._decoder.decompress(chunk, room)
        self._seen += len(chunk)
        if self._seen > self._max_bytes:
            self._stop(f"body over {self._max_bytes} bytes")
            return
        if self._parser is None:
            self._body.append(chunk)
            return
        for event in self._parser.feed(chunk):
            data = event.data
            if not data or data == "[DONE]" or data[0] not in "{[":
                continue
            self._read(loads(data))

    def _read(self, payload: Any) -> None:
        usage = self._extract_usage(payload)
        if usage is not None:
            self._usage = usage if self._usage is None else self._usage.merge(usage)
        if self._model is None:
            self._model = self._extract_model(payload)

    def _stop(self, why: str) -> None:
        self.active = False
        self._body = []
        logger.debug("not reading usage from this response: %s", why)

    def result(self) -> tuple[Usage | None, str | None]:
        """The usage and the model, once the response is complete."""
        if self.active and self._parser is None and self._body:
            try:
                self._read(loads(b"".join(self._body)))
            except Exception as exc:
                self._stop(f"{type(exc).__name__}: {exc}")
            self._body = []
        return self._usage, self._model
