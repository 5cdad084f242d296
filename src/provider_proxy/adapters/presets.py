"""Presets for OpenAI-compatible servers: Ollama, vLLM and Alibaba Cloud's DashScope (Qwen).

Each is :class:`~provider_proxy.adapters.BaseAdapter` with the server's usual
name, base URL and key variable; every constructor option of ``BaseAdapter``
works (``base_url=``, ``api_key=``, ``name=``, ``allow=``, ``transforms=``...).
For any other OpenAI-compatible server use
:class:`~provider_proxy.adapters.OpenAICompatibleAdapter`.
"""

from __future__ import annotations

from ._base import BaseAdapter


class OllamaAdapter(BaseAdapter):
    """A local Ollama server's OpenAI-compatible API (``http://localhost:11434/v1``).

    Ollama needs no key, so the adapter is enabled without one; when
    ``OLLAMA_API_KEY`` (or ``api_key=``) is set, it is sent as a bearer token,
    for an Ollama behind an authenticating proxy or ollama.com.
    """

    default_name = "ollama"
    default_base_url = "http://localhost:11434/v1"
    default_api_key_env = "OLLAMA_API_KEY"
    default_key_optional = True


class VLLMAdapter(BaseAdapter):
    """A vLLM server's OpenAI-compatible API (``http://localhost:8000/v1``).

    vLLM asks for a key only when started with ``--api-key`` (or
    ``VLLM_API_KEY``), so the adapter is enabled without one and sends
    ``VLLM_API_KEY`` (or ``api_key=``) as a bearer token when set. Besides the
    OpenAI endpoints, vLLM's ``/rerank`` and ``/score`` are forwarded.
    """

    default_name = "vllm"
    default_base_url = "http://localhost:8000/v1"
    default_api_key_env = "VLLM_API_KEY"
    default_key_optional = True
    endpoints = (*BaseAdapter.endpoints, "POST /rerank", "POST /score")


class DashScopeAdapter(BaseAdapter):
    """Alibaba Cloud Model Studio (DashScope, the Qwen models), OpenAI-compatible mode.

    The default base URL is the international (Singapore) endpoint,
    ``https://dashscope-intl.aliyuncs.com/compatible-mode/v1``; pass
    ``base_url="https://dashscope.aliyuncs.com/compatible-mode/v1"`` for the
    Beijing region. The key comes from ``DASHSCOPE_API_KEY``.
    """

    default_name = "dashscope"
    default_base_url = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    default_api_key_env = "DASHSCOPE_API_KEY"
