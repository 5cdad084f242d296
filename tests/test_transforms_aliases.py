"""ModelAliases: static and catalog-resolved aliases, defaults, loops, version order."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from provider_proxy import RequestContext
from provider_proxy.transforms import ModelAliases, version_key
from provider_proxy.transforms._compose import run_transform

CATALOG = {
    "anthropic": [
        "claude-3-7-sonnet-20250219",
        "claude-sonnet-4-20250514",
        "claude-sonnet-4-5-20250929",
        "claude-opus-4-1-20250805",
        "claude-3-5-haiku-20241022",
    ],
    "openai": ["gpt-4o", "gpt-4o-2024-08-06", "gpt-5", "gpt-5.1", "gpt-4.1"],
    "openrouter": ["anthropic/claude-sonnet-4", "anthropic/claude-sonnet-4.5"],
}


class Lookup:
    """A model catalog that counts how often it is asked."""

    def __init__(self, models: dict[str, list[str]]) -> None:
        self.models = models
        self.calls: list[str] = []

    async def __call__(self, provider: str) -> Sequence[str]:
        self.calls.append(provider)
        return self.models.get(provider, [])


def ctx(
    adapter: str = "openai",
    path: str = "/chat/completions",
    *,
    method: str = "POST",
    models: Lookup | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> RequestContext:
    return RequestContext(adapter, method, path, b"", list(headers), "rid", models=models)


def run(transform: Any, body: Any, context: RequestContext) -> Any:
    return anyio.run(run_transform, transform, body, context)


ALIASES = ModelAliases(
    {
        "fast": "gpt-4o-mini",
        "Smart": "best",
        "best": ["anthropic/claude-*sonnet*", "openai/gpt-5*", "openrouter/anthropic/claude-*"],
        "opus": "anthropic/claude-opus-*",
        "ordered": ["anthropic/claude-3-5-haiku*", "anthropic/claude-*"],
        "fallback": ["anthropic/no-such-*", "fast"],
        "nothing": ["anthropic/no-such-*"],
        "gpt-4o": "gpt-4o",
    },
    default="fast",
)


@pytest.mark.parametrize(
    ("adapter", "body", "expected"),
    [
        # static aliases, keys matched case-insensitively
        ("openai", {"model": "fast"}, {"model": "gpt-4o-mini"}),
        ("openai", {"model": "FAST", "n": 1}, {"model": "gpt-4o-mini", "n": 1}),
        # an alias naming itself fixes the spelling; already right: unchanged
        ("openai", {"model": "GPT-4O"}, {"model": "gpt-4o"}),
        ("openai", {"model": "gpt-4o"}, None),
        # default for a missing, null or empty model
        ("openai", {"messages": []}, {"messages": [], "model": "gpt-4o-mini"}),
        ("openai", {"model": None}, {"model": "gpt-4o-mini"}),
        ("openai", {"model": ""}, {"model": "gpt-4o-mini"}),
        # chains and catalog references, the highest version winning
        ("anthropic", {"model": "smart"}, {"model": "claude-sonnet-4-5-20250929"}),
        ("openai", {"model": "best"}, {"model": "gpt-5.1"}),
        ("openrouter", {"model": "best"}, {"model": "anthropic/claude-sonnet-4.5"}),
        ("anthropic", {"model": "opus"}, {"model": "claude-opus-4-1-20250805"}),
        # the first reference that matches decides, even over higher versions later
        ("anthropic", {"model": "ordered"}, {"model": "claude-3-5-haiku-20241022"}),
        # a reference that matches nothing falls through to the next item
        ("anthropic", {"model": "fallback"}, {"model": "gpt-4o-mini"}),
        # references for another adapter are skipped; nothing left: unchanged
        ("mistral", {"model": "best"}, None),
        ("anthropic", {"model": "nothing"}, None),
        # not aliases, or not something to rewrite
        ("openai", {"model": "gpt-4.1"}, None),
        ("openai", {"model": 4}, None),
        ("openai", ["not", "a", "dict"], None),
        ("openai", "text", None),
    ],
)
def test_resolution(adapter: str, body: Any, expected: Any) -> None:
    original = copy.deepcopy(body)
    assert run(ALIASES, body, ctx(adapter, models=Lookup(CATALOG))) == expected
    assert body == original  # the input is never changed


def test_without_a_catalog_only_static_aliases_resolve() -> None:
    context = ctx("anthropic")
    assert run(ALIASES, {"model": "best"}, context) is None
    assert run(ALIASES, {"model": "fast"}, context) == {"model": "gpt-4o-mini"}


def test_catalog_is_asked_once_per_request_and_only_when_needed() -> None:
    lookup = Lookup(CATALOG)
    run(ALIASES, {"model": "fallback"}, ctx("anthropic", models=lookup))
    assert lookup.calls == ["anthropic"]
    run(ALIASES, {"model": "fast"}, ctx("anthropic", models=lookup))
    run(ALIASES, {"model": "best"}, ctx("mistral", models=lookup))
    assert lookup.calls == ["anthropic"]  # static, and no reference for mistral


def test_adapter_names_and_globs_match_case_insensitively() -> None:
    aliases = ModelAliases({"x": "Anthropic/CLAUDE-SONNET-*"})
    lookup = Lookup({"anthropic": ["claude-sonnet-4-5"]})
    assert run(aliases, {"model": "x"}, ctx("anthropic", models=lookup)) == {
        "model": "claude-sonnet-4-5"
    }


def test_default_may_name_an_alias() -> None:
    aliases = ModelAliases({"cheap": "anthropic/claude-3-5-haiku*"}, default="CHEAP")
    lookup = Lookup(CATALOG)
    assert run(aliases, {}, ctx("anthropic", models=lookup)) == {
        "model": "claude-3-5-haiku-20241022"
    }
    assert run(aliases, {}, ctx("openai", models=lookup)) is None  # resolves to nothing


def test_no_default_leaves_a_body_without_model() -> None:
    aliases = ModelAliases({"a": "b"})
    assert run(aliases, {"messages": []}, ctx()) is None


@pytest.mark.parametrize(
    ("aliases", "loop"),
    [
        ({"a": "b", "b": "a"}, "a -> b -> a"),
        ({"a": ["b"], "b": ["c"], "c": "A"}, "a -> b -> c -> a"),
        ({"x": "y", "y": ["openai/z*", "Y2"], "y2": "y"}, "y -> y2 -> y"),
    ],
)
def test_loops_are_refused_at_construction(aliases: dict[str, Any], loop: str) -> None:
    with pytest.raises(ValueError, match="loop") as error:
        ModelAliases(aliases)
    assert loop in str(error.value)


@pytest.mark.parametrize(
    ("aliases", "default", "message"),
    [
        ({"a": "x", "A": "y"}, None, "differ only in case"),
        ({"": "x"}, None, "non-empty"),
        ({"a": ""}, None, "empty string"),
        ({"a": []}, None, "empty list"),
        ({"a": ["gpt-4o"]}, None, "neither an alias nor a 'provider/glob'"),
        ({"a": ["openai/"]}, None, "neither an alias"),
        ({"a": [3]}, None, "must be strings"),
        ({"a": "x"}, "gpt-*", "define an alias"),
        ({"a": "x"}, "", "default="),
    ],
)
def test_bad_configuration(aliases: dict[str, Any], default: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelAliases(aliases, default=default)


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [
        ("POST", "/chat/completions", (), True),
        ("POST", "/v1/messages", (), True),
        ("POST", "/v1/messages/count_tokens", (), True),
        ("POST", "/responses", (), True),
        ("POST", "/embeddings/", (), True),
        ("POST", "/openai/deployments/d/chat/completions", (), True),
        ("POST", "/v1/m%65ssages", (), True),  # the provider decodes it, so do we
        ("GET", "/models", (), False),
        ("POST", "/files", (), False),
        ("POST", "/audio/transcriptions", (), False),
        ("POST", "/chat/completions", ((b"content-type", b"multipart/form-data; b=x"),), False),
    ],
)
def test_applies_to(
    method: str, path: str, headers: Sequence[tuple[bytes, bytes]], expected: bool
) -> None:
    assert ALIASES.applies_to(ctx(path=path, method=method, headers=headers)) is expected


@pytest.mark.parametrize(
    "newest_last",
    [
        ["claude-3-7-sonnet", "claude-sonnet-4-1", "claude-sonnet-4-5"],
        ["m-4", "m-4-5", "m-4-10", "m-9", "m-10"],
        ["claude-sonnet-4-20250514", "claude-sonnet-4-5-20250929"],  # dates are not versions
        ["gpt-4o-2024-05-13", "gpt-4o-2024-08-06"],  # same version: the date decides
        ["gpt-4-0613", "gpt-4.1"],  # a four-digit stamp is not a minor version
        ["gemini-2.0-flash", "gemini-2.5-flash", "gemini-10-flash"],
    ],
)
def test_version_key_orders_newest_last(newest_last: list[str]) -> None:
    keys = [version_key(model) for model in newest_last]
    assert all(older < newer for older, newer in itertools.pairwise(keys))
