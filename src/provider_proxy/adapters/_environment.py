"""The built-in adapters a standalone proxy serves when only the environment is configured."""

from __future__ import annotations

from ._protocol import ProviderAdapter
from .anthropic import AnthropicAdapter
from .azure import AzureOpenAIAdapter
from .copilot import CopilotAdapter
from .gemini import GeminiAdapter
from .openai import OpenAIAdapter
from .openrouter import OpenRouterAdapter
from .presets import DashScopeAdapter
from .qwen_chat import QwenChatAdapter

#: The variables :func:`from_environment` looks for, as a sentence for a message.
KEY_VARIABLES = (
    "OPENAI_API_KEY, ANTHROPIC_API_KEY, OPENROUTER_API_KEY, GEMINI_API_KEY (or "
    "GOOGLE_API_KEY), AZURE_OPENAI_API_KEY with AZURE_OPENAI_ENDPOINT, DASHSCOPE_API_KEY, "
    "COPILOT_API_KEY, or QWEN_TOKEN with QWEN_COOKIES (experimental)"
)


def from_environment() -> list[ProviderAdapter]:
    """The built-in adapters whose API keys are set in the environment.

    Local servers (Ollama, vLLM) need no key, so they are never guessed here.
    """
    candidates: list[ProviderAdapter] = [
        OpenAIAdapter(),
        AnthropicAdapter(),
        OpenRouterAdapter(),
        GeminiAdapter(),
        AzureOpenAIAdapter(),
        DashScopeAdapter(),
        CopilotAdapter(),
        QwenChatAdapter(),
    ]
    return [adapter for adapter in candidates if adapter.availability().enabled]
