"""The scenarios: each starts its servers, measures every target and returns table rows.

Targets are measured in interleaved rounds (direct, floor, proxy, direct, ...)
and each number is the median over the rounds, so a burst of noise on the
machine lands on one round of every target rather than on one target.
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import litellm_proxy, loadgen
from .bodies import chat_body
from .procs import (
    DISTURBED,
    Cores,
    Footprint,
    Server,
    footprint,
    python_command,
    read_tagged,
    servers,
    spawn,
    stop,
    undisturbed,
    upstream_stats,
)

#: The columns of absolute numbers, in order.
COLUMNS = ("direct", "floor", "proxy", "proxy-transform")

#: The pyreqwest floor and proxy under uvicorn, that floor under granian, and the proxy
#: on its default transport under granian: the closed-loop scenarios measure them when
#: pyreqwest and granian are installed.
FAST_COLUMNS = ("floor-reqwest", "floor-granian", "proxy-reqwest", "proxy-granian")

#: Columns only some scenarios fill; the table shows them when a row has them.
EXTRA_COLUMNS = (*FAST_COLUMNS, "gateway", "litellm")


def _fast_columns() -> tuple[str, ...]:
    """:data:`FAST_COLUMNS` when their clients and server are installed, else none."""
    import importlib.util

    if all(importlib.util.find_spec(name) for name in ("pyreqwest", "granian")):
        return FAST_COLUMNS
    return ()


@dataclass(frozen=True)
class Settings:
    """How long and how often to measure, and where."""

    quick: bool
    seconds: int
    rounds: int
    warmup: int
    generator: str
    cores: Cores
    workdir: Path


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    metric: str
    values: dict[str, float | None]
    unit: str
    result: str
    target: str = ""
    met: bool | None = None


@dataclass
class Outcome:
    """A scenario's rows, its raw measurements and anything worth a note."""

    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _body_file(
    settings: Settings, size: int, *, model: str = "gpt-bench", stream: bool = False
) -> Path:
    name = f"chat-{size}" + (f"-{model.replace('/', '_')}" if model != "gpt-bench" else "")
    path = settings.workdir / f"{name}{'-stream' if stream else ''}.json"
    if not path.exists():
        path.write_bytes(chat_body(size, model=model, stream=stream))
    return path


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _ms(value: float) -> str:
    return f"{value:+.2f} ms" if abs(value) < 10 else f"{value:+.1f} ms"


def _transform_note(outcome: Outcome, by_kind: dict[str, Server], expected: int) -> None:
    """Say how the transform was configured and whether the upstream saw its bodies."""
    seen = upstream_stats(by_kind["upstream"])["transformed"]
    wiring = by_kind["proxy-transform"].note
    outcome.raw["transform"] = {"wiring": wiring, "bodies_transformed": seen}
    if seen < expected:
        outcome.notes.append(
            f"The transform did not take effect ({seen} transformed bodies reached the "
            f"upstream, {wiring}): the transformed numbers measure the untransformed path."
        )
    elif wiring == "transform=app-wide":
        outcome.notes.append(
            "OpenAICompatibleAdapter takes no transforms= yet: the transform was configured "
            "app-wide (make_asgi_app(..., transforms=[t])), which runs the same path."
        )


def _server_pid(by_kind: dict[str, Server], kind: str) -> int | None:
    """The process on the server core for ``kind`` (none for direct)."""
    return None if kind == "direct" else by_kind[kind].pid


def _disturbance_note(outcome: Outcome, name: str, runs: dict[str, list[dict[str, Any]]]) -> None:
    worst = max((r["disturbed"], kind) for kind, results in runs.items() for r in results)
    retried = sum(r["attempts"] - 1 for results in runs.values() for r in results)
    if retried or worst[0] > DISTURBED:
        outcome.notes.append(
            f"{name}: other processes were busy on the run's cores; {retried} measurements "
            f"were repeated, and the most disturbed one kept used {worst[0]:.0%} of a core "
            f"({worst[1]})."
        )


# -- closed-loop scenarios (wrk) ---------------------------------------------------------


def closed_loop(name: str, size: int, connections: int) -> Callable[[Settings], Outcome]:
    """Throughput and latency of chat requests of ``size`` bytes over ``connections``."""

    def scenario(settings: Settings) -> Outcome:
        outcome = Outcome()
        body = _body_file(settings, size)
        measured = (*COLUMNS, *_fast_columns())
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in measured}
        with servers(measured, settings.cores) as by_kind:

            def once(kind: str, seconds: int) -> dict[str, Any]:
                server = by_kind[kind]
                return loadgen.run(
                    settings.generator,
                    server.url + server.chat_path,
                    body,
                    connections=connections,
                    seconds=seconds,
                    cpu=settings.cores.other,
                )

            for kind in measured:
                once(kind, settings.warmup)
            for _ in range(settings.rounds):
                for kind in measured:
                    runs[kind].append(
                        undisturbed(
                            functools.partial(once, kind, settings.seconds),
                            settings.cores,
                            _server_pid(by_kind, kind),
                            by_kind["upstream"].pid,
                        )
                    )
            _transform_note(outcome, by_kind, 1)
        outcome.raw["runs"] = runs
        _disturbance_note(outcome, name, runs)
        for kind, results in runs.items():
            errors = sum(r["errors"] for r in results)
            if errors:
                outcome.notes.append(f"{kind}: {errors} requests failed.")

        def med(kind: str, key: str) -> float:
            if key == "rps":
                return _median([r["rps"] for r in runs[kind]])
            return _median([r["latency_ms"][key] for r in runs[kind]])

        rps = {kind: med(kind, "rps") for kind in measured}
        p50 = {kind: med(kind, "p50") for kind in measured}
        p99 = {kind: med(kind, "p99") for kind in measured}
        ratio = rps["proxy"] / rps["floor"]
        transformed_ratio = rps["proxy-transform"] / rps["floor"]
        throughput_target = connections == 64 and size == 1024
        outcome.rows.append(
            Row(
                name,
                "throughput",
                dict(rps),
                "req/s",
                f"{ratio:.2f}x floor (transform {transformed_ratio:.2f}x)",
                "≥ 1x floor" if throughput_target else "",
                ratio >= 1.0 if throughput_target else None,
            )
        )
        if "proxy-granian" in rps:
            outcome.rows.extend(_fast_rows(name, rps, target=throughput_target))
        for label, values, limit in (("p50", p50, 0.25), ("p99", p99, 1.0)):
            added = values["proxy"] - values["direct"]
            floor_added = values["floor"] - values["direct"]
            target, met = "", None
            if connections == 1 and size == 1024:
                target, met = f"≤ {limit:g} ms added", added <= limit
            if size == 1024 * 1024 and label == "p50":
                target, met = "≤ 1.5 ms added", added <= 1.5
            outcome.rows.append(
                Row(
                    name,
                    f"latency {label}",
                    dict(values),
                    "ms",
                    f"{_ms(added)} over direct (floor {_ms(floor_added)})",
                    target,
                    met,
                )
            )
            if connections == 1:
                added_t = values["proxy-transform"] - values["direct"]
                target, met = "", None
                if size == 1024 * 1024 and label == "p50":
                    target, met = "≤ 5 ms added", added_t <= 5
                outcome.rows.append(
                    Row(
                        name,
                        f"latency {label}, transformed",
                        dict(values),
                        "ms",
                        f"{_ms(added_t)} over direct "
                        f"({_ms(values['proxy-transform'] - values['proxy'])} over proxy)",
                        target,
                        met,
                    )
                )
        return outcome

    return scenario


def _fast_rows(name: str, rps: dict[str, float], *, target: bool) -> list[Row]:
    """Throughput on pyreqwest (uvicorn) and under granian, against the aiohttp floor."""
    floor = rps["floor"]
    rows = []
    for proxy, own_floor, server, goal in (
        ("proxy-reqwest", "floor-reqwest", "uvicorn, reqwest", 1.0),
        ("proxy-granian", "floor-granian", "granian", 1.5),
    ):
        ratio = rps[proxy] / floor
        rows.append(
            Row(
                name,
                f"throughput ({server})",
                {kind: rps[kind] for kind in ("direct", "floor", own_floor, proxy)},
                "req/s",
                f"{ratio:.2f}x floor (its own floor {rps[own_floor] / floor:.2f}x)",
                f"≥ {goal:g}x floor" if target else "",
                ratio >= goal if target else None,
            )
        )
    return rows


# -- streaming -----------------------------------------------------------------------------


def _client(settings: Settings, mode: str, **arguments: Any) -> dict[str, Any]:
    return _run_client(settings, "client", mode, arguments)


def _socket_client(settings: Settings, mode: str, **arguments: Any) -> dict[str, Any]:
    """A mode of :mod:`benchmarks.ws_client`, on the other core."""
    return _run_client(settings, "ws_client", mode, arguments)


def _run_client(
    settings: Settings, module: str, mode: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    process = spawn(python_command(module, mode, json.dumps(arguments)), settings.cores.other)
    try:
        result: dict[str, Any] = json.loads(read_tagged(process.stdout, "RESULT ", 600))
    finally:
        stop(process)
    return result


def stream(settings: Settings) -> Outcome:
    """50 chunks, 20 ms apart: time to first byte and per-chunk delay added."""
    outcome = Outcome()
    body = _body_file(settings, 1024)
    kinds = ("direct", "floor", "proxy", *_fast_columns())
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    with servers(kinds, settings.cores) as by_kind:
        for _ in range(settings.rounds):
            for kind in kinds:
                server = by_kind[kind]
                arguments = {
                    "url": server.url + server.chat_path,
                    "body_file": str(body),
                    "concurrency": 8,
                    # Streams last a second each: twice as long, for enough of them.
                    "duration": 2 * settings.seconds,
                    "chunks": 50,
                    "gap_ms": 20,
                }
                runs[kind].append(
                    undisturbed(
                        functools.partial(_client, settings, "stream", **arguments),
                        settings.cores,
                        _server_pid(by_kind, kind),
                        by_kind["upstream"].pid,
                    )
                )
    outcome.raw["runs"] = runs
    _disturbance_note(outcome, "stream", runs)
    for kind, results in runs.items():
        incomplete = sum(r["incomplete"] for r in results)
        if incomplete:
            outcome.notes.append(f"stream via {kind}: {incomplete} streams were incomplete.")

    def med(kind: str, metric: str, point: str) -> float:
        return _median([r[metric][point] for r in runs[kind]])

    for metric, label, point, limit in (
        ("ttfb_ms", "time to first byte p50", "p50", None),
        ("ttfb_ms", "time to first byte p99", "p99", 1.0),
        ("chunk_delay_ms", "per-chunk delay p50", "p50", None),
        ("chunk_delay_ms", "per-chunk delay p99", "p99", "floor"),
    ):
        values: dict[str, float | None] = {kind: med(kind, metric, point) for kind in kinds}
        added = (values["proxy"] or 0) - (values["direct"] or 0)
        floor_added = (values["floor"] or 0) - (values["direct"] or 0)
        bound = floor_added if limit == "floor" else limit if isinstance(limit, float) else None
        outcome.rows.append(
            Row(
                "stream-50x20ms",
                label,
                values,
                "ms",
                f"{_ms(added)} over direct (floor {_ms(floor_added)})",
                _stream_target(limit),
                None if bound is None else added <= bound,
            )
        )
    streams = sum(r["streams"] for r in runs["proxy"])
    outcome.notes.append(
        f"stream: {streams} streams per target, 8 at a time on a staggered schedule; "
        "per-chunk delay is the arrival time minus the upstream's send stamp (CLOCK_MONOTONIC)."
    )
    return outcome


def _stream_target(limit: float | str | None) -> str:
    """A stream row's target: milliseconds added over direct, or no worse than the floor."""
    if limit is None:
        return ""
    return "≤ the floor's" if limit == "floor" else f"≤ {limit:g} ms added"


# -- the gateway: OpenAI Chat in, Anthropic Messages upstream ------------------------------

#: The gateway scenario's targets, in the order they are measured each round.
GATEWAY_KINDS: tuple[str, ...] = ("direct", "proxy", "gateway", "litellm")


def gateway(settings: Settings) -> Outcome:
    """The translated path beside the same request's passthrough, and LiteLLM's, in one run.

    ``proxy`` relays an OpenAI chat request to the fake's OpenAI route;
    ``gateway`` takes the same request at ``/v1/chat/completions`` with
    ``model="anthropic/claude-x"`` and translates it to Anthropic Messages and
    the answer back; ``litellm`` is LiteLLM's proxy to the same Anthropic fake.
    Throughput at 64 connections (whole answers), then streams of 50 events
    20 ms apart: each event's delay from the upstream's send stamp.
    """
    outcome = Outcome()
    size, connections, chunks, gap_ms = 1024, 64, 50, 20
    models = {"direct": "gpt-bench", "proxy": "gpt-bench"}
    models |= {"gateway": litellm_proxy.MODEL, "litellm": litellm_proxy.MODEL}
    whole = {kind: _body_file(settings, size, model=m) for kind, m in models.items()}
    streamed = {k: _body_file(settings, size, model=m, stream=True) for k, m in models.items()}
    loads: dict[str, list[dict[str, Any]]] = {}
    streams: dict[str, list[dict[str, Any]]] = {}
    litellm_missing = ""
    with servers(("proxy", "gateway"), settings.cores) as by_kind:
        try:
            by_kind["litellm"] = litellm_proxy.start(
                by_kind["upstream"].url, settings.cores.server, settings.workdir
            )
        except litellm_proxy.Unavailable as exc:
            litellm_missing = f"LiteLLM was not measured: {exc}."
            outcome.notes.append(litellm_missing)
        try:
            kinds: list[str] = [k for k in GATEWAY_KINDS if k in by_kind]
            loads = {kind: [] for kind in kinds}
            streams = {kind: [] for kind in kinds}

            def load(kind: str, seconds: int) -> dict[str, Any]:
                server = by_kind[kind]
                return loadgen.run(
                    settings.generator,
                    server.url + server.chat_path,
                    whole[kind],
                    connections=connections,
                    seconds=seconds,
                    cpu=settings.cores.other,
                )

            def stream_(kind: str) -> dict[str, Any]:
                server = by_kind[kind]
                return _client(
                    settings,
                    "stream",
                    url=server.url + server.chat_path,
                    body_file=str(streamed[kind]),
                    concurrency=8,
                    duration=2 * settings.seconds,
                    chunks=chunks,
                    gap_ms=gap_ms,
                )

            for kind in kinds:
                load(kind, settings.warmup)
            for _ in range(settings.rounds):
                for kind in kinds:
                    loads[kind].append(
                        undisturbed(
                            functools.partial(load, kind, settings.seconds),
                            settings.cores,
                            _server_pid(by_kind, kind),
                            by_kind["upstream"].pid,
                        )
                    )
                for kind in kinds:
                    streams[kind].append(
                        undisturbed(
                            functools.partial(stream_, kind),
                            settings.cores,
                            _server_pid(by_kind, kind),
                            by_kind["upstream"].pid,
                        )
                    )
            if "litellm" in by_kind:
                outcome.raw["litellm"] = by_kind["litellm"].note
                outcome.notes.append(
                    f"gateway: {by_kind['litellm'].note} (its proxy, one worker, on the "
                    "server's core), from a venv of its own; never a dependency."
                )
        finally:
            if "litellm" in by_kind:
                stop(by_kind["litellm"].process)
    outcome.raw["runs"] = loads
    outcome.raw["streams"] = streams
    _disturbance_note(outcome, "gateway", loads)
    _disturbance_note(outcome, "gateway stream", streams)

    failed: set[str] = set()
    for kind, results in loads.items():
        errors = sum(r["errors"] for r in results)
        total = sum(r["requests"] for r in results)
        if errors:
            outcome.notes.append(f"gateway via {kind}: {errors} of {total} requests failed.")
        if errors * 2 > total:
            failed.add(kind)
    for kind, results in streams.items():
        incomplete = sum(r["incomplete"] for r in results)
        count = sum(r["streams"] for r in results)
        if incomplete:
            outcome.notes.append(
                f"gateway stream via {kind}: {incomplete} of {count} streams were incomplete."
            )
        if incomplete * 2 > count or not count:
            failed.add(f"{kind} stream")

    def rps(kind: str) -> float | None:
        if kind not in loads or kind in failed:
            return None
        return _median([r["rps"] for r in loads[kind]])

    def latency(kind: str, point: str) -> float | None:
        if kind not in loads or kind in failed:
            return None
        return _median([r["latency_ms"][point] for r in loads[kind]])

    def streamed_ms(kind: str, metric: str, point: str) -> float | None:
        if kind not in streams or f"{kind} stream" in failed:
            return None
        return _median([r[metric][point] for r in streams[kind]])

    name = f"gateway 1 KB, {connections} conns"
    throughput = {kind: rps(kind) for kind in GATEWAY_KINDS}
    proxy_rps, gateway_rps, litellm_rps = (throughput[k] for k in ("proxy", "gateway", "litellm"))
    if proxy_rps and gateway_rps:
        ratio = gateway_rps / proxy_rps
        outcome.rows.append(
            Row(
                name,
                "throughput, translated",
                throughput,
                "req/s",
                f"translated {ratio:.2f}x the proxy's passthrough",
                "≥ 0.6x passthrough",
                ratio >= 0.6,
            )
        )
    if gateway_rps and litellm_rps:
        versus = gateway_rps / litellm_rps
        outcome.rows.append(
            Row(
                name,
                "throughput vs LiteLLM",
                throughput,
                "req/s",
                f"translated {versus:.1f}x LiteLLM",
                "≥ 20x LiteLLM",
                versus >= 20,
            )
        )
    else:
        reason = litellm_missing or "its requests failed (see the notes)"
        outcome.rows.append(
            Row(
                name,
                "throughput vs LiteLLM",
                throughput,
                "req/s",
                f"not measured: {reason.removeprefix('LiteLLM was not measured: ')}",
                "≥ 20x LiteLLM",
                None,
            )
        )
    p50 = {kind: latency(kind, "p50") for kind in throughput}
    if p50["proxy"] is not None and p50["gateway"] is not None:
        outcome.rows.append(
            Row(
                name,
                "latency p50",
                p50,
                "ms",
                f"translated {_ms(p50['gateway'] - p50['proxy'])} over passthrough",
            )
        )

    label = f"gateway stream-{chunks}x{gap_ms}ms"
    for metric, title, point, limit in (
        ("chunk_delay_ms", "per-event delay p50", "p50", 0.1),
        ("chunk_delay_ms", "per-event delay p99", "p99", None),
        ("ttfb_ms", "time to first byte p50", "p50", None),
    ):
        values = {kind: streamed_ms(kind, metric, point) for kind in throughput}
        proxy_v, gateway_v = values["proxy"], values["gateway"]
        if proxy_v is None or gateway_v is None or values["direct"] is None:
            continue
        added = gateway_v - proxy_v
        result = (
            f"translation {_ms(added)} over passthrough "
            f"(passthrough {_ms(proxy_v - values['direct'])} over direct"
        )
        if values["litellm"] is not None:
            result += f"; LiteLLM {_ms(values['litellm'] - values['direct'])}"
        outcome.rows.append(
            Row(
                label,
                title,
                values,
                "ms",
                result + ")",
                "" if limit is None else f"≤ {limit:g} ms added by translation",
                None if limit is None else added <= limit,
            )
        )
    counted = {kind: sum(r["streams"] for r in results) for kind, results in streams.items()}
    outcome.notes.append(
        "gateway: direct and proxy send an OpenAI chat request to the fake's OpenAI route; "
        "gateway sends the same request with model anthropic/claude-x to the gateway's "
        "/v1/chat/completions (AnthropicAdapter only, so it is translated to Messages and "
        "back); litellm is LiteLLM's proxy to the same Anthropic fake. Streams: "
        + ", ".join(f"{n} via {kind}" for kind, n in counted.items())
        + f", 8 at a time; each of the {chunks} events is timed from the upstream's send stamp."
    )
    return outcome


# -- the WebSocket relay -------------------------------------------------------------------

#: The socket scenario's targets: its column in the table, and the path a client opens.
SOCKET_KINDS: dict[str, tuple[str, str]] = {
    "direct": ("direct", "/v1/realtime?model=gpt-realtime"),
    "floor-ws": ("floor", "/v1/realtime?model=gpt-realtime"),
    "proxy-ws": ("proxy", "/openai/realtime?model=gpt-realtime"),
}

#: Sockets sending back to back in the throughput measurement.
SOCKETS = 64

#: The relay's targets: frames per second against the floor's, and the round trip
#: it adds at one socket over the floor's, at the median.
SOCKET_THROUGHPUT_TARGET = 0.8
SOCKET_ADDED_P50_MS = 0.25


def socket_url(server: Server, kind: str) -> str:
    """``ws://`` URL of the socket ``kind`` relays (or, direct, the upstream's own)."""
    return "ws" + server.url.removeprefix("http") + SOCKET_KINDS[kind][1]


def websocket(settings: Settings) -> Outcome:
    """The WebSocket relay beside a hand-written one and the upstream itself, in one run.

    The upstream echoes each 1 KB text frame at once. Measured per target, in
    interleaved rounds: frames per second through 64 sockets sending back to
    back, each frame's round trip at one socket, and the handshake's time.
    """
    outcome = Outcome()
    kinds = tuple(SOCKET_KINDS)
    measures = ("many", "one", "handshakes")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        measure: {kind: [] for kind in kinds} for measure in measures
    }
    with servers([k for k in kinds if k != "direct"], settings.cores) as by_kind:
        before = upstream_stats(by_kind["upstream"])

        def once(kind: str, measure: str, seconds: int) -> dict[str, Any]:
            url = socket_url(by_kind[kind], kind)
            if measure == "handshakes":
                count = 50 * seconds
                return _socket_client(settings, "handshakes", url=url, count=count)
            sockets = SOCKETS if measure == "many" else 1
            return _socket_client(settings, "frames", url=url, sockets=sockets, duration=seconds)

        for kind in kinds:
            once(kind, "many", settings.warmup)
        for _ in range(settings.rounds):
            for measure in measures:
                for kind in kinds:
                    runs[measure][kind].append(
                        undisturbed(
                            functools.partial(once, kind, measure, settings.seconds),
                            settings.cores,
                            _server_pid(by_kind, kind),
                            by_kind["upstream"].pid,
                        )
                    )
        after = upstream_stats(by_kind["upstream"])
    echoed = after["frames"] - before["frames"]
    outcome.raw = {"runs": runs, "upstream_frames": echoed}
    for measure, by_target in runs.items():
        _disturbance_note(outcome, f"websocket {measure}", by_target)
    outcome.rows = socket_rows(runs)
    sent = sum(r["frames"] for m in ("many", "one") for rs in runs[m].values() for r in rs)
    failed = {
        kind: sum(r["errors"] + r.get("mismatched", 0) for m in runs.values() for r in m[kind])
        for kind in kinds
    }
    for kind, errors in failed.items():
        if errors:
            outcome.notes.append(f"websocket via {kind}: {errors} sockets or frames failed.")
    outcome.notes.append(
        "websocket: the upstream echoes each frame (a 1 KB Realtime-like "
        "input_audio_buffer.append, which starts no turn); direct opens the upstream's "
        "/v1/realtime, floor is benchmarks/floor.py's SocketFloor (websockets' client, "
        "frames piped both ways), proxy is make_asgi_app([OpenAIAdapter(...)], "
        "ws_max_sockets_per_client=1000) at "
        f"/openai/realtime?model=; {sent} frames measured, {echoed} echoed by the upstream "
        "(the warm-up's too)."
    )
    return outcome


def socket_rows(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[Row]:
    """The socket scenario's rows from its runs: medians over the rounds, as ratios."""

    def med(measure: str, key: str, point: str | None = None) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        for kind, (column, _) in SOCKET_KINDS.items():
            results = runs[measure].get(kind) or []
            numbers = [r[key] if point is None else r[key].get(point) for r in results]
            present = [n for n in numbers if n is not None]
            values[column] = _median(present) if present else None
        return values

    rows: list[Row] = []
    fps = med("many", "fps")
    if fps["proxy"] and fps["floor"]:
        ratio = fps["proxy"] / fps["floor"]
        rows.append(
            Row(
                f"websocket 1 KB frames, {SOCKETS} sockets",
                "throughput",
                fps,
                "frames/s",
                f"{ratio:.2f}x floor",
                f"≥ {SOCKET_THROUGHPUT_TARGET:g}x floor",
                ratio >= SOCKET_THROUGHPUT_TARGET,
            )
        )
    for point in ("p50", "p99"):
        values = med("one", "latency_ms", point)
        proxy, floor, direct = values["proxy"], values["floor"], values["direct"]
        if proxy is None or floor is None or direct is None:
            continue
        added = proxy - floor
        limit = SOCKET_ADDED_P50_MS if point == "p50" else None
        rows.append(
            Row(
                "websocket 1 KB frames, 1 socket",
                f"round trip {point}",
                values,
                "ms",
                f"{_ms(added)} over floor (floor {_ms(floor - direct)} over direct)",
                "" if limit is None else f"≤ {limit:g} ms added over floor",
                None if limit is None else added <= limit,
            )
        )
    for point in ("p50", "p99"):
        values = med("handshakes", "setup_ms", point)
        proxy, floor, direct = values["proxy"], values["floor"], values["direct"]
        if proxy is None or floor is None or direct is None:
            continue
        rows.append(
            Row(
                "websocket handshake",
                f"set-up {point}",
                values,
                "ms",
                f"{_ms(proxy - direct)} over direct (floor {_ms(floor - direct)})",
            )
        )
    return rows


# -- memory and descriptors ----------------------------------------------------------------


def _settle(seconds: float) -> None:
    time.sleep(seconds)


def memory(settings: Settings) -> Outcome:
    """Resident memory per open stream at 1,000 streams, and whether closing frees them."""
    outcome = Outcome()
    # The proxy on the default transport (aiohttp's), and on the reqwest one.
    for kind in ("floor", "proxy", "proxy-reqwest"):
        outcome.raw[kind] = raw = _memory_of(kind, settings, 1000)
        if raw["client"]["failed"]:
            outcome.notes.append(f"memory via {kind}: {raw['client']['failed']} streams failed.")
    proxy, floor = outcome.raw["proxy"], outcome.raw["floor"]
    for kind, label in (("proxy", ""), ("proxy-reqwest", " (reqwest transport)")):
        raw = outcome.raw[kind]
        before, during = raw["before"]["rss_kib"] / 1024, raw["during"]["rss_kib"] / 1024
        outcome.rows.append(
            Row(
                "streams-1000",
                f"RSS per open stream{label}",
                {"floor": floor["kib_per_stream"], kind: raw["kib_per_stream"]},
                "KiB",
                f"{raw['kib_per_stream']:.1f} KiB ({before:.0f} → {during:.0f} MiB)",
                "" if label else "≤ 30 KiB",  # the target is the default's
                None if label else raw["kib_per_stream"] <= 30,
            )
        )
    outcome.rows.append(
        Row(
            "streams-1000",
            "upstream streams open after the clients left",
            {"floor": floor["upstream_open_after"], "proxy": proxy["upstream_open_after"]},
            "",
            f"{proxy['upstream_open_after']} of {proxy['upstream_open_during']}; "
            f"sockets {proxy['before']['sockets']} → {proxy['during']['sockets']} → "
            f"{proxy['after']['sockets']}",
            "0",
            proxy["upstream_open_after"] == 0,
        )
    )
    return outcome


def _memory_of(kind: str, settings: Settings, count: int) -> dict[str, Any]:
    """``kind``'s footprint before, during and after holding ``count`` streams."""
    body = _body_file(settings, 1024)
    with servers((kind,), settings.cores) as by_kind:
        server = by_kind[kind]
        arguments = {"url": server.url + server.chat_path, "body_file": str(body)}
        _hold(settings, arguments, 50, None)  # warm-up: the pool, buffers, code paths
        _settle(1)
        before = footprint(server.pid)
        during: list[Footprint] = []
        upstream_during: list[int] = []

        def sample() -> None:
            during.append(footprint(server.pid))
            upstream_during.append(upstream_stats(by_kind["upstream"])["open_streams"])

        opened = _hold(settings, arguments, count, sample)
        _settle(2)
        after = footprint(server.pid)
        left_open = upstream_stats(by_kind["upstream"])["open_streams"]
    return {
        "before": vars(before),
        "during": vars(during[0]),
        "after": vars(after),
        "client": opened,
        "upstream_open_during": upstream_during[0],
        "upstream_open_after": left_open,
        "kib_per_stream": (during[0].rss_kib - before.rss_kib) / max(opened["opened"], 1),
    }


def _hold(
    settings: Settings,
    arguments: dict[str, Any],
    count: int,
    while_open: Callable[[], None] | None,
) -> dict[str, Any]:
    """Open ``count`` streams through the server, call ``while_open``, close them."""
    process = spawn(
        python_command("client", "hold", json.dumps({**arguments, "count": count, "gap_ms": 1000})),
        settings.cores.other,
        stdin=True,
    )
    try:
        opened = read_tagged(process.stdout, "OPEN ", 120).split()
        _settle(1)
        if while_open is not None:
            while_open()
        assert process.stdin is not None
        process.stdin.write("close\n")
        process.stdin.flush()
        result: dict[str, Any] = json.loads(read_tagged(process.stdout, "RESULT ", 120))
    finally:
        stop(process)
    result["open_seconds"] = float(opened[2])
    return result


def aborts(settings: Settings) -> Outcome:
    """10,000 requests, 10% dropped mid-stream: memory and descriptors before and after."""
    outcome = Outcome()
    body = _body_file(settings, 1024)
    total = 2000 if settings.quick else 10_000
    settle = 1.0 if settings.quick else 6.0  # past the pool's 5 s keep-alive expiry
    for kind in ("floor", "proxy"):
        with servers((kind,), settings.cores) as by_kind:
            server = by_kind[kind]
            arguments = {
                "url": server.url + server.chat_path,
                "body_file": str(body),
                "concurrency": 64,
                "every": 10,
            }
            warm = _client(settings, "aborts", total=total // 5, **arguments)
            _settle(settle)
            before = footprint(server.pid)
            run = _client(settings, "aborts", total=total, **arguments)
            _settle(settle)
            after = footprint(server.pid)
            stats = upstream_stats(by_kind["upstream"])
        outcome.raw[kind] = {
            "warm_up": warm,
            "run": run,
            "before": vars(before),
            "after": vars(after),
            "upstream": stats,
        }
    proxy, floor = outcome.raw["proxy"], outcome.raw["floor"]

    def growth(raw: dict[str, Any], key: str) -> int:
        return int(raw["after"][key] - raw["before"][key])

    rss, fds = growth(proxy, "rss_kib"), growth(proxy, "fds")
    name = f"aborts-{total // 1000}k"
    outcome.rows.append(
        Row(
            name,
            "RSS growth after the run",
            {"floor": growth(floor, "rss_kib"), "proxy": rss},
            "KiB",
            f"{rss:+d} KiB ({proxy['before']['rss_kib'] / 1024:.1f} → "
            f"{proxy['after']['rss_kib'] / 1024:.1f} MiB)",
            "≤ 1024 KiB (no growth)",
            rss <= 1024,
        )
    )
    outcome.rows.append(
        Row(
            name,
            "open descriptors growth",
            {"floor": growth(floor, "fds"), "proxy": fds},
            "fds",
            f"{fds:+d} ({proxy['before']['fds']} → {proxy['after']['fds']}; sockets "
            f"{proxy['before']['sockets']} → {proxy['after']['sockets']})",
            "≤ 0",
            fds <= 0,
        )
    )
    left = proxy["upstream"]["open_streams"]
    outcome.rows.append(
        Row(
            name,
            "upstream streams left open",
            {"floor": floor["upstream"]["open_streams"], "proxy": left},
            "",
            f"{left} ({proxy['upstream']['streams_cut']} cut short when their clients left)",
            "0",
            left == 0,
        )
    )
    for kind in ("floor", "proxy"):
        run = outcome.raw[kind]["run"]
        outcome.notes.append(
            f"aborts via {kind}: {run['ok']} answered, {run['aborted']} dropped mid-stream, "
            f"{run['errors']} failed, in {run['duration_s']:.1f} s."
        )
    return outcome


# -- in-process ----------------------------------------------------------------------------


def micro(settings: Settings) -> Outcome:
    """Parse, transform and serialise a body in-process, pinned to the server core."""
    outcome = Outcome()
    seconds = "0.2" if settings.quick else "1"
    process = spawn(python_command("micro", "--seconds", seconds), settings.cores.server)
    try:
        results: dict[str, dict[str, float]] = json.loads(
            read_tagged(process.stdout, "RESULT ", 600)
        )
    finally:
        stop(process)
    outcome.raw = results
    for label, row in results.items():
        outcome.rows.append(
            Row(
                f"micro {label}",
                "parse + transform + serialise",
                {"proxy": row["fast_transform"]},
                "ms",
                f"parse {row['fast_parse']:.3f} + serialise {row['fast_serialize']:.3f} ms; "
                f"ASCII-only body {row['ascii_transform']:.3f} ms; stdlib json "
                f"{row['stdlib_transform']:.3f} ms; untransformed path: none (bytes forwarded)",
            )
        )
    return outcome


SCENARIOS: dict[str, Callable[[Settings], Outcome]] = {
    "chat-1k-c1": closed_loop("chat 1 KB, 1 conn", 1024, 1),
    "chat-1k-c64": closed_loop("chat 1 KB, 64 conns", 1024, 64),
    "body-100k": closed_loop("body 100 KB, 1 conn", 100 * 1024, 1),
    "body-1m": closed_loop("body 1 MB, 1 conn", 1024 * 1024, 1),
    "stream": stream,
    "memory": memory,
    "aborts": aborts,
    "micro": micro,
    "gateway": gateway,
    "websocket": websocket,
}
