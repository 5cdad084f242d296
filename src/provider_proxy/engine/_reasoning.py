"""Reasoning a client's format cannot carry, kept server-side between turns.

A thinking model's signed reasoning (and its redacted reasoning) must go back
to the provider unchanged with the tool calls it led to, but a client of a
format without room for it (a chat format without signatures) drops it. When the gateway
translates an answer, it keeps those parts in the app's store, keyed by the
client's identity and the first tool-call id they preceded; when the next
request sends that tool call back without them, they are put back in front of
it. Nothing is shown to the client, and one client's reasoning is never
restored into another's request (the identity is part of the key).

A provider's web search is kept the same way, keyed by the search call's id:
the encrypted copies of its results go back to the provider on later turns,
but a client's format may have no room for them; a search call sent back
without them is restored whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from .._json import dumps, loads
from ..dialects.canonical import (
    Message,
    Part,
    Reasoning,
    ReasoningDelta,
    ReasoningSignature,
    RedactedReasoning,
    RedactedReasoningBlock,
    Request,
    Response,
    SearchResult,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallStart,
    WebSearchCall,
    WebSearchDone,
)
from ..state import Store

logger = logging.getLogger("provider_proxy")

#: How long kept reasoning waits for the turn that sends its tool calls back.
REASONING_TTL = 3600.0

Kept = Reasoning | RedactedReasoning | WebSearchCall


class ReasoningMemory:
    """Keeps and restores opaque reasoning in ``store``, per client identity."""

    def __init__(self, store: Store, *, ttl: float = REASONING_TTL) -> None:
        self._store = store
        self._ttl = ttl

    @staticmethod
    def _key(identity: str | None, call_id: str) -> str:
        who = hashlib.sha256((identity or "").encode()).hexdigest()[:24]
        return f"pp:reasoning:{who}:{call_id}"

    async def remember(self, identity: str | None, call_id: str, parts: Sequence[Kept]) -> None:
        """Keep ``parts`` (the signed or redacted ones) for the turn sending ``call_id`` back."""
        opaque = [_encoded(part) for part in parts if _opaque(part)]
        if not opaque:
            return
        try:
            await self._store.set(self._key(identity, call_id), dumps(opaque), self._ttl)
        except Exception:
            logger.warning("could not keep the reasoning of tool call %s", call_id, exc_info=True)

    async def remember_response(self, identity: str | None, response: Response) -> None:
        """Keep the reasoning in front of the first tool call of a whole answer, and its
        searches."""
        for search in response.parts:
            if isinstance(search, WebSearchCall):
                await self.remember(identity, search.id, [search])
        kept: list[Kept] = []
        for part in response.parts:
            if isinstance(part, (Reasoning, RedactedReasoning)):  # a tuple: no union built
                kept.append(part)
            elif isinstance(part, ToolCall):
                await self.remember(identity, part.id, kept)
                return

    async def restore(self, identity: str | None, request: Request) -> Request:
        """``request`` with kept reasoning put back before the tool calls that lack it."""
        if not restorable(request):
            return request
        messages = list(request.messages)
        changed = False
        for index, message in enumerate(messages):
            searches = await self._restore_searches(identity, message)
            if searches is not message:
                messages[index], changed = searches, True
                message = searches
            if message.role != "assistant" or any(
                _opaque(p) for p in message.parts if not isinstance(p, WebSearchCall)
            ):
                continue
            call = next((p for p in message.parts if isinstance(p, ToolCall)), None)
            if call is None:
                continue
            try:
                raw = await self._store.get(self._key(identity, call.id))
            except Exception:
                logger.warning(
                    "could not read the reasoning of tool call %s", call.id, exc_info=True
                )
                continue
            if raw is None:
                continue
            kept = tuple(_decoded(item) for item in loads(raw))
            rest = tuple(p for p in message.parts if not isinstance(p, Reasoning))
            messages[index] = Message(message.role, (*kept, *rest))
            changed = True
        return dataclasses.replace(request, messages=tuple(messages)) if changed else request

    async def _restore_searches(self, identity: str | None, message: Message) -> Message:
        """``message`` with its search calls that lack their results' data restored."""
        if message.role != "assistant":
            return message
        parts = list(message.parts)
        for index, part in enumerate(parts):
            if not isinstance(part, WebSearchCall) or _opaque(part):
                continue
            try:
                raw = await self._store.get(self._key(identity, part.id))
            except Exception:
                logger.warning("could not read the web search %s", part.id, exc_info=True)
                continue
            kept = [_decoded(item) for item in loads(raw)] if raw is not None else []
            if kept and isinstance(kept[0], WebSearchCall):
                parts[index] = kept[0]
        restored = tuple(parts)
        return message if restored == message.parts else Message(message.role, restored)


def restorable(request: Request) -> bool:
    """Whether anything may have been kept for ``request``: it sends an earlier answer
    back. (A first turn, most requests, is served without a look at the store.)"""
    for message in request.messages:  # noqa: SIM110 - (a generator costs more per request)
        if message.role == "assistant":
            return True
    return False


def keeps(response: Response) -> bool:
    """Whether a whole answer has anything to keep: a tool call or a web search."""
    for part in response.parts:  # noqa: SIM110 - (a generator costs more per request)
        if isinstance(part, _KEYED):
            return True
    return False


#: The parts that what is kept is keyed by.
_KEYED = (ToolCall, WebSearchCall)


class StreamCapture:
    """Follows a translated stream's reasoning; says what to keep at its first tool call."""

    __slots__ = ("_done", "_parts", "_signature", "_text")

    def __init__(self) -> None:
        self._parts: list[Kept] = []
        self._text: list[str] = []
        self._signature: str | None = None
        self._done = False

    def feed(self, event: StreamEvent) -> tuple[str, list[Kept]] | None:
        """``(call id, parts)`` when ``event`` starts the stream's first tool call, or is a
        web search (``(its id, [the call])``)."""
        if isinstance(event, WebSearchDone):
            return event.call.id, [event.call]
        if self._done:
            return None
        if isinstance(event, ReasoningDelta):
            self._text.append(event.text)
        elif isinstance(event, ReasoningSignature):
            self._signature = event.signature
            self._close_reasoning()
        elif isinstance(event, RedactedReasoningBlock):
            self._close_reasoning()
            self._parts.append(RedactedReasoning(event.data))
        elif isinstance(event, TextDelta):
            self._close_reasoning()
        elif isinstance(event, ToolCallStart):
            self._close_reasoning()
            self._done = True
            return event.id, self._parts
        return None

    def _close_reasoning(self) -> None:
        if self._text or self._signature is not None:
            self._parts.append(Reasoning("".join(self._text), self._signature))
        self._text, self._signature = [], None


def _opaque(part: Part) -> bool:
    """Whether a part is one only the provider can read back: signed or redacted reasoning,
    a search with the provider's encrypted results."""
    if isinstance(part, WebSearchCall):
        return bool(part.results) and all(r.opaque is not None for r in part.results)
    return isinstance(part, RedactedReasoning) or (
        isinstance(part, Reasoning) and part.signature is not None
    )


def _encoded(part: Kept) -> dict[str, Any]:
    if isinstance(part, RedactedReasoning):
        return {"redacted": part.data}
    if isinstance(part, WebSearchCall):
        results = [[r.url, r.title, r.page_age, r.opaque] for r in part.results]
        return {"search": part.id, "queries": list(part.queries), "results": results}
    return {"text": part.text, "signature": part.signature}


def _decoded(item: dict[str, Any]) -> Kept:
    if "redacted" in item:
        return RedactedReasoning(item["redacted"])
    if "search" in item:
        results = tuple(SearchResult(*result) for result in item["results"])
        return WebSearchCall(item["search"], tuple(item["queries"]), results)
    return Reasoning(item["text"], item.get("signature"))
