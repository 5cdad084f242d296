from __future__ import annotations

import re

import pytest

from provider_proxy.dialects import PRIVATE_HEADERS
from provider_proxy.policy._headers import (
    DEFAULT_POLICY,
    HeaderPolicy,
    apply_headers,
    connection_named,
    request_headers_for_upstream,
    request_id_from,
    response_headers_for_client,
    upstream_limits_renamed,
)

_NEW_ID = re.compile(r"[0-9a-f]{32}")


def test_request_headers_drop_hop_by_hop_credentials_and_host() -> None:
    headers = [
        (b"host", b"myapp.example"),
        (b"connection", b"keep-alive, x-hop"),
        (b"keep-alive", b"timeout=5"),
        (b"x-hop", b"1"),
        (b"te", b"trailers"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"proxy-authorization", b"Basic eA=="),
        (b"authorization", b"Bearer client"),
        (b"x-api-key", b"client"),
        (b"api-key", b"client"),
        (b"x-goog-api-key", b"client"),
        (b"cookie", b"session=1"),
        (b"content-length", b"10"),
        (b"x-request-id", b"abc"),
        (b"content-type", b"application/json"),
        (b"openai-beta", b"assistants=v2"),
        (b"anthropic-beta", b"a"),
        (b"anthropic-beta", b"b"),
    ]
    # What the engine does: the fixed rules, and no format's credential headers.
    engine_policy = DEFAULT_POLICY.never_forwarding(PRIVATE_HEADERS)
    assert request_headers_for_upstream(headers, engine_policy) == [
        (b"content-type", b"application/json"),
        (b"openai-beta", b"assistants=v2"),
        (b"anthropic-beta", b"a"),
        (b"anthropic-beta", b"b"),
    ]
    # The split: HTTP's own credentials are the fixed rules', the formats' the dialects'.
    assert request_headers_for_upstream(headers) == [
        (b"x-api-key", b"client"),
        (b"api-key", b"client"),
        (b"x-goog-api-key", b"client"),
        (b"content-type", b"application/json"),
        (b"openai-beta", b"assistants=v2"),
        (b"anthropic-beta", b"a"),
        (b"anthropic-beta", b"b"),
    ]
    assert {b"x-api-key", b"api-key", b"x-goog-api-key"} <= PRIVATE_HEADERS


def test_request_headers_drop_topology_unless_forwarded() -> None:
    headers = [
        (b"x-forwarded-for", b"203.0.113.7"),
        (b"x-forwarded-anything", b"1"),
        (b"forwarded", b"for=203.0.113.7"),
        (b"via", b"1.1 edge"),
        (b"x-original-url", b"/admin"),
        (b"x-stainless-lang", b"python"),
        (b"content-type", b"application/json"),
    ]
    assert request_headers_for_upstream(headers) == [
        (b"x-stainless-lang", b"python"),
        (b"content-type", b"application/json"),
    ]
    policy = HeaderPolicy(["X-Forwarded-For", "via"], drop_prefixes=["X-Stainless-"])
    assert request_headers_for_upstream(headers, policy) == [
        (b"x-forwarded-for", b"203.0.113.7"),
        (b"via", b"1.1 edge"),
        (b"content-type", b"application/json"),
    ]
    # A header named in Connection is hop-by-hop, forwarded or not.
    hop = [(b"connection", b"x-forwarded-for"), (b"x-forwarded-for", b"203.0.113.7")]
    assert request_headers_for_upstream(hop, policy) == []
    assert "x-forwarded-for" in repr(policy)


def test_upstream_limit_headers_renamed() -> None:
    headers = [
        (b"x-ratelimit-limit", b"100"),
        (b"ratelimit", b'"default";r=5;t=30'),
        (b"x-ratelimit-remaining-tokens", b"10"),
        (b"content-type", b"application/json"),
    ]
    assert upstream_limits_renamed(headers) == [
        (b"x-upstream-ratelimit-limit", b"100"),
        (b"x-upstream-ratelimit", b'"default";r=5;t=30'),
        (b"x-ratelimit-remaining-tokens", b"10"),
        (b"content-type", b"application/json"),
    ]
    plain = [(b"content-type", b"text/plain")]
    assert upstream_limits_renamed(plain) is plain


def test_headers_a_connection_header_names_are_dropped_before_and_after_it() -> None:
    sent = [(b"x-hop", b"1"), (b"connection", b"X-Hop, close"), (b"x-keep", b"2"), (b"x-hop", b"3")]
    assert request_headers_for_upstream(sent) == [(b"x-keep", b"2")]
    answered = [(b"X-Hop", b"1"), (b"Connection", b"x-hop"), (b"X-Keep", b"2"), (b"x-HOP", b"3")]
    assert response_headers_for_client(answered) == [(b"x-keep", b"2")]
    # Without a Connection header, nothing beyond the fixed rules is dropped.
    assert request_headers_for_upstream([(b"x-hop", b"1")]) == [(b"x-hop", b"1")]


def test_connection_named_parses_tokens() -> None:
    assert connection_named([(b"connection", b" Close , X-Foo,,")]) == {b"close", b"x-foo"}
    assert connection_named([(b"x", b"y")]) == frozenset()


def test_response_headers_lowercase_and_filter() -> None:
    headers = [
        (b"Content-Type", b"text/event-stream"),
        (b"Connection", b"keep-alive, X-Trace"),
        (b"X-Trace", b"1"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Set-Cookie", b"__cf_bm=1"),
        (b"Date", b"Mon"),
        (b"Server", b"cloudflare"),
        (b"Content-Encoding", b"gzip"),
        (b"openai-processing-ms", b"12"),
        # CORS is the proxy's or the host's policy, never the provider's
        (b"Access-Control-Allow-Origin", b"*"),
        (b"access-control-allow-credentials", b"true"),
        (b"Access-Control-Expose-Headers", b"x-request-id"),
    ]
    assert response_headers_for_client(headers) == [
        (b"content-type", b"text/event-stream"),
        (b"content-encoding", b"gzip"),
        (b"openai-processing-ms", b"12"),
    ]


def test_apply_headers_replaces_and_defaults() -> None:
    headers = [(b"user-agent", b"client/1"), (b"anthropic-version", b"2024-01-01")]
    apply_headers(
        headers,
        {"User-Agent": "QwenCode/0.0.14", "x-api-key": "k"},
        {"anthropic-version": "2023-06-01", "accept": "application/json"},
    )
    assert headers == [
        (b"anthropic-version", b"2024-01-01"),
        (b"user-agent", b"QwenCode/0.0.14"),
        (b"x-api-key", b"k"),
        (b"accept", b"application/json"),
    ]


def test_apply_headers_sets_one_value_per_name_whatever_its_case() -> None:
    headers = [(b"authorization", b"Bearer client")]
    apply_headers(headers, {"Authorization": "Bearer a", "authorization": "Bearer b"})
    assert headers == [(b"authorization", b"Bearer b")]


@pytest.mark.parametrize("value", [b"req-1", b"a" * 128, b"trace:1.2_3-4"])
def test_request_id_kept_when_safe(value: bytes) -> None:
    assert request_id_from([(b"x-request-id", value)]) == value.decode()


@pytest.mark.parametrize("value", [b"", b"a" * 129, b"has space", b"semi;colon", b"\xff"])
def test_request_id_replaced_when_unsafe(value: bytes) -> None:
    new = request_id_from([(b"x-request-id", value)])
    assert new != value.decode("latin-1")
    # new_request_id(): 128 random bits as exactly 32 lower-case hex digits.
    assert _NEW_ID.fullmatch(new), new
    assert request_id_from([(b"x-request-id", value)]) != new


def test_request_id_generated_and_unique() -> None:
    ids = [request_id_from([]) for _ in range(100)]
    assert all(_NEW_ID.fullmatch(new) for new in ids), ids
    assert len(set(ids)) == len(ids)
