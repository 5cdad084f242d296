"""The gateway: one endpoint per API format, reaching any model of any provider.

``POST {mount}/v1/chat/completions`` and ``POST {mount}/v1/messages`` (see
:data:`provider_proxy.dialects.GATEWAY`) take a model named
``"{adapter}/{model}"``. When the provider speaks the client's format, the
request is forwarded with the model rewritten and the answer relayed as it is;
otherwise it is translated through the canonical form, both ways, and a stream
event by event as the provider's events arrive. Either way the request then
takes the forwarding path every request takes (guards, transforms, usage,
events): the gateway hands the :class:`~provider_proxy.engine._forward.Forwarder`
the provider's path and body, and, when it translates, a ``send`` that turns
the provider's answer into the client's.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol
from urllib.parse import quote, unquote

import anyio
import anyio.to_thread

from .._adapter import JSON, BodyTransform, RequestContext, facts
from .._exceptions import (
    BadRequest,
    ClientNotAuthorized,
    InvalidJSON,
    MethodNotAllowed,
    ProviderNotFound,
    ProxyError,
)
from .._json import dumps, loads
from ..adapters import Provider, ProviderAdapter
from ..dialects import (
    EMBEDDINGS,
    KEY_PARAMS,
    SEARCHING,
    TOKEN_COUNTS,
    Dialect,
    Tokenizer,
    estimate_input_tokens,
    offline_tokenizer,
)
from ..dialects.canonical import (
    IMAGE_URL,
    Codec,
    FinishReason,
    Paused,
    Request,
    Response,
    StoredAnswers,
    StreamDecoder,
    StreamEncoder,
    StreamError,
    Unsupported,
    UntranslatableResponse,
    Usage,
)
from ..guards import Guards
from ..observe import SSEParser
from ..policy import RawHeaders, header_value, param_value
from ..state import Store
from ..transforms._compose import Composed, applies, run_transform
from ..types import Message, Receive, Scope, Send
from ._background import BackgroundRuns
from ._body import Replay, RequestBody
from ._conversations import Conversations, Joined, conversation_of
from ._forward import Forwarder
from ._heads import content_head, send_whole
from ._images import ImageFetcher
from ._paused import PausedTurn, joined_report
from ._reasoning import Kept, ReasoningMemory, StreamCapture, keeps, restorable
from ._report import Arrival, Outcome, Report
from ._responses_state import AnswerStore, Keeping, StoredResponses, issued

#: The response header naming request fields dropped in translation (no effect there).
DROPPED_HEADER = b"x-proxy-dropped-fields"

#: The header of a ``count_tokens`` answer the proxy estimated, naming the tokenizer.
ESTIMATE_HEADER = b"x-proxy-token-estimate"

#: Where an operation's path names the model, for formats that put it there (not the body).
_MODEL_IN_PATH = "{model}"

#: Operations a format has in two forms, translated for another format as the general one
#: (one embedding, ``embed_content``, as a batch of one).
_TRANSLATED_AS = {"embed_content": "embed"}

#: Headers of the provider's answer that describe its body, set anew for a translated one.
_BODY_HEADERS = frozenset({b"content-length", b"content-type", b"content-encoding", b"etag"})


#: Wraps the ``send`` of one attempt, given the provider's format (see :meth:`Gateway.serve`).
Hold = Callable[[Send, Dialect], Send]


class Routed(Protocol):
    """The router's side of the gateway: the models it serves (routes), and how."""

    def __contains__(self, model: object) -> bool: ...

    async def handle(
        self,
        model: str,
        parsed: dict[str, Any],
        size: int,
        scope: Scope,
        receive: Receive,
        send: Send,
        client: Dialect,
        operation: str,
        arrival: Arrival,
    ) -> Report: ...


class ModelNotRouted(ProviderNotFound):
    """A model name that names no adapter (and there is no default provider)."""

    kind = "model_not_found"


class NotTranslatable(ProxyError):
    """The operation has no equivalent at the provider (``count_tokens`` elsewhere)."""

    status_code = 501
    kind = "not_implemented"


@facts
class Target:
    """Where a gateway request goes: the adapter, the model it is sent, the format and path."""

    #: What the model's prefix names (an adapter, or a group that chose ``adapter``).
    provider: Provider
    adapter: ProviderAdapter
    model: str
    dialect: Dialect
    path: str
    #: Whether the request and its answer are translated (the formats differ).
    translated: bool


class Gateway:
    """Routes gateway requests by model; one per app.

    :param adapters: the app's adapters by name.
    :param forwarder: the app's forwarder, which every request goes through.
    :param transforms: the app-wide transforms; those that apply to the client's
        request (model aliases) run before the model is routed.
    :param default_provider: the adapter of model names without an adapter prefix.
    :param max_body_size: the largest request body read.
    :param strict: refuse the fields a translation would drop (no effect there) too.
    :param store: where reasoning a client's format cannot carry is kept between turns.
    :param guards: the app's guards, whose identity keys that reasoning per client.
    :param tokenizer: what estimates ``count_tokens`` for providers that cannot count;
        ``"auto"`` loads :func:`~provider_proxy.dialects.offline_tokenizer` on first
        use; ``None`` (or ``"auto"`` without the ``tokens`` extra) answers 501.
    :param stored: how conversations of stateful clients are kept (in ``store``).
    :param images: fetches image URLs for providers that take images only inline.
    """

    def __init__(
        self,
        adapters: Mapping[str, Provider],
        forwarder: Forwarder,
        *,
        transforms: Sequence[BodyTransform],
        default_provider: str | None,
        max_body_size: int | None,
        strict: bool = False,
        store: Store | None = None,
        guards: Guards | None = None,
        tokenizer: Tokenizer | Literal["auto"] | None = "auto",
        stored: StoredResponses | None = None,
        images: ImageFetcher | None = None,
    ) -> None:
        if default_provider is not None and default_provider not in adapters:
            raise ValueError(
                f"default_provider={default_provider!r} names no adapter; the adapters are: "
                f"{', '.join(adapters) or 'none'}."
            )
        self._adapters = adapters
        self._forwarder = forwarder
        self._transforms = Composed(transforms)
        self._default = default_provider
        self._max_body_size = max_body_size
        self._strict = strict
        self._memory = ReasoningMemory(store) if store is not None else None
        self._answers = AnswerStore(store, stored) if store is not None else None
        kept = stored or StoredResponses()
        #: Background responses (the app sets their event sink and drain).
        self.background = BackgroundRuns(store, kept) if store is not None else None
        self._conversations = Conversations(store, kept) if store is not None else None
        self._guards = guards
        self._tokenizer: Tokenizer | Literal["auto"] | None = tokenizer
        self._images = images
        #: How each adapter speaks each client format's operation (see :meth:`_target`).
        self._ways: dict[tuple[int, str, str], tuple[ProviderAdapter, _Way]] = {}
        #: Serves the models that name routes (set by the app when it has routes).
        self.router: Routed | None = None

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        client: Dialect,
        operation: str,
        arrival: Arrival,
        *,
        path_model: str | None = None,
    ) -> Report:
        """Route, translate when needed, and forward; a refusal is a :class:`ProxyError`.

        :param path_model: the model a client's format names in the path, not the body
            (its ``operation`` is then ``"stream"`` when the path asks for a stream).
        """
        if scope["method"] != "POST":
            raise BadRequest(f"The gateway's {scope['path']} endpoint takes POST.")
        body = RequestBody(receive, self._max_body_size)
        await body.start()
        raw = await body.read_all()
        try:
            parsed: JSON = loads(raw)
        except ValueError as exc:
            raise InvalidJSON(f"The request body is not valid JSON ({exc}).") from None
        if not isinstance(parsed, dict):
            raise InvalidJSON("The request body must be a JSON object.")
        if self._transforms.transforms:
            parsed, path_model = await self._resolve_aliases(
                parsed, scope, client, arrival, path_model
            )
        named = path_model or client.model_of(parsed)
        if not named:
            raise BadRequest('The request names no model: set "model" to "{provider}/{model}".')
        if (
            parsed.get("background") is True
            and operation == "generate"
            and _stored(client.codec) is not None
            and await self._served_here(named, parsed, client, scope)
        ):
            return await self._start_background(
                named, parsed, scope, receive, send, client, arrival
            )
        if self.router is not None and named in self.router:
            return await self.router.handle(
                named, parsed, len(raw), scope, receive, send, client, operation, arrival
            )
        return await self.serve(named, parsed, scope, receive, send, client, operation, arrival)

    async def serve(
        self,
        named: str,
        parsed: dict[str, Any],
        scope: Scope,
        receive: Receive,
        send: Send,
        client: Dialect,
        operation: str,
        arrival: Arrival,
        *,
        hold: Hold | None = None,
        repeat: bool = False,
    ) -> Report:
        """One model's request (``"{adapter}/{model}"``): translated when the provider's
        format differs, then forwarded.

        :param hold: wraps the ``send`` the forwarder answers into, given the
            provider's format (the router's holdback, inside any translation).
        :param repeat: the router's retry of this request (charged once by the guards).
        """
        stream = operation == "stream"  # a stream asked for by the path, not the body
        if stream:
            operation = "generate"
        try:
            target = self._target(named, client, operation)
        except NotTranslatable:
            if operation in _TRANSLATED_AS:
                operation = _TRANSLATED_AS[operation]
                target = self._target(named, client, operation)
            else:
                tokenizer = await self._loaded_tokenizer() if operation == "count_tokens" else None
                if tokenizer is None:
                    raise
                return await self._estimate(scope, send, client, parsed, named, tokenizer, arrival)
        # The model as the provider knows it, written over the name the client used.
        modelled = dict(parsed, model=target.model)
        stateful = _stored(client.codec)
        if not target.translated and stateful is not None:
            target = await self._continuing(target, modelled, stateful, scope)
        if not target.translated:
            body = parsed if _MODEL_IN_PATH in target.path else modelled
            target = self._with_path(target, stream)
            return await self._forward(
                scope, receive, send, client, target, dumps(body), arrival, hold, repeat
            )
        parsed = modelled
        codec, provider_codec = client.codec, target.dialect.codec
        if codec is None or provider_codec is None:  # pragma: no cover - _target checks
            raise NotTranslatable(f"{client.name} cannot be translated here.")
        if operation == "embed":
            return await self._embed(
                scope, receive, send, client, target, parsed, arrival, hold, repeat
            )
        if operation == "count_tokens":
            return await self._count(
                scope, receive, send, client, target, parsed, arrival, hold, repeat
            )
        joined: Joined | None = None
        if stateful is not None and self._conversations is not None and "conversation" in parsed:
            parsed, joined = await self._conversations.join(
                await self._identity_required(scope), parsed
            )
        request, dropped = codec.decode_request(parsed)
        if joined is not None:  # its answer says which conversation it was made in
            request = dataclasses.replace(request, conversation=joined.conversation_id)
        form = request.output_format
        if form is not None and form.kind not in getattr(
            target.adapter, "output_formats", {form.kind}
        ):
            raise Unsupported(form.source, f"{target.adapter.name!r} takes no {form.kind} format")
        if stream:
            request = dataclasses.replace(request, stream=True, stream_usage=True)
        if request.web_search is not None and target.dialect.name not in SEARCHING:
            target = self._searching(target, operation)
            provider_codec = target.dialect.codec or provider_codec
        identity = None if self._guards is None else await self._identity(scope)
        # First: what it restores is not counted as dropped.
        if self._memory is not None and restorable(request):
            request = await self._memory.restore(identity, request)
        if unsent := provider_codec.dropped_by_encoding(request):
            dropped = (*dropped, *unsent)
        if dropped and self._strict:
            raise Unsupported(
                dropped[0],
                f"it has no effect on {target.adapter.name!r}, and strict translation "
                "refuses what it would drop",
            )
        keeping: Keeping | None = None
        stored = stateful  # the client's codec, as it was before any translation
        if self._answers is not None and stored is not None:
            request, keeping = await self._answers.begin(identity, request, stored)
            # Its creation time as kept, not the second the answer happens to be encoded in.
            codec = stored.dated(keeping.created)
            if joined is not None:
                keeping.finished = self._appender(identity, joined, codec)
        target = self._with_path(target, request.stream)
        try:
            try:
                upstream = provider_codec.encode_request(request)
            except Unsupported as refused:
                if refused.field != IMAGE_URL or self._images is None:
                    raise
                request = await self._images.inline(request)  # the provider takes them inline
                upstream = provider_codec.encode_request(request)
            # Only a provider's own tools pause a turn; the gateway translates only its search.
            turn = PausedTurn(request) if request.web_search is not None else None
            translate = _Translator(
                send,
                codec,
                provider_codec,
                request,
                dropped,
                self._memory,
                identity,
                keeping,
                turn=turn,
            )
            report = await self._forward(
                scope, receive, translate, client, target, dumps(upstream), arrival, hold, repeat
            )
            while turn is not None and (going_on := turn.continuation) is not None:
                # The provider paused the turn: the answer so far goes back, and the
                # client's answer goes on with what comes (charged once by the guards).
                turn.continuation = None
                upstream = provider_codec.encode_request(going_on)
                later = await self._forward(
                    scope, receive, translate, client, target, dumps(upstream), arrival, None, True
                )
                report = joined_report(report, later)
            return report
        finally:
            if keeping is not None:
                with anyio.CancelScope(shield=True):  # a client gone still frees its slot
                    await keeping.end()

    @staticmethod
    def _searching(target: Target, operation: str) -> Target:
        """``target`` in a format the provider can run a web search in, when it speaks one
        to the gateway (else as it is: its codec refuses the search, naming it)."""
        adapter = target.adapter
        for dialect in adapter.dialects:
            path = adapter.gateway_path(dialect, operation)
            if dialect.name in SEARCHING and dialect.codec is not None and path is not None:
                return dataclasses.replace(target, dialect=dialect, path=path)
        return target

    async def _continuing(
        self, target: Target, body: dict[str, Any], codec: StoredAnswers, scope: Scope
    ) -> Target:
        """``target``, translated when the request continues an answer the proxy kept:
        the provider would not know its id, so the kept turns are sent instead."""
        if await self._kept_here(body, codec, scope):
            return dataclasses.replace(target, translated=True)
        return target

    async def _kept_here(self, body: dict[str, Any], codec: StoredAnswers, scope: Scope) -> bool:
        """Whether the request continues an answer, or a conversation, the proxy kept."""
        previous = codec.continued(body)
        if self._answers is not None and previous is not None:
            return await self._answers.has(await self._identity(scope), previous)
        conversation = conversation_of(body)
        if self._conversations is not None and conversation is not None:
            return await self._conversations.has(await self._identity(scope), conversation)
        return False

    def _appender(
        self, identity: str | None, joined: Joined, codec: Codec
    ) -> Callable[[Response], Any]:
        """What adds a finished answer's items to the conversation it was made in."""
        conversations = self._conversations
        assert conversations is not None

        async def append(response: Response) -> None:
            output = codec.encode_response(response).get("output") or []
            await conversations.append(identity, joined, output)

        return append

    async def _served_here(
        self, named: str, parsed: dict[str, Any], client: Dialect, scope: Scope
    ) -> bool:
        """Whether a background request is run by the proxy: its model is routed or
        translated (a provider that speaks the format runs its own background)."""
        if self.background is None:
            return False
        if self.router is not None and named in self.router:
            return True
        target = self._target(named, client, "generate")
        codec = _stored(client.codec)
        if target.translated or codec is None:
            return target.translated
        return await self._kept_here(parsed, codec, scope)

    async def _start_background(
        self,
        named: str,
        parsed: dict[str, Any],
        scope: Scope,
        receive: Receive,
        send: Send,
        client: Dialect,
        arrival: Arrival,
    ) -> Report:
        """Answer a background request with its ``queued`` response object, and run it."""
        codec, stored, runs = client.codec, _stored(client.codec), self.background
        assert codec is not None
        assert stored is not None
        assert runs is not None
        streamed = parsed.get("stream") is True
        if parsed.get("store") is False:
            raise BadRequest("Background mode requires store to be true.")
        body = {k: v for k, v in parsed.items() if k != "background"}
        identity = await self._identity_required(scope)
        checked, joined = body, None
        if self._conversations is not None and "conversation" in body:
            checked, joined = await self._conversations.join(identity, body)
        # Bad input is answered now, not as a failed response; the settings are echoed.
        request, _ = codec.decode_request(checked)
        if joined is not None:
            request = dataclasses.replace(request, conversation=joined.conversation_id)
        answer_id, created = stored.issue_id(secrets.token_hex(16)), int(time.time())
        queued = codec.encode_response(
            Response(answer_id, named, (), FinishReason.STOP, Usage()), request
        )
        queued.update(status="queued", usage=None, background=True, created_at=created)
        content = dumps(dict(body, stream=True))
        headers = [
            item
            for item in scope["headers"]
            if item[0] not in (b"content-length", b"transfer-encoding")
        ]
        headers.append((b"content-length", str(len(content)).encode("ascii")))
        inner = dict(scope, headers=headers)

        async def run(answer: Send) -> Report:
            issued.set((answer_id, created))
            return await self.handle(
                inner, Replay(content, _never), answer, client, "generate", own
            )

        own = Arrival(arrival.request_id, "POST")
        if streamed:
            outcome = await runs.stream(identity, queued, run, own, receive, send, arrival)
        else:
            await runs.start(identity, queued, run, own)
            answer = dumps(queued)
            head = content_head(b"application/json", len(answer), arrival.request_id)
            await send_whole(send, 200, head, answer)
            outcome = Outcome(200, response_bytes=len(answer))
        return Report(
            outcome,
            None,
            "/v1/responses",
            model=named,
            identity=identity,
            client_dialect=client.name,
        )

    async def handle_stored(
        self,
        scope: Scope,
        send: Send,
        client: Dialect,
        path: str,
        answer_id: str,
        arrival: Arrival,
    ) -> Report:
        """``GET`` or ``DELETE`` of an answer the gateway kept, in the client's format
        (``path``: below the mount, for the event)."""
        codec = client.codec
        stored = _stored(codec)
        if self._answers is None or codec is None or stored is None or not answer_id:
            raise ProviderNotFound("No such stored response endpoint.")
        answer_id, slash, sub = answer_id.partition("/")
        if slash and sub not in ("input_items", "cancel"):
            raise ProviderNotFound(
                "A stored response serves GET and DELETE, GET of its input_items, "
                "and POST of cancel."
            )
        identity = await self._identity_required(scope)
        method = scope["method"]
        runs = self.background
        background = None if runs is None else await runs.fetch(identity, answer_id)
        if sub == "cancel":
            if method != "POST":
                raise MethodNotAllowed("Cancelling a response takes POST.")
            if runs is None or background is None:
                await self._answers.fetch(identity, answer_id)  # 404 unless it is kept
                raise BadRequest("Only responses created with background=true can be cancelled.")
            payload = await runs.cancel(identity, answer_id)
        elif background is not None and not sub and method == "GET":
            query = scope.get("query_string", b"")
            if param_value(query, ("stream",)) == "true":
                assert runs is not None
                after = param_value(query, ("starting_after",))
                outcome = await runs.resume(identity, answer_id, after, send, arrival)
                return Report(outcome, None, path, identity=identity, client_dialect=client.name)
            payload = background
        elif background is not None and not sub and method == "DELETE":
            assert runs is not None
            await runs.forget(identity, answer_id)
            if await self._answers.has(identity, answer_id):
                await self._answers.delete(identity, answer_id)
            payload = stored.deleted_body(answer_id)
        elif sub and method == "GET":
            system, turns = await self._answers.conversation(identity, answer_id)
            query = scope.get("query_string", b"").decode("latin-1")
            payload = stored.input_items(answer_id, system, turns, query)
        elif sub:
            raise MethodNotAllowed("A stored response's input items answer GET.")
        elif method == "GET":
            response, created, settings = await self._answers.fetch_dated(identity, answer_id)
            payload = codec.encode_response(response, settings)
            if created is not None:  # when it was made, not when it is fetched
                payload["created_at"] = created
        elif method == "DELETE":
            await self._answers.delete(identity, answer_id)
            payload = stored.deleted_body(answer_id)
        else:
            raise MethodNotAllowed("A stored response answers GET and DELETE.")
        content = dumps(payload)
        head = content_head(b"application/json", len(content), arrival.request_id)
        await send_whole(send, 200, head, content)
        outcome = Outcome(200, response_bytes=len(content))
        return Report(outcome, None, path, identity=identity, client_dialect=client.name)

    async def handle_conversations(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        client: Dialect,
        path: str,
        rest: str,
        arrival: Arrival,
    ) -> Report:
        """The Conversations API of the gateway's kept conversations (``rest``: the path
        after ``/v1/conversations``; ``path``: below the mount, for the event)."""
        conversations, codec = self._conversations, client.codec
        if conversations is None or codec is None:
            raise ProviderNotFound("No conversations are kept here (the app has no store).")
        parts = [unquote(part) for part in rest.split("/")[1:]] if rest else []
        method = scope["method"]
        identity = await self._identity_required(scope)
        body: dict[str, Any] = {}
        if method == "POST":
            reader = RequestBody(receive, self._max_body_size)
            await reader.start()
            raw = await reader.read_all()
            try:
                parsed = loads(raw) if raw.strip() else {}
            except ValueError as exc:
                raise InvalidJSON(f"The request body is not valid JSON ({exc}).") from None
            if not isinstance(parsed, dict):
                raise InvalidJSON("The request body must be a JSON object.")
            body = parsed

        def validate(items: list[Any]) -> None:
            assert codec is not None
            codec.decode_request({"model": "-", "input": items})

        query = scope.get("query_string", b"").decode("latin-1")
        payload = await conversations.serve(identity, method, parts, query, body, validate)
        content = dumps(payload)
        head = content_head(b"application/json", len(content), arrival.request_id)
        await send_whole(send, 200, head, content)
        outcome = Outcome(200, response_bytes=len(content))
        return Report(outcome, None, path, identity=identity, client_dialect=client.name)

    async def _identity_required(self, scope: Scope) -> str | None:
        """The client's identity; a client the guards do not know is refused (401)."""
        return None if self._guards is None else await self._guards.identify(scope)

    async def _identity(self, scope: Scope) -> str | None:
        """The client's identity, to key its kept reasoning (the forwarder checks it too)."""
        if self._guards is None:
            return None
        try:
            return await self._guards.identify(scope)
        except ClientNotAuthorized:
            return None  # refused when forwarded, before anything is kept

    async def _resolve_aliases(
        self,
        body: dict[str, Any],
        scope: Scope,
        client: Dialect,
        arrival: Arrival,
        path_model: str | None = None,
    ) -> tuple[dict[str, Any], str | None]:
        """The body after the app-wide transforms that apply to the client's request, and
        the model its path names after them: the transforms see that as the body's
        ``model`` (an alias there resolves as one in a body does); called only when
        there are app-wide transforms."""
        given = body if path_model is None else dict(body, model=path_model)
        context = RequestContext(
            "",
            "POST",
            scope["path"],
            b"",
            scope["headers"],
            arrival.request_id,
            dialect=client.name,
        )
        changed: JSON = given
        if applies(self._transforms, context):
            changed = await run_transform(self._transforms, given, context)
        if not isinstance(changed, dict):
            changed = given
        if path_model is None:
            return changed, None
        resolved = changed.get("model")
        if "model" not in body:
            changed = {key: value for key, value in changed.items() if key != "model"}
        return changed, resolved if isinstance(resolved, str) and resolved else path_model

    async def _estimate(
        self,
        scope: Scope,
        send: Send,
        client: Dialect,
        body: dict[str, Any],
        named: str,
        tokenizer: Tokenizer,
        arrival: Arrival,
    ) -> Report:
        """``count_tokens`` answered by the proxy's tokenizer, for a provider that cannot count.

        The client is identified as for any request (a bad key is refused); the
        answer says it is an estimate and which tokenizer made it.
        """
        counting = TOKEN_COUNTS.get(client.name)
        if counting is None:  # pragma: no cover - every format with a count has an entry
            raise NotTranslatable(f"{client.name} has no token count the gateway answers.")
        provider, model = self._resolve(named)
        identity = None if self._guards is None else await self._guards.identify(scope)
        request = counting.decode_request(dict(body, model=model))
        answer = dumps(counting.encode_answer(estimate_input_tokens(request, tokenizer)))
        head = [
            *content_head(b"application/json", len(answer), arrival.request_id),
            (ESTIMATE_HEADER, tokenizer.name.encode("ascii", "replace")),
        ]
        await send_whole(send, 200, head, answer)
        outcome = Outcome(200, response_bytes=len(answer))
        return Report(
            outcome,
            provider.name,
            "",
            model=model,
            identity=identity,
            client_dialect=client.name,
        )

    async def _loaded_tokenizer(self) -> Tokenizer | None:
        """The tokenizer, loaded (in a thread: it reads its data) on first use."""
        if self._tokenizer == "auto":
            loaded = await anyio.to_thread.run_sync(offline_tokenizer)
            self._tokenizer = loaded
            return loaded
        return self._tokenizer

    def _resolve(self, named: str) -> tuple[Provider, str]:
        """The provider a model name's prefix means (else the default one), and the model."""
        prefix, slash, rest = named.partition("/")
        provider = self._adapters.get(prefix) if slash and rest else None
        if provider is not None:
            return provider, rest
        if self._default is None:
            raise ModelNotRouted(
                f"No provider for the model {named!r}: name models as "
                f'"{{provider}}/{{model}}" (for example "{self._example()}"); '
                "GET /v1/models lists every one, and the providers are: "
                f"{', '.join(self._adapters) or 'none'}."
            )
        return self._adapters[self._default], named

    def _target(self, named: str, client: Dialect, operation: str) -> Target:
        """The adapter and model a name means, and how the provider speaks the operation."""
        provider, model = self._resolve(named)
        adapter = provider.serving()
        key = (id(adapter), client.name, operation)
        known = self._ways.get(key)
        if known is not None and known[0] is adapter:
            way = known[1]
        else:
            way = _way(adapter, client, operation)
            if len(self._ways) >= _WAYS_KEPT:
                self._ways.clear()
            self._ways[key] = (adapter, way)
        if way is None:
            raise NotTranslatable(
                f"The provider {adapter.name!r} has no equivalent of this endpoint "
                f"({operation}) for {client.name} clients."
            )
        dialect, path, translated = way
        return Target(provider, adapter, model, dialect, path, translated)

    async def _embed(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        client: Dialect,
        target: Target,
        parsed: dict[str, Any],
        arrival: Arrival,
        hold: Hold | None,
        repeat: bool,
    ) -> Report:
        """An embeddings request translated for a provider that embeds in another format."""
        translation = EMBEDDINGS.get((client.name, target.dialect.name))
        codec, provider_codec = client.codec, target.dialect.codec
        if translation is None or codec is None or provider_codec is None:
            raise NotTranslatable(
                f"The provider {target.adapter.name!r} has no embeddings for {client.name} clients."
            )
        body, dropped = translation.decode_request(parsed)
        if dropped and self._strict:
            raise Unsupported(dropped[0], "strict translation refuses what it would drop")
        target = self._with_path(target, False)
        upstream = translation.encode_request(body, target.model)
        model = target.model

        def whole(answer: Any) -> dict[str, Any]:
            return translation.decode_response(answer, body, model)

        request = Request(target.model, ())
        translate = _Translator(send, codec, provider_codec, request, dropped, whole=whole)
        return await self._forward(
            scope, receive, translate, client, target, dumps(upstream), arrival, hold, repeat
        )

    async def _count(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        client: Dialect,
        target: Target,
        parsed: dict[str, Any],
        arrival: Arrival,
        hold: Hold | None,
        repeat: bool,
    ) -> Report:
        """A token count asked of a provider that counts in another format; one that
        counts in no format the gateway translates is estimated."""
        asking, counting = TOKEN_COUNTS.get(client.name), TOKEN_COUNTS.get(target.dialect.name)
        codec, provider_codec = client.codec, target.dialect.codec
        if asking is None or counting is None or codec is None or provider_codec is None:
            tokenizer = await self._loaded_tokenizer()
            if tokenizer is None:
                raise NotTranslatable(
                    f"The provider {target.adapter.name!r} counts no tokens for {client.name} "
                    "clients, and the gateway has no tokenizer to estimate them."
                )
            named = f"{target.provider.name}/{target.model}"
            return await self._estimate(scope, send, client, parsed, named, tokenizer, arrival)
        request = dataclasses.replace(asking.decode_request(parsed), model=target.model)
        upstream = counting.encode_request(request)
        target = self._with_path(target, False)

        def whole(answer: Any) -> dict[str, Any]:
            return asking.encode_answer(counting.decode_answer(answer))

        translate = _Translator(send, codec, provider_codec, request, (), whole=whole)
        return await self._forward(
            scope, receive, translate, client, target, dumps(upstream), arrival, hold, repeat
        )

    @staticmethod
    def _with_path(target: Target, stream: bool) -> Target:
        """The target with the provider's path for a stream (where the format has one)
        and the model in it (where the format puts it there)."""
        path = target.path
        if stream:
            path = target.adapter.gateway_path(target.dialect, "stream") or path
        if _MODEL_IN_PATH in path:
            path = path.replace(_MODEL_IN_PATH, quote(target.model, safe=""))
        elif path == target.path:
            return target
        return Target(
            target.provider, target.adapter, target.model, target.dialect, path, target.translated
        )

    def _example(self) -> str:
        """A model name as clients write it, with the first adapter's name."""
        return f"{next(iter(self._adapters), 'provider')}/model-id"

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        client: Dialect,
        target: Target,
        body: bytes,
        arrival: Arrival,
        hold: Hold | None = None,
        repeat: bool = False,
    ) -> Report:
        """The request as the provider gets it, through the forwarding path of every request."""
        if hold is not None:
            send = hold(send, target.dialect)
        headers = [
            item
            for item in scope["headers"]
            if item[0] not in (b"content-length", b"transfer-encoding", b"accept-encoding")
        ]
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        if target.translated:  # the answer is read to be translated: not compressed
            headers.append((b"accept-encoding", b"identity"))
        path, mark, query = target.path.partition("?")
        upstream_scope = dict(scope, headers=headers)
        if mark or target.translated:
            # The provider's path sets the query; a client's key stays for the guards.
            sent: bytes = scope.get("query_string", b"")
            key = param_value(sent, KEY_PARAMS) if sent else None
            if key is not None and self._guards is not None and self._guards.reads_query_key:
                query = "&".join(filter(None, (query, "key=" + quote(key, safe=""))))
            upstream_scope["query_string"] = query.encode("ascii")
        return await self._forwarder.forward(
            upstream_scope,
            receive,
            send,
            target.provider,
            path.encode("ascii"),
            arrival,
            target.adapter,
            client.name,
            target.translated,
            repeat=repeat,
            content=body,
        )


#: How an adapter speaks an operation to the gateway: its format, the path, and whether
#: the client's format is translated to it; ``None``: it has no equivalent.
_Way = tuple[Dialect, str, bool] | None

#: The adapters, client formats and operations whose way is remembered at once.
_WAYS_KEPT = 256


def _way(adapter: ProviderAdapter, client: Dialect, operation: str) -> _Way:
    """The client's own format where the adapter speaks it, else the first it can be
    translated to (both formats must have a codec)."""
    same = next((d for d in adapter.dialects if d.name == client.name), None)
    if same is not None:
        path = adapter.gateway_path(same, operation)
        if path is not None:
            return same, path, False
    if client.codec is not None:
        for dialect in adapter.dialects:
            path = adapter.gateway_path(dialect, operation)
            if dialect.codec is not None and path is not None:
                return dialect, path, True
    return None


#: Whether each codec class keeps answers: a protocol check walks every member, so
#: it is made once per class, not per request.
_STORES_ANSWERS: dict[type, bool] = {}


def _stored(codec: object) -> StoredAnswers | None:
    """``codec`` when its format's answers can be kept (and fetched, and deleted)."""
    kind = type(codec)
    stores = _STORES_ANSWERS.get(kind)
    if stores is None:
        stores = _STORES_ANSWERS[kind] = isinstance(codec, StoredAnswers)
    return codec if stores else None  # type: ignore[return-value]


async def _never() -> Message:
    """``receive`` of a request whose client is not waiting (a background run)."""
    await anyio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


class _Translator:
    """A ``send`` that turns the provider's answer into the client's format.

    Error answers (the provider's, or the proxy's own in the provider's format)
    and whole answers are collected and translated at their end; a stream is
    translated event by event, as it arrives.
    """

    __slots__ = (
        "_begun",
        "_capture",
        "_client",
        "_dropped",
        "_error",
        "_failed_in",
        "_headers",
        "_identity",
        "_keeping",
        "_memory",
        "_parts",
        "_provider",
        "_request",
        "_send",
        "_status",
        "_streaming",
        "_turn",
        "_whole",
    )

    def __init__(
        self,
        send: Send,
        client: Codec,
        provider: Codec,
        request: Request,
        dropped: tuple[str, ...],
        memory: ReasoningMemory | None = None,
        identity: str | None = None,
        keeping: Keeping | None = None,
        *,
        whole: Callable[[Any], dict[str, Any]] | None = None,
        turn: PausedTurn | None = None,
    ) -> None:
        self._send = send
        #: A turn the provider may pause, continued by the gateway into this answer.
        self._turn = turn
        #: The client's answer began (a stream): a continuation's goes on in it.
        self._begun = False
        self._failed_in: StreamEncoder | None = None
        #: Translates a whole answer when it is not a generation (embeddings).
        self._whole = whole
        #: The answer kept for a stateful client: it is renamed to the id the proxy issued.
        self._keeping = keeping
        self._memory = memory
        self._identity = identity
        #: Follows a stream's reasoning to keep it (made when the answer is a stream).
        self._capture: StreamCapture | None = None
        self._client = client
        self._provider = provider
        self._request = request
        self._dropped = dropped
        self._status = 200
        self._headers: RawHeaders = []
        self._error = False
        self._parts: list[bytes] = []
        #: While a stream is translated: its parser, the provider's decoder, the client's encoder.
        self._streaming: tuple[SSEParser, StreamDecoder, StreamEncoder] | None = None

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._start(message["status"], message.get("headers", []))
            if self._streaming is not None and not self._begun:
                self._begun = True
                await self._send_start(b"text/event-stream")
            return
        if kind != "http.response.body":  # pragma: no cover - nothing else is relayed
            await self._send(message)
            return
        chunk: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self._streaming is not None:
            await self._stream(self._streaming, chunk, more)
        else:
            self._parts.append(chunk)
            if not more:
                await self._finish_whole()

    def _start(self, status: int, headers: RawHeaders) -> None:
        self._status = status
        self._headers = [item for item in headers if item[0] not in _BODY_HEADERS]
        content_type = header_value(headers, b"content-type") or b""
        # A stream encoder begun is kept for the continuation of a paused turn.
        encoder = self._streaming[2] if self._streaming is not None else None
        self._streaming = None
        if status >= 400:
            self._error = True
            self._failed_in = encoder
        elif content_type.lower().startswith(b"text/event-stream"):
            if self._memory is not None and self._capture is None:
                self._capture = StreamCapture()
            self._streaming = (
                SSEParser(),
                self._provider.stream_decoder(),
                encoder or self._client.stream_encoder(self._request),
            )

    async def _send_start(self, content_type: bytes, length: int | None = None) -> None:
        headers = [*self._headers, (b"content-type", content_type)]
        if length is not None:
            headers.append((b"content-length", str(length).encode("ascii")))
        if self._dropped:
            headers.append((DROPPED_HEADER, ", ".join(self._dropped).encode("latin-1")))
        await self._send(
            {"type": "http.response.start", "status": self._status, "headers": headers}
        )

    async def _stream(
        self, streaming: tuple[SSEParser, StreamDecoder, StreamEncoder], chunk: bytes, more: bool
    ) -> None:
        parser, decoder, encoder = streaming
        out: list[bytes] = []
        keep: list[tuple[str, list[Kept]]] = []
        capture, keeping, turn = self._capture, self._keeping, self._turn
        try:
            for event in parser.feed(chunk):
                for decoded in decoder.feed_text(event.event, event.data):
                    canonical = decoded if turn is None else turn.feed(decoded)
                    if canonical is None:
                        continue
                    if isinstance(canonical, Paused):  # no turn to continue it
                        raise UntranslatableResponse("The provider paused the turn.")
                    if keeping is not None:
                        canonical = keeping.rename(canonical)
                    if capture is not None and (found := capture.feed(canonical)) is not None:
                        keep.append(found)
                    out.append(encoder.feed(canonical))
            if not more and turn is not None and turn.ended():
                more = True  # the turn goes on: the answer is held open for it
            elif not more:
                for canonical in decoder.end():
                    if keeping is not None:
                        canonical = keeping.rename(canonical)
                    out.append(encoder.feed(canonical))
                out.append(encoder.close())
        except ProxyError as error:  # a provider event the client's format cannot hold
            failure = StreamError(error.status_code, "server_error", error.message)
            if keeping is not None:
                keeping.rename(failure)
            out.append(encoder.feed(failure))
            out.append(encoder.close())
            more = False
        if self._memory is not None:
            for call_id, parts in keep:
                await self._memory.remember(self._identity, call_id, parts)
        data = b"".join(out)
        if not more and keeping is not None:
            await keeping.end()  # kept before the client has the end, and may go on
        if data or not more:
            await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def _fail_stream(self, encoder: StreamEncoder, failure: StreamError) -> None:
        """End the client's begun stream with ``failure`` (a continuation failed)."""
        if self._keeping is not None:
            self._keeping.rename(failure)
            await self._keeping.end()
        data = encoder.feed(failure) + encoder.close()
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def _finish_whole(self) -> None:
        raw = b"".join(self._parts)
        try:
            parsed = loads(raw) if raw else None
        except ValueError:
            parsed = None
        if self._error:
            error = self._provider.decode_error(self._status, parsed)
            if self._begun and self._failed_in is not None:  # a continuation's, mid-stream
                await self._fail_stream(
                    self._failed_in, StreamError(error.status, error.kind, error.message)
                )
                return
            self._status, payload = self._client.encode_error(
                error.status, error.kind, error.message
            )
        else:
            try:
                if self._whole is not None:
                    payload = self._whole(parsed)
                else:
                    response = self._provider.decode_response(parsed)
                    if self._turn is not None:
                        joined = self._turn.whole(response)
                        if joined is None:  # paused: the turn goes on first
                            self._parts.clear()
                            return
                        response = joined
                    elif response.paused:
                        raise UntranslatableResponse("The provider paused the turn.")
                    if self._keeping is not None:
                        response = self._keeping.whole(response)
                    if self._memory is not None and keeps(response):
                        await self._memory.remember_response(self._identity, response)
                    payload = self._client.encode_response(response, self._request)
            except ProxyError as failure:
                self._status, payload = self._client.encode_error(
                    failure.status_code, "server_error", failure.message
                )
        content = dumps(payload)
        if self._keeping is not None:
            await self._keeping.end()  # kept before the client has it, and may go on
        await self._send_start(b"application/json", len(content))
        await self._send({"type": "http.response.body", "body": content, "more_body": False})
