"""``python -m benchmarks.micro``: the transform path in-process, without sockets.

What a configured transform adds to a request is one parse, the transform and
one serialisation of the body (the untransformed path forwards the bytes as
received). This times those steps with :mod:`provider_proxy._json` (orjson
with the ``fast`` extra) and, for comparison, the standard library's json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from provider_proxy import _json

from .bodies import chat_body, mark

SIZES = {"1 KB": 1024, "100 KB": 100 * 1024, "1 MB": 1024 * 1024}


def _stdlib_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def per_call_ms(function: Callable[[], object], seconds: float) -> float:
    """The median time of one call over batches filling ``seconds``, in milliseconds."""
    function()
    start = time.perf_counter()
    function()
    once = max(time.perf_counter() - start, 1e-7)
    batch = max(1, int(0.02 / once))
    samples: list[float] = []
    stop_at = time.perf_counter() + seconds
    while time.perf_counter() < stop_at or len(samples) < 5:
        start = time.perf_counter()
        for _ in range(batch):
            function()
        samples.append((time.perf_counter() - start) / batch * 1000)
    samples.sort()
    return samples[len(samples) // 2]


def _backend(
    raw: bytes,
    loads: Callable[[bytes], Any],
    dumps: Callable[[Any], bytes],
    seconds: float,
) -> dict[str, float]:
    parse = per_call_ms(lambda: loads(raw), seconds)
    roundtrip = per_call_ms(lambda: dumps(loads(raw)), seconds)
    return {
        "parse": parse,
        # Serialising a freshly parsed body, as the proxy does: non-ASCII strings have
        # no cached UTF-8 form yet, so this costs more than re-serialising one object.
        "serialize": max(roundtrip - parse, 0.0),
        "roundtrip": roundtrip,
        "transform": per_call_ms(lambda: dumps(mark(loads(raw), None)), seconds),
    }


def _ascii(raw: bytes) -> bytes:
    return raw.decode().encode("ascii", "replace")


def measure(seconds: float) -> dict[str, dict[str, float]]:
    """For each body size: parse, serialise and parse+transform+serialise, in ms.

    The suite's bodies carry some non-ASCII text, as chats do; ``ascii_*`` is
    the same body in plain ASCII, which orjson handles about twice as fast.
    """
    results: dict[str, dict[str, float]] = {}
    for label, size in SIZES.items():
        raw = chat_body(size)
        fast = _backend(raw, _json.loads, _json.dumps, seconds)
        ascii_ = _backend(_ascii(raw), _json.loads, _json.dumps, seconds)
        stdlib = _backend(raw, json.loads, _stdlib_dumps, seconds)
        results[label] = {
            **{f"fast_{step}": value for step, value in fast.items()},
            **{f"ascii_{step}": value for step, value in ascii_.items()},
            **{f"stdlib_{step}": value for step, value in stdlib.items()},
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    args = parser.parse_args()
    print("RESULT " + json.dumps(measure(args.seconds)), flush=True)


if __name__ == "__main__":
    main()
