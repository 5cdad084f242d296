"""examples/stateful_provider.py runs as documented: a two-turn chat through the served
proxy reaches the stateful upstream as one conversation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import openai

from .servers import env_without_keys, free_port, get_when_up

ROOT = Path(__file__).parent.parent


def test_the_stateful_example_serves_a_multi_turn_chat() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "examples/stateful_provider.py", "--port", str(port)],
        cwd=ROOT,
        env=env_without_keys(PYTHONPATH=f"{ROOT / 'src'}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert get_when_up(f"{base}/llm/health", process).status_code == 200
        with openai.OpenAI(base_url=f"{base}/llm/memo/v1", api_key="unused") as client:
            messages: list[dict[str, str]] = [{"role": "user", "content": "hi"}]
            first = client.chat.completions.create(model="any", messages=messages)
            answer = first.choices[0].message.content or ""
            assert answer.strip() == "Message 1 of conv-1: hi"
            messages += [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "again"},
            ]
            second = client.chat.completions.create(model="any", messages=messages)
        assert (second.choices[0].message.content or "").strip() == "Message 3 of conv-1: again"
        status = httpx.get(f"{base}/llm/status").json()["sessions"]
        assert (status["hits"], status["saved"]) == (1, 2)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")
