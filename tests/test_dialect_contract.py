"""The contract every dialect keeps: the built-ins and a custom one, one suite.

What the engine relies on whatever the format: the protocol, error bodies
that are JSON and carry no credential, equality by class, path recognition,
readers that never raise and never count below zero, parse hints that really
are in every payload the readers take something from, and a stream flag that
is set only when the request asks for one.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import provider_proxy.adapters  # noqa: F401 - registers the adapters' own ProxyErrors
from provider_proxy import ProxyError, Secret, Usage
from provider_proxy.dialects import BUILTIN, BaseDialect, Dialect

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class OllamaNative(BaseDialect):
    """A format of a user's own (Ollama's native ``/api/chat``), written as the docs say:
    a :class:`BaseDialect` subclass with its paths, usage reader and hints."""

    name: ClassVar[str] = "ollama-native"
    credential_headers: ClassVar[frozenset[bytes]] = frozenset({b"authorization"})
    usage_hints: ClassVar[tuple[str, str] | None] = ("eval_count", "model")

    def recognizes(self, path: str) -> bool:
        return path.rstrip("/") in ("/api/chat", "/api/generate", "/api/embed")

    def usage_of(self, payload: Any) -> Usage | None:
        if not isinstance(payload, dict):
            return None
        counts = [payload.get(key) for key in ("prompt_eval_count", "eval_count")]
        if not any(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
            return None
        prompt, output = (
            n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None for n in counts
        )
        return Usage(prompt, output)


DIALECTS: tuple[Dialect, ...] = (*BUILTIN, OllamaNative())
IDS = [d.name for d in DIALECTS]
every_dialect = pytest.mark.parametrize("dialect", DIALECTS, ids=IDS)

#: The paths each format documents (below the base URL), and the ones that ask a stream
#: through the path alone.
PATHS: dict[str, tuple[str, ...]] = {
    "openai-chat": (
        "/chat/completions",
        "/v1/chat/completions",
        "/completions",
        "/embeddings",
        "/v1/moderations",
        "/v1beta/openai/chat/completions",
    ),
    "openai-responses": (
        "/responses",
        "/v1/responses",
        "/responses/resp_123",
        "/responses/resp_123/cancel",
        "/responses/resp_123/input_items",
        "/openai/v1/responses/input_tokens",
    ),
    "anthropic-messages": (
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/complete",
        "/v1/messages/",
    ),
    "gemini": (
        "/v1beta/models/gemini-2.0-flash:generateContent",
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
        "/v1/models/gemini-2.5-pro:countTokens",
        "/v1beta/models/text-embedding-004:embedContent",
        "/v1beta/models",
    ),
    "ollama-native": ("/api/chat", "/api/generate", "/api/embed"),
}
#: For each format: a path of it that asks no stream, and whether a body's
#: ``"stream": true`` asks one there.
PLAIN_PATH: dict[str, tuple[str, bool]] = {
    "openai-chat": ("/chat/completions", True),
    "openai-responses": ("/responses", True),
    "anthropic-messages": ("/v1/messages", True),
    "gemini": ("/v1beta/models/gemini-2.0-flash:generateContent", False),
    "ollama-native": ("/api/chat", True),
}
#: Payloads each format's readers take usage and the model from (a sanity check that
#: the generated-payload properties below are not vacuous).
SAMPLES: dict[str, tuple[Any, Usage]] = {
    "openai-chat": (
        {"model": "gpt-4o", "usage": {"prompt_tokens": 12, "completion_tokens": 3}},
        Usage(12, 3),
    ),
    "openai-responses": (
        {
            "type": "response.completed",
            "response": {"model": "gpt-5", "usage": {"input_tokens": 9, "output_tokens": 4}},
        },
        Usage(9, 4),
    ),
    "anthropic-messages": (
        {
            "type": "message_start",
            "message": {"model": "claude-x", "usage": {"input_tokens": 5, "output_tokens": 1}},
        },
        Usage(5, 1),
    ),
    "gemini": (
        {
            "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 2},
        },
        Usage(7, 2),
    ),
    "ollama-native": (
        {"model": "llama3.2", "done": True, "prompt_eval_count": 26, "eval_count": 290},
        Usage(26, 290),
    ),
}


def test_the_tables_cover_every_dialect() -> None:
    for table in (PATHS, PLAIN_PATH, SAMPLES):
        assert set(table) == set(IDS)
    assert len(set(IDS)) == len(IDS)  # names are unique


# -- the protocol and identity ---------------------------------------------------------


@every_dialect
def test_implements_the_protocol(dialect: Dialect) -> None:
    assert isinstance(dialect, Dialect)
    assert dialect.name
    assert dialect.name == dialect.name.strip().lower()
    for header in (*dialect.credential_headers, *dialect.account_headers):
        assert isinstance(header, bytes), header
        assert header == header.lower(), header
    hints = dialect.usage_hints
    if hints is not None:
        assert len(hints) == 2
        assert all(isinstance(h, str) and h for h in hints)
    assert dialect.key_param is None or dialect.key_param in dialect.credential_params


@every_dialect
def test_equal_and_hashed_by_class(dialect: Dialect) -> None:
    cls = type(dialect)
    again = cls()
    assert again == dialect
    assert hash(again) == hash(dialect)
    assert len({dialect, again}) == 1
    for other in DIALECTS:
        if other is not dialect:
            assert other != dialect
            assert dialect != other

    class Refined(cls):  # type: ignore[misc, valid-type]
        pass

    # A subclass is another format (it overrides something), never equal to its base.
    assert Refined() != dialect
    assert dialect != Refined()
    assert Refined() == Refined()
    assert len({dialect, Refined(), again, Refined()}) == 2


# -- errors ----------------------------------------------------------------------------


def _all_subclasses(cls: type[ProxyError]) -> list[type[ProxyError]]:
    found: list[type[ProxyError]] = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return list(dict.fromkeys(found))


ERRORS = _all_subclasses(ProxyError)
#: A key a client or an operator supplied; made a Secret, so the proxy knows to mask it.
SECRET = "sk-supplied-by-the-request-0123456789"
Secret(SECRET)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def test_every_proxy_error_is_listed() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {"ProxyError", "BadRequest", "EndpointNotAllowed", "UpstreamTimeout"} <= names
    assert "CopilotTokenError" in names  # the adapters' own errors too


@every_dialect
@pytest.mark.parametrize("error_class", ERRORS, ids=[cls.__name__ for cls in ERRORS])
def test_error_body_is_json_with_the_message_and_no_secret(
    dialect: Dialect, error_class: type[ProxyError]
) -> None:
    error = error_class(f"The provider refused key {SECRET} (Authorization: Bearer {SECRET}).")
    body = dialect.error_body(error, "req-42")
    assert isinstance(body, bytes)
    parsed = json.loads(body.decode("utf-8"))
    assert isinstance(parsed, dict)
    assert SECRET not in body.decode("utf-8")
    assert error.message in _strings(parsed)
    assert "The provider refused key ***" in error.message


@every_dialect
@SETTINGS
@given(
    error_class=st.sampled_from(ERRORS),
    message=st.text(max_size=80),
    request_id=st.text(max_size=20),
)
def test_error_body_is_json_for_any_message(
    dialect: Dialect, error_class: type[ProxyError], message: str, request_id: str
) -> None:
    error = error_class(message)
    parsed = json.loads(dialect.error_body(error, request_id))
    assert error.message in _strings(parsed)


# -- paths -----------------------------------------------------------------------------


def _percent_encoded(path: str) -> str:
    """``path`` with its last letter percent-encoded, as a client may send it."""
    letters = [m.start() for m in re.finditer("[a-z]", path)]
    at = letters[-1]
    return f"{path[:at]}%{ord(path[at]):02X}{path[at + 1 :]}"


@every_dialect
def test_recognizes_its_own_paths_and_no_other_formats(dialect: Dialect) -> None:
    for path in PATHS[dialect.name]:
        assert dialect.recognizes(path), path
    if dialect in BUILTIN:
        # The built-ins read a path as the provider does: percent-decoded.
        for path in PATHS[dialect.name]:
            assert dialect.recognizes(_percent_encoded(path)), path
    for other, paths in PATHS.items():
        if other == dialect.name:
            continue
        for path in paths:
            assert not dialect.recognizes(path), (other, path)


@every_dialect
@SETTINGS
@given(path=st.text(max_size=60))
def test_path_readers_never_raise(dialect: Dialect, path: str) -> None:
    assert isinstance(dialect.recognizes(path), bool)
    model = dialect.model_in_path(path)
    assert model is None or (isinstance(model, str) and model)


# -- readers ---------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
#: Any JSON value.
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=16,
)


def _some_of(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with any of ``fields`` (each value drawn from its strategy), and maybe others."""
    return st.builds(
        lambda known, other: {**other, **known},
        st.fixed_dictionaries({}, optional=fields),
        st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=2),
    )


#: JSON shaped like what the readers read, with odd values where counts and names go:
#: the readers' keys at the places each format puts them.
COUNT = st.integers(-3, 10**6) | st.integers(0, 9) | st.booleans() | st.none() | st.text(max_size=2)
MODEL = st.text(max_size=8) | SCALARS
DETAILS = _some_of({"cached_tokens": COUNT}) | SCALARS
COUNT_FIELDS = dict.fromkeys(
    (
        *("prompt_tokens", "completion_tokens", "total_tokens", "input_tokens"),
        *("output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"),
        *("prompt_cache_hit_tokens", "promptTokenCount", "candidatesTokenCount"),
        *("thoughtsTokenCount", "toolUsePromptTokenCount", "cachedContentTokenCount"),
    ),
    COUNT,
)
COUNTS = _some_of(
    {**COUNT_FIELDS, "prompt_tokens_details": DETAILS, "input_tokens_details": DETAILS}
)
INNER = _some_of({"usage": COUNTS, "model": MODEL})
TYPES = st.sampled_from(["message_start", "message_delta", "response.completed"]) | SCALARS
EVENT = _some_of(
    {
        "usage": COUNTS,
        "usageMetadata": COUNTS,
        "message": INNER,
        "response": INNER,
        "model": MODEL,
        "modelVersion": MODEL,
        "type": TYPES,
        "done": st.booleans(),
        "prompt_eval_count": COUNT,
        "eval_count": COUNT,
    }
)
PAYLOADS = EVENT | st.lists(EVENT, max_size=2) | JSON_VALUES


def _counts(usage: Usage) -> list[int | None]:
    return [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
    ]


@every_dialect
@SETTINGS
@given(payload=PAYLOADS)
def test_readers_never_raise_nor_count_below_zero(dialect: Dialect, payload: Any) -> None:
    usage = dialect.usage_of(payload)
    assert usage is None or isinstance(usage, Usage)
    if usage is not None:
        for count in _counts(usage):
            assert count is None or (type(count) is int and count >= 0), usage
    model = dialect.model_of(payload)
    assert model is None or isinstance(model, str)


@every_dialect
@SETTINGS
@given(payload=PAYLOADS)
def test_usage_hints_are_in_every_payload_a_reader_takes_something_from(
    dialect: Dialect, payload: Any
) -> None:
    hints = dialect.usage_hints
    if hints is None:
        return  # every event is parsed
    usage_hint, model_hint = hints
    text = json.dumps(payload)
    # The usage tap skips an event without the usage hint once it knows the model,
    # and one without either hint before: each reader's hint must be there.
    if dialect.usage_of(payload) is not None:
        assert usage_hint in text
    if dialect.model_of(payload) is not None:
        assert model_hint in text


@every_dialect
def test_readers_read_their_formats_sample(dialect: Dialect) -> None:
    payload, usage = SAMPLES[dialect.name]
    assert dialect.usage_of(payload) == usage
    assert dialect.model_of(payload)
    hints = dialect.usage_hints
    assert hints is not None
    assert all(hint in json.dumps(payload) for hint in hints)


# -- the stream flag -------------------------------------------------------------------


@every_dialect
@SETTINGS
@given(body=PAYLOADS)
def test_streams_only_when_asked(dialect: Dialect, body: Any) -> None:
    path, flag_asks = PLAIN_PATH[dialect.name]
    asked = isinstance(body, dict) and body.get("stream") is True
    assert dialect.streams(body, path) is (flag_asks and asked)


@every_dialect
def test_streams_when_asked(dialect: Dialect) -> None:
    path, flag_asks = PLAIN_PATH[dialect.name]
    for body in ({"model": "m", "stream": True}, {"stream": True, "messages": []}):
        assert dialect.streams(body, path) is flag_asks
    for body in (
        {"stream": False},
        {"stream": "true"},
        {"stream": 1},
        {"stream_options": {"include_usage": True}},
        [{"stream": True}],
        None,
    ):
        assert dialect.streams(body, path) is False, body


def test_gemini_streams_by_its_path_alone() -> None:
    (gemini,) = (d for d in DIALECTS if d.name == "gemini")
    stream = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    for body, path in itertools.product(({}, {"stream": False}, None), (stream, stream + "/")):
        assert gemini.streams(body, path)
    assert not gemini.streams({"stream": True}, "/v1beta/models/gemini-2.0-flash:countTokens")
