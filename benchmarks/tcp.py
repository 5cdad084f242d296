"""The TCP setting every benchmark protocol (client, upstream) makes on its connection."""

from __future__ import annotations

import asyncio
import socket
from typing import cast


def no_delay(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """``transport`` with ``TCP_NODELAY`` set, as an :class:`asyncio.Transport`.

    Small writes go out at once, as a real client's and a provider's do. (uvloop's
    transports implement asyncio.Transport without subclassing it.)
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return cast("asyncio.Transport", transport)
