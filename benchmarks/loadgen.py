"""Throughput and latency under a closed loop: ``wrk`` when installed, else our own client.

Either way the load generator runs in its own process on the core the server
under test does not use. Results come back in one shape: requests per second
and latency percentiles in milliseconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .procs import prepare_child, python_command, read_tagged, spawn, stop

_LUA = Path(__file__).with_name("wrk.lua")


def tool(wanted: str = "auto") -> str:
    """``wrk`` or ``python`` (the fallback client), as asked and as installed."""
    if wanted == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if wanted == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--loadgen wrk: wrk is not installed (apt-get install wrk)")
    return wanted


def run(
    generator: str,
    url: str,
    body_file: Path,
    *,
    connections: int,
    seconds: int,
    cpu: int,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One closed-loop run: ``rps``, ``latency_ms`` (p50, p90, p99, max, mean), ``errors``."""
    headers = headers or {}
    if generator == "wrk":
        return _wrk(url, body_file, connections, seconds, cpu, headers)
    arguments = {
        "url": url,
        "body_file": str(body_file),
        "connections": connections,
        "duration": seconds,
        "headers": headers,
    }
    process = spawn(python_command("client", "load", json.dumps(arguments)), cpu)
    try:
        result: dict[str, Any] = json.loads(read_tagged(process.stdout, "RESULT ", seconds + 60))
    finally:
        stop(process)
    return result


def _wrk(
    url: str, body_file: Path, connections: int, seconds: int, cpu: int, headers: dict[str, str]
) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command += ["-s", str(_LUA), url]
    completed = subprocess.run(
        command,
        env={"BENCH_BODY": str(body_file), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        preexec_fn=lambda: prepare_child(cpu),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    line = next(
        (x for x in completed.stdout.splitlines() if x.startswith("RESULT ")),
        None,
    )
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{completed.stdout}\n{completed.stderr}")
    raw = json.loads(line[len("RESULT ") :])
    seconds_run = raw["duration_us"] / 1e6
    latency = {name: value / 1000 for name, value in raw["latency_us"].items()}
    return {
        "requests": raw["requests"],
        "errors": sum(raw["errors"].values()),
        "duration_s": seconds_run,
        "rps": raw["requests"] / seconds_run,
        "latency_ms": latency,
    }
