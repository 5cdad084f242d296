"""Endpoint rules: parsing, matching, and the adapters' secure defaults."""

from __future__ import annotations

import pytest

from provider_proxy.adapters import AnthropicAdapter, OpenAIAdapter, OpenAICompatibleAdapter
from provider_proxy.policy._endpoints import (
    ALLOW_ALL,
    endpoint_allowed,
    parse_rule,
    parse_rules,
)


@pytest.mark.parametrize(
    ("rule", "method", "path", "expected"),
    [
        # methods: one, several, any; GET covers HEAD; names are case-insensitive
        ("POST /chat/completions", "POST", "/chat/completions", True),
        ("POST /chat/completions", "GET", "/chat/completions", False),
        ("post /chat/completions", "POST", "/chat/completions", True),
        ("GET,DELETE /responses/*", "DELETE", "/responses/r1", True),
        ("GET,DELETE /responses/*", "HEAD", "/responses/r1", True),
        ("GET,DELETE /responses/*", "POST", "/responses/r1", False),
        ("DELETE /x", "HEAD", "/x", False),
        ("* /x", "PATCH", "/x", True),
        ("GET,* /x", "PUT", "/x", True),
        # exact paths; a trailing slash and the query do not count
        ("POST /chat/completions", "POST", "/chat/completions/", True),
        ("POST /chat/completions/", "POST", "/chat/completions", True),
        ("POST /chat/completions", "POST", "/chat/completions?x=1", True),
        ("POST /chat/completions", "POST", "/chat/completions/x", False),
        ("POST /chat/completions", "POST", "/chat", False),
        ("POST /chat/completions", "POST", "/v1/chat/completions", False),
        ("POST /chat/completions", "POST", "/Chat/Completions", False),
        # * stays within one segment and may be part of one
        ("GET /models/*", "GET", "/models/gpt-4o", True),
        ("GET /models/*", "GET", "/models/a/b", False),
        ("GET /models/*", "GET", "/models", False),
        ("GET /models/*", "GET", "/models/", False),
        ("POST /v1beta/models/*:generateContent", "POST", "/v1beta/models/g:generateContent", True),
        (
            "POST /v1beta/models/*:generateContent",
            "POST",
            "/v1beta/models/a/b:generateContent",
            False,
        ),
        ("POST /v1beta/models/*:generateContent", "POST", "/v1beta/models/g:countTokens", False),
        ("GET /a/*/c", "GET", "/a/b/c", True),
        ("GET /a/*/c", "GET", "/a/b/x/c", False),
        # ** spans any number of segments, none included
        ("GET,POST /files/**", "POST", "/files", True),
        ("GET,POST /files/**", "GET", "/files/f1", True),
        ("GET,POST /files/**", "GET", "/files/f1/content", True),
        ("GET,POST /files/**", "GET", "/filesystem", False),
        ("GET,POST /files/**", "GET", "/other/files", False),
        ("GET /a/**/z", "GET", "/a/z", True),
        ("GET /a/**/z", "GET", "/a/b/c/z", True),
        ("GET /a/**/z", "GET", "/a/b/c/y", False),
        ("GET /a/**/z", "GET", "/az", False),
        ("GET /a**", "GET", "/abc/d", True),  # within a segment, ** still spans
        # everything
        (ALLOW_ALL, "DELETE", "/organization/admin_api_keys/k", True),
        (ALLOW_ALL, "GET", "/", True),
        (ALLOW_ALL, "GET", "", True),
        # the root alone
        ("GET /", "GET", "/", True),
        ("GET /", "GET", "", True),
        ("GET /", "GET", "/x", False),
        # regular-expression characters in rules are literal
        ("GET /a.b", "GET", "/a.b", True),
        ("GET /a.b", "GET", "/aXb", False),
        ("GET /a+(b)", "GET", "/a+(b)", True),
        ("GET /a+(b)", "GET", "/aa(b)", False),
    ],
)
def test_rule_matching(rule: str, method: str, path: str, expected: bool) -> None:
    assert parse_rule(rule).matches(method, path) is expected


@pytest.mark.parametrize(
    "rule",
    [
        "POST /chat/completions",
        "  POST   /chat/completions  ",
        "POST\t/chat/completions",
    ],
)
def test_whitespace_around_the_parts(rule: str) -> None:
    parsed = parse_rule(rule)
    assert parsed.matches("POST", "/chat/completions")
    assert parsed.text == rule


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("", "must be 'METHOD /path'"),
        ("POST", "must be 'METHOD /path'"),
        ("/chat/completions", "must be 'METHOD /path'"),
        ("POST chat/completions", "must be 'METHOD /path'"),
        ("POST/chat/completions", "must be 'METHOD /path'"),
        ("GET, POST /files", "must be 'METHOD /path'"),  # a space inside the method list
        ("POST /a b", "must be 'METHOD /path'"),
        ("GET,,POST /x", "is not an HTTP method"),
        ("GET, /x", "is not an HTTP method"),
        ("P0ST! /x", "is not an HTTP method"),
    ],
)
def test_bad_rules_say_what_is_wrong(rule: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rule(rule)


def test_rules_are_a_list() -> None:
    with pytest.raises(ValueError, match="list of strings"):
        parse_rules("POST /chat/completions")
    assert parse_rules(()) == ()


def test_any_rule_allows() -> None:
    rules = parse_rules(["POST /chat/completions", "GET /models/**"])
    assert endpoint_allowed(rules, "POST", "/chat/completions")
    assert endpoint_allowed(rules, "GET", "/models/gpt-4o")
    assert not endpoint_allowed(rules, "POST", "/models")
    assert not endpoint_allowed((), "GET", "/models")


def test_parsed_rules_are_cached() -> None:
    assert parse_rule("GET /cached") is parse_rule("GET /cached")


# -- the adapters' defaults ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/chat/completions", True),
        ("POST", "/completions", True),
        ("POST", "/embeddings", True),
        ("POST", "/responses", True),
        ("GET", "/responses/resp_1", True),
        ("DELETE", "/responses/resp_1", True),
        ("POST", "/responses/resp_1/cancel", True),
        ("GET", "/responses/resp_1/input_items", True),
        ("POST", "/responses/input_tokens", True),
        ("POST", "/responses/compact", True),
        ("POST", "/moderations", True),
        ("POST", "/audio/speech", True),
        ("POST", "/audio/transcriptions", True),
        ("POST", "/images/generations", True),
        ("GET", "/models", True),
        ("GET", "/models/gpt-4o", True),
        ("HEAD", "/models", True),
        # administrative and storage endpoints stay closed
        ("GET", "/chat/completions", False),
        ("POST", "/files", False),
        ("GET", "/files/file_1/content", False),
        ("POST", "/batches", False),
        ("POST", "/fine_tuning/jobs", False),
        ("POST", "/uploads", False),
        ("POST", "/vector_stores", False),
        ("POST", "/assistants", False),
        ("GET", "/organization/admin_api_keys", False),
        ("DELETE", "/models/ft:gpt-4o:org", False),
        ("POST", "/responses/resp_1", False),
    ],
)
def test_openai_defaults(method: str, path: str, expected: bool) -> None:
    assert OpenAIAdapter(api_key="k").endpoint_allowed(method, path) is expected
    gateway = OpenAICompatibleAdapter("gw", "https://gw.example/v1", api_key="k")
    assert gateway.endpoint_allowed(method, path) is expected


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/messages", True),
        ("POST", "/v1/messages/count_tokens", True),
        ("POST", "/v1/complete", True),
        ("GET", "/v1/models", True),
        ("GET", "/v1/models/claude-sonnet-4-5", True),
        ("POST", "/v1/messages/batches", False),
        ("GET", "/v1/messages/batches/b1/results", False),
        ("GET", "/v1/files", False),
        ("POST", "/v1/skills", False),
        ("GET", "/v1/organizations/api_keys", False),
        ("POST", "/chat/completions", False),
    ],
)
def test_anthropic_defaults(method: str, path: str, expected: bool) -> None:
    assert AnthropicAdapter(api_key="k").endpoint_allowed(method, path) is expected


def test_allow_opens_more_and_keeps_the_defaults() -> None:
    adapter = OpenAIAdapter(api_key="k", allow=["GET,POST /files/**"])
    assert adapter.endpoint_allowed("POST", "/files")
    assert adapter.endpoint_allowed("GET", "/files/f1/content")
    assert not adapter.endpoint_allowed("DELETE", "/files/f1")
    assert adapter.endpoint_allowed("POST", "/chat/completions")
    everything = AnthropicAdapter(api_key="k", allow=[ALLOW_ALL])
    assert everything.endpoint_allowed("DELETE", "/v1/files/f1")


def test_a_bad_allow_rule_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="METHOD /path"):
        OpenAIAdapter(api_key="k", allow=["files/**"])
