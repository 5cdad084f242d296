"""The rest of Gemini as a client format, through a real server with the real google-genai SDK.

``countTokens`` (Anthropic's count, Gemini's own, or the gateway's marked
estimate), ``embedContent``/``batchEmbedContents`` on OpenAI-format embedding
models (and Gemini's own), the model catalog as ``GET {mount}/v1beta/models``
(paged) and ``/v1beta/models/{model}``, model aliases and an allowlist on the
model named in the path, the client's key checked and never forwarded, and
every refusal in Google's error shape — all against
:class:`~provider_proxy.testing.FakeUpstream`, which validates what the real
APIs validate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from provider_proxy import BadRequest, Guards, Route, make_asgi_app
from provider_proxy.adapters import AnthropicAdapter, GeminiAdapter, OpenAIAdapter
from provider_proxy.dialects import EMBEDDINGS, TOKEN_COUNTS, Tokenizer, catalog_in_path
from provider_proxy.dialects.canonical import Unsupported, UntranslatableResponse
from provider_proxy.testing import FakeUpstream
from provider_proxy.transforms import ModelAliases, ParameterPolicy

from .conftest import ANTHROPIC_KEY, OPENAI_KEY
from .servers import ServerThread, serve

GEMINI_KEY = "gemini-test-key-0123456789"
KEYS = {"key-alice": "alice"}
GPT, CLAUDE, FLASH = "openai/gpt-4.1", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"
EMBEDDER = "openai/text-embedding-3-small"
#: A tokenizer whose counts a test can work out: one token per word.
WORDS = Tokenizer("words", lambda text: len(text.split()))


def _adapters(upstream: ServerThread) -> list[Any]:
    return [
        OpenAIAdapter(base_url=upstream.url + "/v1", api_key=OPENAI_KEY),
        AnthropicAdapter(base_url=upstream.url, api_key=ANTHROPIC_KEY),
        GeminiAdapter(base_url=upstream.url, api_key=GEMINI_KEY),
    ]


@pytest.fixture
def gateway(upstream: ServerThread) -> Iterator[ServerThread]:
    proxy = make_asgi_app(
        _adapters(upstream),
        guards=Guards(client_keys=KEYS),
        routes={"smart": Route([GPT])},
        tokenizer=WORDS,
        validate_credentials="off",
    )
    with serve(proxy) as server:
        yield server


def _client(url: str, key: str = "key-alice", version: str | None = None) -> genai.Client:
    """google-genai on the gateway (its default API version is ``v1``)."""
    options = types.HttpOptions(
        base_url=url, api_version=version, retry_options=types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key=key, http_options=options)


@pytest.fixture
def google(gateway: ServerThread) -> genai.Client:
    return _client(gateway.url)


def _sent(fake: FakeUpstream) -> Any:
    return json.loads(fake.last.body)


def _no_client_key(fake: FakeUpstream) -> None:
    seen = fake.last.body + fake.last.query + repr(fake.last.headers).encode()
    assert b"key-alice" not in seen


def _google_error(response: httpx.Response, code: int) -> str:
    """The message of a Google-shaped error answer, checking its shape."""
    assert response.status_code == code
    error = response.json()["error"]
    assert set(error) == {"code", "message", "status"}
    assert error["code"] == code
    return str(error["message"])


# -- countTokens -----------------------------------------------------------------------------


def test_count_tokens_on_claude_asks_anthropics_count(
    google: genai.Client, fake: FakeUpstream
) -> None:
    counted = google.models.count_tokens(model=CLAUDE, contents="How many tokens here?")
    assert counted.total_tokens == 4 + 1  # the fake: words, plus one per message
    assert fake.last.path == "/v1/messages/count_tokens"
    sent = _sent(fake)
    assert sent["model"] == "claude-sonnet-4-5"
    assert "max_tokens" not in sent  # the real endpoint refuses it
    assert sent["messages"][0]["role"] == "user"
    assert dict(fake.last.headers)[b"x-api-key"] == ANTHROPIC_KEY.encode()
    _no_client_key(fake)


def test_count_tokens_on_gemini_passes_through(google: genai.Client, fake: FakeUpstream) -> None:
    counted = google.models.count_tokens(model=FLASH, contents="Count these four words.")
    assert counted.total_tokens == 4 + 1
    assert fake.last.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    assert set(_sent(fake)) == {"contents"}
    assert dict(fake.last.headers)[b"x-goog-api-key"] == GEMINI_KEY.encode()
    _no_client_key(fake)


def test_count_tokens_elsewhere_is_the_gateways_marked_estimate(
    gateway: ServerThread, google: genai.Client, fake: FakeUpstream
) -> None:
    before = len(fake.requests)
    counted = google.models.count_tokens(model=GPT, contents="one two three four five")
    raw = httpx.post(
        f"{gateway.url}/v1beta/models/{GPT}:countTokens",
        json={"contents": [{"role": "user", "parts": [{"text": "one two three four five"}]}]},
        headers={"x-goog-api-key": "key-alice"},
    )
    assert raw.status_code == 200
    assert raw.headers["x-proxy-token-estimate"] == "words"
    assert raw.json() == {"totalTokens": counted.total_tokens}
    # five words, and the framing the estimate adds per message and for the reply
    assert counted.total_tokens == 5 + 3 + 3
    assert len(fake.requests) == before  # nothing asked of the provider


def test_a_generate_content_request_is_counted_with_its_system_and_tools(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    body = {
        "generateContentRequest": {
            "model": f"models/{CLAUDE}",
            "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": "weather",
                            "description": "The weather.",
                            "parameters": {"type": "OBJECT", "properties": {}},
                        }
                    ]
                }
            ],
            "generationConfig": {"maxOutputTokens": 20},
        }
    }
    response = httpx.post(
        f"{gateway.url}/v1beta/models/{CLAUDE}:countTokens?key=key-alice", json=body
    )
    assert response.status_code == 200, response.text
    sent = _sent(fake)
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["tools"][0]["name"] == "weather"
    assert "max_tokens" not in sent
    # "Weather in Paris?" 3 + "Be brief." 2 + "weather", "The weather." 3, + 1 message
    assert response.json() == {"totalTokens": 9}
    assert b"key=" not in fake.last.query
    _no_client_key(fake)


def test_anthropic_count_tokens_on_gemini_asks_gemini(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    client = anthropic.Anthropic(api_key="key-alice", base_url=gateway.url, max_retries=0)
    counted = client.messages.count_tokens(
        model=FLASH,
        system="Be brief.",
        messages=[{"role": "user", "content": "Count me please."}],
    )
    assert counted.input_tokens == 3 + 2 + 1
    assert fake.last.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    whole = _sent(fake)["generateContentRequest"]
    assert whole["model"] == "models/gemini-2.5-flash"
    assert whole["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


def test_count_tokens_without_a_tokenizer_is_a_google_501(
    upstream: ServerThread, fake: FakeUpstream
) -> None:
    proxy = make_asgi_app(_adapters(upstream), tokenizer=None, validate_credentials="off")
    with serve(proxy) as server:
        client = _client(server.url)
        with pytest.raises(genai_errors.ServerError) as raised:
            client.models.count_tokens(model=GPT, contents="Hi.")
    assert raised.value.code == 501
    assert raised.value.status == "UNIMPLEMENTED"
    assert "count" in (raised.value.message or "")


def test_count_tokens_errors_are_googles(gateway: ServerThread, google: genai.Client) -> None:
    # the provider's error, translated
    with pytest.raises(genai_errors.ServerError) as raised:
        google.models.count_tokens(
            model=CLAUDE,
            contents="Hi.",
            config=types.CountTokensConfig(
                http_options=types.HttpOptions(headers={"x-fake-status": "500"})
            ),
        )
    assert raised.value.code == 500
    # a body the format does not have, named
    bad = httpx.post(
        f"{gateway.url}/v1beta/models/{CLAUDE}:countTokens",
        json={"contents": [], "systemInstruction": {"parts": [{"text": "x"}]}},
        headers={"x-goog-api-key": "key-alice"},
    )
    assert "systemInstruction" in _google_error(bad, 400)
    assert bad.json()["error"]["status"] == "INVALID_ARGUMENT"


# -- embeddings --------------------------------------------------------------------------------


def _vector(text: str, size: int) -> list[float]:
    """The fake's embedding of ``text`` (its length, then its first bytes / 256)."""
    head = [b / 256 for b in text.encode()[: size - 1]]
    return [float(len(text)), *head, *([0.0] * (size - 1 - len(head)))][:size]


def test_embed_content_on_an_openai_model(
    gateway: ServerThread, google: genai.Client, fake: FakeUpstream
) -> None:
    result = google.models.embed_content(
        model=EMBEDDER,
        contents=["first text", "second"],
        config=types.EmbedContentConfig(output_dimensionality=3),
    )
    assert result.embeddings is not None
    assert [e.values for e in result.embeddings] == [
        _vector("first text", 3),
        _vector("second", 3),
    ]
    assert fake.last.path == "/v1/embeddings"
    sent = _sent(fake)
    assert sent == {
        "model": "text-embedding-3-small",
        "input": ["first text", "second"],
        "encoding_format": "float",
        "dimensions": 3,
    }
    assert dict(fake.last.headers)[b"authorization"] == f"Bearer {OPENAI_KEY}".encode()
    _no_client_key(fake)


def test_the_task_type_is_dropped_and_named_and_a_title_refused(
    gateway: ServerThread, google: genai.Client, fake: FakeUpstream
) -> None:
    body = {
        "requests": [
            {
                "model": f"models/{EMBEDDER}",
                "content": {"parts": [{"text": "a query"}]},
                "taskType": "RETRIEVAL_QUERY",
            }
        ]
    }
    url = f"{gateway.url}/v1beta/models/{EMBEDDER}:batchEmbedContents"
    headers = {"x-goog-api-key": "key-alice"}
    response = httpx.post(url, json=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-proxy-dropped-fields"] == "taskType"
    assert response.json() == {"embeddings": [{"values": _vector("a query", 4)}]}
    before = len(fake.requests)
    with pytest.raises(genai_errors.ClientError) as raised:
        google.models.embed_content(
            model=EMBEDDER,
            contents="a document",
            config=types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", title="Its title"),
        )
    assert raised.value.code == 400
    assert "requests[0].title" in (raised.value.message or "")
    mixed = {
        "requests": [
            {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 3},
            {"content": {"parts": [{"text": "b"}]}, "outputDimensionality": 5},
        ]
    }
    assert "outputDimensionality" in _google_error(
        httpx.post(url, json=mixed, headers=headers), 400
    )
    image = {"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "AA=="}}]}}
    single = url.replace(":batchEmbedContents", ":embedContent")
    assert "parts[0]" in _google_error(httpx.post(single, json=image, headers=headers), 400)
    assert len(fake.requests) == before  # nothing refused was forwarded


def test_one_embed_content_is_answered_as_one(gateway: ServerThread, fake: FakeUpstream) -> None:
    body = {"content": {"parts": [{"text": "just one"}]}, "outputDimensionality": 2}
    headers = {"x-goog-api-key": "key-alice"}
    on_openai = httpx.post(
        f"{gateway.url}/v1beta/models/{EMBEDDER}:embedContent", json=body, headers=headers
    )
    assert on_openai.status_code == 200, on_openai.text
    assert on_openai.json() == {"embedding": {"values": _vector("just one", 2)}}
    assert _sent(fake)["input"] == ["just one"]
    on_gemini = httpx.post(
        f"{gateway.url}/v1/models/gemini/gemini-embedding-001:embedContent",
        json=body,
        headers=headers,
    )
    assert on_gemini.status_code == 200, on_gemini.text
    assert on_gemini.json() == {"embedding": {"values": _vector("just one", 2)}}
    assert fake.last.path == "/v1beta/models/gemini-embedding-001:embedContent"
    assert _sent(fake) == body
    _no_client_key(fake)


def test_embed_content_on_gemini_passes_through(google: genai.Client, fake: FakeUpstream) -> None:
    result = google.models.embed_content(model="gemini/gemini-embedding-001", contents="hi there")
    assert result.embeddings is not None
    assert result.embeddings[0].values == _vector("hi there", 4)
    assert fake.last.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"


def test_embeddings_where_there_are_none_are_a_google_501(google: genai.Client) -> None:
    with pytest.raises(genai_errors.ServerError) as raised:
        google.models.embed_content(model=CLAUDE, contents="hi")
    assert raised.value.code == 501
    assert raised.value.status == "UNIMPLEMENTED"


def test_a_provider_embedding_error_is_googles(google: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as raised:
        google.models.embed_content(
            model=EMBEDDER,
            contents="hi",
            config=types.EmbedContentConfig(
                http_options=types.HttpOptions(headers={"x-fake-status": "429"})
            ),
        )
    assert raised.value.code == 429
    assert raised.value.status == "RESOURCE_EXHAUSTED"


# -- the model catalog -------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "v1beta"])
def test_models_list_in_geminis_shape(gateway: ServerThread, version: str | None) -> None:
    client = _client(gateway.url, version=version)
    models = {m.name: m for m in client.models.list()}
    assert set(models) == {
        "models/openai/gpt-fake-1",
        "models/openai/gpt-fake-2",
        "models/anthropic/claude-fake-1",
        "models/gemini/gemini-fake-1",
        "models/gemini/gemini-embedding-fake",
        "models/smart",
    }
    claude = models["models/anthropic/claude-fake-1"]
    assert claude.display_name == "Claude Fake 1"
    assert claude.supported_actions == ["generateContent", "streamGenerateContent", "countTokens"]
    assert claude.input_token_limit is None  # not known: not made up
    flash = models["models/gemini/gemini-fake-1"]
    assert (flash.display_name, flash.input_token_limit) == ("Gemini Fake 1", 1048576)
    embedder = models["models/gemini/gemini-embedding-fake"]
    assert embedder.supported_actions == ["embedContent", "batchEmbedContents"]
    assert models["models/smart"].display_name == "smart"


def test_other_clients_still_get_openais_list(gateway: ServerThread) -> None:
    listed = httpx.get(f"{gateway.url}/v1/models", headers={"authorization": "Bearer key-alice"})
    assert listed.json()["object"] == "list"
    assert "openai/gpt-fake-1" in [m["id"] for m in listed.json()["data"]]


def test_models_list_pages_by_token(gateway: ServerThread, google: genai.Client) -> None:
    everything = [m.name for m in google.models.list()]
    pager = google.models.list(config=types.ListModelsConfig(page_size=1))
    assert len(pager.page) == 1
    assert [m.name for m in pager] == everything  # the pager follows nextPageToken
    headers = {"x-goog-api-key": "key-alice"}
    first = httpx.get(f"{gateway.url}/v1beta/models?pageSize=2", headers=headers).json()
    assert [m["name"] for m in first["models"]] == everything[:2]
    token = first["nextPageToken"]
    second = httpx.get(
        f"{gateway.url}/v1beta/models", params={"pageSize": 2, "pageToken": token}, headers=headers
    ).json()
    assert [m["name"] for m in second["models"]] == everything[2:4]
    bad = httpx.get(f"{gateway.url}/v1beta/models?pageSize=many", headers=headers)
    assert "pageSize" in _google_error(bad, 400)


def test_models_get(google: genai.Client) -> None:
    model = google.models.get(model="openai/gpt-fake-1")
    assert model.name == "models/openai/gpt-fake-1"
    assert model.supported_actions == ["generateContent", "streamGenerateContent", "countTokens"]
    assert google.models.get(model="models/smart").name == "models/smart"
    with pytest.raises(genai_errors.ClientError) as raised:
        google.models.get(model="openai/no-such-model")
    assert raised.value.code == 404
    assert raised.value.status == "NOT_FOUND"


def test_the_catalog_checks_the_clients_key(gateway: ServerThread) -> None:
    client = _client(gateway.url, key="wrong-key")
    with pytest.raises(genai_errors.ClientError) as raised:
        list(client.models.list())
    assert raised.value.code == 401
    assert raised.value.status == "UNAUTHENTICATED"
    by_query = httpx.get(f"{gateway.url}/v1beta/models?key=key-alice")
    assert by_query.status_code == 200
    assert (
        httpx.post(f"{gateway.url}/v1beta/models", headers={"x-goog-api-key": "key-alice"}).json()[
            "error"
        ]["code"]
        == 405
    )


# -- aliases, routes and the allowlist on the path's model -------------------------------------


@pytest.fixture
def aliased(upstream: ServerThread) -> Iterator[ServerThread]:
    proxy = make_asgi_app(
        _adapters(upstream),
        transforms=[
            ModelAliases(
                {"fast": GPT, "team": "smart", "words": EMBEDDER, "claude": CLAUDE, "g": FLASH}
            ),
            ParameterPolicy(allowed_models=["*gpt-*", "*embedding*", "smart", "*gemini-*"]),
        ],
        routes={"smart": Route([GPT])},
        validate_credentials="off",
    )
    with serve(proxy) as server:
        yield server


def test_an_alias_in_the_path_names_the_model(aliased: ServerThread, fake: FakeUpstream) -> None:
    google = _client(aliased.url)
    assert google.models.generate_content(model="fast", contents="Hi.").text
    assert fake.last.path == "/v1/chat/completions"
    assert _sent(fake)["model"] == "gpt-4.1"
    chunks = list(google.models.generate_content_stream(model="fast", contents="Hi."))
    assert "".join(c.text or "" for c in chunks)
    assert _sent(fake)["model"] == "gpt-4.1"
    result = google.models.embed_content(model="words", contents="aliased")
    assert result.embeddings is not None
    assert _sent(fake)["model"] == "text-embedding-3-small"
    assert google.models.count_tokens(model="g", contents="Hi there.").total_tokens == 3
    assert fake.last.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    assert "model" not in _sent(fake)  # a passthrough body is the client's own
    assert google.models.generate_content(model="g", contents="Hi.").text
    assert fake.last.path == "/v1beta/models/gemini-2.5-flash:generateContent"


def test_an_alias_may_name_a_route(aliased: ServerThread, fake: FakeUpstream) -> None:
    google = _client(aliased.url)
    assert google.models.generate_content(model="team", contents="Hi.").text
    assert _sent(fake)["model"] == "gpt-4.1"
    assert "model" not in json.loads(fake.last.body).get("messages", [{}])[0]


def test_the_allowlist_checks_the_resolved_path_model(
    aliased: ServerThread, fake: FakeUpstream
) -> None:
    google = _client(aliased.url)
    before = len(fake.requests)
    for model in ("claude", CLAUDE):
        with pytest.raises(genai_errors.ClientError) as raised:
            google.models.generate_content(model=model, contents="Hi.")
        assert raised.value.code == 403
        assert "claude-sonnet-4-5" in (raised.value.message or "")
    assert len(fake.requests) == before


def test_an_unknown_model_is_a_google_404(google: genai.Client) -> None:
    for call in (
        lambda: google.models.count_tokens(model="nowhere-model", contents="Hi."),
        lambda: google.models.embed_content(model="nowhere-model", contents="Hi."),
    ):
        with pytest.raises(genai_errors.ClientError) as raised:
            call()
        assert raised.value.code == 404
        assert raised.value.status == "NOT_FOUND"


def test_a_route_counts_and_embeds(upstream: ServerThread, fake: FakeUpstream) -> None:
    proxy = make_asgi_app(
        _adapters(upstream),
        routes={"counted": Route([CLAUDE]), "vectors": Route([EMBEDDER])},
        validate_credentials="off",
    )
    with serve(proxy) as server:
        client = _client(server.url)
        assert client.models.count_tokens(model="counted", contents="two words").total_tokens == 3
        assert fake.last.path == "/v1/messages/count_tokens"
        assert _sent(fake)["model"] == "claude-sonnet-4-5"
        result = client.models.embed_content(model="vectors", contents="routed")
        assert result.embeddings is not None
        assert result.embeddings[0].values == _vector("routed", 4)
        assert _sent(fake)["model"] == "text-embedding-3-small"


def test_a_query_key_is_checked_and_not_forwarded_on_a_passthrough(
    gateway: ServerThread, fake: FakeUpstream
) -> None:
    url = f"{gateway.url}/v1beta/models/{FLASH}:countTokens"
    body = {"contents": [{"role": "user", "parts": [{"text": "three words here"}]}]}
    before = len(fake.requests)
    refused = httpx.post(url + "?key=wrong-key", json=body)
    assert _google_error(refused, 401)
    assert refused.json()["error"]["status"] == "UNAUTHENTICATED"
    counted = httpx.post(url + "?key=key-alice", json=body)
    assert counted.json() == {
        "totalTokens": 4,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 4}],
    }
    assert len(fake.requests) == before + 1
    assert dict(fake.last.headers)[b"x-goog-api-key"] == GEMINI_KEY.encode()
    _no_client_key(fake)


# -- the pure parts: the translations and the paths ---------------------------------------------

CLIENT_EMBED = EMBEDDINGS[("gemini", "openai-chat")]


def _content(text: str) -> dict[str, Any]:
    return {"parts": [{"text": text}]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": _content("a"), "title": "T"}, "title"),
        ({"content": {"parts": []}}, "content.parts"),
        ({"content": {"parts": [{"text": "a"}, {"text": "b"}]}}, "content.parts"),
        ({"content": {"parts": [{"fileData": {"fileUri": "x"}}]}}, "content.parts[0]"),
        ({"content": _content("a"), "autoTruncate": True}, "body.autoTruncate"),
        ({"requests": []}, "requests"),
        ({"requests": [{"content": _content("a"), "title": "T"}]}, "requests[0].title"),
        (
            {"requests": [{"content": _content("a"), "outputDimensionality": "3"}]},
            "requests[0].outputDimensionality",
        ),
    ],
)
def test_embedding_requests_refused_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(Unsupported) as refused:
        CLIENT_EMBED.decode_request(body)
    assert refused.value.field == field


def test_embedding_requests_translate_in_order() -> None:
    body = {
        "model": "openai/e",
        "requests": [
            {"model": "models/openai/e", "content": _content("one"), "outputDimensionality": 8},
            {"content": _content("two"), "task_type": "CLUSTERING", "output_dimensionality": 8},
        ],
    }
    checked, dropped = CLIENT_EMBED.decode_request(body)
    assert dropped == ("taskType",)
    assert CLIENT_EMBED.encode_request(checked, "e") == {
        "model": "e",
        "input": ["one", "two"],
        "encoding_format": "float",
        "dimensions": 8,
    }
    answer = {"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}]}
    assert CLIENT_EMBED.decode_response(answer, checked, "e") == {
        "embeddings": [{"values": [1.0]}, {"values": [2.0]}]
    }
    with pytest.raises(UntranslatableResponse):
        CLIENT_EMBED.decode_response({"data": [{"index": 0, "embedding": [1.0]}]}, checked, "e")


def test_counts_both_ways() -> None:
    gemini, anthropic_count = TOKEN_COUNTS["gemini"], TOKEN_COUNTS["anthropic-messages"]
    request = gemini.decode_request(
        {"model": "m", "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    )
    assert anthropic_count.encode_request(request) == {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    assert gemini.encode_answer(anthropic_count.decode_answer({"input_tokens": 7})) == {
        "totalTokens": 7
    }
    with pytest.raises(UntranslatableResponse):
        gemini.decode_answer({"totalTokens": "7"})
    with pytest.raises(Unsupported) as refused:
        gemini.decode_request({"model": "m", "contents": [], "tools": []})
    assert refused.value.field == "body.tools"


@pytest.mark.parametrize(
    ("path", "headers", "model"),
    [
        ("/v1beta/models", [], None),
        ("/v1beta/models/", [], None),
        ("/v1beta/models/openai/gpt-4.1", [], "openai/gpt-4.1"),
        ("/v1beta/models/models/smart", [], "smart"),
        (
            "/v1/models/openai%2Fgpt-4.1",
            [(b"x-goog-api-client", b"google-genai-sdk/1")],
            "openai/gpt-4.1",
        ),
    ],
)
def test_catalog_paths(path: str, headers: list[tuple[bytes, bytes]], model: str | None) -> None:
    call = catalog_in_path(path, headers)
    assert call is not None
    assert call.model == model


@pytest.mark.parametrize(
    "path", ["/v1/models", "/v1beta/models/openai/gpt-4.1:generateContent", "/v1beta/files"]
)
def test_not_catalog_paths(path: str) -> None:
    assert catalog_in_path(path) is None


@pytest.mark.parametrize(
    ("query", "page"),
    [
        (b"", (50, None)),
        (b"pageSize=0", (50, None)),
        (b"pageSize=5000", (1000, None)),
        (b"pageSize=2&pageToken=b3BlbmFpL2dwdC00LjE%3D", (2, "openai/gpt-4.1")),
    ],
)
def test_catalog_pages(query: bytes, page: tuple[int, str | None]) -> None:
    call = catalog_in_path("/v1beta/models")
    assert call is not None
    assert call.page(query) == page


@pytest.mark.parametrize("query", [b"pageSize=-1", b"pageSize=x", b"pageToken=%ff%fe"])
def test_bad_catalog_pages_are_refused(query: bytes) -> None:
    call = catalog_in_path("/v1beta/models")
    assert call is not None
    with pytest.raises(BadRequest):
        call.page(query)
