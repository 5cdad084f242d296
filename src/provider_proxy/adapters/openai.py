"""OpenAI's API, and any gateway that speaks it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import httpx

from .._adapter import BodyTransform
from ._base import ApiKey, BaseAdapter
from ._identity import ClientIdentity

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
        self,
        name: str,
        base_url: str | httpx.URL,
        *,
        api_key: ApiKey | None = None,
        api_key_env: str | Sequence[str] | None = None,
        user_agent: str | None = None,
        headers: Mapping[str, str] | None = None,
        default_headers: Mapping[str, str] | None = None,
        key_optional: bool = False,
        allow: str | Iterable[str] = (),
        transforms: Sequence[BodyTransform] = (),
        forward_headers: str | Iterable[str] = (),
        client_identity: ClientIdentity | None = None,
    ) -> None:
        super().__init__(
            name=name,
            base_url=base_url,
            api_key=api_key,
            api_key_env=api_key_env,
            user_agent=user_agent,
            headers=headers,
            default_headers=default_headers,
            key_optional=key_optional,
            allow=allow,
            transforms=transforms,
            forward_headers=forward_headers,
            client_identity=client_identity,
        )
