"""Anthropic's Messages API."""

from __future__ import annotations

from typing import Any

import httpx

from .._adapter import CredentialState, Usage
from .._exceptions import ProxyError
from .._json import dumps
from ._base import BaseAdapter
from ._usage import anthropic_usage

#: The API version the official SDKs send; set when the client sends none.
ANTHROPIC_VERSION = "2023-06-01"

# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


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
    base_default_headers = {"anthropic-version": ANTHROPIC_VERSION}  # noqa: RUF012
    endpoints = (
        "POST /v1/messages",
        "POST /v1/messages/count_tokens",
        "POST /v1/complete",
        "GET /v1/models",
        "GET /v1/models/*",
    )

    def error_body(self, error: ProxyError, request_id: str) -> bytes:
        return anthropic_error_body(error, request_id)

    def extract_usage(self, payload: Any) -> Usage | None:
        """``usage`` of a message, ``message_start`` and ``message_delta`` events."""
        return anthropic_usage(payload)

    def extract_model(self, payload: Any) -> str | None:
        if isinstance(payload, dict) and isinstance(payload.get("message"), dict):
            payload = payload["message"]  # message_start
        return super().extract_model(payload)

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


def anthropic_error_body(error: ProxyError, request_id: str) -> bytes:
    """Anthropic's error format: ``{"type": "error", "error": {"type", "message"}}``."""
    error_type = _ERROR_TYPES.get(error.status_code, "api_error")
    return dumps(
        {
            "type": "error",
            "error": {"type": error_type, "message": error.message},
            "request_id": request_id,
        }
    )
