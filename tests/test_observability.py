"""Events, usage accounting, sinks, metrics and /status through a real server."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from provider_proxy import ProxyApp, ProxyEvent, Usage
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.observe import _usage_tap
from provider_proxy.observe._sinks import EventDispatcher, JsonLogSink, NdjsonUsageSink
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY, CLIENT_KEY, OPENAI_KEY
from .servers import ServerThread, serve, wait_until

CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}


class Collect:
    """A sink keeping every event (called from the server's thread)."""

    def __init__(self) -> None:
        self.events: list[ProxyEvent] = []

    def __call__(self, event: ProxyEvent) -> None:
        self.events.append(event)


def test_streamed_chat_event_has_usage_and_ordered_timings(
    make_proxy: Callable[..., ProxyApp], fake: FakeUpstream
) -> None:
    sink = Collect()
    with serve(make_proxy(sinks=[sink], overhead_header=True)) as server:
        body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        # The exact bytes sent, so the event's request_bytes can be checked to the byte.
        raw = json.dumps(body).encode()
        headers = {
            "content-type": "application/json",
            "x-fake-chunks": "5",
            "x-fake-gap": "0.02",
            "x-request-id": "req-1",
        }
        sent = time.perf_counter()
        response = httpx.post(
            server.url + "/openai/chat/completions", content=raw, headers=headers, timeout=10
        )
        elapsed = time.perf_counter() - sent
        assert wait_until(lambda: len(sink.events) == 1)
    assert response.status_code == 200
    event = sink.events[0]
    # The proxy's own time in milliseconds with three decimals: the event's overhead
    # (both are the time until the upstream request went out), within the request.
    overhead_ms = response.headers["x-proxy-overhead-ms"]
    assert re.fullmatch(r"\d+\.\d{3}", overhead_ms), overhead_ms
    assert overhead_ms == f"{event.overhead * 1000:.3f}"
    assert 0 <= float(overhead_ms) <= event.duration * 1000
    assert float(overhead_ms) <= elapsed * 1000
    assert event.request_id == "req-1"
    assert (event.provider, event.method, event.path) == ("openai", "POST", "/chat/completions")
    assert (event.status, event.upstream_status, event.error_kind) == (200, 200, None)
    assert event.streamed
    assert event.model == "gpt-fake"
    assert event.usage == Usage(10, 5, None, None)
    # The client's body as received (before any transform), to the byte.
    assert event.request_bytes == len(raw)
    assert event.response_bytes == len(response.content)
    assert event.time_to_headers is not None
    assert event.time_to_first_byte is not None
    assert 0 <= event.overhead <= event.time_to_headers <= event.time_to_first_byte
    # Five chunks 20 ms apart: the last byte comes well after the first.
    assert event.duration >= event.time_to_first_byte + 0.06
    assert abs(event.started_at - time.time()) < 60


def test_streamed_events_without_usage_or_model_are_not_parsed(
    make_proxy: Callable[..., ProxyApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the built-in readers, once the model is known only events naming usage
    # or why the answer ended are parsed: 1 (model) + 1 (finish) + 1 (usage) of
    # the 22 JSON events, not all of them.
    parsed: list[str] = []
    real_loads = _usage_tap.loads

    def counting(data: Any) -> Any:
        parsed.append(data if isinstance(data, str) else data.decode())
        return real_loads(data)

    monkeypatch.setattr(_usage_tap, "loads", counting)
    sink = Collect()
    with serve(make_proxy(sinks=[sink])) as server:
        body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        response = httpx.post(
            server.url + "/openai/chat/completions",
            json=body,
            headers={"x-fake-chunks": "20"},
            timeout=10,
        )
        assert wait_until(lambda: len(sink.events) == 1)
    assert response.status_code == 200
    assert response.text.count("data: {") == 22  # a final chunk with finish_reason
    assert sink.events[0].usage == Usage(10, 20, None, None)
    assert len(parsed) == 3, parsed
    assert '"finish_reason":"stop"' in parsed[1]
    assert '"usage"' in parsed[-1]


def test_anthropic_usage_and_error_kinds(
    make_proxy: Callable[..., ProxyApp], fake: FakeUpstream
) -> None:
    sink = Collect()
    with serve(make_proxy(sinks=[sink])) as server:
        httpx.post(
            server.url + "/anthropic/v1/messages",
            json={"model": "claude-x", "stream": True, "messages": []},
            headers={"x-fake-chunks": "3"},
        )
        httpx.get(server.url + "/nope/x")
        httpx.post(
            server.url + "/openai/chat/completions", json=CHAT, headers={"x-fake-status": "429"}
        )
        assert wait_until(lambda: len(sink.events) == 3)
    stream, unknown, limited = sink.events
    assert stream.usage == Usage(10, 3, None, None)
    assert stream.model == "claude-x"
    assert (unknown.provider, unknown.status, unknown.error_kind) == (
        None,
        404,
        "provider_not_found",
    )
    assert unknown.upstream_status is None
    assert (limited.status, limited.upstream_status, limited.error_kind) == (429, 429, None)


def test_failing_and_slow_sinks_delay_and_break_nothing(
    make_proxy: Callable[..., ProxyApp], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    released = threading.Event()

    def broken(event: ProxyEvent) -> None:
        calls.append("broken")
        raise RuntimeError("sink bug")

    async def slow(event: ProxyEvent) -> None:
        await asyncio.sleep(5)
        released.set()

    good = Collect()
    with serve(make_proxy(sinks=[broken, slow, good])) as server, caplog.at_level(logging.ERROR):
        started = time.perf_counter()
        for _ in range(3):
            response = httpx.post(server.url + "/openai/chat/completions", json=CHAT)
            assert response.status_code == 200
        elapsed = time.perf_counter() - started
        assert wait_until(lambda: len(good.events) == 3)
    assert elapsed < 5  # the 5 s async sink held no response back
    assert calls == ["broken"] * 3
    failures = [r for r in caplog.records if "event sink" in r.getMessage()]
    assert len(failures) == 1  # logged once, not once per event


def test_json_log_and_ndjson_usage_file(
    make_proxy: Callable[..., ProxyApp], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "usage.ndjson"
    usage_file = NdjsonUsageSink(path)
    with (
        serve(make_proxy(sinks=[usage_file])) as server,
        caplog.at_level(logging.INFO, logger="provider_proxy.access"),
    ):
        httpx.post(server.url + "/openai/chat/completions", json=CHAT)
        httpx.get(server.url + "/health")
        assert wait_until(
            lambda: len([r for r in caplog.records if r.name.endswith("access")]) == 2
        )
    usage_file.close()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("access")]
    assert lines[0]["provider"] == "openai"
    assert (lines[0]["input_tokens"], lines[0]["output_tokens"]) == (10, 11)
    assert lines[1]["path"] == "/health"
    assert "body" not in lines[0]
    assert "messages" not in json.dumps(lines[0])
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 1  # /health carries no usage
    assert records[0]["schema"] == 1
    assert records[0]["provider"] == "openai"
    assert (records[0]["input_tokens"], records[0]["output_tokens"]) == (10, 11)


def test_prometheus_metrics_parse(make_proxy: Callable[..., ProxyApp]) -> None:
    with serve(make_proxy(metrics=True)) as server:
        httpx.post(server.url + "/openai/chat/completions", json=CHAT)
        httpx.post(
            server.url + "/openai/chat/completions", json=CHAT, headers={"x-fake-status": "500"}
        )
        response = httpx.get(server.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert (
        samples[("provider_proxy_requests_total", (("provider", "openai"), ("status", "200")))] == 1
    )
    assert (
        samples[("provider_proxy_requests_total", (("provider", "openai"), ("status", "500")))] == 1
    )
    tokens = (("kind", "output"), ("model", "gpt-fake"), ("provider", "openai"))
    assert samples[("provider_proxy_tokens_total", tokens)] == 11
    assert (
        samples[("provider_proxy_request_duration_seconds_count", (("provider", "openai"),))] == 2
    )
    assert samples[("provider_proxy_in_flight_requests", (("provider", "openai"),))] == 0


def test_metrics_off_by_default(make_proxy: Callable[..., ProxyApp]) -> None:
    with serve(make_proxy()) as server:
        response = httpx.get(server.url + "/metrics")
    assert response.status_code == 404
    assert "metrics=True" in response.json()["error"]["message"]


def test_status_page_and_no_secret_anywhere(
    make_proxy: Callable[..., ProxyApp], upstream: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = make_proxy(
        adapters=[
            OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
        ]
    )
    texts: list[str] = [repr(proxy), *map(repr, proxy.adapters.values())]
    with caplog.at_level(logging.DEBUG), serve(proxy) as server:
        auth = {"authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY}
        for path in ("/health", "/status", "/v1/models", "/nope/x"):
            texts.append(httpx.get(server.url + path, headers=auth).text)
        for status in ("401", "500"):
            texts.append(
                httpx.post(
                    server.url + "/openai/chat/completions",
                    json=CHAT,
                    headers={**auth, "x-fake-status": status},
                ).text
            )
        texts.append(httpx.post(server.url + "/openai/files", headers=auth).text)
        status = httpx.get(server.url + "/status").json()
    texts.extend(record.getMessage() for record in caplog.records)
    for text in texts:
        for secret in (OPENAI_KEY, ANTHROPIC_KEY, CLIENT_KEY):
            assert secret not in text
    assert status["providers"]["openai"]["base_url"] == upstream.url + "/v1"
    assert status["requests"]["total"] >= 7
    assert status["requests"]["by_status"]["403"] == 1
    assert status["models"]["providers"]["openai"]["models"] == 2
    assert status["guards"] is None


def test_dispatcher_isolates_sink_failures_in_process(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    def bad(event: Any) -> None:
        raise ValueError("x")

    dispatcher = EventDispatcher([bad, lambda event: seen.append(1)])
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            dispatcher.emit(None)  # type: ignore[arg-type]
    assert seen == [1] * 5
    assert len(caplog.records) == 1


def test_json_log_sink_does_nothing_when_its_level_is_off() -> None:
    sink = JsonLogSink(logger_name="provider_proxy.test.silent")
    logging.getLogger("provider_proxy.test.silent").setLevel(logging.WARNING)
    assert not sink.enabled()
    sink(None)  # type: ignore[arg-type]  # nothing is read from the event
