"""IncludeStreamUsage: ask OpenAI for usage at the end of streamed completions."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import pytest

from provider_proxy import RequestContext
from provider_proxy.transforms import IncludeStreamUsage


def ctx(
    path: str = "/chat/completions",
    method: str = "POST",
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> RequestContext:
    return RequestContext("openai", method, path, b"", list(headers), "rid")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}),
        (
            {"stream": True, "stream_options": None},
            {"stream": True, "stream_options": {"include_usage": True}},
        ),
        (
            {"stream": True, "stream_options": {"include_obfuscation": False}},
            {
                "stream": True,
                "stream_options": {"include_obfuscation": False, "include_usage": True},
            },
        ),
        # the client's own choice stands, either way
        ({"stream": True, "stream_options": {"include_usage": False}}, None),
        ({"stream": True, "stream_options": {"include_usage": True}}, None),
        # not streamed, or not something to fix
        ({"stream": False}, None),
        ({"stream": "true"}, None),
        ({"stream": 1}, None),
        ({}, None),
        ({"stream": True, "stream_options": "usage"}, None),
        ([{"stream": True}], None),
    ],
)
def test_include_usage(body: Any, expected: Any) -> None:
    original = copy.deepcopy(body)
    assert IncludeStreamUsage()(body, ctx()) == expected
    assert body == original  # the input is never changed


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [
        ("POST", "/chat/completions", (), True),
        ("POST", "/completions", (), True),
        ("POST", "/v1beta/openai/chat/completions", (), True),
        ("POST", "/responses", (), False),
        ("POST", "/embeddings", (), False),
        ("POST", "/v1/messages", (), False),
        ("GET", "/chat/completions", (), False),
        ("POST", "/chat/completions", ((b"content-type", b"multipart/form-data"),), False),
        ("POST", "/chat/completions", ((b"content-type", b"application/json"),), True),
    ],
)
def test_applies_to(
    method: str, path: str, headers: Sequence[tuple[bytes, bytes]], expected: bool
) -> None:
    assert IncludeStreamUsage().applies_to(ctx(path, method, headers)) is expected
