"""OpenAI's API, and any gateway that speaks it."""

from __future__ import annotations

import httpx
from typing_extensions import Unpack

from ..dialects import OpenAIChat, OpenAIResponses
from ._base import BaseAdapter, ProviderOptions

#: OpenAI's inference endpoints: the common ones, and the Responses API's
#: compaction (billed inference; the SDK's ``responses.compact``, used by agent
#: frameworks to shorten long sessions).
_OPENAI_ENDPOINTS = (*BaseAdapter.endpoints, "POST /responses/compact")


class OpenAIAdapter(BaseAdapter):
    """OpenAI (``https://api.openai.com/v1``); the key comes from ``OPENAI_API_KEY``."""

    default_name = "openai"
    default_base_url = "https://api.openai.com/v1"
    default_api_key_env = "OPENAI_API_KEY"
    endpoints = _OPENAI_ENDPOINTS
    #: The Realtime API's socket and the Responses API's (``?model=`` on the first).
    socket_endpoints = ("GET /realtime", "GET /responses")
    #: OpenAI serves the Responses API for every model: its clients pass through.
    gateway_dialects = (OpenAIChat(), OpenAIResponses())


class OpenAICompatibleAdapter(BaseAdapter):
    """Any OpenAI-compatible gateway, under a name of your choice.

    ``user_agent`` replaces the client's ``User-Agent``, for gateways that only
    answer known clients; ``headers`` are set on every request (replacing the
    client's), ``default_headers`` only when the client sent none of that name.
    ``allow`` and ``transforms`` are :class:`BaseAdapter`'s; the endpoints open by
    default are :class:`OpenAIAdapter`'s.
    """

    endpoints = _OPENAI_ENDPOINTS

    def __init__(
        self, name: str, base_url: str | httpx.URL, **options: Unpack[ProviderOptions]
    ) -> None:
        super().__init__(name=name, base_url=base_url, **options)
