"""``python -m benchmarks.ws_icount UPSTREAM_URL KIND N``: N frames relayed, to count instructions.

The socket relay's cost per frame, independent of the machine's load: this
calls ``KIND``'s app in process (no server in front) with one WebSocket
session of N text frames of 1 KB, each sent once the echo of the last is back,
against the fake upstream's echo on loopback in another process (``python -m
benchmarks.serve upstream``). Run it under callgrind twice and take the
difference::

    valgrind --tool=callgrind python -m benchmarks.ws_icount URL proxy-ws 100
    valgrind --tool=callgrind python -m benchmarks.ws_icount URL proxy-ws 300

(instructions per frame, both ways: the second total less the first, over 200).
Both runs relay 20 frames, then ``gc.freeze()``, before the counted frames.
``KIND`` is ``floor-ws`` or ``proxy-ws`` (the apps ``benchmarks.serve`` serves).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
from typing import Any

from .icount import started
from .ws_client import payload

#: Frames relayed before counting starts (and the heap is frozen).
WARM_UP = 20


def app_for(kind: str, upstream: str) -> tuple[Any, str]:
    """The app ``kind`` names in front of ``upstream``, and the socket path to open."""
    if kind == "floor-ws":
        from .floor import SocketFloor

        return SocketFloor(upstream), "/v1/realtime"
    from .serve import socket_proxy_app

    return socket_proxy_app(upstream)[0], "/openai/realtime"


async def session(app: Any, path: str, frames: int) -> int:
    """One socket through ``app``: ``frames`` text frames, each echoed; the echoes counted."""
    text = payload().decode("ascii")
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"model=gpt-realtime",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"authorization", b"Bearer client")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "subprotocols": [],
        "extensions": {},
    }
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "websocket.connect"})
    echoed = 0
    closed = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        nonlocal echoed
        kind = message["type"]
        if kind == "websocket.accept":
            inbox.put_nowait({"type": "websocket.receive", "text": text})
        elif kind == "websocket.send":
            if message.get("text") != text:
                raise SystemExit("the echo is not the frame sent")
            echoed += 1
            if echoed == WARM_UP:
                gc.collect()
                gc.freeze()
            if echoed < WARM_UP + frames:
                inbox.put_nowait({"type": "websocket.receive", "text": text})
            else:
                inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        elif kind == "websocket.close":
            closed.set()
            inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        else:
            raise SystemExit(f"the app refused the socket: {message}")

    await app(scope, inbox.get, send)
    return echoed


async def run(kind: str, upstream: str, frames: int) -> None:
    """Start ``kind``'s app (its lifespan), relay one session, then shut it down."""
    app, path = app_for(kind, upstream)
    async with started(app):
        echoed = await session(app, path, frames)
    if echoed != WARM_UP + frames:
        raise SystemExit(f"{kind}: {echoed} of {WARM_UP + frames} frames came back")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("upstream", help="the fake upstream's base URL")
    parser.add_argument("kind", choices=("floor-ws", "proxy-ws"))
    parser.add_argument("frames", type=int)
    args = parser.parse_args()
    asyncio.run(run(args.kind, args.upstream.rstrip("/"), args.frames))


if __name__ == "__main__":
    main()
