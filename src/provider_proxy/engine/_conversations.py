"""The Conversations API for models the gateway translates: conversations kept by the proxy.

``POST {mount}/v1/conversations`` makes a conversation (its first items, its
metadata); ``GET``/``POST``/``DELETE {mount}/v1/conversations/{id}`` read it,
change its metadata, delete it; ``{id}/items`` lists (``after``, ``limit``,
``order``), adds, reads and deletes its items. A Responses request with
``conversation`` (``"conv_..."`` or ``{"id": ...}``) is answered with the
conversation's items before its own input, and its input and output items are
appended once it finished (a failed or cancelled answer adds nothing).

Each conversation is one record in the app's store (so every instance on one
Redis sees it), under a digest of the client's identity: one client never
sees another's. The limits are those of
:class:`~provider_proxy.StoredResponses`: a conversation lives ``ttl`` seconds
after its last change, is at most ``max_bytes`` (refused with 413 before a
request that would make it larger is sent), and a client keeps at most
``per_client`` at once (429). Two requests that change one conversation at the
same moment may lose one's items (the store has no compare-and-set): a client
continues a conversation one turn at a time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from .._exceptions import BadRequest, MethodNotAllowed, ProviderNotFound, ProxyError
from .._json import dumps, loads
from ..state import Store
from ._responses_state import ConversationTooLarge, StoredResponses, TooManyStored

#: The most items one request may add (the API's limit on create and items.create).
MAX_NEW_ITEMS = 20

#: The most metadata pairs, and the longest key and value (the API's limits).
MAX_METADATA, MAX_KEY, MAX_VALUE = 16, 64, 512

#: Item id prefixes by item type, as the API's look.
_ID_KINDS = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}

#: Checks that items are valid input items (the Responses codec's decoding).
Validate = Callable[[list[Any]], None]


class ConversationNotFound(ProxyError):
    """No conversation of this client has that id (never made, expired, deleted, or another's)."""

    status_code = 404
    kind = "not_found"


@dataclasses.dataclass(frozen=True, slots=True)
class Joined:
    """A Responses request's conversation: its id and the items the request adds."""

    conversation_id: str
    new_items: list[dict[str, Any]]


class Conversations:
    """Conversations in ``store``, per client identity (see the module docstring)."""

    def __init__(self, store: Store, config: StoredResponses) -> None:
        self._store = store
        self.config = config

    async def has(self, identity: str | None, conversation_id: str) -> bool:
        """Whether this client has the conversation ``conversation_id``."""
        return bool(await self._store.get(self._key(identity, conversation_id)))

    @staticmethod
    def _who(identity: str | None) -> str:
        return hashlib.sha256((identity or "").encode()).hexdigest()[:24]

    def _key(self, identity: str | None, conversation_id: str) -> str:
        return f"pp:conversations:{self._who(identity)}:{conversation_id}"

    def _slots(self, identity: str | None) -> str:
        return f"pp:conversations:slots:{self._who(identity)}"

    async def _load(self, identity: str | None, conversation_id: str) -> dict[str, Any]:
        raw = await self._store.get(self._key(identity, conversation_id))
        if not raw:  # absent, expired, or deleted (an empty tombstone)
            raise ConversationNotFound(f"Conversation with id '{conversation_id}' not found.")
        record: dict[str, Any] = loads(raw)
        return record

    async def _save(self, identity: str | None, record: dict[str, Any]) -> None:
        raw = dumps(record)
        if len(raw) > self.config.max_bytes:
            raise ConversationTooLarge(
                f"The conversation would be larger than a stored one may be "
                f"({self.config.max_bytes} bytes); start a new one."
            )
        ttl = self.config.ttl
        # The slot's lease lives as long as the record: renewed with it (create took it).
        await self._store.acquire(self._slots(identity), record["id"], self.config.per_client, ttl)
        await self._store.set(self._key(identity, record["id"]), raw, ttl)

    # -- the endpoints ------------------------------------------------------------------

    async def serve(
        self,
        identity: str | None,
        method: str,
        parts: list[str],
        query: str,
        body: dict[str, Any],
        validate: Validate,
    ) -> dict[str, Any]:
        """One call of the API: ``parts`` are the path's segments after
        ``/v1/conversations`` (``[]``, ``[id]``, ``[id, "items"]``, ``[id, "items", item]``).

        :raises MethodNotAllowed: the path does not answer ``method``.
        :raises ProviderNotFound: no such endpoint.
        """
        count = len(parts)
        items = count >= 2 and parts[1] == "items"
        if count == 0 and method == "POST":
            return await self.create(identity, body.get("items"), body.get("metadata"), validate)
        if count == 1 and method == "GET":
            return await self.get(identity, parts[0])
        if count == 1 and method == "POST":
            return await self.update(identity, parts[0], body.get("metadata"))
        if count == 1 and method == "DELETE":
            return await self.delete(identity, parts[0])
        if count == 2 and items and method == "GET":
            return await self.list_items(identity, parts[0], query)
        if count == 2 and items and method == "POST":
            return await self.add_items(identity, parts[0], body.get("items"), validate)
        if count == 3 and items and method == "GET":
            return await self.get_item(identity, parts[0], parts[2])
        if count == 3 and items and method == "DELETE":
            return await self.delete_item(identity, parts[0], parts[2])
        if count < 2 or (count <= 3 and items):
            raise MethodNotAllowed(f"This conversations endpoint does not answer {method}.")
        raise ProviderNotFound("No such conversations endpoint.")

    async def create(
        self, identity: str | None, items: Any, metadata: Any, validate: Validate
    ) -> dict[str, Any]:
        """A new conversation with ``items`` (at most :data:`MAX_NEW_ITEMS`) and ``metadata``."""
        record: dict[str, Any] = {
            "id": f"conv_{secrets.token_hex(24)}",
            "created_at": int(time.time()),
            "metadata": _metadata(metadata),
            "items": [],
        }
        record["items"] = _new_items(items, record, validate)
        cap = self.config.per_client
        if not await self._store.acquire(self._slots(identity), record["id"], cap, self.config.ttl):
            raise TooManyStored(
                f"This client already keeps {cap} conversations; delete some "
                "(DELETE /v1/conversations/{id})."
            )
        try:
            await self._save(identity, record)
        except BaseException:
            await self._store.release(self._slots(identity), record["id"])
            raise
        return conversation_object(record)

    async def get(self, identity: str | None, conversation_id: str) -> dict[str, Any]:
        return conversation_object(await self._load(identity, conversation_id))

    async def update(
        self, identity: str | None, conversation_id: str, metadata: Any
    ) -> dict[str, Any]:
        """The conversation with its metadata replaced."""
        record = await self._load(identity, conversation_id)
        record["metadata"] = _metadata(metadata)
        await self._save(identity, record)
        return conversation_object(record)

    async def delete(self, identity: str | None, conversation_id: str) -> dict[str, Any]:
        await self._load(identity, conversation_id)
        # The Store protocol has no delete: an empty value is a tombstone.
        await self._store.set(self._key(identity, conversation_id), b"", self.config.ttl)
        await self._store.release(self._slots(identity), conversation_id)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    async def list_items(
        self, identity: str | None, conversation_id: str, query: str
    ) -> dict[str, Any]:
        """A page of the conversation's items: ``after`` an id, ``limit`` (1 to 100, 20),
        ``order`` (``desc``, newest first, unless ``asc``)."""
        items = list((await self._load(identity, conversation_id))["items"])
        params = parse_qs(query, keep_blank_values=True)
        order = _param(params, "order") or "desc"
        if order not in ("asc", "desc"):
            raise BadRequest(f"order must be 'asc' or 'desc', not {order!r}.")
        raw_limit = _param(params, "limit") or "20"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            raise BadRequest(f"limit must be a number from 1 to 100, not {raw_limit!r}.")
        if order == "desc":
            items.reverse()
        after = _param(params, "after")
        if after:
            at = next((i for i, item in enumerate(items) if item["id"] == after), None)
            if at is None:
                raise BadRequest(f"No item {after!r} in this conversation.")
            items = items[at + 1 :]
        return _page(items[: int(raw_limit)], more=len(items) > int(raw_limit))

    async def add_items(
        self, identity: str | None, conversation_id: str, items: Any, validate: Validate
    ) -> dict[str, Any]:
        """Append ``items``; the list of them as added (with their ids)."""
        record = await self._load(identity, conversation_id)
        added = _new_items(items, record, validate)
        record["items"].extend(added)
        await self._save(identity, record)
        return _page(added, more=False)

    async def get_item(
        self, identity: str | None, conversation_id: str, item_id: str
    ) -> dict[str, Any]:
        record = await self._load(identity, conversation_id)
        for item in record["items"]:
            if item["id"] == item_id:
                found: dict[str, Any] = item
                return found
        raise ConversationNotFound(f"Item with id '{item_id}' not found.")

    async def delete_item(
        self, identity: str | None, conversation_id: str, item_id: str
    ) -> dict[str, Any]:
        """Remove one item; the conversation, as the API answers it."""
        record = await self._load(identity, conversation_id)
        kept = [item for item in record["items"] if item["id"] != item_id]
        if len(kept) == len(record["items"]):
            raise ConversationNotFound(f"Item with id '{item_id}' not found.")
        record["items"] = kept
        await self._save(identity, record)
        return conversation_object(record)

    # -- responses in a conversation -----------------------------------------------------

    async def join(
        self, identity: str | None, body: dict[str, Any]
    ) -> tuple[dict[str, Any], Joined | None]:
        """``body`` with its conversation's items put before its input, and what it adds.

        :raises BadRequest: it names a conversation and a ``previous_response_id`` too.
        :raises ConversationNotFound: the conversation is not this client's.
        :raises ConversationTooLarge: with the input, it is larger than one may be.
        """
        named = body.get("conversation")
        if named is None:
            return body, None
        if body.get("previous_response_id") is not None:
            raise BadRequest(
                "Mutually exclusive parameters: Ensure you are only providing one of: "
                "'previous_response_id' or 'conversation'."
            )
        conversation_id = conversation_of(body)
        if conversation_id is None:
            raise BadRequest('conversation must be a conversation id or {"id": ...}.')
        record = await self._load(identity, conversation_id)
        given = body.get("input")
        new = [_user_text(given)] if isinstance(given, str) else list(given or [])
        history = [
            {k: v for k, v in item.items() if k not in ("id", "status")} for item in record["items"]
        ]
        if len(dumps(record)) + len(dumps(new)) > self.config.max_bytes:
            raise ConversationTooLarge(
                f"The conversation would be larger than a stored one may be "
                f"({self.config.max_bytes} bytes); start a new one."
            )
        joined = {k: v for k, v in body.items() if k != "conversation"}
        joined["input"] = [*history, *new]
        return joined, Joined(conversation_id, [dict(item) for item in new])

    async def append(
        self, identity: str | None, joined: Joined, output: list[dict[str, Any]]
    ) -> None:
        """A finished answer's input and ``output`` items, added to its conversation
        (an answer that makes it too large is served but not added: logged)."""
        record = await self._load(identity, joined.conversation_id)
        for item in [*joined.new_items, *output]:
            record["items"].append(_identified(dict(item), len(record["items"]), record["id"]))
        await self._save(identity, record)


def _new_items(items: Any, record: dict[str, Any], validate: Validate) -> list[dict[str, Any]]:
    """Items a client adds, checked and given ids."""
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise BadRequest("items must be an array of input items.")
    if len(items) > MAX_NEW_ITEMS:
        raise BadRequest(f"items may hold at most {MAX_NEW_ITEMS} items, not {len(items)}.")
    validate(items)
    start = len(record["items"])
    return [
        _identified(dict(item), start + index, record["id"]) for index, item in enumerate(items)
    ]


def conversation_of(body: dict[str, Any]) -> str | None:
    """The conversation id a Responses body names (a string, or an object's ``id``)."""
    named = body.get("conversation")
    if isinstance(named, dict):
        named = named.get("id")
    return named if isinstance(named, str) and named else None


def conversation_object(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record["id"],
        "object": "conversation",
        "created_at": record["created_at"],
        "metadata": record["metadata"],
    }


def _identified(item: dict[str, Any], index: int, conversation_id: str) -> dict[str, Any]:
    """An item as kept: a message's text content as parts, an id, a status."""
    kind = item.setdefault("type", "message")
    if kind == "message" and isinstance(item.get("content"), str):
        part = "output_text" if item.get("role") == "assistant" else "input_text"
        item["content"] = [{"type": part, "text": item["content"]}]
    suffix = conversation_id.removeprefix("conv_")[-16:]
    item["id"] = item.get("id") or f"{_ID_KINDS.get(kind, 'item')}_{suffix}{index}"
    if kind != "reasoning":
        item.setdefault("status", "completed")
    return item


def _user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_METADATA:
        raise BadRequest(f"metadata must be an object of at most {MAX_METADATA} pairs.")
    for key, text in value.items():
        if not isinstance(text, str) or len(key) > MAX_KEY or len(text) > MAX_VALUE:
            raise BadRequest(
                f"metadata keys are at most {MAX_KEY} characters and values strings "
                f"of at most {MAX_VALUE} ({key!r} is not)."
            )
    return dict(value)


def _page(items: list[dict[str, Any]], *, more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": more,
    }


def _param(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None
