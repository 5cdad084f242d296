"""ParameterPolicy: defaults, overrides, clamps, removals, endpoints and the model allowlist."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import pytest

from provider_proxy import ModelNotAllowed, RequestContext
from provider_proxy.adapters.azure import AzureDeployments
from provider_proxy.dialects import Gemini
from provider_proxy.transforms import ParameterPolicy


def path_model(path: str) -> str | None:
    """The model the engine reads from the path's dialect: Gemini's
    ``/models/{model}:{method}`` (the Gemini adapter), or the deployment of
    ``/openai/deployments/{name}/...`` (the Azure adapter)."""
    return Gemini().model_in_path(path) or AzureDeployments().model_in_path(path)


def ctx(
    path: str = "/chat/completions",
    method: str = "POST",
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> RequestContext:
    return RequestContext(
        "openai", method, path, b"", list(headers), "rid", path_model=path_model(path)
    )


def apply(policy: ParameterPolicy, body: Any, context: RequestContext | None = None) -> Any:
    original = copy.deepcopy(body)
    result = policy(body, context or ctx())
    assert body == original  # the input is never changed
    return result


@pytest.mark.parametrize(
    ("policy", "body", "expected"),
    [
        # defaults: only where absent or null
        (ParameterPolicy(defaults={"temperature": 0.2}), {}, {"temperature": 0.2}),
        (
            ParameterPolicy(defaults={"temperature": 0.2}),
            {"temperature": None},
            {"temperature": 0.2},
        ),
        (ParameterPolicy(defaults={"temperature": 0.2}), {"temperature": 1}, None),
        (ParameterPolicy(defaults={"metadata": {"a": [1]}}), {}, {"metadata": {"a": [1]}}),
        # overrides: always, but no change when the client sent the same
        (ParameterPolicy(overrides={"user": "proxy"}), {"user": "me"}, {"user": "proxy"}),
        (ParameterPolicy(overrides={"user": "proxy"}), {}, {"user": "proxy"}),
        (ParameterPolicy(overrides={"user": "proxy"}), {"user": "proxy"}, None),
        (ParameterPolicy(overrides={"n": 1}), {"n": True}, {"n": 1}),  # JSON true is not 1
        # clamps: an upper bound, or (low, high) with open sides
        (ParameterPolicy(clamps={"max_tokens": 100}), {"max_tokens": 5000}, {"max_tokens": 100}),
        (ParameterPolicy(clamps={"max_tokens": 100}), {"max_tokens": 100}, None),
        (ParameterPolicy(clamps={"max_tokens": 100}), {"max_tokens": -5}, None),
        (
            ParameterPolicy(clamps={"temperature": (0.1, 1)}),
            {"temperature": 0},
            {"temperature": 0.1},
        ),
        (
            ParameterPolicy(clamps={"temperature": (0.1, 1)}),
            {"temperature": 1.5},
            {"temperature": 1},
        ),
        (ParameterPolicy(clamps={"temperature": (0.1, 1)}), {"temperature": 0.5}, None),
        (ParameterPolicy(clamps={"top_p": (0.5, None)}), {"top_p": 0.1}, {"top_p": 0.5}),
        (ParameterPolicy(clamps={"top_p": [None, 0.9]}), {"top_p": 1}, {"top_p": 0.9}),
        # only numbers are clamped
        (ParameterPolicy(clamps={"max_tokens": 100}), {"max_tokens": "5000"}, None),
        (ParameterPolicy(clamps={"max_tokens": 100}), {"max_tokens": True}, None),
        (ParameterPolicy(clamps={"max_tokens": 100}), {}, None),
        # removals
        (ParameterPolicy(remove=["logit_bias"]), {"logit_bias": {}, "n": 1}, {"n": 1}),
        (ParameterPolicy(remove=["logit_bias"]), {"n": 1}, None),
        # all together, in the order remove, defaults, overrides, clamps
        (
            ParameterPolicy(
                defaults={"max_tokens": 64},
                overrides={"stream": False},
                clamps={"max_tokens": 128},
                remove=["seed"],
            ),
            {"seed": 1, "stream": True, "messages": []},
            {"messages": [], "stream": False, "max_tokens": 64},
        ),
        # not a body to change
        (ParameterPolicy(defaults={"n": 1}), ["a list"], None),
        (ParameterPolicy(defaults={"n": 1}), None, None),
    ],
)
def test_parameters(policy: ParameterPolicy, body: Any, expected: Any) -> None:
    assert apply(policy, body) == expected


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/chat/completions", True),
        ("POST", "/completions", True),
        ("POST", "/responses", True),
        ("POST", "/v1/messages", True),
        ("POST", "/v1/complete", True),
        ("POST", "/openai/deployments/gpt-4o/chat/completions", True),
        ("POST", "/embeddings", False),  # would refuse sampling parameters
        ("POST", "/v1/messages/count_tokens", False),
        ("POST", "/v1beta/models/gemini-2.5-pro:generateContent", False),
        ("GET", "/chat/completions", False),
    ],
)
def test_parameters_apply_to_generation_endpoints(method: str, path: str, expected: bool) -> None:
    policy = ParameterPolicy(defaults={"max_tokens": 64})
    context = ctx(path, method)
    assert policy.applies_to(context) is expected
    assert (apply(policy, {}, context) is not None) is expected


def test_endpoints_choose_where_parameters_apply() -> None:
    policy = ParameterPolicy(defaults={"max_tokens": 64}, endpoints=["POST /v1/messages"])
    assert policy.applies_to(ctx("/v1/messages"))
    assert not policy.applies_to(ctx("/chat/completions"))
    assert apply(policy, {}, ctx("/chat/completions")) is None
    assert apply(policy, {}, ctx("/v1/messages")) == {"max_tokens": 64}


# -- the model allowlist ------------------------------------------------------------------

ALLOW = ParameterPolicy(allowed_models=["gpt-4o*", "Claude-Sonnet-*", "gemini-2.5-pro"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", {"model": "gpt-4o-mini"}),
        ("/chat/completions", {"model": "GPT-4O"}),
        ("/v1/messages", {"model": "claude-sonnet-4-5"}),
        ("/embeddings", {"model": "gpt-4o"}),
        ("/v1beta/models/gemini-2.5-pro:generateContent", {"contents": []}),
        ("/v1beta/models/gemini-2%2E5-pro:streamGenerateContent", {}),
        ("/openai/deployments/gpt-4o/chat/completions", {"messages": []}),
    ],
)
def test_allowed_models_pass_unchanged(path: str, body: Any) -> None:
    assert ALLOW.applies_to(ctx(path))
    assert apply(ALLOW, body, ctx(path)) is None


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        ("/chat/completions", {"model": "o3"}, "'o3'"),
        ("/responses/input_tokens", {"model": "gpt-5"}, "'gpt-5'"),
        ("/v1/messages/count_tokens", {"model": "claude-opus-4"}, "'claude-opus-4'"),
        ("/images/generations", {"model": "dall-e-3"}, "'dall-e-3'"),
        ("/audio/speech", {"model": "tts-1"}, "'tts-1'"),
        ("/v1beta/models/gemini-2.5-flash:generateContent", {}, "'gemini-2.5-flash'"),
        ("/openai/deployments/o1/chat/completions", {}, "'o1'"),
        # where both are given, each must be allowed: neither vouches for the other
        ("/openai/deployments/gpt-4o/chat/completions", {"model": "o1"}, "'o1'"),
        ("/openai/deployments/o1/chat/completions", {"model": "gpt-4o"}, "'o1'"),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            {"model": "gpt-4o"},
            "'gemini-2.5-flash'",
        ),
        ("/chat/completions", {"messages": []}, "names no model"),
        ("/chat/completions", {"model": 4}, "names no model"),
        ("/chat/completions", ["not", "a", "dict"], "names no model"),
    ],
)
def test_other_models_are_refused(path: str, body: Any, named: str) -> None:
    with pytest.raises(ModelNotAllowed) as refused:
        apply(ALLOW, body, ctx(path))
    assert named in refused.value.message
    assert "gpt-4o*, Claude-Sonnet-*, gemini-2.5-pro" in refused.value.message
    assert refused.value.status_code == 403
    assert refused.value.kind == "model_not_allowed"


def test_allowlist_reads_bodies_whatever_their_label() -> None:
    mislabelled = ctx("/chat/completions", headers=[(b"content-type", b"multipart/form-data")])
    assert ALLOW.applies_to(mislabelled)
    with pytest.raises(ModelNotAllowed):
        apply(ALLOW, {"model": "o3"}, mislabelled)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/models"),
        ("GET", "/models/o3"),
        ("POST", "/files"),
        ("POST", "/audio/transcriptions"),  # multipart: cannot be read
        ("POST", "/openai/deployments/whisper/audio/transcriptions"),
        ("POST", "/v1beta/models/gemini:"),
        ("DELETE", "/responses/abc"),
    ],
)
def test_allowlist_leaves_other_requests_alone(method: str, path: str) -> None:
    assert not ALLOW.applies_to(ctx(path, method))


def test_allowlist_runs_before_the_parameters() -> None:
    policy = ParameterPolicy(allowed_models=["a"], overrides={"model": "a"})
    with pytest.raises(ModelNotAllowed, match="'b'"):
        apply(policy, {"model": "b"}, ctx())
    assert apply(policy, {"model": "a"}, ctx()) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "configures nothing"),
        ({"clamps": {"x": (2, 1)}}, "low bound"),
        ({"clamps": {"x": (1, 2, 3)}}, "number .* or a \\(low, high\\) pair"),
        ({"clamps": {"x": "10"}}, "pair"),
        ({"clamps": {"x": True}}, "pair"),
        ({"clamps": {"x": (None, None)}}, "no bound"),
        ({"clamps": {"x": float("inf")}}, "pair"),
        ({"allowed_models": []}, "refuse every request"),
        ({"allowed_models": "gpt-4o"}, "list of strings"),
        ({"remove": "seed"}, "list of strings"),
        ({"remove": [""]}, "non-empty"),
        ({"defaults": {"n": object()}}, "must be JSON"),
        ({"overrides": {"x": float("nan")}}, "must be JSON"),
        ({"defaults": {"seed": 1}, "remove": ["seed"]}, "use overrides="),
        ({"defaults": {"n": 1}, "overrides": {"n": 2}}, "both defaults= and overrides="),
        ({"clamps": {"n": 2}, "remove": ["n"]}, "clamped and removed"),
        ({"defaults": {"max_tokens": 9000}, "clamps": {"max_tokens": 4096}}, "outside its clamp"),
        ({"overrides": {"t": -1}, "clamps": {"t": (0, 2)}}, "outside its clamp"),
        ({"defaults": {"": 1}}, "parameter names"),
        ({"remove": ["x"], "endpoints": ["chat/completions"]}, "METHOD /path"),
    ],
)
def test_bad_configuration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ParameterPolicy(**options)
