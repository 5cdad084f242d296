"""`QwenChatAdapter` (experimental, unofficial): the Qwen web chat service behind OpenAI Chat.

The service keeps each conversation on its side (a chat, and the parent id a
new message continues from) and has no tool calling; this adapter is a
:class:`~provider_proxy.adapters.StatefulAdapter`, so OpenAI clients get
multi-turn conversations through the app's session store, and
:class:`~provider_proxy.transforms.XmlToolCalls` gives coding assistants tools.
It speaks the service's web API with the operator's logged-in session: the
``bx-umidtoken`` header (``QWEN_TOKEN``) and the cookies (``QWEN_COOKIES``), with
a browser user agent. That API is not a public one and may change.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Mapping
from typing import Any, ClassVar, cast

import httpx
from typing_extensions import Unpack

from .._adapter import Availability, CredentialState, RequestContext
from .._exceptions import ProxyError
from .._json import loads
from ..dialects.canonical import (
    Finish,
    FinishReason,
    ReasoningDelta,
    StreamError,
    TextDelta,
    Usage,
    UsageReport,
)
from ._base import AdapterOptions, ApiKey, ProviderOptions, current_key, key_source
from ._stateful import (
    AnswerEvent,
    AnswerReader,
    StaleConversation,
    StatefulAdapter,
    Turn,
    Upstream,
    UpstreamRefused,
)

#: A current desktop browser's user agent: the service challenges other clients.
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


class QwenChallenge(ProxyError):
    """The service answered a browser challenge page instead of its API (502)."""

    status_code = 502
    kind = "upstream_challenge"


class QwenAuthError(ProxyError):
    """The service refused the operator's credentials (401)."""

    status_code = 401
    kind = "upstream_auth_rejected"


class QwenChatOptions(ProviderOptions, total=False):
    """:class:`QwenChatAdapter`'s options: :class:`ProviderOptions`, name, base URL, cookies."""

    name: str | None
    base_url: str | httpx.URL | None
    cookies: ApiKey | None


class QwenChatAdapter(StatefulAdapter):
    """The Qwen web chat service (``https://chat.qwen.ai``), as ``qwen-chat``. Experimental.

    :param api_key: the ``bx-umidtoken`` of a logged-in browser session
        (default: ``QWEN_TOKEN``).
    :param cookies: that session's ``Cookie`` header (default: ``QWEN_COOKIES``);
        a callable is asked on every request, so a refreshed login needs no restart.
    """

    default_name = "qwen-chat"
    default_base_url = "https://chat.qwen.ai"
    default_api_key_env = "QWEN_TOKEN"
    auth_header = "bx-umidtoken"
    auth_scheme = ""
    #: The ``chat_mode`` of new chats and their messages.
    chat_mode: ClassVar[str] = "guest"

    def __init__(self, **options: Unpack[QwenChatOptions]) -> None:
        cookies = options.get("cookies")
        given = cast(AdapterOptions, {k: v for k, v in options.items() if k != "cookies"})
        given.setdefault("user_agent", BROWSER_USER_AGENT)
        super().__init__(**given)
        self._cookies = key_source(cookies, ("QWEN_COOKIES",), f"The cookies of {self.name!r}")

    def availability(self) -> Availability:
        found = super().availability()
        if found.enabled and self._cookies is None:
            return Availability(False, "No cookies: set QWEN_COOKIES or pass cookies=.")
        return found

    def auth_headers(
        self, context: RequestContext
    ) -> Mapping[str, str] | Awaitable[Mapping[str, str]]:
        headers = super().auth_headers(context)
        assert isinstance(headers, Mapping)  # a key, not a token source
        cookies = current_key(self._cookies, f"The cookies callable of {self.name!r}")
        if cookies is None:
            raise QwenAuthError(f"{self.name!r} has no cookies right now: set QWEN_COOKIES.")
        return {**headers, "cookie": cookies.reveal(), "source": "web"}

    def models_request(self) -> httpx.Request:
        return httpx.Request("GET", self.join("/api/models"))

    def credential_probe(self) -> httpx.Request | None:
        """The model list: it needs the session's token and cookies."""
        return self.models_request()

    def probe_state(self, response: httpx.Response) -> CredentialState:
        if response.headers.get("content-type", "").startswith("text/html"):
            return CredentialState.AUTH_REJECTED  # a challenge page: the session was refused
        return super().probe_state(response)

    # -- the conversation ---------------------------------------------------------------

    async def open_conversation(self, upstream: Upstream, turn: Turn) -> Mapping[str, Any]:
        body = {
            "title": "New Chat",
            "models": [turn.model],
            "chat_mode": self.chat_mode,
            "chat_type": "t2t",
            "timestamp": int(time.time() * 1000),
        }
        response = await upstream.send("POST", "/api/v2/chats/new", json=body)
        answer = _checked(response, await upstream.read(response), self.name)
        data = answer.get("data") if isinstance(answer, dict) else None
        chat_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(chat_id, str):
            raise UpstreamRefused(f"{self.name!r} opened a chat without an id.")
        return {"chat_id": chat_id, "parent_id": None}

    async def send_turn(
        self, upstream: Upstream, ids: Mapping[str, Any], turn: Turn
    ) -> httpx.Response:
        chat_id, parent = ids["chat_id"], ids.get("parent_id")
        now = int(time.time())
        reasoning = turn.request.reasoning
        thinking = reasoning is not None and reasoning.effort not in (None, "none")
        message = {
            "fid": str(uuid.uuid4()),
            "parentId": parent,
            "childrenIds": [],
            "role": "user",
            "content": turn.text,
            "user_action": "chat",
            "files": [],
            "timestamp": now,
            "models": [turn.model],
            "chat_type": "t2t",
            "feature_config": {"thinking_enabled": thinking, "output_schema": "phase"},
            "sub_chat_type": "t2t",
            "parent_id": parent,
        }
        body = {
            "stream": True,
            "incremental_output": True,
            "chat_id": chat_id,
            "chat_mode": self.chat_mode,
            "model": turn.model,
            "parent_id": parent,
            "messages": [message],
            "timestamp": now,
        }
        response = await upstream.send(
            "POST", "/api/v2/chat/completions", json=body, params={"chat_id": chat_id}
        )
        content_type = response.headers.get("content-type", "")
        if response.status_code == 200 and content_type.startswith("text/event-stream"):
            return response
        answer = _checked(response, await upstream.read(response), self.name)
        details = _details(answer)
        if "not exist" in details:
            raise StaleConversation(details)
        raise UpstreamRefused(
            f"{self.name!r} did not answer the message: {details or 'no reason'}."
        )

    def answer_reader(self, ids: Mapping[str, Any], turn: Turn) -> AnswerReader:
        return QwenAnswerReader(ids["chat_id"])


def _checked(response: httpx.Response, body: bytes, name: str) -> Any:
    """The JSON answer, or the error that names why there is none (never a credential)."""
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("text/html") or body.lstrip()[:1] == b"<":
        raise QwenChallenge(
            f"{name!r} answered with a browser challenge page instead of its API: the "
            "session's token (QWEN_TOKEN), cookies (QWEN_COOKIES) or user agent were not "
            "accepted. Log in at chat.qwen.ai in a browser and copy fresh ones."
        )
    if response.status_code == 401:
        raise QwenAuthError(
            f"{name!r} says the login has expired: log in at chat.qwen.ai again and set "
            "QWEN_COOKIES (and QWEN_TOKEN) from that session."
        )
    if response.status_code == 403:
        raise QwenAuthError(
            f"{name!r} rejected the session token (QWEN_TOKEN, sent as bx-umidtoken): copy a "
            "current one from a logged-in browser."
        )
    try:
        answer = loads(body)
    except ValueError:
        raise UpstreamRefused(f"{name!r} answered {response.status_code} without JSON.") from None
    if response.status_code >= 400:
        raise UpstreamRefused(f"{name!r} answered {response.status_code}: {_details(answer)}.")
    if (
        isinstance(answer, dict)
        and answer.get("success") is False
        and "not exist" not in _details(answer)
    ):
        raise UpstreamRefused(f"{name!r} refused the request: {_details(answer)}.")
    return answer


def _details(answer: Any) -> str:
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        return ""
    return " ".join(str(data[k]) for k in ("code", "details") if data.get(k))[:300]


#: The blank line that ends a server-sent event (its lines end in CRLF or LF).
_EVENT_END = re.compile(rb"\r?\n\r?\n")


class QwenAnswerReader(AnswerReader):
    """The service's answer stream: ``response.created`` names where the next message
    goes; ``choices[0].delta`` pieces are thinking (``phase: think``) or the answer."""

    def __init__(self, chat_id: str) -> None:
        self._chat_id = chat_id
        self._buffer = b""
        self._next: dict[str, Any] | None = None
        self._finished = False

    def feed(self, data: bytes) -> list[AnswerEvent]:
        self._buffer += data
        events: list[AnswerEvent] = []
        while (end := _EVENT_END.search(self._buffer)) is not None:
            block, self._buffer = self._buffer[: end.start()], self._buffer[end.end() :]
            events += self._event(block)
        return events

    def end(self) -> list[AnswerEvent]:
        rest, self._buffer = self._buffer, b""
        return self._event(rest) if rest.strip() else []

    @property
    def next_ids(self) -> Mapping[str, Any] | None:
        return self._next if self._finished else None

    def _event(self, block: bytes) -> list[AnswerEvent]:
        lines = [line[5:].strip() for line in block.splitlines() if line.startswith(b"data:")]
        if not lines:
            return []
        try:
            event = loads(b"\n".join(lines))
        except ValueError:
            return [
                StreamError(
                    502, "server_error", "The Qwen chat service sent an event that is not JSON."
                )
            ]
        if not isinstance(event, dict):
            return []
        created = event.get("response.created")
        if isinstance(created, dict) and isinstance(created.get("parent_id"), str):
            # The next message continues from the answer's parent_id, not its message_id.
            self._next = {"chat_id": self._chat_id, "parent_id": created["parent_id"]}
            return []
        if isinstance(event.get("error"), dict):
            return [
                StreamError(
                    502,
                    "server_error",
                    f"The Qwen chat service failed: {_details({'data': event['error']})}",
                )
            ]
        out: list[AnswerEvent] = []
        usage = event.get("usage")
        choices = event.get("choices")
        delta = (
            choices[0].get("delta")
            if isinstance(choices, list) and choices and isinstance(choices[0], dict)
            else None
        )
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str) and content:
                out.append(
                    ReasoningDelta(content) if delta.get("phase") == "think" else TextDelta(content)
                )
            if delta.get("status") == "finished" and delta.get("phase") == "answer":
                if isinstance(usage, dict):
                    out.append(
                        UsageReport(
                            Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")))
                        )
                    )
                out.append(Finish(FinishReason.STOP))
                self._finished = True
        return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
