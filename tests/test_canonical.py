"""The canonical form: frozen values, usage conversions, errors, and which dialects translate."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provider_proxy import BadRequest, ProxyError
from provider_proxy import Usage as ProxyUsage
from provider_proxy.dialects import BUILTIN, AnthropicMessages, Gemini, OpenAIChat, OpenAIResponses
from provider_proxy.dialects import canonical as c


def test_values_are_slotted_and_compared_and_hashed_by_value() -> None:
    # Held frozen by the type checker (``facts``); built by a plain ``__init__``.
    text = c.Text("hi")
    assert not hasattr(text, "__dict__")
    request = c.Request("m", (c.Message("user", (text,)),))
    same = c.Request("m", (c.Message("user", (c.Text("hi"),)),))
    assert request == same
    assert hash(request) == hash(same)
    assert len({request, same, c.Request("other", ())}) == 2
    changed = dataclasses.replace(request, model="n")
    assert (changed.model, request.model) == ("n", "m")
    assert changed.messages is request.messages


def test_finish_reasons_are_the_four_of_the_issue() -> None:
    assert [r.value for r in c.FinishReason] == ["stop", "length", "tool_calls", "content_filter"]


def test_unsupported_is_a_400_naming_its_field() -> None:
    error = c.Unsupported("messages[0].audio", "no audio")
    assert isinstance(error, BadRequest)
    assert (error.status_code, error.kind, error.field) == (
        400,
        "unsupported_field",
        "messages[0].audio",
    )
    assert "messages[0].audio" in error.message
    assert "no audio" in error.message


def test_an_untranslatable_answer_is_a_502() -> None:
    error = c.UntranslatableResponse("unknown stop reason")
    assert isinstance(error, ProxyError)
    assert error.status_code == 502


def test_anthropic_counts_add_the_cached_tokens_to_the_input() -> None:
    usage = c.Usage.from_anthropic_counts(10, 5, 100, 20)
    assert usage == c.Usage(130, 5, 100, 20)
    assert usage.uncached_input_tokens == 10
    assert c.Usage.from_anthropic_counts(None, 5, None, None) == c.Usage(None, 5)


def test_to_usage_and_back() -> None:
    usage = c.Usage(130, 5, 100, 20, reasoning_tokens=3)
    assert usage.to_usage() == ProxyUsage(130, 5, 100, 20, 3)
    assert c.Usage.from_usage(usage.to_usage()) == usage


counts = st.none() | st.integers(0, 10**9)


@given(
    st.builds(c.Usage, counts, counts, counts, counts, counts),
    st.builds(c.Usage, counts, counts, counts, counts, counts),
)
def test_merge_keeps_the_later_known_counts(a: c.Usage, b: c.Usage) -> None:
    merged = a.merge(b)
    for name in (
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    ):
        later = getattr(b, name)
        assert getattr(merged, name) == (later if later is not None else getattr(a, name))
    assert merged.to_usage() == a.to_usage().merge(b.to_usage())


def test_the_gateway_codecs_are_on_their_dialects() -> None:
    assert isinstance(OpenAIChat.codec, OpenAIChat.codec.__class__)
    assert OpenAIChat().codec is OpenAIChat.codec is not None
    assert AnthropicMessages.codec is not None
    assert OpenAIResponses.codec is not None
    assert OpenAIResponses.codec is not OpenAIChat.codec  # its own: another format
    assert Gemini.codec is not None
    assert {d.name for d in BUILTIN if d.codec is not None} >= {
        "openai-chat",
        "anthropic-messages",
        "openai-responses",
        "gemini",
    }


@pytest.mark.parametrize("dialect", [OpenAIChat, AnthropicMessages, Gemini])
def test_every_fidelity_row_has_a_known_fate(
    dialect: type[OpenAIChat] | type[AnthropicMessages] | type[Gemini],
) -> None:
    codec = dialect.codec
    assert codec is not None
    for table in (codec.request_fields, codec.encode_fields):
        assert table
        assert all(isinstance(rule.fate, c.Fidelity) for rule in table.values())


def test_public_names_are_sorted_and_exported() -> None:
    assert c.__all__ == sorted(c.__all__, key=lambda n: (not n.isupper(), n))
    for name in c.__all__:
        assert hasattr(c, name), name
