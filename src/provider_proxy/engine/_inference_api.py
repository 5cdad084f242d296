"""``{mount}/api/v1``: the REST service API some clients were written against.

``POST /inference`` and ``/inference/stream`` take a body in the format of the
gateway's ``/v1/chat/completions`` and go through the gateway (routed by model,
translated when the provider speaks another format). ``GET /models...`` answer
from the merged catalog. Errors are
in that service's format (:mod:`provider_proxy.dialects.service_api`), the
provider's included: an error answer is held (it is small and bounded), then
sent in that format once it is known whether the provider or the proxy gave it.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping
from typing import Any

from .._exceptions import BadRequest, InvalidJSON, MethodNotAllowed, ProxyError
from .._json import dumps, loads
from ..dialects import GATEWAY
from ..dialects import service_api as api
from ..guards import Guards
from ..policy import RawHeaders
from ..types import Message, Receive, Scope, Send
from ._body import Replay, RequestBody
from ._catalog import ModelCatalog, ModelNotFound
from ._gateway import Gateway
from ._heads import as_raw, content_head, send_whole
from ._report import Arrival, Outcome, Report

#: The gateway endpoint whose format the inference endpoints take.
_CHAT = "/v1/chat/completions"
#: The largest error answer held to be rewritten.
_MAX_HELD = 256 * 1024
_JSON = b"application/json"
#: Headers every answer here carries: a JSON API, never sniffed as something else.
_PROTECTIVE: RawHeaders = [(b"x-content-type-options", b"nosniff")]
_NO_STORE: RawHeaders = [(b"cache-control", b"no-store")]


class InvalidField(BadRequest):
    """A request field that is missing or wrong, named in the error's ``details``."""

    kind = "validation"

    def __init__(self, name: str, message: str = "") -> None:
        message = message or f"{name} is invalid"
        super().__init__(f"Validation error: {message}")
        self.details = {"field": name, "message": message}


class InferenceAPI:
    """Answers ``{mount}/api/v1/...``; one per app, built when ``inference_api=True``."""

    def __init__(
        self,
        gateway: Gateway,
        catalog: ModelCatalog,
        *,
        guards: Guards | None,
        default_provider: str | None,
        max_body_size: int | None,
    ) -> None:
        self._gateway = gateway
        self._catalog = catalog
        self._guards = guards
        self._default = default_provider
        self._max_body_size = max_body_size

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, rest: str, arrival: Arrival
    ) -> Report:
        """Answer ``rest`` (the path below ``/api``); every refusal in the service's format."""
        path = "/api" + rest
        try:
            if rest in ("/v1/inference", "/v1/inference/stream"):
                return await self._inference(
                    scope, receive, send, rest.endswith("/stream"), arrival
                )
            if rest == "/v1/models" or rest.startswith("/v1/models/"):
                return await self._models(scope, send, rest[len("/v1") :], arrival)
            raise ModelNotFound(
                f"No endpoint {path}: the API has /api/v1/inference, /api/v1/inference/stream "
                "and /api/v1/models."
            )
        except ProxyError as error:
            details = error.details if isinstance(error, InvalidField) else None
            kind = api.error_type(error.status_code, upstream=False)
            body = api.error_body(error.status_code, str(error), kind, details)
            size = await self._send(
                send, error.status_code, body, arrival, as_raw(dict(error.headers))
            )
            return Report(Outcome.refused(error, size, None), None, path)

    async def _send(
        self, send: Send, status: int, body: Any, arrival: Arrival, extra: RawHeaders | None = None
    ) -> int:
        content = dumps(body)
        head = content_head(_JSON, len(content), arrival.request_id)
        head += [*_PROTECTIVE, *(extra or [])]
        if status >= 400:
            head += _NO_STORE
        await send_whole(send, status, head, content)
        return len(content)

    # -- inference -------------------------------------------------------------------

    async def _inference(
        self, scope: Scope, receive: Receive, send: Send, stream: bool, arrival: Arrival
    ) -> Report:
        if scope["method"] != "POST":
            raise MethodNotAllowed("The inference endpoints take POST.")
        reader = RequestBody(receive, self._max_body_size)
        await reader.start()
        raw = await reader.read_all()
        try:
            body = loads(raw)
        except ValueError:
            raise InvalidJSON("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise InvalidJSON("The request body must be a JSON object.")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise InvalidField("model", "Model is required")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise InvalidField("messages", "Messages must be a non-empty array")
        body["stream"] = stream
        client, operation = GATEWAY[_CHAT]
        headers = [
            item
            for item in scope["headers"]
            if item[0] not in (b"accept-encoding", b"content-length", b"transfer-encoding")
        ]
        headers.append((b"accept-encoding", b"identity"))  # an error is read to be rewritten
        held = _HeldError(send)
        report = await self._gateway.handle(
            dict(scope, headers=headers),
            Replay(dumps(body), receive),
            held,
            client,
            operation,
            arrival,
        )
        if held.status is None:
            return report
        upstream = report.outcome.upstream_status is not None
        try:
            message, details = api.upstream_message(loads(held.body), held.status)
        except ValueError:
            message, details = f"The provider answered HTTP {held.status}.", None
        kind = api.error_type(held.status, upstream=upstream)
        size = await self._send(
            send,
            held.status,
            api.error_body(held.status, message, kind, details),
            arrival,
            held.kept,
        )
        return dataclasses.replace(
            report, outcome=dataclasses.replace(report.outcome, response_bytes=size)
        )

    # -- models ----------------------------------------------------------------------

    async def _models(self, scope: Scope, send: Send, rest: str, arrival: Arrival) -> Report:
        if scope["method"] not in ("GET", "HEAD"):
            raise MethodNotAllowed("The model endpoints answer GET only.")
        identity: str | None = None
        limits: Mapping[str, str] = {}
        if self._guards is not None:
            identity = await self._guards.identify(scope)
            limits = await self._guards.limit_endpoint(scope, identity)
        query = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        entries = await self._entries()
        body = self._answer(urllib.parse.unquote(rest), query, entries)
        size = await self._send(send, 200, body, arrival, as_raw(dict(limits)))
        return Report(Outcome(200, response_bytes=size), None, "/api/v1" + rest, identity=identity)

    async def _entries(self) -> list[dict[str, Any]]:
        """Every catalog model, under the id the inference endpoints take."""
        data, _ = await self._catalog.models()
        entries = []
        for model in data:
            model_id = model["id"]
            if model["provider"] is not None and model["provider"] == self._default:
                # The default provider's models need no prefix (a route has no provider).
                model_id = model_id[len(model["provider"]) + 1 :]
            entries.append(api.model_entry(model, model_id))
        return entries

    def _answer(
        self, rest: str, query: Mapping[str, str], entries: list[dict[str, Any]]
    ) -> dict[str, Any]:
        if rest.rstrip("/") == "/models":
            limit = _number(query, "limit", 50, 1, 100)
            offset = _number(query, "offset", 0, 0, None)
            chosen = entries
            if query.get("provider"):
                chosen = [e for e in chosen if api.vendor(e["id"]) == query["provider"]]
            if query.get("search"):
                chosen = _search(chosen, query["search"])
            return api.page(chosen[offset : offset + limit], len(chosen), limit, offset)
        if rest == "/models/top":
            limit = _number(query, "limit", 10, 1, 100)
            ranked = sorted(entries, key=lambda e: e["context_length"] or 0, reverse=True)
            return {
                "data": [
                    api.brief(e, "id", "name", "context_length", "pricing") for e in ranked[:limit]
                ]
            }
        if rest == "/models/search":
            words = query.get("q", "").strip()
            if not words:
                raise InvalidField("q", "Search query is required")
            limit = _number(query, "limit", 20, 1, 100)
            found = _search(entries, words)
            return {
                "data": [api.brief(e, "id", "name", "description") for e in found[:limit]],
                "query": words,
                "total": len(found),
            }
        if rest == "/models/providers":
            return {"data": sorted({api.vendor(e["id"]) for e in entries} - {""})}
        if rest.startswith("/models/providers/"):
            vendor = rest[len("/models/providers/") :]
            chosen = [e for e in entries if api.vendor(e["id"]) == vendor]
            return {
                "data": [api.brief(e, "id", "name", "context_length") for e in chosen],
                "provider": vendor,
            }
        model_id, part = rest[len("/models/") :], None
        for suffix in ("/parameters", "/pricing"):
            if model_id.endswith(suffix):
                model_id, part = model_id[: -len(suffix)], suffix[1:]
        entry = next((e for e in entries if e["id"] == model_id), None)
        if entry is None:
            raise ModelNotFound(f"Model {model_id!r} not found.")
        if part == "parameters":
            return {
                "data": {"model": model_id, "supported_parameters": entry["supported_parameters"]}
            }
        if part == "pricing":
            return {"data": {"model": model_id, "pricing": entry["pricing"]}}
        return {"data": entry}


def _number(query: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidField(name, f"{name} must be a whole number") from None
    if value < low or (high is not None and value > high):
        bound = f"{low} to {high}" if high is not None else f"{low} or more"
        raise InvalidField(name, f"{name} must be {bound}")
    return value


def _search(entries: list[dict[str, Any]], words: str) -> list[dict[str, Any]]:
    """Entries whose id, name or description holds ``words`` (case-insensitive)."""
    needle = words.lower()
    return [
        e
        for e in entries
        if needle in e["id"].lower()
        or needle in (e["name"] or "").lower()
        or needle in (e["description"] or "").lower()
    ]


class _HeldError:
    """``send`` that passes a success through (marked ``nosniff`` as every answer
    here is) and holds an error answer back."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None
        self.body = b""
        #: The held answer's headers worth keeping: limits, retry, request id.
        self.kept: RawHeaders = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            self.status = message["status"]
            self.kept = [
                (name, value)
                for name, value in message.get("headers", [])
                if name.startswith(b"x-ratelimit-") or name in (b"retry-after", b"x-should-retry")
            ]
            return
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if all(name != b"x-content-type-options" for name, _ in headers):
                message = {**message, "headers": [*headers, *_PROTECTIVE]}
        if self.status is not None:
            if message["type"] == "http.response.body" and len(self.body) < _MAX_HELD:
                self.body += message.get("body", b"")[: _MAX_HELD - len(self.body)]
            return
        await self._send(message)
