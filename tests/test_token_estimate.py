"""The count_tokens estimate over the canonical form: what each part adds."""

from __future__ import annotations

from provider_proxy.dialects import Tokenizer, estimate_input_tokens, offline_tokenizer
from provider_proxy.dialects._token_estimate import (
    DOCUMENT_TOKENS,
    IMAGE_TOKENS,
    PER_MESSAGE_TOKENS,
    REPLY_PRIMING_TOKENS,
)
from provider_proxy.dialects.canonical import (
    Document,
    Image,
    Message,
    RedactedReasoning,
    Request,
    Text,
    Tool,
    ToolCall,
    ToolResult,
)

WORDS = Tokenizer("words", lambda text: len(text.split()))


def _request(*messages: Message, **fields: object) -> Request:
    return Request(model="m", messages=messages, **fields)  # type: ignore[arg-type]


def test_text_counts_with_framing_per_message() -> None:
    request = _request(
        Message("user", (Text("one two three"),)), Message("assistant", (Text("four"),))
    )
    assert (
        estimate_input_tokens(request, WORDS) == REPLY_PRIMING_TOKENS + 2 * PER_MESSAGE_TOKENS + 4
    )


def test_system_tools_calls_and_results_all_count() -> None:
    bare = _request(Message("user", (Text("hi"),)))
    rich = _request(
        Message("user", (Text("hi"),)),
        Message("assistant", (ToolCall("call_1", "lookup", '{"q": "a b"}'),)),
        Message("user", (ToolResult("call_1", (Text("result words here"),)),)),
        system=(Text("be brief"),),
        tools=(Tool("lookup", "Looks a thing up.", {"type": "object"}),),
    )
    base = estimate_input_tokens(bare, WORDS)
    system = PER_MESSAGE_TOKENS + 2
    call = PER_MESSAGE_TOKENS + 1 + 3  # the name, then '{"q":' '"a' 'b"}'
    result = PER_MESSAGE_TOKENS + 3
    tool = 4  # its JSON description, split on spaces: '..."Looks' 'a' 'thing' 'up...'
    assert estimate_input_tokens(rich, WORDS) == base + system + call + result + tool


def test_images_and_documents_have_allowances_and_redacted_reasoning_none() -> None:
    request = _request(
        Message(
            "user",
            (
                Image(data="aGk=", media_type="image/png"),
                Document(media_type="application/pdf", data="JVBERg=="),
                Document(media_type="text/plain", text="five words of plain text"),
            ),
        ),
        Message("assistant", (RedactedReasoning("opaque"), Text("ok"))),
    )
    expected = REPLY_PRIMING_TOKENS + 2 * PER_MESSAGE_TOKENS
    expected += IMAGE_TOKENS + DOCUMENT_TOKENS + 5 + 1
    assert estimate_input_tokens(request, WORDS) == expected


def test_the_offline_tokenizer_is_tiktokens_cl100k() -> None:
    tokenizer = offline_tokenizer()
    assert tokenizer is not None
    assert tokenizer.name == "cl100k_base"
    # "hello world" is two tokens in cl100k_base; special-token text is counted as text.
    assert tokenizer.count("hello world") == 2
    assert tokenizer.count("<|endoftext|>") > 1
    assert repr(tokenizer) == "Tokenizer('cl100k_base')"
