"""The merged catalogs list what a client may call, and nothing it may not.

Every listing (``GET /v1/models`` in OpenAI's and Anthropic's shape,
``/v1beta/models`` in Gemini's, the ``/api/v1`` service API's) leaves out the
models that the app-wide or an adapter's ``ParameterPolicy(allowed_models=...)``
refuses and those whose provider endpoints are closed, and the routes none of
whose deployments is callable. Each test checks both directions through a real
server in front of :class:`~provider_proxy.testing.FakeUpstream`: every listed
model answers, every model the providers list but the catalog does not is refused.
Gemini's own facts (limits, methods) reach the lists, and ``/v1beta/models/{model}``
applies ``default_provider``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from provider_proxy import MemoryStore, RequestContext, Route, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, GeminiAdapter, OpenAIAdapter
from provider_proxy.engine._catalog import ModelCatalog
from provider_proxy.transforms import ParameterPolicy, compose
from provider_proxy.transforms._params import admitted

from .conftest import ANTHROPIC_KEY, OPENAI_KEY
from .servers import ServerThread, serve

GEMINI_KEY = "gemini-test-key-0123456789"
#: What the fake providers list, as the gateway names them.
EVERY_MODEL = {
    "openai/gpt-fake-1",
    "openai/gpt-fake-2",
    "anthropic/claude-fake-1",
    "gemini/gemini-fake-1",
    "gemini/gemini-embedding-fake",
}
#: What the app below lets a client call.
CALLABLE = ["openai/gpt-fake-1", "gemini/gemini-fake-1", "smart"]


class GenerationOnlyGemini(GeminiAdapter):
    """Gemini with its embedding methods closed."""

    endpoints = (
        "GET /v1beta/models",
        "GET /v1beta/models/*",
        "POST /v1beta/models/*:generateContent",
        "POST /v1beta/models/*:streamGenerateContent",
        "POST /v1beta/models/*:countTokens",
    )


def _app(upstream: ServerThread, **options: Any) -> Any:
    return make_asgi_app(
        [
            OpenAIAdapter(
                base_url=upstream.url + "/v1",
                api_key=OPENAI_KEY,
                transforms=[ParameterPolicy(allowed_models=["gpt-fake-1"])],  # the bare id
            ),
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
            GenerationOnlyGemini(base_url=upstream.url, api_key=GEMINI_KEY),
        ],
        # As the gateway reads a name (provider/model, a route) and as it forwards it.
        transforms=[
            ParameterPolicy(
                allowed_models=["openai/*", "gemini/*", "gpt-*", "gemini-*", "smart", "stuck"]
            )
        ],
        routes={
            "smart": Route(["openai/gpt-fake-1"]),
            # Its name is allowed, but its one deployment is refused by the adapter.
            "stuck": Route(["openai/gpt-fake-2"]),
            # Its name is refused at the gateway.
            "hidden": Route(["openai/gpt-fake-1"]),
        },
        inference_api=True,
        validate_credentials="off",
        **options,
    )


@pytest.fixture
def filtered(upstream: ServerThread) -> Iterator[ServerThread]:
    with serve(_app(upstream)) as server:
        yield server


def _chat(server: ServerThread, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)


def _embed(server: ServerThread, model: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/embeddings", json={"model": model, "input": "Hi"}, timeout=30
    )


def test_openai_list_holds_only_callable_models(filtered: ServerThread) -> None:
    listed = httpx.get(f"{filtered.url}/v1/models", timeout=30).json()
    ids = [m["id"] for m in listed["data"]]
    assert ids == CALLABLE
    for model in ids:
        answer = _chat(filtered, model)
        assert answer.status_code == 200, (model, answer.text)
    for model in [*sorted(EVERY_MODEL - set(ids)), "stuck", "hidden"]:
        if "embedding" in model:  # its embedding endpoints are closed
            refused = _embed(filtered, model)
            assert refused.status_code == 403, (model, refused.text)
            assert "does not forward" in refused.json()["error"]["message"]
        else:  # an allowlist refuses it, at the gateway or when forwarded
            refused = _chat(filtered, model)
            assert refused.status_code == 403, (model, refused.text)
            assert refused.json()["error"]["type"] == "model_not_allowed"


def test_the_one_model_lookup_follows_the_list(filtered: ServerThread) -> None:
    found = httpx.get(f"{filtered.url}/v1/models/openai/gpt-fake-1", timeout=30)
    assert found.status_code == 200
    assert found.json()["id"] == "openai/gpt-fake-1"
    for model in ("openai/gpt-fake-2", "anthropic/claude-fake-1"):
        missing = httpx.get(f"{filtered.url}/v1/models/{model}", timeout=30)
        assert missing.status_code == 404, model


def test_anthropic_shaped_list_is_filtered(filtered: ServerThread) -> None:
    headers = {"anthropic-version": "2023-06-01"}
    listed = httpx.get(f"{filtered.url}/v1/models", headers=headers, timeout=30).json()
    assert [m["id"] for m in listed["data"]] == CALLABLE
    assert (listed["first_id"], listed["last_id"]) == ("openai/gpt-fake-1", "smart")
    flash = listed["data"][1]
    # The Models API's limits, from Gemini's inputTokenLimit and outputTokenLimit.
    assert (flash["max_input_tokens"], flash["max_tokens"]) == (1048576, 65536)
    assert "max_tokens" not in listed["data"][0]  # not known: not made up


def test_gemini_shaped_list_and_lookup_are_filtered(filtered: ServerThread) -> None:
    listed = httpx.get(f"{filtered.url}/v1beta/models", timeout=30).json()
    names = [m["name"] for m in listed["models"]]
    assert names == [f"models/{model}" for model in CALLABLE]
    flash = listed["models"][1]
    assert flash["displayName"] == "Gemini Fake 1"
    assert (flash["inputTokenLimit"], flash["outputTokenLimit"]) == (1048576, 65536)
    # Gemini's own methods (it lists no stream method; the gateway streams what generates).
    assert flash["supportedGenerationMethods"] == [
        "generateContent",
        "streamGenerateContent",
        "countTokens",
    ]
    for model in ("gemini/gemini-fake-1", "smart"):
        assert httpx.get(f"{filtered.url}/v1beta/models/{model}", timeout=30).status_code == 200
    for model in ("gemini/gemini-embedding-fake", "anthropic/claude-fake-1", "stuck", "hidden"):
        missing = httpx.get(f"{filtered.url}/v1beta/models/{model}", timeout=30)
        assert missing.status_code == 404, model
        assert missing.json()["error"]["status"] == "NOT_FOUND"


def test_service_api_models_are_filtered(filtered: ServerThread) -> None:
    listed = httpx.get(f"{filtered.url}/api/v1/models", timeout=30).json()
    assert [m["id"] for m in listed["data"]] == CALLABLE
    assert listed["pagination"]["total"] == len(CALLABLE)
    missing = httpx.get(f"{filtered.url}/api/v1/models/openai/gpt-fake-2", timeout=30)
    assert missing.status_code == 404
    found = httpx.get(f"{filtered.url}/api/v1/models/gemini/gemini-fake-1", timeout=30)
    assert found.json()["data"]["id"] == "gemini/gemini-fake-1"


def test_without_allowlists_every_model_is_listed_with_its_facts(upstream: ServerThread) -> None:
    app = make_asgi_app(
        [
            OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
            AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
            GeminiAdapter(base_url=upstream.url, api_key=GEMINI_KEY),
        ],
        validate_credentials="off",
    )
    with serve(app) as server:
        listed = httpx.get(f"{server.url}/v1/models", timeout=30).json()
        google = httpx.get(f"{server.url}/v1beta/models", timeout=30).json()
    by_id = {m["id"]: m for m in listed["data"]}
    assert set(by_id) == EVERY_MODEL
    flash = by_id["gemini/gemini-fake-1"]
    assert (flash["context_length"], flash["max_completion_tokens"]) == (1048576, 65536)
    assert flash["name"] == "Gemini Fake 1"
    embedder = {m["name"]: m for m in google["models"]}["models/gemini/gemini-embedding-fake"]
    assert embedder["supportedGenerationMethods"] == ["embedContent", "batchEmbedContents"]
    assert embedder["outputTokenLimit"] == 1


def test_gemini_lookup_applies_the_default_provider(upstream: ServerThread) -> None:
    with serve(_app(upstream, default_provider="gemini")) as server:
        found = httpx.get(f"{server.url}/v1beta/models/gemini-fake-1", timeout=30)
        prefixed = httpx.get(f"{server.url}/v1beta/models/models/gemini-fake-1", timeout=30)
        closed = httpx.get(f"{server.url}/v1beta/models/gemini-embedding-fake", timeout=30)
        unknown = httpx.get(f"{server.url}/v1beta/models/gemini-nope", timeout=30)
        answer = httpx.post(
            f"{server.url}/v1beta/models/gemini-fake-1:generateContent",
            json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
            timeout=30,
        )
    assert found.status_code == 200, found.text
    assert found.json()["name"] == "models/gemini/gemini-fake-1"
    assert found.json()["outputTokenLimit"] == 65536
    assert prefixed.json()["name"] == "models/gemini/gemini-fake-1"
    assert (closed.status_code, unknown.status_code) == (404, 404)
    assert answer.status_code == 200, answer.text  # what is listed is what is served


# -- the matcher the request path and the catalog share ---------------------------------------

CHAT = RequestContext("openai", "POST", "/chat/completions", b"", (), "")
MODELS = RequestContext("openai", "GET", "/models", b"", (), "")


def test_allows_is_the_request_check() -> None:
    policy = ParameterPolicy(allowed_models=["gpt-4o*", "Claude-*"])
    assert policy.allows("GPT-4o-mini")
    assert policy.allows("claude-x")
    assert not policy.allows("gpt-5")
    assert ParameterPolicy(clamps={"max_tokens": 10}).allows("anything")  # no allowlist
    with pytest.raises(Exception, match="not allowed"):
        policy({"model": "gpt-5"}, CHAT)


def test_admitted_reads_composed_policies_where_they_check() -> None:
    policy = ParameterPolicy(allowed_models=["gpt-4o*"])
    assert admitted([policy], "gpt-4o", CHAT)
    assert not admitted([policy], "gpt-5", CHAT)
    assert not admitted([compose(lambda body, context: None, policy)], "gpt-5", CHAT)
    assert admitted([None, lambda body, context: None], "gpt-5", CHAT)  # no policy, no refusal
    assert admitted([policy], "gpt-5", MODELS)  # it does not check there


def test_gemini_model_facts_are_kept_and_a_model_the_gateway_cannot_call_is_not_listed() -> None:
    adapter = GeminiAdapter(api_key=GEMINI_KEY)
    live = adapter.model_info(
        {
            "name": "models/gemini-live-x",
            "displayName": "Live X",
            "inputTokenLimit": 131072,
            "outputTokenLimit": 8192,
            "supportedGenerationMethods": ["bidiGenerateContent"],
        }
    )
    assert (live.id, live.display_name, live.context_length) == ("gemini-live-x", "Live X", 131072)
    assert live.raw["max_completion_tokens"] == 8192
    assert live.raw["operations"] == []  # Live only: nothing the gateway serves
    flash = adapter.model_info(
        {
            "name": "models/f",
            "supportedGenerationMethods": ["generateContent", "createCachedContent"],
        }
    )
    assert flash.raw["operations"] == ["generate", "stream"]
    assert "max_completion_tokens" not in flash.raw  # not said: not made up
    catalog = ModelCatalog({"gemini": adapter}, MemoryStore(), client_factory=httpx.AsyncClient)
    assert not catalog.callable("gemini", "gemini-live-x", live.raw["operations"])
    assert catalog.callable("gemini", "f", flash.raw["operations"])
    assert catalog.callable("gemini", "f")  # unknown methods: generation or embeddings
