from __future__ import annotations

from typing import Any

import httpx
import pytest

from provider_proxy import PathRefused
from provider_proxy.policy._paths import confine, path_below_mount, split_provider, upstream_url


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        # Starlette's Mount and mount(): full path, root_path set.
        ({"path": "/llm/openai/chat", "root_path": "/llm"}, b"/openai/chat"),
        # Older routers: path already stripped.
        ({"path": "/openai/chat", "root_path": "/llm"}, b"/openai/chat"),
        # Served alone.
        ({"path": "/openai/chat", "root_path": ""}, b"/openai/chat"),
        ({"path": "/openai/chat"}, b"/openai/chat"),
        # raw_path keeps escapes that decoding would lose.
        (
            {"path": "/llm/openai/a/b", "raw_path": b"/llm/openai/a%2Fb", "root_path": "/llm"},
            b"/openai/a%2Fb",
        ),
        (
            {"path": "/openai/a b", "raw_path": b"/llm/openai/a%20b", "root_path": "/llm"},
            b"/openai/a%20b",
        ),
        # raw_path that does not match the path is ignored; the path is encoded again.
        ({"path": "/openai/a b", "raw_path": b"/other", "root_path": ""}, b"/openai/a%20b"),
        # A root_path that only shares a prefix with the path is not stripped.
        ({"path": "/llmx/openai", "root_path": "/llm"}, b"/llmx/openai"),
        ({"path": "/llm", "root_path": "/llm"}, b"/"),
        # Escapes that are not UTF-8 (decoded by servers to U+FFFD) keep their raw form.
        (
            {
                "path": "/llm/openai/files/\ufffd",
                "raw_path": b"/llm/openai/files/%FF",
                "root_path": "/llm",
            },
            b"/openai/files/%FF",
        ),
        (
            {"path": "/openai/x\ufffdy", "raw_path": b"/openai/x%C3y", "root_path": "/llm"},
            b"/openai/x%C3y",
        ),
        # A real U+FFFD, sent encoded, is matched as before.
        ({"path": "/openai/\ufffd", "raw_path": b"/openai/%EF%BF%BD"}, b"/openai/%EF%BF%BD"),
        # A raw_path without escapes: its tail at a '/' that is the path, as sent.
        (
            {"path": "/llm/openai/chat", "raw_path": b"/llm/openai/chat", "root_path": "/llm"},
            b"/openai/chat",
        ),
        (
            {"path": "/openai/chat", "raw_path": b"/llm/openai/chat", "root_path": "/llm"},
            b"/openai/chat",
        ),
        (
            {"path": "/openai/caf\u00e9", "raw_path": "/openai/caf\u00e9".encode()},
            "/openai/caf\u00e9".encode(),
        ),
        ({"path": "/openai/chat", "raw_path": b"/openai/chat/x"}, b"/openai/chat"),
        ({"path": "/openai/caf\u00e9", "raw_path": b"/other"}, b"/openai/caf%C3%A9"),
    ],
)
def test_path_below_mount(scope: dict[str, Any], expected: bytes) -> None:
    assert path_below_mount(scope) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/openai/chat/completions", ("openai", b"/chat/completions")),
        (b"/openai", ("openai", b"")),
        (b"/openai/", ("openai", b"/")),
        (b"/", ("", b"")),
        (b"/op%65nai/x", ("openai", b"/x")),
    ],
)
def test_split_provider(raw: bytes, expected: tuple[str, bytes]) -> None:
    assert split_provider(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"/../secret",
        b"/a/../../secret",
        b"/./x",
        b"/%2e%2e/x",
        b"/%2E%2E/x",
        b"/.%2e/x",
        b"/%2e/x",
        b"/a%2fb",
        b"/a%2Fb",
        b"/a%5cb",
        b"/a\\b",
        b"//evil.example/x",
        b"/a//b",
        b"/http://evil.example/x",
        b"/a%0ab",
        b"/a%00b",
        b"/a%zzb",
        b"/a%2",
        b"no-leading-slash",
        # Path parameters: servers that drop them read '..;' as '..'.
        b"/..;/files",
        b"/v1/..;x=1/admin",
        b"/.;/files",
        b"/%2e%2e;/files",
        b"/.%2E;jsessionid=1/files",
        b"/..%3b/files",
        b"/a/..;",
        # Bytes that are not UTF-8, percent-encoded or raw.
        b"/files/%FF",
        b"/files/caf%E9",
        b"/files/%C3",
        b"/files/%C3/%A9",
        b"/files/%ED%A0%80",  # an encoded surrogate
        b"/files/caf\xe9",
    ],
)
def test_confine_refuses(raw: bytes) -> None:
    with pytest.raises(PathRefused):
        confine(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/chat/completions", b"/chat/completions"),
        (b"/models/", b"/models/"),
        (b"", b""),
        (b"/models/gemini-pro:generateContent", b"/models/gemini-pro:generateContent"),
        (b"/files/a%20b", b"/files/a%20b"),
        (b"/a..b/.x/x.", b"/a..b/.x/x."),
        (b"/caf\xc3\xa9", b"/caf%C3%A9"),
        (b"/a b", b"/a%20b"),
        (b'/a"{b}|', b"/a%22%7Bb%7D%7C"),
        (b"/files/caf%C3%A9", b"/files/caf%C3%A9"),
        (b"/files/%E2%82%AC;v=1", b"/files/%E2%82%AC;v=1"),
        (b"/a;x/..b;/.x;", b"/a;x/..b;/.x;"),
        (b"/;/x", b"/;/x"),
    ],
)
def test_confine_accepts(raw: bytes, expected: bytes) -> None:
    assert confine(raw) == expected


@pytest.mark.parametrize(
    ("base", "raw", "query", "expected"),
    [
        (
            "https://api.openai.com/v1",
            b"/chat/completions",
            b"",
            "https://api.openai.com/v1/chat/completions",
        ),
        ("https://api.openai.com/v1/", b"/models", b"", "https://api.openai.com/v1/models"),
        (
            "https://api.anthropic.com",
            b"/v1/messages",
            b"beta=true",
            "https://api.anthropic.com/v1/messages?beta=true",
        ),
        ("http://127.0.0.1:9000/v1", b"", b"", "http://127.0.0.1:9000/v1"),
        ("https://h.example/v1", b"/x", b"a=%20&b=1&b=2", "https://h.example/v1/x?a=%20&b=1&b=2"),
    ],
)
def test_upstream_url(base: str, raw: bytes, query: bytes, expected: str) -> None:
    url = upstream_url(httpx.URL(base), raw, query)
    assert str(url) == expected
    assert url.host == httpx.URL(base).host
    assert url.port == httpx.URL(base).port


def test_upstream_url_never_changes_host_for_accepted_paths() -> None:
    base = httpx.URL("https://api.openai.com/v1")
    for raw in (b"/@evil.example/x", b"/:8080/x", b"/evil.example", b"/%40evil"):
        url = upstream_url(base, confine(raw), b"")
        assert (url.scheme, url.host, url.port) == ("https", "api.openai.com", None)
        assert url.raw_path.startswith(b"/v1/")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"/..;/files", "'..;'"),
        (b"/files/%FF", "not UTF-8"),
    ],
)
def test_confine_says_why(raw: bytes, message: str) -> None:
    with pytest.raises(PathRefused, match=message):
        confine(raw)
