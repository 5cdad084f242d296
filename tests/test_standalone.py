"""``provider-proxy serve`` and ``check`` as real processes: each setting seen from outside."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from provider_proxy.testing import FakeUpstream

from .servers import ServerThread, env_without_keys, free_port, get_when_up, wait_until

CLIENT_KEY = "ck-standalone-client-1"
ROTATED_CLIENT_KEY = "ck-standalone-client-2"
GW_KEY = "sk-gw-from-file-000001"
GW_KEY_ROTATED = "sk-gw-from-file-000002"
CLAUDE_KEY = "sk-claude-by-reference-1"


class Running:
    """A ``provider-proxy serve`` process; its stdout collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "provider_proxy", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        get_when_up(self.url + "/health", self.process)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def records(self) -> list[dict[str, Any]]:
        """The JSON lines written so far."""
        return [json.loads(line) for line in list(self.lines)]

    def stop(self) -> str:
        self.process.terminate()
        _, err = self.process.communicate(timeout=15)
        self._reader.join(5)
        return err


def chat(model: str = "fake-model") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}]}


# -- one service configured by a file, shared -----------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("standalone")


@pytest.fixture(scope="module")
def service(upstream: ServerThread, files: Path) -> Iterator[Running]:
    (files / "gw.key").write_text(GW_KEY + "\n")
    (files / "clients.txt").write_text(f"{CLIENT_KEY} team-a\n")
    port, claude_port = free_port(), free_port()
    (files / "proxy.toml").write_text(
        f"""
validate_credentials = "off"
metrics = true
inference_api = true
default_provider = "gw"

[server]
port = {port}
reload_interval = 0

[providers.gw]
type = "openai_compatible"
base_url = "${{FAKE_URL}}/v1"
user_agent = "n8n-agent/1.0"
api_key_file = "{files / "gw.key"}"

[providers.claude]
type = "anthropic"
base_url = "${{FAKE_URL}}"
api_key = "${{CLAUDE_TEST_KEY}}"

[guards]
client_keys_file = "{files / "clients.txt"}"

[[guards.rate_limits]]
limit = 2
window = 600
key = "ip"
paths = ["/status"]

[cors]
allow_origins = ["https://app.example"]

[sinks]
usage_file = "{files / "usage.ndjson"}"

[ports]
claude = {claude_port}
"""
    )
    env = env_without_keys(FAKE_URL=upstream.url, CLAUDE_TEST_KEY=CLAUDE_KEY)
    running = Running(["--config", str(files / "proxy.toml")], env, port)
    running.claude_url = f"http://127.0.0.1:{claude_port}"  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        running.stop()


def auth(key: str = CLIENT_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_startup_lines_name_each_provider_with_its_base_url(
    service: Running, upstream: ServerThread
) -> None:
    started = {
        r["provider"]: r for r in service.records() if r.get("message", "").startswith("provider ")
    }
    assert started["gw"]["base_url"] == upstream.url + "/v1"
    assert started["gw"]["credentials"] == "set"
    assert started["claude"]["base_url"] == upstream.url
    assert started["claude"]["port"] == int(service.claude_url.rsplit(":", 1)[1])  # type: ignore[attr-defined]
    assert all(r["level"] in ("info", "warning") for r in service.records())


def test_base_url_user_agent_and_key_file_reach_the_provider(
    service: Running, fake: FakeUpstream
) -> None:
    answer = httpx.post(service.url + "/gw/chat/completions", json=chat(), headers=auth())
    assert answer.status_code == 200, answer.text
    seen = fake.last
    assert seen.path == "/v1/chat/completions"
    assert seen.header("user-agent") == "n8n-agent/1.0"
    assert seen.header("authorization") == f"Bearer {GW_KEY}"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_access_log_line_on_stdout_without_keys_or_query(service: Running) -> None:
    httpx.post(
        service.url + "/gw/chat/completions?tag=query-text-not-logged",
        json=chat(),
        headers=auth(),
    )

    def logged() -> list[dict[str, Any]]:
        return [
            r
            for r in service.records()
            if r["logger"] == "provider_proxy.access" and r.get("provider") == "gw"
        ]

    assert wait_until(lambda: bool(logged()))
    line = logged()[-1]
    assert line["status"] == 200
    assert line["path"] == "/chat/completions"
    assert line["identity"] == "team-a"
    assert line["model"] == "fake-model"
    assert line["total_tokens"] > 0
    text = "\n".join(service.lines)
    assert "query-text-not-logged" not in text
    for secret in (CLIENT_KEY, GW_KEY, CLAUDE_KEY):
        assert secret not in text


def test_client_keys_are_required_and_errors_are_not_cached(service: Running) -> None:
    refused = httpx.post(service.url + "/gw/chat/completions", json=chat())
    assert refused.status_code == 401
    assert refused.headers["cache-control"] == "no-store"
    assert refused.headers["x-content-type-options"] == "nosniff"


def test_allowed_origin_gets_cors_headers(service: Running) -> None:
    preflight = httpx.options(
        service.url + "/gw/chat/completions",
        headers={
            "origin": "https://app.example",
            "access-control-request-method": "POST",
        },
    )
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    other = httpx.options(
        service.url + "/gw/chat/completions",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in other.headers


def test_usage_file_gets_a_line_per_call(service: Running, files: Path) -> None:
    httpx.post(service.url + "/gw/chat/completions", json=chat(), headers=auth())
    usage = files / "usage.ndjson"
    assert wait_until(lambda: usage.exists() and usage.read_text().strip() != "")
    line = json.loads(usage.read_text().splitlines()[-1])
    assert line["provider"] == "gw"


def test_metrics_are_served(service: Running) -> None:
    metrics = httpx.get(service.url + "/metrics", headers=auth())
    assert metrics.status_code == 200
    assert "provider_proxy_" in metrics.text


def test_own_endpoint_rate_limit_by_path(service: Running) -> None:
    answers = [httpx.get(service.url + "/status", headers=auth()).status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    assert httpx.get(service.url + "/v1/models", headers=auth()).status_code == 200


def test_inference_api_is_on(service: Running, fake: FakeUpstream) -> None:
    answer = httpx.post(service.url + "/api/v1/inference", json=chat(), headers=auth())
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "chat.completion"
    assert fake.last.path == "/v1/chat/completions"


def test_health_has_timestamp_uptime_version(service: Running) -> None:
    health = httpx.get(service.url + "/health").json()
    assert health["timestamp"].endswith("Z")
    assert health["uptime"] >= 0
    assert health["version"]


def test_one_provider_at_the_root_of_its_port(service: Running, fake: FakeUpstream) -> None:
    url = service.claude_url  # type: ignore[attr-defined]
    assert httpx.get(url + "/health").json()["provider"] == "claude"
    answer = httpx.post(
        url + "/v1/messages",
        json={
            "model": "claude-fake-1",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "Hi"}],
        },
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
    )
    assert answer.status_code == 200, answer.text
    assert fake.last.path == "/v1/messages"
    assert fake.last.header("x-api-key") == CLAUDE_KEY


def test_key_files_reload_on_sighup(service: Running, files: Path, fake: FakeUpstream) -> None:
    (files / "gw.key").write_text(GW_KEY_ROTATED + "\n")
    (files / "clients.txt").write_text(f"{ROTATED_CLIENT_KEY} team-b\n")
    os.utime(files / "gw.key", ns=(time.time_ns(), time.time_ns() + 1))
    service.process.send_signal(signal.SIGHUP)

    def rotated() -> bool:
        answer = httpx.post(
            service.url + "/gw/chat/completions", json=chat(), headers=auth(ROTATED_CLIENT_KEY)
        )
        return answer.status_code == 200

    assert wait_until(rotated)
    assert fake.last.header("authorization") == f"Bearer {GW_KEY_ROTATED}"
    old = httpx.post(service.url + "/gw/chat/completions", json=chat(), headers=auth())
    assert old.status_code == 401
    assert service.process.poll() is None  # SIGHUP reloads; it does not stop the service


# -- the environment alone ------------------------------------------------------------


def test_environment_alone_as_the_service_it_replaces(
    upstream: ServerThread, fake: FakeUpstream
) -> None:
    port = free_port()
    env = env_without_keys(
        OPENROUTER_API_KEY="sk-or-env-only-0001",
        OPENROUTER_API_BASE=upstream.url + "/v1",
        PORT=str(port),
        HOST="127.0.0.1",
        LOG_LEVEL="warning",
        ALLOWED_ORIGINS="https://a.example,https://b.example",
        RATE_LIMIT_WINDOW_MS="600000",
        RATE_LIMIT_MAX_REQUESTS="3",
        REQUEST_TIMEOUT="400",
        PROVIDER_PROXY_VALIDATE_CREDENTIALS="off",
    )
    running = Running([], env, port)
    try:
        url = running.url + "/openrouter/chat/completions"
        ok = httpx.post(url, json=chat(), headers={"origin": "https://b.example"})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://b.example"
        assert fake.last.header("authorization") == "Bearer sk-or-env-only-0001"
        slow = httpx.post(url, json=chat(), headers={"x-fake-delay": "3"}, timeout=10)
        assert slow.status_code == 504  # REQUEST_TIMEOUT is milliseconds
        limited = httpx.post(url, json=chat())
        assert limited.status_code == 200
        refused = httpx.post(url, json=chat())
        assert refused.status_code == 429
        assert refused.headers["x-ratelimit-limit"] == "3"
        assert wait_until(lambda: any(r["level"] == "warning" for r in running.records()))
        # LOG_LEVEL=warning: no access lines, no startup info
        assert not [r for r in running.records() if r["level"] == "info"]
    finally:
        running.stop()


def test_text_log_format_for_a_terminal(upstream: ServerThread) -> None:
    port = free_port()
    env = env_without_keys(
        OPENAI_API_KEY="sk-text-log-000001", OPENAI_BASE_URL=upstream.url + "/v1"
    )
    running = Running(
        ["--port", str(port), "--log-format", "text", "--validate-credentials", "off"], env, port
    )
    try:
        httpx.get(running.url + "/health")
        assert wait_until(lambda: any("GET /health 200" in line for line in running.lines))
        assert any("provider_proxy.service: provider openai" in line for line in running.lines)
    finally:
        running.stop()


# -- check --------------------------------------------------------------------------


def run(
    command: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provider_proxy", command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or env_without_keys(),
        check=False,
    )


def test_check_prints_the_effective_configuration_masked(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[server]\nport = 7001\n[providers.openai]\napi_key = "${KEY}"\n'
        '[providers.openai.headers]\nx-org = "${ORG}"\n'
        '[guards]\nclient_keys = ["plain-client-key"]\n'
    )
    env = env_without_keys(KEY="sk-check-secret-00001", ORG="org-secret-1")
    result = run("check", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["providers"]["openai"] == {"api_key": "***", "headers": {"x-org": "***"}}
    assert shown["guards"]["client_keys"] == ["***"]
    assert shown["server"]["port"] == 7001
    for secret in ("sk-check-secret", "org-secret-1", "plain-client-key"):
        assert secret not in result.stdout + result.stderr
    assert "configuration is valid; providers: openai" in result.stderr


def test_precedence_flag_over_environment_over_file(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text('[server]\nport = 7001\n[providers.openai]\napi_key = "k"\n')

    def port(*args: str, **env: str) -> int:
        result = run("check", "--config", str(config), *args, env=env_without_keys(**env))
        assert result.returncode == 0, result.stderr
        return int(json.loads(result.stdout)["server"]["port"])

    assert port() == 7001
    assert port(PORT="7002") == 7002
    assert port("--port", "7003", PORT="7002") == 7003


def test_check_and_serve_refuse_a_bad_file_with_the_same_messages(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text('[servr]\nport = 1\n[providers.openai]\napi_key = "${MISSING_KEY_VAR}"\n')
    checked = run("check", "--config", str(config))
    served = run("serve", "--config", str(config))
    assert checked.returncode == served.returncode == 2
    expected = [
        f"error: {config}: providers.openai.api_key: the environment variable MISSING_KEY_VAR "
        "is not set (set MISSING_KEY_VAR, or write the value without ${MISSING_KEY_VAR})",
        f"error: {config}: servr: unknown key (did you mean 'server'?)",
    ]
    assert checked.stderr.splitlines() == expected
    assert served.stderr.splitlines() == expected
    assert checked.stdout == served.stdout == ""


def test_check_from_the_environment_variable_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text('validate_credentials = "strct"\n')
    result = run("check", env=env_without_keys(PROVIDER_PROXY_CONFIG=str(config)))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {config}: validate_credentials: must be one of off, warn, strict, not 'strct' "
        "(did you mean 'strict'?)"
    )


# -- the shipped example and the documented table ---------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_file_is_valid_and_complete(tmp_path: Path) -> None:
    import tomllib

    from provider_proxy.config._schema import SERVER, TOP

    example = ROOT / "examples" / "proxy.toml"
    (tmp_path / "anthropic_api_key").write_text("sk-ant-example-000001\n")
    env = env_without_keys(
        OPENROUTER_API_KEY="sk-or-example-00001",
        CORP_LLM_KEY="corp-example-key-1",
        CLIENT_KEY_TEAM_A="client-example-key-1",
        CREDENTIALS_DIRECTORY=str(tmp_path),
    )
    result = run("check", "--config", str(example), env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert set(shown["providers"]) == {"openrouter", "anthropic", "corp", "local"}
    for secret in ("sk-or-example", "corp-example-key", "client-example-key", "sk-ant-example"):
        assert secret not in result.stdout + result.stderr
    parsed = tomllib.loads(example.read_text())
    assert set(TOP) <= set(parsed)  # every top-level key is shown
    assert set(SERVER.keys) <= set(parsed["server"])


def test_every_variable_is_in_the_documented_table() -> None:
    from provider_proxy.config import CONFIG_VARIABLE, VARIABLES

    page = (ROOT / "docs" / "standalone.rst").read_text()
    for name in (CONFIG_VARIABLE, *(n for v in VARIABLES for n in v.names)):
        assert f"``{name}``" in page, name
    assert "``RATE_LIMIT_WINDOW_MS``" in page


# -- several workers, one budget ------------------------------------------------------


def test_workers_share_limits_through_redis(upstream: ServerThread, tmp_path: Path) -> None:
    from .redis_server import RedisServer

    redis = RedisServer().start()
    port = free_port()
    config = tmp_path / "proxy.toml"
    config.write_text(
        f"""
validate_credentials = "off"
store = "{redis.url}"
[server]
workers = 2
[providers.gw]
type = "openai_compatible"
base_url = "{upstream.url}/v1"
api_key = "k-workers-000001"
[[guards.rate_limits]]
limit = 4
window = 600
key = "ip"
"""
    )
    running = Running(["--config", str(config), "--port", str(port)], env_without_keys(), port)
    try:
        url = running.url + "/gw/chat/completions"
        statuses = [httpx.post(url, json=chat()).status_code for _ in range(6)]
        assert statuses == [200, 200, 200, 200, 429, 429]
        import redis as redis_client

        with redis_client.Redis.from_url(redis.url) as direct:
            assert direct.keys("provider_proxy:rate*")  # the budget is in Redis, not a worker
        served_by = {r.get("logger") for r in running.records()}
        assert "provider_proxy.access" in served_by
        started = [r for r in running.records() if r.get("message") == "provider gw"]
        assert len(started) == 2  # one startup line per worker
    finally:
        running.stop()
        redis.stop()


def test_keys_in_an_environment_file_rotate_on_sighup(
    upstream: ServerThread, fake: FakeUpstream, tmp_path: Path
) -> None:
    env_file = tmp_path / "env"
    env_file.write_text(
        "export GW_ENV_KEY='sk-env-file-gw-0001'\nOPENAI_API_KEY=sk-env-file-oa-0001\n"
    )
    config = tmp_path / "proxy.toml"
    config.write_text(
        f"""
validate_credentials = "off"
[server]
reload_interval = 0
[providers.gw]
type = "openai_compatible"
base_url = "{upstream.url}/v1"
api_key = "${{GW_ENV_KEY}}"
[providers.openai]
base_url = "{upstream.url}/v1"
"""
    )
    port = free_port()
    args = ["--config", str(config), "--env-file", str(env_file), "--port", str(port)]
    running = Running(args, env_without_keys(), port)

    def key_seen(provider: str) -> str | None:
        httpx.post(f"{running.url}/{provider}/chat/completions", json=chat())
        return fake.last.header("authorization")

    try:
        assert key_seen("gw") == "Bearer sk-env-file-gw-0001"
        assert key_seen("openai") == "Bearer sk-env-file-oa-0001"
        env_file.write_text("GW_ENV_KEY=sk-env-file-gw-0002\nOPENAI_API_KEY=sk-env-file-oa-0002\n")
        running.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: key_seen("gw") == "Bearer sk-env-file-gw-0002")
        assert key_seen("openai") == "Bearer sk-env-file-oa-0002"
        assert not any("sk-env-file" in line for line in running.lines)
    finally:
        running.stop()


def test_the_provider_proxy_variables_from_outside(
    upstream: ServerThread, fake: FakeUpstream, tmp_path: Path
) -> None:
    port = free_port()
    usage = tmp_path / "usage.ndjson"
    env = env_without_keys(
        OPENAI_API_KEY="sk-pp-vars-000001",
        OPENAI_API_BASE=upstream.url + "/v1",
        PROVIDER_PROXY_HOST="127.0.0.1",
        PROVIDER_PROXY_PORT=str(port),
        PROVIDER_PROXY_VALIDATE_CREDENTIALS="off",
        PROVIDER_PROXY_LOG_FORMAT="json",
        PROVIDER_PROXY_ACCESS_LOG="false",
        PROVIDER_PROXY_METRICS="true",
        PROVIDER_PROXY_MAX_BODY_SIZE="2000",
        PROVIDER_PROXY_CLIENT_KEYS="ck-pp-vars-1,ck-pp-vars-2",
        PROVIDER_PROXY_MAX_CONCURRENT="1",
        PROVIDER_PROXY_TIMEOUT="1.5",
        PROVIDER_PROXY_USAGE_FILE=str(usage),
        PROVIDER_PROXY_INFERENCE_API="true",
        PROVIDER_PROXY_DEFAULT_PROVIDER="openai",
        PROVIDER_PROXY_RATE_LIMITS="2/600 ip /status",
        PROVIDER_PROXY_TRUSTED_PROXIES="127.0.0.1",
        PROVIDER_PROXY_MODELS_TTL="600",
    )
    running = Running([], env, port)
    key = auth("ck-pp-vars-2")
    try:
        base = running.url
        assert httpx.post(base + "/openai/chat/completions", json=chat()).status_code == 401
        # DEFAULT_PROVIDER: a model named without a provider goes to openai, at its base URL
        answer = httpx.post(base + "/v1/chat/completions", json=chat("gpt-x"), headers=key)
        assert answer.status_code == 200, answer.text
        assert fake.last.header("authorization") == "Bearer sk-pp-vars-000001"
        assert json.loads(fake.last.body)["model"] == "gpt-x"
        big = {**chat(), "padding": "x" * 3000}
        assert (
            httpx.post(base + "/openai/chat/completions", json=big, headers=key).status_code == 413
        )
        assert httpx.get(base + "/metrics", headers=key).status_code == 200
        assert httpx.get(base + "/api/v1/models", headers=key).status_code == 200
        assert [httpx.get(base + "/status", headers=key).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        # TRUSTED_PROXIES: behind 127.0.0.1, the forwarded address is the client's
        forwarded = {**key, "x-forwarded-for": "203.0.113.9"}
        assert httpx.get(base + "/status", headers=forwarded).status_code == 200
        slow = httpx.post(
            base + "/openai/chat/completions",
            json=chat(),
            headers={**key, "x-fake-delay": "4"},
            timeout=10,
        )
        assert slow.status_code == 504  # PROVIDER_PROXY_TIMEOUT, seconds
        assert wait_until(lambda: usage.exists() and "openai" in usage.read_text())
        # MAX_CONCURRENT: a second request while one is in flight is refused
        results: list[int] = []

        def in_flight() -> None:
            results.append(
                httpx.post(
                    base + "/openai/chat/completions",
                    json=chat(),
                    headers={**key, "x-fake-delay": "1"},
                    timeout=10,
                ).status_code
            )

        holder = threading.Thread(target=in_flight)
        holder.start()
        assert wait_until(lambda: fake.last.header("x-fake-delay") == "1")
        second = httpx.post(base + "/openai/chat/completions", json=chat(), headers=key)
        holder.join(10)
        assert (results, second.status_code) == ([200], 503)
        # ACCESS_LOG=false: no access lines, but the service's own
        loggers = {r["logger"] for r in running.records()}
        assert "provider_proxy.access" not in loggers
        assert "provider_proxy.service" in loggers
    finally:
        running.stop()


def test_check_with_the_environment_alone_names_the_providers_found(upstream: ServerThread) -> None:
    env = env_without_keys(
        OPENROUTER_API_KEY="sk-or-check-env-0001", OPENROUTER_API_BASE=upstream.url + "/api/v1"
    )
    result = run("check", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["providers"] == {"openrouter": {"base_url": upstream.url + "/api/v1"}}
    assert "sk-or-check-env" not in result.stdout + result.stderr
    assert "configuration is valid; providers: openrouter" in result.stderr


def test_check_without_any_provider_fails_as_serve_would() -> None:
    result = run("check")
    assert result.returncode == 2
    assert "error: No provider has a key: set one or more of OPENAI_API_KEY" in result.stderr


def test_more_file_keys_from_outside(
    upstream: ServerThread, fake: FakeUpstream, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.toml"
    port = free_port()
    config.write_text(
        f"""
validate_credentials = "off"
overhead_header = true
models_ttl = 600
transforms = [{{ class = "ModelAliases", aliases = {{ fast = "gpt-fast-1" }} }}]

[providers.gw]
type = "openai_compatible"
base_url = "{upstream.url}/v1"
api_key_env = "MY_GATEWAY_KEY"
default_headers = {{ x-default = "from-config" }}
headers = {{ x-fixed = "always" }}
allow = ["GET /echo"]

[providers.gw.client_identity]
user_agent = "presented-agent/3"
headers = {{ x-stainless-lang = "python" }}

[guards]
max_concurrent_per_client = 5
"""
    )
    env = env_without_keys(MY_GATEWAY_KEY="sk-from-api-key-env-1")
    running = Running(["--config", str(config), "--port", str(port)], env, port)
    try:
        answer = httpx.post(
            running.url + "/gw/chat/completions",
            json=chat("fast"),
            headers={"x-stainless-lang": "js", "x-fixed": "client's"},
        )
        assert answer.status_code == 200, answer.text
        assert float(answer.headers["x-proxy-overhead-ms"]) >= 0  # overhead_header
        seen = fake.last
        assert json.loads(seen.body)["model"] == "gpt-fast-1"  # the transform
        assert seen.header("authorization") == "Bearer sk-from-api-key-env-1"  # api_key_env
        assert seen.header("x-default") == "from-config"  # default_headers
        assert seen.header("x-fixed") == "always"  # headers win over the client's
        assert seen.header("user-agent") == "presented-agent/3"  # client_identity
        assert seen.header("x-stainless-lang") == "python"
        # allow: an endpoint beyond the inference API is forwarded
        assert httpx.get(running.url + "/gw/echo").json()["path"] == "/v1/echo"
        assert httpx.get(running.url + "/gw/files").status_code == 403
        # models_ttl: the second listing comes from the cache
        before = len([r for r in fake.requests if r.path == "/v1/models"])
        assert httpx.get(running.url + "/v1/models").status_code == 200
        assert httpx.get(running.url + "/v1/models").status_code == 200
        assert len([r for r in fake.requests if r.path == "/v1/models"]) == before + 1
        status = httpx.get(running.url + "/status").json()
        assert status["guards"]["max_concurrent_per_client"] == 5
    finally:
        running.stop()


def test_a_route_from_the_file_falls_back_to_its_next_deployment(
    upstream: ServerThread, fake: FakeUpstream, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.toml"
    port, dead = free_port(), free_port()  # nothing listens on ``dead``: connect refused
    config.write_text(
        f"""
validate_credentials = "off"

[retry]
attempts = 2
backoff = 0

[providers.down]
type = "openai_compatible"
base_url = "http://127.0.0.1:{dead}/v1"
api_key = "sk-down"

[providers.gw]
type = "openai_compatible"
base_url = "{upstream.url}/v1"
api_key = "sk-gw"

[routes.smart]
deployments = ["down/first-choice", {{ target = "gw/fake-model", weight = 1 }}]
sticky = false
"""
    )
    running = Running(["--config", str(config), "--port", str(port)], env_without_keys(), port)
    try:
        answer = httpx.post(running.url + "/v1/chat/completions", json=chat("smart"))
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-proxy-attempts"] == "2"
        assert json.loads(fake.last.body)["model"] == "fake-model"
        listed = {m["id"] for m in httpx.get(running.url + "/v1/models").json()["data"]}
        assert "smart" in listed
    finally:
        running.stop()


def test_strict_translation_quotas_and_models_ttl_from_outside(
    upstream: ServerThread, fake: FakeUpstream, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.toml"
    port = free_port()
    config.write_text(
        f"""
validate_credentials = "off"
strict_translation = true

[providers.claude]
type = "anthropic"
base_url = "{upstream.url}"
api_key = "sk-claude-strict-1"

[[guards.quotas]]
tokens = 1
period = "day"
key = "ip"
"""
    )
    env = env_without_keys(PROVIDER_PROXY_MODELS_TTL="600")
    running = Running(["--config", str(config), "--port", str(port)], env, port)
    try:
        # strict_translation: a field the translation would drop is refused, named
        refused = httpx.post(
            running.url + "/v1/chat/completions", json={**chat("claude/claude-x"), "seed": 7}
        )
        assert refused.status_code == 400
        assert "seed" in refused.json()["error"]["message"]
        # quotas: the first answer's tokens use up the day's one token; the next is refused
        first = httpx.post(running.url + "/v1/chat/completions", json=chat("claude/claude-x"))
        assert first.status_code == 200, first.text
        second = httpx.post(running.url + "/v1/chat/completions", json=chat("claude/claude-x"))
        assert second.status_code == 429
        # PROVIDER_PROXY_MODELS_TTL: the catalog keeps listings that long (default 300)
        assert httpx.get(running.url + "/status").json()["models"]["ttl"] == 600
    finally:
        running.stop()


def test_a_socket_handshake_logs_no_query(upstream: ServerThread, tmp_path: Path) -> None:
    """A key in a socket's query is never logged by the server (uvicorn logs each
    handshake's path and query), even where no guards ask for one."""
    from websockets.sync.client import connect

    config = tmp_path / "proxy.toml"
    port = free_port()
    config.write_text(
        f"""
validate_credentials = "off"

[providers.gw]
type = "openai_compatible"
base_url = "{upstream.url}/v1"
api_key = "sk-gw-socket-1"
"""
    )
    running = Running(["--config", str(config), "--port", str(port)], env_without_keys(), port)
    unknown = "ck-not-held-by-the-proxy-1"
    try:
        url = running.url.replace("http://", "ws://") + f"/ws?key={unknown}"
        connect(url, open_timeout=10).close()
        assert wait_until(lambda: any("WebSocket /ws" in line for line in running.lines))
    finally:
        out = running.stop()
    logged = "\n".join(running.lines) + out
    assert "WebSocket /ws?key=***" in logged  # the handshake is logged, the key masked
    assert unknown not in logged
