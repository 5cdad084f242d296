"""The configuration: every key and variable reaches the app, every problem names its fix."""

from __future__ import annotations

import hashlib
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from provider_proxy import CORS, Guards, NdjsonUsageSink, RateLimit, RedisStore
from provider_proxy.adapters import OpenAICompatibleAdapter, OpenRouterAdapter
from provider_proxy.config import VARIABLES, ConfigInvalid, KeyFile, load_config, reload_all
from provider_proxy.config._layers import environment_document
from provider_proxy.transforms import StripAnsi

from .servers import wait_until


def write(tmp_path: Path, text: str, name: str = "proxy.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def problems(path: str | None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigInvalid) as caught:
        load_config(path, env or {})
    return [str(p) for p in caught.value.problems]


# -- errors ------------------------------------------------------------------------


def test_every_problem_names_file_key_and_fix(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        validate_credential = "warn"
        models_ttl = "soon"
        [server]
        log_levl = "info"
        log_format = "yaml"
        [providers.openai]
        api_key = "${NOT_SET_ANYWHERE}"
        [providers.gw]
        type = "openai_compatibl"
        [providers.local]
        type = "openai_compatible"
        [providers.custom]
        class = "no_such_module:Adapter"
        [providers.router]
        type = "openrouter"
        titel = "n8n"
        [[guards.rate_limits]]
        limit = 5
        windw = 60
        [ports]
        nobody = 10001
        """,
    )
    found = problems(path)
    assert found == [
        f"{path}: providers.openai.api_key: the environment variable NOT_SET_ANYWHERE is not "
        "set (set NOT_SET_ANYWHERE, or write the value without ${NOT_SET_ANYWHERE})",
        f"{path}: validate_credential: unknown key (did you mean 'validate_credentials'?)",
        f"{path}: models_ttl: must be a number, not 'soon'",
        f"{path}: server.log_levl: unknown key (did you mean 'log_level'?)",
        f"{path}: server.log_format: must be one of json, text, not 'yaml'",
        f"{path}: guards.rate_limits[0].windw: unknown key (did you mean 'window'?)",
        f"{path}: providers.gw.type: unknown provider type 'openai_compatibl' (did you mean "
        "'openai_compatible'?, or class = \"package.module:Class\")",
        f"{path}: providers.local: an openai_compatible provider needs base_url "
        '(add base_url = "https://host/v1")',
        f"{path}: providers.custom.class: cannot import 'no_such_module' (No module named "
        "'no_such_module')",
        f"{path}: providers.router.titel: unknown key (did you mean 'title'?)",
        f"{path}: guards.rate_limits[0]: needs window (e.g. limit = 100, window = 900 (seconds))",
        f"{path}: ports.nobody: names no provider; the providers are: openai",
    ]
    wrong_default = write(
        tmp_path, 'default_provider = "nobody"\n[providers.openai]\napi_key = "k"\n', "d.toml"
    )
    assert problems(wrong_default) == [
        f"{wrong_default}: default_provider: names no provider; the providers are: openai"
    ]


def test_a_file_that_is_not_toml_or_not_there(tmp_path: Path) -> None:
    broken = write(tmp_path, "port = \n")
    assert problems(broken)[0].startswith(f"{broken}: not valid TOML: ")
    missing = str(tmp_path / "nope.toml")
    assert problems(missing) == [f"{missing}: cannot read the file (No such file or directory)"]


def test_the_file_is_found_through_PROVIDER_PROXY_CONFIG(tmp_path: Path) -> None:
    path = write(tmp_path, 'validate_credentials = "off"\n[providers.openai]\napi_key = "k"\n')
    config = load_config(None, {"PROVIDER_PROXY_CONFIG": path})
    assert config.path == path
    assert config.built.options["validate_credentials"] == "off"


def test_an_environment_value_of_the_wrong_kind_names_the_variable() -> None:
    assert problems(None, {"PORT": "eighty"}) == [
        "environment variable PORT: server.port: must be an integer, not 'eighty'"
    ]


def test_routes_and_retry_from_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[providers.openai]
api_key = "k"

[providers.anthropic]
api_key = "k"

[retry]
attempts = 4
backoff = 0.5
retry_on = [429, 503]

[routes.smart]
deployments = ["anthropic/claude-sonnet-4-5", "openai/gpt-4.1"]
sticky = false
cooldown = { failures = 2, base = 1.5 }

[routes.fast]
strategy = "weighted"
deployments = [{ target = "openai/gpt-4.1-mini", weight = 3 }, "anthropic/claude-haiku-4-5"]
retry = { attempts = 2 }
""",
    )
    options = load_config(path, {}).built.options
    retry = options["retry"]
    assert (retry.attempts, retry.backoff, set(retry.retry_on)) == (4, 0.5, {429, 503})
    smart, fast = options["routes"]["smart"], options["routes"]["fast"]
    assert [d.target for d in smart.deployments] == [
        "anthropic/claude-sonnet-4-5",
        "openai/gpt-4.1",
    ]
    assert (smart.strategy, smart.sticky, smart.retry) == ("priority", False, None)
    assert (smart.cooldown.failures, smart.cooldown.base) == (2, 1.5)
    assert fast.strategy == "weighted"
    assert [(d.target, d.weight) for d in fast.deployments] == [
        ("openai/gpt-4.1-mini", 3),
        ("anthropic/claude-haiku-4-5", 1),
    ]
    assert fast.retry is not None
    assert fast.retry.attempts == 2


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ('strategy = "random"', "routes.r.strategy: must be one of"),
        ("sticky = true", "routes.r: needs deployments"),
        ("deployments = [3]", 'routes.r.deployments[0]: is not "adapter/model"'),
        (
            'deployments = [{ target = "a/b", share = 2 }]',
            "routes.r.deployments[0]: unknown key 'share'",
        ),
        (
            'deployments = ["a/b"]\nretry = { attempt = 2 }',
            "routes.r.retry.attempt: unknown key (did you mean 'attempts'",
        ),
    ],
)
def test_a_bad_route_names_its_key(tmp_path: Path, route: str, message: str) -> None:
    path = write(tmp_path, f'[providers.openai]\napi_key = "k"\n[routes.r]\n{route}\n')
    found = problems(path)
    assert any(message in line for line in found), found


# -- precedence ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "flags", "port", "source"),
    [
        ({}, {}, 7001, "file"),
        ({"PORT": "7002"}, {}, 7002, "environment variable PORT"),
        (
            {"PORT": "7002", "PROVIDER_PROXY_PORT": "7003"},
            {},
            7003,
            "environment variable PROVIDER_PROXY_PORT",
        ),
        ({"PORT": "7002"}, {"server.port": ("--port", 7004)}, 7004, "--port"),
    ],
)
def test_flag_over_environment_over_file_over_default(
    tmp_path: Path, env: dict[str, str], flags: dict[str, Any], port: int, source: str
) -> None:
    path = write(tmp_path, "[server]\nport = 7001\n[providers.openai]\napi_key = 'k'\n")
    config = load_config(path, env, flags)
    assert config.server["port"] == port
    assert config.sources["server.port"] == (path if source == "file" else source)
    assert load_config(None, {"OPENAI_API_KEY": "k"}).server["port"] == 8000  # the default


# -- what each key builds ------------------------------------------------------------


def test_a_complete_file_builds_every_option(tmp_path: Path) -> None:
    key_file = tmp_path / "openai.key"
    key_file.write_text("sk-from-a-file-1234\n")
    clients = tmp_path / "clients.txt"
    digest = hashlib.sha256(b"client-secret-b").hexdigest()
    clients.write_text(f"# team keys\nclient-secret-a team-a\nsha256:{digest} team-b\n")
    path = write(
        tmp_path,
        f"""
        validate_credentials = "off"
        models_ttl = 60
        max_body_size = 1000
        access_log = false
        overhead_header = true
        strict_translation = true
        default_provider = "gw"
        inference_api = true
        store = "redis://:hunter2@127.0.0.1:6399/0"
        transforms = [{{ class = "StripAnsi", all_text = true }}]
        [timeout]
        read = 42
        [limits]
        max_connections = 7
        [providers.gw]
        type = "openai_compatible"
        base_url = "http://127.0.0.1:9/v1"
        user_agent = "n8n/1.0"
        headers = {{ x-team = "${{TEAM}}" }}
        api_key_file = "{key_file}"
        [providers.gw.client_identity]
        user_agent = "agent/2"
        [providers.router]
        type = "openrouter"
        title = "n8n"
        [providers.mine]
        class = "provider_proxy.adapters:OpenAICompatibleAdapter"
        base_url = "http://127.0.0.1:9/v2"
        [guards]
        client_keys_file = "{clients}"
        max_concurrent = 3
        trusted_proxies = ["10.0.0.0/8"]
        [[guards.rate_limits]]
        limit = 50
        window_ms = 900000
        key = "ip"
        paths = ["/api/v1/inference*"]
        [[guards.quotas]]
        tokens = 1000
        [cors]
        allow_origins = ["https://app.example"]
        [sinks]
        usage_file = "{tmp_path / "usage.ndjson"}"
        """,
    )
    config = load_config(path, {"TEAM": "blue", "OPENROUTER_API_KEY": "or-key"})
    options = config.built.options
    gw, router, mine = config.built.adapters
    assert isinstance(gw, OpenAICompatibleAdapter)
    assert gw.name == "gw"
    assert str(gw.base_url) == "http://127.0.0.1:9/v1"
    key = gw.api_key()
    assert key is not None
    assert key.reveal() == "sk-from-a-file-1234"
    assert isinstance(router, OpenRouterAdapter)
    assert isinstance(mine, OpenAICompatibleAdapter)
    assert mine.name == "mine"
    assert options["validate_credentials"] == "off"
    assert options["models_ttl"] == 60
    assert options["max_body_size"] == 1000
    assert options["access_log"] is False
    assert options["overhead_header"] is True
    assert options["strict_translation"] is True
    assert options["default_provider"] == "gw"
    assert options["inference_api"] is True
    assert options["timeout"].read == 42
    assert options["timeout"].connect == 10
    assert options["limits"].max_connections == 7
    assert isinstance(options["store"], RedisStore)
    (transform,) = options["transforms"]
    assert isinstance(transform, StripAnsi)
    assert transform.all_text
    guards = options["guards"]
    assert isinstance(guards, Guards)
    (rule,) = guards.rate_limits
    assert rule == RateLimit(50, 900.0, key="ip", paths=("/api/v1/inference*",))
    assert guards.quotas[0].tokens == 1000
    assert guards.max_concurrent == 3
    assert isinstance(options["cors"], CORS)
    assert options["cors"].origin_allowed("https://app.example")
    (sink,) = options["sinks"]
    assert isinstance(sink, NdjsonUsageSink)
    assert [entry["client_keys"] for entry in [guards.status()]] == [2]
    shown = config.masked()
    assert shown["store"] == "redis://:***@127.0.0.1:6399/0"
    assert shown["providers"]["gw"]["headers"] == {"x-team": "***"}
    assert "hunter2" not in repr(shown)
    assert "blue" not in repr(shown)


def test_masking_hides_keys_given_inline_and_by_reference(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [providers.openai]
        api_key = "sk-inline-123456"
        [providers.openai.headers]
        Authorization = "Bearer sk-in-a-header-1"
        x-team = "blue"
        [guards]
        client_keys = ["ck-inline-1", "${CLIENT_KEY}"]
        """,
    )
    shown = load_config(path, {"CLIENT_KEY": "ck-ref-2"}).masked()
    assert shown["providers"]["openai"]["api_key"] == "***"
    assert shown["providers"]["openai"]["headers"] == {"Authorization": "***", "x-team": "blue"}
    assert shown["guards"]["client_keys"] == ["***", "***"]
    text = repr(shown)
    assert "sk-inline" not in text
    assert "ck-inline" not in text
    assert "ck-ref" not in text
    assert "sk-in-a-header" not in text


# -- the environment alone ---------------------------------------------------------


ENVIRONMENT_EXAMPLES: dict[str, tuple[str, Any]] = {
    "server.host": ("0.0.0.0", "0.0.0.0"),
    "server.port": ("3000", 3000),
    "server.workers": ("4", 4),
    "server.log_level": ("WARNING", "warning"),
    "server.log_format": ("text", "text"),
    "server.reload_interval": ("0.5", 0.5),
    "validate_credentials": ("strict", "strict"),
    "cors.allow_origins": (
        "https://a.example, https://b.example",
        ["https://a.example", "https://b.example"],
    ),
    "guards.client_keys": ("k1,k2", ["k1", "k2"]),
    "guards.client_keys_file": ("/run/keys", "/run/keys"),
    "guards.max_concurrent": ("100", 100),
    "guards.trusted_proxies": ("10.0.0.1", ["10.0.0.1"]),
    "timeout": ("30000", 30.0),
    "max_body_size": ("1024", 1024),
    "transport": ("aiohttp", "aiohttp"),
    "store": ("redis://cache:6379/0", "redis://cache:6379/0"),
    "metrics": ("true", True),
    "access_log": ("no", False),
    "sinks.usage_file": ("/var/log/usage.ndjson", "/var/log/usage.ndjson"),
    "models_ttl": ("60", 60.0),
    "inference_api": ("1", True),
    "default_provider": ("openrouter", "openrouter"),
    "ws_max_connections": ("1000", 1000),
    "ws_heartbeat_interval": ("30000", 30.0),
}


@pytest.mark.parametrize("variable", VARIABLES, ids=lambda v: v.names[0])
def test_each_variable_sets_its_key(variable: Any) -> None:
    text, expected = ENVIRONMENT_EXAMPLES[variable.key]
    if variable.names[0] == "PROVIDER_PROXY_TIMEOUT":
        text, expected = "12.5", 12.5
    for name in variable.names:
        layer, found = environment_document({name: text}, {})
        assert found == []
        value: Any = layer.document
        for part in variable.key.split("."):
            value = value[part]
        assert value == expected, name
        assert layer.sources[variable.key] == f"environment variable {name}"


def test_the_seed_services_rate_limit_variables_make_one_rule_per_ip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "k")  # adapters read their keys from os.environ
    config = load_config(
        None,
        {
            "OPENROUTER_API_KEY": "k",
            "RATE_LIMIT_WINDOW_MS": "60000",
            "RATE_LIMIT_MAX_REQUESTS": "7",
        },
    )
    (rule,) = config.built.options["guards"].rate_limits
    assert (rule.limit, rule.window, rule.key) == (7, 60.0, "ip")
    only_one = load_config(None, {"OPENROUTER_API_KEY": "k", "RATE_LIMIT_MAX_REQUESTS": "7"})
    assert only_one.built.options["guards"].rate_limits[0].window == 900.0  # its default


def test_base_url_variables_point_each_builtin_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.endswith("_API_KEY") or name.startswith(("AZURE_OPENAI", "GITHUB")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENROUTER_API_KEY", "k")
    env = {
        "OPENROUTER_API_KEY": "k",
        "OPENROUTER_API_BASE": "http://127.0.0.1:9/api/v1",
        "OLLAMA_BASE_URL": "http://127.0.0.1:11434/v1",
    }
    config = load_config(None, env)
    bases = {a.name: str(a.serving().base_url) for a in config.built.adapters}
    assert bases == {
        "openrouter": "http://127.0.0.1:9/api/v1",
        "ollama": "http://127.0.0.1:11434/v1",
    }
    # With a file, the variable points the file's provider of that type, under any name.
    path = write(tmp_path, '[providers.router]\ntype = "openrouter"\napi_key = "k"\n')
    (router,) = load_config(path, env).built.adapters
    assert str(router.serving().base_url) == "http://127.0.0.1:9/api/v1"


def test_websocket_variables_reach_the_app_in_its_units() -> None:
    env = {
        "OPENROUTER_API_KEY": "k",
        "WS_MAX_CONNECTIONS": "10",
        "WS_HEARTBEAT_INTERVAL": "1500",
    }
    config = load_config(None, env)
    assert config.warnings == []
    assert config.built.options["ws_max_connections"] == 10
    assert config.built.options["ws_heartbeat_interval"] == 1.5  # milliseconds to seconds


def test_without_keys_no_provider_is_served() -> None:
    config = load_config(None, {"PORT": "1234"})
    assert config.built.adapters == []


# -- keys that rotate --------------------------------------------------------------


def test_key_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("sk-first-key-0001\n")
    key = KeyFile(path, interval=3600)
    first = key()
    assert first is not None
    assert first.reveal() == "sk-first-key-0001"
    path.write_text("sk-second-key-00002\n")
    os.utime(path, ns=(1, 1))  # a different stamp even within the clock's resolution
    again = key()
    assert again is not None
    assert again.reveal() == "sk-first-key-0001"
    reload_all()  # SIGHUP
    rotated = key()
    assert rotated is not None
    assert rotated.reveal() == "sk-second-key-00002"


def test_client_keys_file_rotation_replaces_the_guards_keys(tmp_path: Path) -> None:
    clients = tmp_path / "clients"
    clients.write_text("old-client-key team\n")
    path = write(
        tmp_path, f'[providers.openai]\napi_key = "k"\n[guards]\nclient_keys_file = "{clients}"\n'
    )
    config = load_config(path, {})  # holds the watched file, as serve does
    guards = config.built.options["guards"]
    scope: dict[str, Any] = {"headers": [(b"authorization", b"Bearer new-client-key")]}
    with pytest.raises(Exception, match="valid client key"):
        _identify(guards, scope)
    clients.write_text("new-client-key team\n")
    os.utime(clients, ns=(2, 2))
    reload_all()
    assert _identify(guards, scope) == "team"


def _identify(guards: Guards, scope: dict[str, Any]) -> str | None:
    import asyncio

    return asyncio.run(guards.identify(scope))


def test_rate_limit_paths_choose_the_requests_that_count() -> None:
    rule = RateLimit(2, 60, paths=["/api/v1/inference*"])
    assert rule.covers({"path": "/api/v1/inference/stream", "headers": []})
    assert not rule.covers({"path": "/openai/chat/completions", "headers": []})
    assert RateLimit(2, 60).covers({"path": "/anything", "headers": []})
    assert rule.label == "2 requests/60s per identity on /api/v1/inference*"


def test_node_log_levels_are_understood() -> None:
    layer, found = environment_document({"LOG_LEVEL": "warn"}, {})
    assert found == []
    assert layer.document["server"]["log_level"] == "warning"


def test_a_port_is_one_providers_only(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        port = 9000
        [providers.openai]
        api_key = "k"
        [providers.anthropic]
        api_key = "k"
        [ports]
        openai = 9000
        anthropic = 9000
        """,
    )
    assert problems(path) == [
        f"{path}: ports.openai: port 9000 is already the main server's (pick another)",
        f"{path}: ports.anthropic: port 9000 is already openai's (pick another)",
    ]


def test_key_file_is_polled_every_interval(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("sk-polled-key-000001\n")
    key = KeyFile(path, interval=0.05)
    path.write_text("sk-polled-key-000002\n")
    os.utime(path, ns=(3, 3))
    assert wait_until(lambda: (k := key()) is not None and k.reveal() == "sk-polled-key-000002")


def test_an_emptied_client_keys_file_keeps_the_last_keys(tmp_path: Path) -> None:
    clients = tmp_path / "clients"
    clients.write_text("kept-client-key team\n")
    path = write(
        tmp_path, f'[providers.openai]\napi_key = "k"\n[guards]\nclient_keys_file = "{clients}"\n'
    )
    config = load_config(path, {})
    clients.write_text("# nothing yet\n")
    os.utime(clients, ns=(4, 4))
    reload_all()
    scope: dict[str, Any] = {"headers": [(b"authorization", b"Bearer kept-client-key")]}
    assert _identify(config.built.options["guards"], scope) == "team"


def test_rate_limits_in_one_variable_with_endpoint_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "k")
    env = {
        "RATE_LIMIT_MAX_REQUESTS": "100",
        "PROVIDER_PROXY_RATE_LIMITS": "50/900 ip /api/v1/inference*,/v1/messages; 10/60",
    }
    rules = load_config(None, env).built.options["guards"].rate_limits
    assert rules == (
        RateLimit(100, 900.0, key="ip", name="per IP"),
        RateLimit(50, 900.0, key="ip", paths=("/api/v1/inference*", "/v1/messages")),
        RateLimit(10, 60.0),
    )
    assert problems(None, {"PROVIDER_PROXY_RATE_LIMITS": "fifty per minute"}) == [
        "environment variable PROVIDER_PROXY_RATE_LIMITS: guards.rate_limits: 'fifty per "
        "minute' does not start with LIMIT/SECONDS (e.g. \"100/900 ip; 50/900 ip "
        '/api/v1/inference*,/v1/messages")'
    ]


def test_trusted_proxies_as_a_server_setting(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[server]\ntrusted_proxies = ["10.0.0.1"]\n[providers.openai]\napi_key = "k"\n'
    )
    guards = load_config(path, {}).built.options["guards"]
    behind = {"client": ("10.0.0.1", 1), "headers": [(b"x-forwarded-for", b"203.0.113.7")]}
    from provider_proxy.guards._guards import client_ip

    assert client_ip(behind, guards._trusted) == "203.0.113.7"


def test_the_log_handler_scrubs_every_logger_and_quiets_http_debug() -> None:
    import io
    import json
    import logging

    from provider_proxy import Secret
    from provider_proxy.config._logs import _QUIET, configure_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        key = Secret("sk-held-by-the-proxy-0001")  # registered when made
        configure_logging("debug", "json", stream)
        logging.getLogger("uvicorn.error").warning("echoed %s", key.reveal())
        logging.getLogger("httpcore.http11").debug("send_request_headers %s", key.reveal())
        (line,) = stream.getvalue().splitlines()
        record = json.loads(line)
        assert record["logger"] == "uvicorn.error"
        assert record["level"] == "warning"
        assert "sk-held-by-the-proxy" not in line
    finally:
        root.handlers[:], root.level = saved
        for name in _QUIET:
            logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("auto", "Http1Transport"),
        ("http1", "Http1Transport"),
        ("reqwest", "ReqwestTransport"),
        ("aiohttp", "AiohttpTransport"),
        ("httpx", "AsyncHTTPTransport"),
    ],
)
def test_the_transport_is_picked_by_name_with_the_pools_limits(
    tmp_path: Path, name: str, kind: str
) -> None:
    path = write(tmp_path, f'transport = "{name}"\n[limits]\nmax_connections = 7\n')
    transport = load_config(path, {}).built.options["transport"]
    assert type(transport).__name__ == kind
    if kind == "AsyncHTTPTransport":
        assert transport._pool._max_connections == 7
    elif kind == "Http1Transport":
        assert transport._max == 7
    else:
        assert transport._limits.max_connections == 7


def test_an_unknown_transport_is_a_problem_naming_the_choices(tmp_path: Path) -> None:
    (problem,) = problems(write(tmp_path, 'transport = "curl"\n'))
    choices = "auto, http1, reqwest, aiohttp, httpx"
    assert problem.endswith(f"transport: must be one of {choices}, not 'curl'")


def test_the_transport_variable_picks_one() -> None:
    config = load_config(None, {"PROVIDER_PROXY_TRANSPORT": "aiohttp"})
    assert type(config.built.options["transport"]).__name__ == "AiohttpTransport"
