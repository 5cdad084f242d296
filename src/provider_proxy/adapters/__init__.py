"""Ready-made provider adapters, and :class:`BaseAdapter` for writing your own."""

from ._base import AdapterOptions, ApiKey, ApiKeys, BaseAdapter, ProviderOptions
from ._identity import ClientIdentity
from ._keys import KEY_STATUSES, KeyPool, forget_used_key, prefer_key, used_key
from ._protocol import Provider, ProviderAdapter
from ._stateful import (
    AnswerReader,
    Sessions,
    StaleConversation,
    StatefulAdapter,
    Turn,
    Upstream,
    UpstreamRefused,
    conversation_hash,
)
from ._tokens import IssuedToken, TokenSource
from .anthropic import AnthropicAdapter
from .azure import AzureOpenAIAdapter
from .copilot import CopilotAdapter, CopilotTokenError
from .first_available import FirstAvailableAdapter
from .gemini import GeminiAdapter
from .openai import OpenAIAdapter, OpenAICompatibleAdapter
from .openrouter import OpenRouterAdapter
from .presets import DashScopeAdapter, OllamaAdapter, VLLMAdapter
from .qwen_chat import QwenAuthError, QwenChallenge, QwenChatAdapter

__all__ = [
    "KEY_STATUSES",
    "AdapterOptions",
    "AnswerReader",
    "AnthropicAdapter",
    "ApiKey",
    "ApiKeys",
    "AzureOpenAIAdapter",
    "BaseAdapter",
    "ClientIdentity",
    "CopilotAdapter",
    "CopilotTokenError",
    "DashScopeAdapter",
    "FirstAvailableAdapter",
    "GeminiAdapter",
    "IssuedToken",
    "KeyPool",
    "OllamaAdapter",
    "OpenAIAdapter",
    "OpenAICompatibleAdapter",
    "OpenRouterAdapter",
    "Provider",
    "ProviderAdapter",
    "ProviderOptions",
    "QwenAuthError",
    "QwenChallenge",
    "QwenChatAdapter",
    "Sessions",
    "StaleConversation",
    "StatefulAdapter",
    "TokenSource",
    "Turn",
    "Upstream",
    "UpstreamRefused",
    "VLLMAdapter",
    "conversation_hash",
    "forget_used_key",
    "prefer_key",
    "used_key",
]
