"""compose(): order, "nothing changed", applies_to, flattening, async parts."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from provider_proxy import ModelNotAllowed, RequestContext
from provider_proxy.transforms import (
    Composed,
    ModelAliases,
    ParameterPolicy,
    Transform,
    applies,
    compose,
)
from provider_proxy.transforms._compose import run_transform


def ctx(path: str = "/chat/completions") -> RequestContext:
    return RequestContext("openai", "POST", path, b"", [], "rid")


def run(transform: Any, body: Any, context: RequestContext | None = None) -> Any:
    return anyio.run(run_transform, transform, body, context or ctx())


def append(name: str, calls: list[str]) -> Any:
    def transform(body: Any, context: RequestContext) -> Any:
        calls.append(name)
        return {**body, "trail": [*body.get("trail", []), name]}

    transform.__name__ = name
    return transform


class Only(Transform):
    """A transform object that applies to one path and records its calls."""

    def __init__(self, path: str, calls: list[str]) -> None:
        self.path = path
        self.calls = calls

    def applies_to(self, context: RequestContext) -> bool:
        return context.path == self.path

    def __call__(self, body: Any, context: RequestContext) -> Any:
        self.calls.append(self.path)
        return {**body, "seen": self.path}


def unchanged(body: Any, context: RequestContext) -> None:
    return None


async def async_append(body: Any, context: RequestContext) -> Any:
    await anyio.lowlevel.checkpoint()
    return {**body, "trail": [*body.get("trail", []), "async"]}


def test_runs_in_order_each_seeing_the_previous_output() -> None:
    calls: list[str] = []
    composed = compose(append("a", calls), async_append, append("b", calls))
    assert run(composed, {}) == {"trail": ["a", "async", "b"]}
    assert calls == ["a", "b"]


def test_none_when_no_part_changed_anything() -> None:
    assert run(compose(unchanged, unchanged), {"x": 1}) is None
    assert run(compose(), {"x": 1}) is None


def test_a_later_part_that_changes_nothing_keeps_the_earlier_change() -> None:
    calls: list[str] = []
    assert run(compose(append("a", calls), unchanged), {}) == {"trail": ["a"]}


def test_in_place_change_returned_counts_as_a_change() -> None:
    def in_place(body: Any, context: RequestContext) -> Any:
        body["x"] = 2
        return body

    assert run(compose(in_place, unchanged), {"x": 1}) == {"x": 2}


def test_only_parts_that_apply_run() -> None:
    calls: list[str] = []
    composed = compose(Only("/embeddings", calls), Only("/chat/completions", calls))
    assert run(composed, {}) == {"seen": "/chat/completions"}
    assert calls == ["/chat/completions"]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ((), False),
        ((Only("/embeddings", []),), False),
        ((Only("/embeddings", []), Only("/chat/completions", [])), True),
        ((Only("/embeddings", []), unchanged), True),  # a plain function applies to all
    ],
)
def test_applies_to_any_part(parts: tuple[Any, ...], expected: bool) -> None:
    composed = compose(*parts)
    assert composed.applies_to(ctx()) is expected
    assert applies(composed, ctx()) is expected


def test_nested_compose_is_flattened() -> None:
    calls: list[str] = []
    a, b, c = append("a", calls), append("b", calls), append("c", calls)
    composed = compose(a, compose(b, compose(c)), compose())
    assert isinstance(composed, Composed)
    assert composed.transforms == (a, b, c)
    assert run(composed, {}) == {"trail": ["a", "b", "c"]}
    assert "compose(" in repr(composed)


def test_run_transform_calls_sync_and_async() -> None:
    assert run(unchanged, {}) is None
    assert run(async_append, {}) == {"trail": ["async"]}


def test_ready_made_transforms_compose_aliases_before_the_allowlist() -> None:
    aliases = ModelAliases({"fast": "gpt-4o-mini", "big": "o3"})
    policy = ParameterPolicy(allowed_models=["gpt-4o*"], clamps={"max_tokens": 100})
    composed = compose(aliases, policy)
    assert run(composed, {"model": "fast", "max_tokens": 500}) == {
        "model": "gpt-4o-mini",
        "max_tokens": 100,
    }
    with pytest.raises(ModelNotAllowed, match="'o3'"):
        run(composed, {"model": "big"})
    assert run(composed, {"model": "gpt-4o"}) is None
