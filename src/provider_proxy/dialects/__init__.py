"""API formats as dialects: what the engine knows about each wire format.

Each built-in dialect owns one format's paths, where its model and stream flag
are, its error body, its usage reader and the headers its clients send keys
in. Adapters say which dialect each of their paths speaks.
"""

from ._base import Dialect
from .anthropic_messages import AnthropicMessages
from .gemini import Gemini
from .openai_chat import OpenAIChat
from .openai_responses import OpenAIResponses

#: The built-in dialects, one instance each.
BUILTIN: tuple[Dialect, ...] = (OpenAIChat(), OpenAIResponses(), AnthropicMessages(), Gemini())

#: Every header in which a client of a built-in format sends a key: never forwarded.
CREDENTIAL_HEADERS: frozenset[bytes] = frozenset().union(
    *(dialect.credential_headers for dialect in BUILTIN)
)

__all__ = [
    "BUILTIN",
    "CREDENTIAL_HEADERS",
    "AnthropicMessages",
    "Dialect",
    "Gemini",
    "OpenAIChat",
    "OpenAIResponses",
]
