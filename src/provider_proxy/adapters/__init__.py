"""Ready-made provider adapters, and :class:`BaseAdapter` for writing your own."""

from ._base import AdapterOptions, ApiKey, BaseAdapter, ProviderOptions
from ._identity import ClientIdentity
from ._protocol import Provider, ProviderAdapter
from ._tokens import IssuedToken, TokenSource
from .anthropic import AnthropicAdapter
from .azure import AzureOpenAIAdapter
from .copilot import CopilotAdapter, CopilotTokenError
from .first_available import FirstAvailableAdapter
from .gemini import GeminiAdapter
from .openai import OpenAIAdapter, OpenAICompatibleAdapter
from .openrouter import OpenRouterAdapter
from .presets import DashScopeAdapter, OllamaAdapter, VLLMAdapter

__all__ = [
    "AdapterOptions",
    "AnthropicAdapter",
    "ApiKey",
    "AzureOpenAIAdapter",
    "BaseAdapter",
    "ClientIdentity",
    "CopilotAdapter",
    "CopilotTokenError",
    "DashScopeAdapter",
    "FirstAvailableAdapter",
    "GeminiAdapter",
    "IssuedToken",
    "OllamaAdapter",
    "OpenAIAdapter",
    "OpenAICompatibleAdapter",
    "OpenRouterAdapter",
    "Provider",
    "ProviderAdapter",
    "ProviderOptions",
    "TokenSource",
    "VLLMAdapter",
]
