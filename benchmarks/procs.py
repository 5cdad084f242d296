"""Child processes of a run: servers and clients pinned to CPU cores, and their footprint.

The proxy gets a core of its own; the upstream, the load generator and the
measuring clients share the other, so the proxy's throughput is what one core
of it can do and nothing else competes with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent

#: The nice value of every process of a run, when the user may raise priorities.
PRIORITY = -10

#: A measurement during which other processes used more than this share of a
#: core is repeated (up to ``ATTEMPTS`` times in all; the least disturbed is kept).
DISTURBED = 0.10
ATTEMPTS = 3

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Cores:
    """Which core runs the server under test, and which runs everything else."""

    server: int
    other: int

    @classmethod
    def pick(cls, wanted: Sequence[int] | None = None) -> Cores:
        """The first two allowed cores (or ``wanted``); one core serves both on a 1-core box."""
        cpus = list(wanted) if wanted else sorted(os.sched_getaffinity(0))
        return cls(cpus[0], cpus[1] if len(cpus) > 1 else cpus[0])


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one: 1,000 streams need 2,000+ sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pin(cpu: int) -> None:
    """Pin the calling process to ``cpu``."""
    os.sched_setaffinity(0, {cpu})


def python_command(module: str, *args: str) -> list[str]:
    """``python -m benchmarks.<module> args``, with the interpreter running the suite."""
    return [sys.executable, "-m", f"benchmarks.{module}", *args]


def spawn(command: list[str], cpu: int, *, stdin: bool = False) -> subprocess.Popen[str]:
    """Start ``command`` pinned to ``cpu``; its stdout is read line by line."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: prepare_child(cpu),
    )


def prepare_child(cpu: int) -> None:
    """Pin a new child to ``cpu``, lift its descriptor limit and raise its priority."""
    pin(cpu)
    raise_fd_limit()
    # Other work on a shared machine then takes less of the measured cores (root only).
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY)


def read_tagged(stream: IO[str] | None, tag: str, timeout: float = 60.0) -> str:
    """The rest of the first stdout line starting with ``tag`` (other lines are echoed)."""
    assert stream is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"the child exited before printing {tag}")
        if line.startswith(tag):
            return line[len(tag) :].strip()
        print("   ", line.rstrip(), file=sys.stderr)
    raise TimeoutError(f"no {tag} line within {timeout} s")


def stop(process: subprocess.Popen[str], grace: float = 5.0) -> None:
    """Ask ``process`` to stop; kill it if it does not within ``grace`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()


@dataclass
class Server:
    """A running server: its process, its base URL and the path chat requests go to."""

    kind: str
    process: subprocess.Popen[str]
    url: str
    note: str

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def chat_path(self) -> str:
        return (
            "/bench/chat/completions" if self.kind.startswith("proxy") else "/v1/chat/completions"
        )


@contextlib.contextmanager
def servers(kinds: Sequence[str], cores: Cores) -> Iterator[dict[str, Server]]:
    """The fake upstream (on the other core) and ``kinds`` in front of it (on the server core).

    ``kinds`` may include ``direct``, which is the upstream itself.
    """
    started: list[Server] = []
    try:
        upstream = _start("upstream", "", cores.other)
        started.append(upstream)
        by_kind = {"upstream": upstream, "direct": upstream}
        for kind in kinds:
            if kind not in by_kind:
                server = _start(kind, upstream.url, cores.server)
                started.append(server)
                by_kind[kind] = server
        yield by_kind
    finally:
        for server in reversed(started):
            stop(server.process)


def _start(kind: str, upstream: str, cpu: int) -> Server:
    process = spawn(python_command("serve", kind, "--upstream", upstream or "-"), cpu)
    try:
        port, _, note = read_tagged(process.stdout, "READY ").partition(" ")
    except BaseException:
        stop(process)
        raise
    return Server(kind, process, f"http://127.0.0.1:{port}", note)


def upstream_stats(upstream: Server) -> dict[str, Any]:
    """The fake upstream's counters (requests, transformed bodies, open streams)."""
    with urllib.request.urlopen(upstream.url + "/_stats", timeout=10) as response:
        stats: dict[str, Any] = json.load(response)
    return stats


@dataclass(frozen=True)
class Footprint:
    """A process's resident memory and open descriptors at one moment."""

    rss_kib: int
    fds: int
    sockets: int


def footprint(pid: int) -> Footprint:
    """Read ``pid``'s VmRSS and descriptors from ``/proc``."""
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
                break
    fds = sockets = 0
    fd_dir = f"/proc/{pid}/fd"
    for name in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            target = os.readlink(f"{fd_dir}/{name}")
            fds += 1
            sockets += target.startswith("socket:")
    return Footprint(rss, fds, sockets)


def _core_times(cpu: int) -> tuple[int, int]:
    """Ticks ``cpu`` spent busy (steal included) and in all, from ``/proc/stat``."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{cpu} "):
                user, nice, system, idle, iowait, irq, softirq, steal = map(int, line.split()[1:9])
                busy = user + nice + system + irq + softirq + steal
                return busy, busy + idle + iowait
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def _process_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _own_ticks() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage) * _TICKS


class Disturbance:
    """How much of the run's cores other processes used between start and :meth:`share`.

    The server's, the upstream's, this process's and its finished children's
    (load generator, clients) CPU time is the run's own; the rest of each core's
    busy time is someone else's.
    """

    def __init__(self, cores: Cores, server: int | None, upstream: int) -> None:
        self._cores = cores
        self._server = server
        self._upstream = upstream
        self._start = self._sample()

    def _sample(self) -> tuple[tuple[int, int], tuple[int, int], float, float]:
        server = 0.0 if self._server is None else _process_ticks(self._server)
        others = _process_ticks(self._upstream) + _own_ticks()
        return _core_times(self._cores.server), _core_times(self._cores.other), server, others

    def share(self) -> float:
        """The larger of the two cores' share used by other processes (0 to 1)."""
        (b0, t0), (b1, t1), server, others = self._start
        (b0_, t0_), (b1_, t1_), server_, others_ = self._sample()
        if self._cores.server == self._cores.other:
            busy, total = b1_ - b1, t1_ - t1
            return max(0.0, busy - (server_ - server) - (others_ - others)) / max(total, 1)
        core0 = max(0.0, (b0_ - b0) - (server_ - server)) / max(t0_ - t0, 1)
        core1 = max(0.0, (b1_ - b1) - (others_ - others)) / max(t1_ - t1, 1)
        return min(1.0, max(core0, core1))


def undisturbed(
    measure: Callable[[], dict[str, Any]], cores: Cores, server: int | None, upstream: int
) -> dict[str, Any]:
    """``measure()``, repeated while other processes took over ``DISTURBED`` of a core.

    The result carries ``disturbed`` (that share) and ``attempts``; the least
    disturbed attempt is kept.
    """
    best: dict[str, Any] | None = None
    for attempt in range(1, ATTEMPTS + 1):
        watch = Disturbance(cores, server, upstream)
        result = measure()
        result["disturbed"] = round(watch.share(), 3)
        result["attempts"] = attempt
        if best is None or result["disturbed"] < best["disturbed"]:
            best = result
        if result["disturbed"] <= DISTURBED:
            break
    assert best is not None
    best["attempts"] = attempt
    return best
