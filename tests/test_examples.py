"""Each example runs, against the fake provider: built in-process, and as documented.

Importing ``examples.django_app`` here configures Django with its URLconf before
any example is run as a script.
"""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.django_app import create_application
from examples.fastapi_app import create_app
from examples.standalone import build_adapters

from provider_proxy import ProviderAdapter
from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter
from provider_proxy.testing import FakeUpstream

from .conftest import ANTHROPIC_KEY, CLIENT_KEY, OPENAI_KEY
from .servers import ServerThread, env_without_keys, free_port, get_when_up, serve

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
TEXT = "Hello from the fake upstream, streamed one piece at a time."


def _adapters(upstream: ServerThread) -> list[ProviderAdapter]:
    return [
        OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
        AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
    ]


def _check_proxy_routes(client: httpx.Client, fake: FakeUpstream, prefix: str) -> None:
    """Both providers answer through the served proxy, with the proxy's keys."""
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY}
    response = client.post(f"{prefix}/openai/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == TEXT
    assert fake.last.path == "/v1/chat/completions"
    assert fake.last.header("authorization") == f"Bearer {OPENAI_KEY}"
    assert fake.last.header("x-api-key") is None

    response = client.post(
        f"{prefix}/anthropic/v1/messages", json={**CHAT, "max_tokens": 5}, headers=headers
    )
    assert response.status_code == 200
    assert response.json()["content"][0]["text"] == TEXT
    assert fake.last.path == "/v1/messages"
    assert fake.last.header("x-api-key") == ANTHROPIC_KEY
    assert fake.last.header("authorization") is None


class RecordingTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, noting whether the proxy used it and closed it."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await super().handle_async_request(request)

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


def test_fastapi_example(upstream: ServerThread, fake: FakeUpstream) -> None:
    transport = RecordingTransport()
    app = create_app(_adapters(upstream), transport=transport)
    with serve(app) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/").json() == {"hello": "from the host app"}
        health = client.get("/llm/health").json()
        assert health["providers"]["openai"]["enabled"] is True
        assert health["providers"]["anthropic"]["enabled"] is True
        # The host's lifespan ran the proxy's startup: both keys were probed through
        # the proxy's own transport.
        assert health["providers"]["openai"]["credentials"]["state"] == "valid"
        assert transport.requests == 2
        _check_proxy_routes(client, fake, "/llm")
        # Not under the mount: FastAPI's own 404, not the proxy's.
        response = client.get("/openai/models")
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}
    assert transport.requests == 4
    # The host's lifespan ran the proxy's shutdown: the upstream pool is closed.
    assert transport.closed


def test_django_example_with_lifespan_on(upstream: ServerThread, fake: FakeUpstream) -> None:
    transport = RecordingTransport()
    app = create_application(_adapters(upstream), transport=transport)
    # uvicorn with lifespan="on" stops at startup when the app fails lifespan;
    # Django's handler refuses it, and mount() answers in its place.
    with serve(app, lifespan="on") as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/").json() == {"hello": "from the Django app"}
        assert client.get("/llm/health").json()["providers"]["openai"]["enabled"] is True
        _check_proxy_routes(client, fake, "/llm")
        # Not under the mount: Django's own 404 page.
        response = client.get("/llmx/openai/models")
        assert response.status_code == 404
        assert "text/html" in response.headers["content-type"]
    # Two startup credential probes, then the two proxied requests.
    assert transport.requests == 4
    assert transport.closed


@pytest.mark.parametrize(
    ("script", "attribute"),
    [("fastapi_app.py", "app"), ("django_app.py", "application")],
)
def test_examples_run_as_scripts(
    script: str, attribute: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []

    def run(app: Any, **options: Any) -> None:
        calls.append((app, options))

    monkeypatch.setattr("uvicorn.run", run)
    namespace = runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    assert len(calls) == 1
    app, options = calls[0]
    assert app is namespace[attribute]
    assert options == {"host": "127.0.0.1", "port": 8000}


def _run_until_up(command: list[str], url: str, env: dict[str, str]) -> httpx.Response:
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        return get_when_up(url, process)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
        # A clean start and shutdown: uvicorn reports lifespan failures on stderr.
        assert b"Traceback" not in stderr, stderr.decode(errors="replace")
        assert b"lifespan" not in stderr.lower(), stderr.decode(errors="replace")


@pytest.mark.parametrize("target", ["examples.fastapi_app:app", "examples.django_app:application"])
def test_examples_under_the_uvicorn_command(target: str) -> None:
    port = free_port()
    env = env_without_keys(OPENAI_API_KEY=OPENAI_KEY)
    command = [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--lifespan", "on"]
    response = _run_until_up(command, f"http://127.0.0.1:{port}/llm/health", env)
    assert response.status_code == 200
    providers = response.json()["providers"]
    # The default adapters, keyed from the environment.
    assert providers["openai"]["enabled"] is True
    assert providers["openai"]["base_url"] == "https://api.openai.com/v1"
    # The startup probe ran (this machine may not reach the provider) and shows no key.
    assert "credentials" in providers["openai"]
    assert OPENAI_KEY not in response.text
    assert providers["anthropic"]["enabled"] is False
    assert "ANTHROPIC_API_KEY" in providers["anthropic"]["reason"]


def test_standalone_example_serves(upstream: ServerThread, fake: FakeUpstream) -> None:
    port = free_port()
    env = env_without_keys(
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=upstream.url + "/v1",
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        ANTHROPIC_BASE_URL=upstream.url,
    )
    command = [sys.executable, str(EXAMPLES / "standalone.py"), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        health = get_when_up(f"http://127.0.0.1:{port}/health", process).json()
        assert health["providers"]["openai"]["base_url"] == upstream.url + "/v1"
        assert health["providers"]["anthropic"]["base_url"] == upstream.url
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            response = client.get("/openai/models")
            assert response.status_code == 200
            assert [m["id"] for m in response.json()["data"]] == ["gpt-fake-1", "gpt-fake-2"]
            assert fake.last.header("authorization") == f"Bearer {OPENAI_KEY}"
            _check_proxy_routes(client, fake, "")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")


def test_standalone_example_serves_only_providers_with_a_key(
    upstream: ServerThread, fake: FakeUpstream
) -> None:
    port = free_port()
    env = env_without_keys(ANTHROPIC_API_KEY=ANTHROPIC_KEY, ANTHROPIC_BASE_URL=upstream.url)
    command = [sys.executable, str(EXAMPLES / "standalone.py"), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        health = get_when_up(f"http://127.0.0.1:{port}/health", process).json()
        assert list(health["providers"]) == ["anthropic"]
        response = httpx.get(f"http://127.0.0.1:{port}/openai/models")
        assert response.status_code == 404
        assert "openai" in response.json()["error"]["message"]
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_standalone_example_without_keys_says_what_to_set() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "standalone.py"), "--port", str(free_port())],
        env=env_without_keys(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert b"Set OPENAI_API_KEY and/or ANTHROPIC_API_KEY" in result.stderr


def test_standalone_build_adapters_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    [openai_adapter] = build_adapters()
    assert openai_adapter.name == "openai"
    assert str(openai_adapter.base_url) == "http://127.0.0.1:9/v1"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    adapters = build_adapters()
    assert [adapter.name for adapter in adapters] == ["openai", "anthropic"]
    assert str(adapters[1].base_url) == "https://api.anthropic.com"


def test_custom_adapter_example_is_small_and_an_adapter() -> None:
    from examples.custom_adapter import AcmeAdapter

    source = (EXAMPLES / "custom_adapter.py").read_text()
    assert len(source.splitlines()) < 40
    adapter = AcmeAdapter(api_key="acme-key")
    assert isinstance(adapter, ProviderAdapter)
    assert adapter.name == "acme"
    assert str(adapter.base_url) == "https://api.acme.example/v2"
    assert adapter.endpoint_allowed("POST", "/chat/completions")
    assert not adapter.endpoint_allowed("POST", "/embeddings")


def test_custom_adapter_example_serves(upstream: ServerThread, fake: FakeUpstream) -> None:
    port = free_port()
    env = env_without_keys(ACME_API_KEY="acme-secret-key", ACME_BASE_URL=upstream.url + "/v2")
    command = [sys.executable, str(EXAMPLES / "custom_adapter.py"), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        health = get_when_up(f"http://127.0.0.1:{port}/health", process).json()
        assert health["providers"]["acme"]["enabled"] is True
        assert health["providers"]["acme"]["base_url"] == upstream.url + "/v2"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            headers = {"authorization": f"Bearer {CLIENT_KEY}"}
            response = client.post("/acme/chat/completions", json=CHAT, headers=headers)
            assert response.status_code == 200
            assert response.json()["choices"][0]["message"]["content"] == TEXT
            assert fake.last.path == "/v2/chat/completions"
            # The custom header carried the provider key; the client's key stayed here.
            assert fake.last.header("x-api-token") == "acme-secret-key"
            assert fake.last.header("authorization") is None
            seen = len(fake.requests)
            # Outside the allowlist: refused by the proxy, in Acme's error format.
            refused = client.post("/acme/embeddings", json={"input": "x"})
            assert refused.status_code == 403
            fault = refused.json()["fault"]
            assert fault["code"] == "endpoint_not_allowed"
            assert fault["request"] == refused.headers["x-request-id"]
            assert len(fake.requests) == seen
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")
