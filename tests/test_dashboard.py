"""The dashboard: who may open it, what it is made of, and its charts in headless Chromium.

The Chromium test saves a screenshot to ``$PROVIDER_PROXY_ARTIFACTS/dashboard.png``
(``build/artifacts/dashboard.png`` in the checkout by default), kept by CI as an artefact.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Request, sync_playwright

from provider_proxy import Budget, Guards, ProxyApp
from provider_proxy.observe import RecentTraffic

from .conftest import CLIENT_KEY
from .servers import ServerThread, serve, wait_until
from .test_observability import Collect

ADMIN_KEY = "admin-key-0123456789"
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("PROVIDER_PROXY_ARTIFACTS", ROOT / "build" / "artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PRICES = {
    "gpt-fake": {"input": 2.5, "output": 10, "cache_read": 1.25},
    "gpt-fake-mini": {"input": 0.15, "output": 0.6},
    "claude-fake": {"input": 3, "output": 15},
}


def chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}


@pytest.fixture
def dashboard(make_proxy: Callable[..., ProxyApp]) -> Iterator[tuple[ServerThread, Collect]]:
    guards = Guards(
        client_keys={ADMIN_KEY: "ops", CLIENT_KEY: "team-a", "second-key-0123456789": "team-b"},
        admins=["ops"],
        budgets=[Budget("1.50", period="day")],
    )
    sink = Collect()
    proxy = make_proxy(guards=guards, prices=PRICES, dashboard=True, sinks=[sink])
    with serve(proxy) as server:
        yield server, sink


def traffic(server: ServerThread) -> int:
    """Real requests of two clients to two providers, one of them failing; their count."""
    sent = 0
    for key, model, extra in [
        (CLIENT_KEY, "gpt-fake", {"x-fake-cached": "5"}),
        (CLIENT_KEY, "gpt-fake", {}),
        (CLIENT_KEY, "gpt-fake-mini", {}),
        ("second-key-0123456789", "gpt-fake", {"x-fake-chunks": "40"}),
        ("second-key-0123456789", "gpt-fake", {"x-fake-status": "500"}),
    ]:
        response = httpx.post(
            server.url + "/openai/chat/completions",
            json=chat(model),
            headers={"authorization": f"Bearer {key}", **extra},
            timeout=10,
        )
        assert response.status_code == int(extra.get("x-fake-status", 200))
        sent += 1
    response = httpx.post(
        server.url + "/anthropic/v1/messages",
        json=chat("claude-fake"),
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
        timeout=10,
    )
    assert response.status_code == 200
    return sent + 1


def test_only_admins_open_the_dashboard(dashboard: tuple[ServerThread, Collect]) -> None:
    server, _ = dashboard
    nobody = httpx.get(server.url + "/dashboard", timeout=10)
    client = httpx.get(server.url + f"/dashboard?key={CLIENT_KEY}", timeout=10)
    admin = httpx.get(server.url + f"/dashboard?key={ADMIN_KEY}", timeout=10)
    header = httpx.get(
        server.url + "/dashboard", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    )
    assert nobody.status_code == 401
    assert client.status_code == 403
    assert client.json()["error"]["code"] == "not_an_admin"
    assert "Guards(admins=[...])" in client.json()["error"]["message"]
    assert admin.status_code == header.status_code == 200
    assert admin.headers["content-type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in admin.headers["content-security-policy"]
    assert admin.headers["cache-control"] == "no-store"
    assert ADMIN_KEY not in admin.text


def test_the_page_is_self_contained(dashboard: tuple[ServerThread, Collect]) -> None:
    server, _ = dashboard
    html = httpx.get(server.url + f"/dashboard?key={ADMIN_KEY}", timeout=10).text
    urls = set(re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html))
    assert urls == set()  # no script, style or font from anywhere
    assert set(re.findall(r"https?://[^\s\"'`]+", html)) == {"http://www.w3.org/2000/svg"}


def test_the_dashboard_is_off_unless_asked(make_proxy: Callable[..., ProxyApp]) -> None:
    with serve(make_proxy()) as server:
        response = httpx.get(server.url + "/dashboard", timeout=10)
    assert response.status_code == 404


def test_recent_traffic_keeps_an_hour_by_minute() -> None:
    now = [3600.0 * 10]
    recent = RecentTraffic(clock=lambda: now[0])
    recent.add("openai", failed=False)
    recent.add("openai", failed=True)
    now[0] += 120
    recent.add("openai", failed=False)
    status = recent.status()
    series = status["by_provider"]["openai"]
    assert len(series["requests"]) == 60
    assert status["since"] == (36000 + 120) // 60 * 60 - 59 * 60
    assert series["requests"][-3:] == [2, 0, 1]
    assert series["errors"][-3:] == [1, 0, 0]
    now[0] += 3600
    recent.add("openai", failed=False)
    assert sum(recent.status()["by_provider"]["openai"]["requests"]) == 1  # the old hour is gone


def test_the_charts_render_real_requests_in_headless_chromium(
    dashboard: tuple[ServerThread, Collect],
) -> None:
    server, sink = dashboard
    count = traffic(server)
    assert wait_until(lambda: len([e for e in sink.events if e.provider]) == count)
    fetched: list[str] = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def record(request: Request) -> None:
                fetched.append(request.url)

            page.on("request", record)
            page.goto(server.url + f"/dashboard?key={ADMIN_KEY}")
            page.wait_for_function("Number(document.body.dataset.rendered) >= 1", timeout=15000)
            page.wait_for_selector("svg[data-chart=traffic] rect[data-value]")
            bars = {
                provider: page.eval_on_selector_all(
                    f"svg[data-chart=traffic][data-provider={provider}] rect[data-value]",
                    "rects => rects.reduce((sum, r) => sum + Number(r.dataset.value), 0)",
                )
                for provider in ("openai", "anthropic")
            }
            errors = page.eval_on_selector_all(
                "svg[data-chart=traffic] rect[data-errors]",
                "rects => rects.reduce((sum, r) => sum + Number(r.dataset.errors), 0)",
            )
            models = page.inner_text("[data-chart=by-model]")
            clients = page.inner_text("[data-chart=by-client]")
            budgets = page.inner_text("[data-chart=budgets]")
            providers = page.inner_text("[data-chart=providers]")
            spent = page.inner_text("#spent")
            in_flight = page.inner_text("#in-flight")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert bars == {"openai": 5, "anthropic": 1}
    assert errors == 1
    for model in ("gpt-fake", "gpt-fake-mini", "claude-fake"):
        assert model in models
    assert "team-a" in clients
    assert "team-b" in clients
    assert "$1.50/day per client" in budgets
    assert "team-a" in budgets
    assert "openai" in providers
    assert "enabled" in providers
    assert in_flight == "0"  # its own poll is not counted
    total = float(sum(e.cost.total for e in sink.events if e.cost is not None))
    assert spent.startswith("$")
    assert float(spent[1:]) == pytest.approx(total, rel=0.01)
    # Only the page and its status polls: nothing from anywhere else.
    assert fetched
    assert all(url.startswith(server.url) for url in fetched)
    assert shot.stat().st_size > 10_000
