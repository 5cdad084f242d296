"""Event delivery (isolation of failing and slow sinks) and the ready-made sinks."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from provider_proxy import ProxyEvent, Usage
from provider_proxy.observe._sinks import (
    EventDispatcher,
    JsonLogSink,
    NdjsonUsageSink,
    event_fields,
)

from .events import EVENT, event

NO_USAGE = event(request_id="req-2", usage=None, path="/models")


class Boom(RuntimeError):
    pass


def _sink_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "event sink" in r.getMessage()]


# -- the dispatcher -------------------------------------------------------------------


def test_a_raising_sync_sink_is_logged_once_and_others_still_get_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[ProxyEvent] = []

    def broken(event: ProxyEvent) -> None:
        raise Boom("sink bug")

    dispatcher = EventDispatcher([broken, seen.append])
    with caplog.at_level(logging.DEBUG):
        for _ in range(50):
            dispatcher.emit(EVENT)  # never raises
    assert seen == [EVENT] * 50
    failures = _sink_failures(caplog)
    assert len(failures) == 1
    assert failures[0].levelno == logging.ERROR
    assert failures[0].exc_info is not None
    assert failures[0].exc_info[0] is Boom
    assert dispatcher.failures == [50, 0]


@pytest.mark.anyio
async def test_a_raising_async_sink_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def broken(event: ProxyEvent) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise Boom("async sink bug")

    dispatcher = EventDispatcher([broken])
    with caplog.at_level(logging.DEBUG):
        for _ in range(20):
            dispatcher.emit(EVENT)
        await dispatcher.aclose()
    assert calls == 20
    assert len(_sink_failures(caplog)) == 1
    assert dispatcher.failures == [20]
    assert dispatcher.pending == 0


@pytest.mark.anyio
async def test_a_slow_async_sink_does_not_delay_emit() -> None:
    delivered: list[ProxyEvent] = []
    release = asyncio.Event()

    async def slow(event: ProxyEvent) -> None:
        await release.wait()
        delivered.append(event)

    dispatcher = EventDispatcher([slow])
    started = time.perf_counter()
    for _ in range(100):
        dispatcher.emit(EVENT)
    assert time.perf_counter() - started < 0.5  # emit only schedules
    assert dispatcher.pending == 100
    assert delivered == []
    release.set()
    await dispatcher.aclose(timeout=5)
    assert len(delivered) == 100
    assert dispatcher.pending == 0


@pytest.mark.anyio
async def test_aclose_cancels_what_does_not_finish_in_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled = asyncio.Event()

    async def stuck(event: ProxyEvent) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    dispatcher = EventDispatcher([stuck])
    dispatcher.emit(EVENT)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        await dispatcher.aclose(timeout=0.05)
    assert time.perf_counter() - started < 2
    assert cancelled.is_set()
    assert dispatcher.pending == 0  # no task left to be destroyed pending
    assert "did not finish" in caplog.text
    await dispatcher.aclose()  # nothing pending: returns at once


@pytest.mark.anyio
async def test_pending_deliveries_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()
    delivered = 0

    async def slow(event: ProxyEvent) -> None:
        nonlocal delivered
        await release.wait()
        delivered += 1

    dispatcher = EventDispatcher([slow], max_pending=3)
    with caplog.at_level(logging.ERROR):
        for _ in range(10):
            dispatcher.emit(EVENT)
    assert dispatcher.pending == 3
    assert dispatcher.failures == [7]
    assert len(_sink_failures(caplog)) == 1
    release.set()
    await dispatcher.aclose()
    assert delivered == 3


def test_async_sink_without_a_running_loop_is_dropped_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def sink(event: ProxyEvent) -> None:
        raise AssertionError("never runs")

    dispatcher = EventDispatcher([sink])
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.ERROR):
        warnings.simplefilter("always")
        dispatcher.emit(EVENT)
        dispatcher.emit(EVENT)
        gc.collect()
    assert [str(w.message) for w in caught] == []  # no "coroutine was never awaited"
    assert dispatcher.failures == [2]
    assert len(_sink_failures(caplog)) == 1


@pytest.mark.anyio
async def test_sync_sinks_run_before_emit_returns_and_async_ones_after() -> None:
    order: list[str] = []

    async def later(event: ProxyEvent) -> None:
        order.append("async")

    dispatcher = EventDispatcher([later, lambda event: order.append("sync")])
    dispatcher.emit(EVENT)
    order.append("emit returned")
    await dispatcher.aclose()
    assert order == ["sync", "emit returned", "async"]


# -- JsonLogSink ---------------------------------------------------------------------


def test_json_log_line_has_every_field_flat(caplog: pytest.LogCaptureFixture) -> None:
    sink = JsonLogSink()
    with caplog.at_level(logging.INFO, logger="provider_proxy.access"):
        sink(EVENT)
        sink(NO_USAGE)
    first, second = caplog.records
    assert first.name == "provider_proxy.access"
    assert first.levelno == logging.INFO
    assert first.proxy_event is EVENT  # type: ignore[attr-defined]
    line = json.loads(first.getMessage())
    assert line == {
        "request_id": "req-1",
        "provider": "openai",
        "method": "POST",
        "path": "/chat/completions",
        "model": "gpt-4o",
        "identity": "team-a",
        "status": 200,
        "upstream_status": 200,
        "error_kind": None,
        "streamed": True,
        "started_at": 1700000000.123457,
        "time_to_headers": 0.250123,
        "time_to_first_byte": 0.3,
        "duration": 1.5,
        "overhead": 0.0004,
        "request_bytes": 120,
        "response_bytes": 3400,
        "input_tokens": 1200,
        "output_tokens": 20,
        "cache_read_tokens": 1024,
        "cache_write_tokens": 0,
        "reasoning_tokens": None,
        "web_searches": None,
        "total_tokens": 1220,
        "dialect": None,
        "client_dialect": None,
        "translated": False,
        "websocket": None,
        "frames": 0,
        "close_code": None,
        "cost_usd": None,
        "cost": None,
        "cost_unknown": None,
        "route": None,
        "deployments": [],
        "not_retried": None,
        "key": None,
    }
    # Every event field is there (usage flattened), so a new field cannot be forgotten.
    names = {f.name for f in dataclasses.fields(ProxyEvent)} - {"usage"}
    assert names <= set(line)
    empty = json.loads(second.getMessage())
    assert empty["input_tokens"] is None
    assert empty["total_tokens"] is None


def test_json_log_sink_level_and_logger_name(caplog: pytest.LogCaptureFixture) -> None:
    sink = JsonLogSink(logger_name="myapp.llm", level=logging.DEBUG)
    with caplog.at_level(logging.DEBUG, logger="myapp.llm"):
        assert sink.enabled()
        sink(EVENT)
    assert [(r.name, r.levelno) for r in caplog.records] == [("myapp.llm", logging.DEBUG)]


def test_json_log_sink_computes_nothing_when_disabled() -> None:
    logging.getLogger("provider_proxy.test.silent").setLevel(logging.WARNING)
    sink = JsonLogSink(logger_name="provider_proxy.test.silent")
    assert not sink.enabled()

    class Untouchable:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"read {name}")

    sink(Untouchable())  # type: ignore[arg-type]


def test_event_fields_round_times_and_keep_the_rest() -> None:
    fields = event_fields(EVENT)
    assert fields["started_at"] == 1700000000.123457
    assert fields["request_bytes"] == 120
    assert "usage" not in fields


# -- NdjsonUsageSink -----------------------------------------------------------------


def test_ndjson_lines_schema_and_append_mode(tmp_path: Path) -> None:
    path = tmp_path / "usage.ndjson"
    path.write_text('{"earlier": "line"}\n')
    sink = NdjsonUsageSink(path)
    sink(EVENT)
    sink(NO_USAGE)  # no usage: no line
    sink(dataclasses.replace(EVENT, request_id="req-3", usage=Usage(5, None), streamed=False))
    lines = path.read_text().splitlines()  # line-buffered: on disk before close()
    sink.close()
    assert json.loads(lines[0]) == {"earlier": "line"}
    records = [json.loads(line) for line in lines[1:]]
    assert records == [
        {
            "schema": 1,
            "time": 1700000000.123,
            "request_id": "req-1",
            "provider": "openai",
            "method": "POST",
            "path": "/chat/completions",
            "model": "gpt-4o",
            "identity": "team-a",
            "status": 200,
            "streamed": True,
            "input_tokens": 1200,
            "output_tokens": 20,
            "cache_read_tokens": 1024,
            "cache_write_tokens": 0,
            "reasoning_tokens": None,
            "web_searches": None,
            "cost_usd": None,
            "cost": None,
            "cost_unknown": None,
        },
        {
            **records[0],
            "request_id": "req-3",
            "streamed": False,
            "input_tokens": 5,
            "output_tokens": None,
            "cache_read_tokens": None,
            "cache_write_tokens": None,
        },
    ]


def test_ndjson_reopens_after_close(tmp_path: Path) -> None:
    path = tmp_path / "usage.ndjson"
    sink = NdjsonUsageSink(path)
    sink(EVENT)
    sink.close()
    path.rename(tmp_path / "rotated.ndjson")
    sink(EVENT)
    sink.close()
    sink.close()  # twice is fine
    assert len(path.read_text().splitlines()) == 1
    assert len((tmp_path / "rotated.ndjson").read_text().splitlines()) == 1


def test_ndjson_lines_from_many_threads_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "usage.ndjson"
    sink = NdjsonUsageSink(path)
    long_model = dataclasses.replace(EVENT, model="m" * 5000)

    def write(n: int) -> None:
        for i in range(200):
            sink(dataclasses.replace(long_model, request_id=f"{n}-{i}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.close()
    ids = [json.loads(line)["request_id"] for line in path.read_text().splitlines()]
    assert sorted(ids) == sorted(f"{n}-{i}" for n in range(8) for i in range(200))
