"""Anthropic's Messages API."""

from __future__ import annotations

import httpx

from .._adapter import CredentialState
from ..dialects import AnthropicMessages
from ._base import BaseAdapter

#: The API version the official SDKs send; set when the client sends none.
ANTHROPIC_VERSION = "2023-06-01"


class AnthropicAdapter(BaseAdapter):
    """Anthropic (``https://api.anthropic.com``); the key comes from ``ANTHROPIC_API_KEY``.

    The key goes in ``x-api-key``; ``anthropic-version`` defaults to
    ``2023-06-01`` when the client does not send one (pass
    ``default_headers={"anthropic-version": ...}`` for another).
    """

    default_name = "anthropic"
    default_base_url = "https://api.anthropic.com"
    default_api_key_env = "ANTHROPIC_API_KEY"
    auth_header = "x-api-key"
    auth_scheme = ""
    dialects = (AnthropicMessages(),)
    base_default_headers = {"anthropic-version": ANTHROPIC_VERSION}  # noqa: RUF012
    endpoints = (
        "POST /v1/messages",
        "POST /v1/messages/count_tokens",
        "POST /v1/complete",
        "GET /v1/models",
        "GET /v1/models/*",
    )

    def credential_probe(self) -> httpx.Request:
        # An empty body is refused with 400 only after the key was accepted.
        return httpx.Request(
            "POST", self.join("/v1/messages"), json={}, headers={"content-type": "application/json"}
        )

    def probe_state(self, response: httpx.Response) -> CredentialState:
        if response.status_code == 400:
            return CredentialState.VALID
        return super().probe_state(response)

    def models_request(self) -> httpx.Request:
        return httpx.Request("GET", self.join("/v1/models"), params={"limit": "1000"})
