"""Decoding compressed bodies with the output bounded, and reading the proxy's own answers.

A few hundred kilobytes of gzip or brotli can inflate to gigabytes, and
httpx inflates each chunk whole. Everything the proxy decompresses for itself
goes through these decoders, which stop just past a limit: the usage tap
(:mod:`provider_proxy.observe._usage_tap`) and :func:`send_bounded`, which reads the
answers to the proxy's own requests (credential probes, model lists, the
token exchange) up to :data:`MAX_OWN_ANSWER_BYTES`.
"""

from __future__ import annotations

import importlib
import zlib
from typing import Any, Literal, Protocol

import httpx

#: The most (decoded) bytes read of an answer to one of the proxy's own requests.
MAX_OWN_ANSWER_BYTES = 4 * 1024 * 1024


class TooLarge(Exception):
    """The decoded output went over its bound."""


class Decoder(Protocol):
    def decode(self, data: bytes, limit: int) -> bytes:
        """The output ``data`` completes; raises :class:`TooLarge` past ``limit`` bytes."""
        ...


class _Gzip:
    """gzip, member after member (RFC 1952 allows several)."""

    def __init__(self) -> None:
        self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def decode(self, data: bytes, limit: int) -> bytes:
        out = self._decoder.decompress(data, limit + 1)
        while self._decoder.eof and self._decoder.unused_data and len(out) <= limit:
            rest = self._decoder.unused_data
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += self._decoder.decompress(rest, limit + 1 - len(out))
        if len(out) > limit:
            raise TooLarge
        return out


class _Deflate:
    """``deflate`` as servers send it: zlib-wrapped (RFC 9110 §8.4.1.2) or, commonly, raw."""

    def __init__(self) -> None:
        self._head = b""
        self._decoder: Any = None

    def decode(self, data: bytes, limit: int) -> bytes:
        if self._decoder is None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return b""
            # A zlib header (RFC 1950 §2.2): method 8, window at most 32 KiB, check bits.
            cmf, flg = data[0], data[1]
            wrapped = cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        out: bytes = self._decoder.decompress(data, limit + 1)
        if len(out) > limit:
            raise TooLarge
        return out


class _Brotli:
    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder

    def decode(self, data: bytes, limit: int) -> bytes:
        out = bytes(self._decoder.process(data, output_buffer_limit=limit + 1))
        # The decoder stops at about the limit; it holds more when it cannot take input.
        if len(out) > limit or not self._decoder.can_accept_more_data():
            raise TooLarge
        return out


def _brotli_decoder() -> _Brotli | None:
    """A bounded brotli decoder, or ``None`` without a recent enough module."""
    module: Any = None
    for name in ("brotli", "brotlicffi"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        break
    if module is None:
        return None
    decoder = module.Decompressor()
    if not hasattr(decoder, "can_accept_more_data"):
        return None  # older releases cannot bound their output
    return _Brotli(decoder)


def decoder_for(encoding: str | None) -> Decoder | Literal[False] | None:
    """A decoder for ``encoding``: ``None`` for none needed, ``False`` when unsupported."""
    name = (encoding or "").strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return _Gzip()
    if name == "deflate":
        return _Deflate()
    if name == "br":
        return _brotli_decoder() or False
    return False


class AnswerTooLarge(Exception):
    """An answer to one of the proxy's own requests decodes to more than it reads.

    The message names the host and the bound, never a body or a credential.
    """


#: What the answer keeps of the transport's extensions (not its closed stream).
_KEPT_EXTENSIONS = ("http_version", "reason_phrase")


def _accept_encoding() -> str:
    """The encodings :func:`send_bounded` can decode with a bound."""
    return "gzip, deflate, br" if _brotli_decoder() is not None else "gzip, deflate"


async def send_bounded(
    client: httpx.AsyncClient, request: httpx.Request, *, limit: int = MAX_OWN_ANSWER_BYTES
) -> httpx.Response:
    """Send ``request`` and read its answer decoded, but no more than ``limit`` bytes of it.

    The answer comes back read (``.json()``, ``.text`` work) and without its
    ``Content-Encoding``. Past ``limit`` the download stops and
    :class:`AnswerTooLarge` is raised, as it is for an encoding that cannot be
    decoded with a bound; httpx's own errors pass through.
    """
    request.headers["accept-encoding"] = _accept_encoding()
    response = await client.send(request, stream=True)
    try:
        body = await _read(response, limit)
    finally:
        await response.aclose()
    headers = [
        (key, value)
        for key, value in response.headers.multi_items()
        if key not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        request=request,
        extensions={k: v for k, v in response.extensions.items() if k in _KEPT_EXTENSIONS},
    )


async def _read(response: httpx.Response, limit: int) -> bytes:
    host = response.request.url.host
    if response.is_stream_consumed:  # made whole in memory (a mock transport), so decoded
        if len(response.content) > limit:
            raise AnswerTooLarge(f"the answer from {host} is over {_size(limit)}")
        return response.content
    encoding = response.headers.get("content-encoding")
    decoder = decoder_for(encoding)
    if decoder is False:
        raise AnswerTooLarge(
            f"the answer from {host} has a Content-Encoding ({(encoding or '')[:40]!r}) "
            "that cannot be decoded with a bound on its size"
        )
    parts: list[bytes] = []
    size = 0
    try:
        async for raw in response.aiter_raw():
            part = raw if decoder is None else decoder.decode(raw, limit - size)
            size += len(part)
            if size > limit:
                raise TooLarge
            parts.append(part)
    except TooLarge:
        raise AnswerTooLarge(
            f"the answer from {host} is over {_size(limit)} once decoded; it was not read further"
        ) from None
    return b"".join(parts)


def _size(count: int) -> str:
    """``4 MiB`` for a whole number of MiB, else bytes."""
    mib = 1024 * 1024
    return f"{count // mib} MiB" if count % mib == 0 else f"{count} bytes"
