"""Each example runs, against the fake provider."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from provider_proxy._fake import FakeUpstream
from provider_proxy.adapters import OpenAIAdapter

from .conftest import OPENAI_KEY
from .servers import ServerThread, env_without_keys, free_port, get_when_up, serve

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_fastapi_example(upstream: ServerThread, fake: FakeUpstream) -> None:
    from examples.fastapi_app import create_app

    app = create_app([OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY)])
    with serve(app) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/").json() == {"hello": "from the host app"}
        response = client.post("/llm/openai/chat/completions", json={"model": "m"})
        assert response.status_code == 200
        assert fake.last.header("authorization") == f"Bearer {OPENAI_KEY}"


def test_django_example(upstream: ServerThread, fake: FakeUpstream) -> None:
    from examples.django_app import create_application

    app = create_application([OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY)])
    with serve(app) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/").json() == {"hello": "from the Django app"}
        assert client.get("/llm/health").json()["providers"]["openai"]["enabled"] is True
        response = client.post("/llm/openai/chat/completions", json={"model": "m"})
        assert response.status_code == 200
        assert fake.last.path == "/v1/chat/completions"


def test_standalone_example_serves(upstream: ServerThread, fake: FakeUpstream) -> None:
    port = free_port()
    env = env_without_keys(OPENAI_API_KEY=OPENAI_KEY, OPENAI_UPSTREAM=upstream.url + "/v1")
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "standalone.py"), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        response = get_when_up(f"http://127.0.0.1:{port}/openai/models", process)
        assert response.status_code == 200
        assert [m["id"] for m in response.json()["data"]] == ["gpt-fake-1", "gpt-fake-2"]
        assert fake.last.header("authorization") == f"Bearer {OPENAI_KEY}"
    finally:
        process.terminate()
        process.wait(10)
