"""examples/routing.py runs as documented: the route falls back and the client never sees it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "examples" / "routing.py"


def test_the_routing_example_falls_back() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "status: 200",
        "x-proxy-attempts: 2",
        "answer: Hello from the fake upstream, streamed one piece at a time.",
    ]
