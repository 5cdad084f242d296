"""RFC 6455 frames, just enough for the WebSocket scenario's upstream and client.

The fake upstream and the measuring client speak WebSocket with this rather
than with a library, so they cost far less than the relays they measure: a
frame is a header and a payload, parsed with slices and unmasked in C
(``websockets.speedups``). The client masks with an all-zero key, which
leaves the payload as it is, so its frames are prebuilt bytes; servers must
accept any key (RFC 6455 §5.3).
"""

from __future__ import annotations

import base64
import hashlib
import struct

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a websockets built without its C extension
    from websockets.utils import apply_mask

TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_ZERO_KEY = b"\0\0\0\0"


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` answering a handshake's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def encode(payload: bytes, opcode: int = TEXT, *, masked: bool = False, first: int = 0) -> bytes:
    """One frame: FIN set with ``opcode`` (or the header byte ``first``), masked by a zero key."""
    head = first or 0x80 | opcode
    mask = 0x80 if masked else 0
    size = len(payload)
    if size < 126:
        header = bytes((head, mask | size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", head, mask | 126, size)
    else:
        header = struct.pack("!BBQ", head, mask | 127, size)
    return header + _ZERO_KEY + payload if masked else header + payload


def close_frame(code: int = 1000, *, masked: bool = False) -> bytes:
    return encode(struct.pack("!H", code), CLOSE, masked=masked)


class FrameReader:
    """Frames out of a byte stream: ``feed(data)`` returns the whole ones it completes."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """``(header byte, payload)`` of each frame ``data`` completes, unmasked."""
        buffer = self._buffer
        buffer += data
        frames: list[tuple[int, bytes]] = []
        at, end = 0, len(buffer)
        while end - at >= 2:
            head, second = buffer[at], buffer[at + 1]
            size, start = second & 0x7F, at + 2
            if size == 126:
                if end < start + 2:
                    break
                (size,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif size == 127:
                if end < start + 8:
                    break
                (size,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            key = b""
            if second & 0x80:
                key = bytes(buffer[start : start + 4])
                start += 4
            if end < start + size:
                break
            payload = bytes(buffer[start : start + size])
            if key and key != _ZERO_KEY:
                payload = apply_mask(payload, key)
            frames.append((head, payload))
            at = start + size
        if at:
            del buffer[:at]
        return frames
