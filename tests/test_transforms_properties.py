"""Properties every ready-made transform keeps, over generated request bodies.

- the body it is given is never changed, whatever it returns;
- what it returns is JSON (it survives ``json.dumps``/``loads``) and differs from
  the input (``None`` is the only way to say "unchanged");
- applying it to its own output changes nothing more (it returns ``None``);
- bodies it does not concern come back as ``None``.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider_proxy import ModelNotAllowed, RequestContext
from provider_proxy.transforms import (
    AnthropicPromptCache,
    DropTools,
    IncludeStreamUsage,
    ModelAliases,
    ParameterPolicy,
    StripAnsi,
    compose,
)
from provider_proxy.transforms._compose import run_transform

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- generated bodies -----------------------------------------------------------------

TOOL_NAMES = ["bash", "web_search", "read", "edit"]
MODELS = ["fast", "Smart", "best", "gpt-4o", "claude-sonnet-4-5", "o3", "", "x" * 3]
FRAGMENTS = [
    "\x1b[31m",
    "\x1b[0m",
    "\x1b]0;title\x07",
    "\x1b]8;;u\x1b\\",
    "\x1b",
    "\x1b(",
    "\x9b",
    "\x90",
    "\x9c",
    "[0m",
    "bash",
    "web_search",
    "`",
    " ",
    "\n",
    "-",
    "_",
]
TEXT = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=6).map("".join)
# Text that surely holds an escape sequence, for the tool results below.
ANSI_TEXT = st.tuples(TEXT, st.sampled_from(FRAGMENTS[:9]), TEXT).map("".join)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
CACHE_CONTROL = st.sampled_from(
    [
        {"type": "ephemeral"},
        {"type": "ephemeral", "ttl": "1h"},
        {"type": "ephemeral", "ttl": "5m"},
        {},
        None,
        {"type": "ephemeral", "ttl": ["1h"]},
        {"type": ["ephemeral"]},
        "ephemeral",
    ]
)
INNER_BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image"])},
    optional={"text": TEXT, "cache_control": CACHE_CONTROL},
)
BLOCK = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "text",
                "thinking",
                "redacted_thinking",
                "tool_result",
                "tool_use",
                "image",
                "input_text",
                "mcp_tool_result",
            ]
        )
        | JSON_VALUES
    },
    optional={
        "text": TEXT,
        "content": TEXT | st.lists(INNER_BLOCK, max_size=3),
        "cache_control": CACHE_CONTROL,
        "input": JSON_VALUES,
        "name": st.sampled_from(TOOL_NAMES),
    },
)
TOOL_RESULT = st.fixed_dictionaries(
    {"type": st.just("tool_result"), "content": ANSI_TEXT | st.lists(INNER_BLOCK, max_size=2)}
)
CONTENT = TEXT | st.none() | st.lists(BLOCK | TOOL_RESULT | JSON_VALUES, max_size=4)
MESSAGE = (
    st.fixed_dictionaries({"role": st.just("tool"), "content": ANSI_TEXT})
    | st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(
                ["user", "assistant", "system", "developer", "tool", "tool", "function"]
            )
            | JSON_VALUES,
            "content": CONTENT,
            "tool_call_id": st.text(max_size=3),
            "name": JSON_VALUES,
        },
    )
    | JSON_VALUES
)
ITEM = (
    st.fixed_dictionaries(
        {"type": st.sampled_from(["message", "function_call_output", "function_call"])},
        optional={
            "role": st.sampled_from(["user", "system", "developer"]) | JSON_VALUES,
            "content": CONTENT,
            "output": CONTENT,
        },
    )
    | MESSAGE
)


def _marked(tool: Any) -> Any:
    return lambda control: {**tool, "cache_control": control}


TOOL = (
    st.sampled_from(TOOL_NAMES)
    .flatmap(
        lambda name: st.sampled_from(
            [
                {"name": name, "input_schema": {}},
                {"type": "function", "function": {"name": name}},
                {"type": "function", "name": name},
            ]
        )
    )
    .flatmap(lambda tool: st.one_of(st.just(tool), CACHE_CONTROL.map(_marked(tool))))
)
TOOL_CHOICE = st.sampled_from(TOOL_NAMES).flatmap(
    lambda name: st.sampled_from(
        [
            "auto",
            "none",
            {"type": "any"},
            {"type": "tool", "name": name},
            {"type": "function", "function": {"name": name}},
            {
                "type": "allowed_tools",
                "mode": "auto",
                "tools": [{"type": "function", "name": name}],
            },
            {
                "type": "allowed_tools",
                "allowed_tools": {"tools": [{"type": "function", "function": {"name": name}}]},
            },
        ]
    )
)
NUMBER = st.integers(-(10**5), 10**5) | st.floats(-1e6, 1e6, allow_nan=False)
BODY = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(MODELS) | JSON_VALUES,
        "messages": st.lists(MESSAGE, max_size=5),
        "system": TEXT | st.lists(BLOCK, max_size=3),
        "tools": st.lists(TOOL, max_size=4),
        "tool_choice": TOOL_CHOICE | JSON_VALUES,
        "parallel_tool_calls": st.booleans(),
        "stream": st.just(True) | st.booleans() | JSON_VALUES,
        "stream_options": st.none()
        | st.fixed_dictionaries({}, optional={"include_usage": st.booleans(), "x": SCALARS}),
        "input": TEXT | st.lists(ITEM, max_size=4),
        "instructions": TEXT,
        "max_tokens": NUMBER | JSON_VALUES,
        "temperature": NUMBER,
        "seed": NUMBER,
        "user": SCALARS,
        "cache_control": CACHE_CONTROL,
    },
)
ANY_BODY = BODY | JSON_VALUES

# -- the transforms under test, each with a request it applies to ---------------------------


async def _catalog(provider: str) -> Sequence[str]:
    return {
        "anthropic": ["claude-3-7-sonnet-20250219", "claude-sonnet-4-5-20250929"],
        "openai": ["gpt-4o", "gpt-5", "gpt-5.1"],
    }.get(provider, [])


def _ctx(adapter: str, path: str, method: str = "POST") -> RequestContext:
    headers = [(b"anthropic-beta", b"a,b")]
    return RequestContext(adapter, method, path, b"", headers, "rid", models=_catalog)


CASES: dict[str, tuple[Any, str, str]] = {
    "aliases": (
        ModelAliases(
            {
                "fast": "gpt-4o-mini",
                "Smart": "best",
                "best": ["anthropic/claude-*", "openai/gpt-*"],
            },
            default="smart",
        ),
        "anthropic",
        "/v1/messages",
    ),
    "cache": (AnthropicPromptCache(), "anthropic", "/v1/messages"),
    "cache-1h": (AnthropicPromptCache(ttl="1h", upgrade=True), "anthropic", "/v1/messages"),
    "cache-1h-tail": (
        AnthropicPromptCache(ttl="1h", tail_ttl="1h", upgrade=True),
        "anthropic",
        "/v1/messages",
    ),
    "strip": (StripAnsi(), "openai", "/chat/completions"),
    "strip-all": (StripAnsi(all_text=True), "anthropic", "/v1/messages"),
    "drop": (DropTools(["bash", "web_search"]), "openai", "/responses"),
    "params": (
        ParameterPolicy(
            defaults={"temperature": 0.5},
            overrides={"user": "proxy"},
            clamps={"max_tokens": 1000, "seed": (0, 10)},
            remove=["parallel_tool_calls"],
        ),
        "openai",
        "/chat/completions",
    ),
    "stream-usage": (IncludeStreamUsage(), "openai", "/chat/completions"),
}
#: The order the docs recommend: resolve and check, then edit, cache breakpoints last.
RECOMMENDED = compose(
    CASES["aliases"][0],
    CASES["params"][0],
    # Escape codes can hide a tool's mention from DropTools: strip them first.
    CASES["strip-all"][0],
    CASES["drop"][0],
    CASES["stream-usage"][0],
    CASES["cache-1h"][0],
)


def call(transform: Any, body: Any, context: RequestContext) -> Any:
    """Run a transform; an event loop only for those that are async (it is faster)."""
    result = transform(body, context)
    if inspect.isawaitable(result):

        async def wait() -> Any:
            return await result

        return anyio.run(wait)
    return result


def run(name: str, body: Any) -> Any:
    transform, adapter, path = CASES[name]
    context = _ctx(adapter, path)
    assert transform.applies_to(context)
    return call(transform, body, context)


@pytest.mark.parametrize("name", sorted(CASES))
@SETTINGS
@given(body=ANY_BODY)
def test_untouched_input_new_json_output_idempotent(name: str, body: Any) -> None:
    original = copy.deepcopy(body)
    once = run(name, body)
    assert body == original, "the input was changed"
    if once is None:
        return
    assert once != body, "a change was reported with none made"
    assert json.loads(json.dumps(once, allow_nan=False)) == once, "not JSON"
    assert run(name, once) is None, "a second application changed more"


@SETTINGS
@given(body=ANY_BODY)
def test_recommended_composition_is_idempotent_json(body: Any) -> None:
    original = copy.deepcopy(body)
    context = _ctx("anthropic", "/v1/messages")
    once = anyio.run(run_transform, RECOMMENDED, body, context)
    assert body == original
    if once is not None:
        assert json.loads(json.dumps(once, allow_nan=False)) == once
        again = anyio.run(run_transform, RECOMMENDED, once, _ctx("anthropic", "/v1/messages"))
        assert again is None


# Keys none of the transforms (with ParameterPolicy limited to clamps and removals) reads.
_READ = {
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "stream",
    "stream_options",
    "input",
    "instructions",
    "max_tokens",
    "seed",
    "cache_control",
}
UNCONCERNED = st.dictionaries(
    st.text(max_size=8).filter(lambda key: key not in _READ), JSON_VALUES, max_size=4
) | JSON_VALUES.filter(lambda value: not isinstance(value, dict))
_NARROW = dict(CASES)
_NARROW["params"] = (
    ParameterPolicy(clamps={"max_tokens": 1000, "seed": (0, 10)}, remove=["parallel_tool_calls"]),
    "openai",
    "/chat/completions",
)
_NARROW["aliases"] = (ModelAliases({"fast": "gpt-4o-mini"}), "openai", "/chat/completions")


@pytest.mark.parametrize("name", sorted(_NARROW))
@SETTINGS
@given(body=UNCONCERNED)
def test_bodies_not_concerned_are_unchanged(name: str, body: Any) -> None:
    transform, adapter, path = _NARROW[name]
    original = copy.deepcopy(body)
    assert call(transform, body, _ctx(adapter, path)) is None
    assert body == original


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/messages"), ("GET", "/chat/completions"), ("POST", "/files")]
)
def test_requests_not_concerned_are_not_read(name: str, method: str, path: str) -> None:
    transform = CASES[name][0]
    assert not transform.applies_to(_ctx("openai", path, method))


ALLOWLIST = ParameterPolicy(allowed_models=["gpt-4o*", "claude-*"])


@SETTINGS
@given(body=ANY_BODY)
def test_allowlist_refuses_exactly_the_other_models(body: Any) -> None:
    model = body.get("model") if isinstance(body, dict) else None
    allowed = isinstance(model, str) and model.lower().startswith(("gpt-4o", "claude-"))
    original = copy.deepcopy(body)
    context = _ctx("openai", "/chat/completions")
    if allowed:
        assert ALLOWLIST(body, context) is None
    else:
        with pytest.raises(ModelNotAllowed):
            ALLOWLIST(body, context)
    assert body == original
