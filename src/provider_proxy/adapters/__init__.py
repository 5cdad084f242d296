"""Ready-made provider adapters, and :class:`BaseAdapter` for writing your own."""

from ._base import ApiKey, BaseAdapter
from .anthropic import AnthropicAdapter
from .openai import OpenAIAdapter, OpenAICompatibleAdapter

__all__ = [
    "AnthropicAdapter",
    "ApiKey",
    "BaseAdapter",
    "OpenAIAdapter",
    "OpenAICompatibleAdapter",
]
