"""The model catalog: every enabled provider's models, merged, cached, served as one list.

``GET {mount}/v1/models`` answers in the list format of the proxy's default
dialect (:data:`provider_proxy.dialects.DEFAULT`) with ids ``provider/model``,
so its SDKs list every model the proxy can reach. Each provider's list is
cached in the app's store for ``ttl`` seconds and refreshed in the background
once stale; a provider that fails to list is reported, not fatal. A listing
waits at most ``wait`` seconds for a provider it has no list of yet (the fetch
goes on and fills the cache), and a provider that failed is not asked again
for ``retry_failed`` seconds, so one provider that is down or hanging does not
slow every listing down.

Every listing shows only the models a client may call (see :meth:`ModelCatalog.callable`):
a model the app-wide or the adapter's :class:`~provider_proxy.transforms.ParameterPolicy`
allowlist refuses, or whose provider endpoints are all closed, is left out.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from .._adapter import BodyTransform, ModelInfo, RequestContext
from .._bounded import AnswerTooLarge
from .._exceptions import BadRequest, MethodNotAllowed, ProviderNotFound, ProxyError
from .._json import dumps, loads
from ..adapters import Provider, ProviderAdapter
from ..dialects import DEFAULT, CatalogCall, Dialect
from ..state import Store
from ..transforms._params import admitted

logger = logging.getLogger("provider_proxy")

#: Seconds a provider's model list is fresh.
DEFAULT_MODELS_TTL = 300.0
#: A stale list is still served (while a refresh runs) for this many TTLs.
_KEEP_STALE = 12
#: Seconds a listing waits for a provider's first model list.
DEFAULT_MODELS_WAIT = 10.0
#: Seconds a provider whose listing failed is not asked again (at most the TTL).
DEFAULT_RETRY_FAILED = 30.0
_MAX_LIMIT = 1000


def _record(model: ModelInfo) -> dict[str, Any]:
    created = model.raw.get("created")
    return {
        "id": model.id,
        "display_name": model.display_name,
        "context_length": model.context_length,
        "pricing": dict(model.pricing) if model.pricing is not None else None,
        "created": created if isinstance(created, int) else 0,
        **_details(model.raw),
    }


#: What a provider may say about a model beyond its name, size and price, kept
#: for the clients that read them (the ``/api/v1/models`` endpoints):
#: ``max_completion_tokens`` is its output limit, ``operations`` the gateway
#: operations it serves (``generate``, ``stream``, ``count_tokens``, ``embed``...;
#: absent when the provider does not say).
DETAILS = (
    "description",
    "supported_parameters",
    "is_moderated",
    "max_completion_tokens",
    "operations",
)
#: The gateway operations a model may be called for, when its provider does not say.
_CALLS = ("generate", "embed")
#: Where the gateway puts a model in a provider path.
_MODEL_IN_PATH = "{model}"
#: A gateway request as the app-wide transforms see it (every format's generation
#: endpoint names a model, so one stands for them all).
_GATEWAY_CONTEXT = RequestContext("", "POST", "/v1/chat/completions", b"", (), "")


def _details(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`DETAILS` the adapter's model record gives."""
    return {name: raw[name] for name in DETAILS if raw.get(name) is not None}


class ModelCatalog:
    """Model lists of the app's providers, cached in ``store``.

    :param client_factory: opens a client for the adapters' own requests.
    :param clock: seconds since the epoch (injectable for tests).
    :param wait: the longest a listing waits for a provider it has no list of yet;
        a slower one is reported as failed while its fetch goes on.
    :param retry_failed: seconds a provider whose listing failed is reported as
        failed without being asked again (at most ``ttl``).
    """

    def __init__(
        self,
        adapters: Mapping[str, Provider],
        store: Store,
        *,
        ttl: float = DEFAULT_MODELS_TTL,
        client_factory: Callable[[], httpx.AsyncClient],
        clock: Callable[[], float] = time.time,
        wait: float = DEFAULT_MODELS_WAIT,
        retry_failed: float = DEFAULT_RETRY_FAILED,
        transforms: Sequence[BodyTransform] = (),
        default_provider: str | None = None,
    ) -> None:
        self._adapters = adapters
        self._transforms = tuple(transforms)
        #: The adapter of a model named without ``provider/`` (the gateway's rule).
        self.default_provider = default_provider
        self._store = store
        self.ttl = ttl
        self._client_factory = client_factory
        self._clock = clock
        self._wait = wait
        self._retry_failed = min(retry_failed, ttl)
        self._failed_at: dict[str, float] = {}
        self._started: dict[str, float] = {}
        self._refreshing: dict[str, asyncio.Task[dict[str, Any] | None]] = {}
        self._errors: dict[str, str] = {}
        self._fetched: dict[str, tuple[float, int]] = {}
        #: The app's route names, listed after the providers' models.
        self.routes: list[str] = []
        #: Each route's deployments (``provider/model`` or another route's name).
        self.route_targets: Mapping[str, Sequence[str]] = {}

    async def _fetch(self, name: str) -> dict[str, Any] | None:
        adapter = self._adapters[name]
        try:
            async with self._client_factory() as client:
                models = await adapter.fetch_models(client)
        except Exception as exc:
            reason = _reason(exc)
            self._errors[name] = reason
            self._failed_at[name] = self._clock()
            logger.warning("could not list the models of %r: %s", name, reason)
            return None
        fetched_at = self._clock()
        entry = {"fetched_at": fetched_at, "models": [_record(m) for m in models]}
        self._errors.pop(name, None)
        self._failed_at.pop(name, None)
        self._fetched[name] = (fetched_at, len(models))
        await self._store.set(f"models:{name}", dumps(entry), self.ttl * _KEEP_STALE)
        return entry

    def _refresh(self, name: str) -> asyncio.Task[dict[str, Any] | None]:
        """The one refresh of ``name`` in flight, started if there is none."""
        task = self._refreshing.get(name)
        loop = asyncio.get_running_loop()
        # (A task of another loop is from an earlier run of the app: never awaited here.)
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(self._fetch(name))
            self._refreshing[name] = task
            self._started[name] = loop.time()
        return task

    def _resting(self, name: str, now: float) -> bool:
        """Whether ``name`` failed to list its models too recently to be asked again."""
        failed_at = self._failed_at.get(name)
        return failed_at is not None and now - failed_at < self._retry_failed

    async def _entry(self, name: str) -> dict[str, Any] | None:
        raw = await self._store.get(f"models:{name}")
        now = self._clock()
        if raw is not None:
            entry: dict[str, Any] = loads(raw)
            if now - entry["fetched_at"] > self.ttl and not self._resting(name, now):
                self._refresh(name)  # served stale meanwhile
            return entry
        if self._resting(name, now):
            return None
        task = self._refresh(name)
        # However many listings ask, together they wait `wait` seconds at most.
        left = self._started[name] + self._wait - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(asyncio.shield(task), max(left, 0.0))
        except asyncio.TimeoutError:
            self._errors[name] = f"no model list after {self._wait:g} s (still waiting for it)"
            return None

    def _enabled(self, provider: str | None) -> list[str]:
        names = [provider] if provider is not None else list(self._adapters)
        return [
            n for n in names if n in self._adapters and self._adapters[n].availability().enabled
        ]

    async def model_ids(self, provider: str) -> list[str]:
        """The ids ``provider`` lists (empty when it cannot list them)."""
        adapter = self._adapters.get(provider)
        if adapter is None or not adapter.availability().enabled:
            return []
        entry = await self._entry(provider)
        return [] if entry is None else [m["id"] for m in entry["models"]]

    async def models(
        self, provider: str | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """All models as model objects, and the providers that failed (with why)."""
        names = self._enabled(provider)
        entries = await asyncio.gather(*(self._entry(name) for name in names))
        data: list[dict[str, Any]] = []
        failed: dict[str, str] = {}
        for name, entry in zip(names, entries, strict=True):
            if entry is None:
                failed[name] = self._errors.get(name, "unavailable")
                continue
            for model in entry["models"]:
                if not self.callable(name, model["id"], model.get("operations")):
                    continue
                data.append(
                    {
                        "id": f"{name}/{model['id']}",
                        "object": "model",
                        "created": model["created"],
                        "owned_by": name,
                        "provider": name,
                        "name": model["display_name"],
                        "context_length": model["context_length"],
                        "pricing": model["pricing"],
                        **{k: model[k] for k in DETAILS if k in model},
                    }
                )
        if provider is None:
            data.extend(_route_entry(route) for route in self.routes if self.route_listed(route))
        return data, failed

    def callable(self, provider: str, model: str, operations: Sequence[str] | None = None) -> bool:
        """Whether the gateway forwards a request for ``provider/model``, as the request
        path decides: the app-wide allowlists admit ``provider/model`` (what the gateway
        reads) and the bare id (what forwarding reads), the adapter's own admit the bare
        id, and the provider path of one of its ``operations`` (by default generation
        and embeddings) is open."""
        gateway = admitted(self._transforms, f"{provider}/{model}", _GATEWAY_CONTEXT)
        calls = _CALLS if operations is None else operations
        return gateway and self._forwarded(provider, model, calls)

    def _forwarded(self, provider: str, model: str, operations: Sequence[str]) -> bool:
        """Whether forwarding takes a request for the bare ``model`` to one of the
        provider paths of ``operations``: open, and every allowlist there admits it."""
        adapter = self._adapters[provider].serving()
        return any(
            adapter.endpoint_allowed("POST", context.path)
            and admitted((adapter.body_transform(context),), model, context)
            and admitted(self._transforms, model, context)
            for context in self._calls(adapter, provider, model, operations)
        )

    @staticmethod
    def _calls(
        adapter: ProviderAdapter, provider: str, model: str, operations: Sequence[str]
    ) -> Iterator[RequestContext]:
        """The forwarded requests a gateway call of ``model`` may be, one per path."""
        for dialect in adapter.dialects:
            for operation in operations:
                path = adapter.gateway_path(dialect, operation)
                if path is None:
                    continue
                in_path = _MODEL_IN_PATH in path
                path = path.partition("?")[0].replace(
                    _MODEL_IN_PATH, urllib.parse.quote(model, safe="")
                )
                yield RequestContext(
                    provider,
                    "POST",
                    path,
                    b"",
                    (),
                    "",
                    path_model=model if in_path else None,
                    dialect=dialect.name,
                )

    def route_listed(self, route: str) -> bool:
        """Whether a route is listed: the app-wide allowlists admit its name (what the
        gateway reads), and one of its deployments is callable."""
        return (
            route in self.routes
            and admitted(self._transforms, route, _GATEWAY_CONTEXT)
            and self._served(route, frozenset())
        )

    def _served(self, route: str, seen: frozenset[str]) -> bool:
        """Whether forwarding takes one of the route's deployments (each with its bare
        id, as the router sends them; one naming a route: one of that route's)."""
        targets = self.route_targets.get(route)
        if targets is None:
            return True  # deployments unknown: listed as before
        for target in targets:
            if target in self.routes:
                if target not in seen and self._served(target, seen | {route}):
                    return True
                continue
            provider, slash, model = target.partition("/")
            if not (slash and model and provider in self._adapters):
                provider, model = self.default_provider or "", target
            if self._enabled(provider) and self._forwarded(provider, model, _CALLS):
                return True
        return False

    async def listing(
        self,
        provider: str | None = None,
        search: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        *,
        dialect: Dialect = DEFAULT,
        after_id: str | None = None,
    ) -> dict[str, Any]:
        """The list, filtered and paged (from ``offset``, or after the model ``after_id``),
        in ``dialect``'s list format, with ``failed``."""
        data, failed = await self.models(provider)
        if search:
            needle = search.lower()
            data = [
                m for m in data if needle in m["id"].lower() or needle in (m["name"] or "").lower()
            ]
        if after_id is not None:
            ids = [m["id"] for m in data]
            offset = ids.index(after_id) + 1 if after_id in ids else len(ids)
        end = len(data) if limit is None else offset + limit
        page = data[offset:end]
        return {**dialect.model_list(page, end < len(data)), "failed": failed}

    async def one(self, provider: str, model: str) -> dict[str, Any] | None:
        data, _ = await self.models(provider)
        wanted = f"{provider}/{model}"
        return next((m for m in data if m["id"] == wanted), None)

    def status(self) -> dict[str, Any]:
        """Per provider: models cached, when fetched, the last error (never a key)."""
        return {
            "ttl": self.ttl,
            "providers": {
                name: {
                    "models": self._fetched.get(name, (None, None))[1],
                    "fetched_at": self._fetched.get(name, (None, None))[0],
                    "error": self._errors.get(name),
                }
                for name in self._adapters
            },
        }

    async def aclose(self) -> None:
        """Cancel background refreshes."""
        for task in self._refreshing.values():
            task.cancel()
        self._refreshing.clear()


def _route_entry(route: str) -> dict[str, Any]:
    """A route of the app as a catalog model."""
    return {
        "id": route,
        "object": "model",
        "created": 0,
        "owned_by": "proxy",
        "provider": None,
        "name": route,
        "context_length": None,
        "pricing": None,
        "route": True,
    }


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"the provider answered HTTP {exc.response.status_code}"
    if isinstance(exc, AnswerTooLarge):
        return str(exc)  # names the host and the bound, never the body
    return type(exc).__name__


class InvalidQuery(BadRequest):
    """The catalog's paging parameters are not whole numbers in range."""

    kind = "invalid_query"


class ModelNotFound(ProxyError):
    """The catalog lists no such model (or no such path under ``/v1/models``)."""

    status_code = 404
    kind = "model_not_found"


class CatalogPathNotFound(ModelNotFound):
    kind = "not_found"


async def handle_models_route(
    catalog: ModelCatalog, method: str, rest: str, query: bytes, dialect: Dialect = DEFAULT
) -> dict[str, Any]:
    """Answer ``GET /v1/models`` and ``GET /v1/models/{provider}/{model}``.

    A failure raises a :class:`ProxyError`, answered and counted as the app's other errors.
    """
    if method not in ("GET", "HEAD"):
        raise MethodNotAllowed("The model catalog answers GET only.")
    if rest.rstrip("/") == "/models":
        params = dict(urllib.parse.parse_qsl(query.decode("latin-1")))
        try:
            limit = int(params["limit"]) if "limit" in params else None
            offset = int(params.get("offset", "0"))
        except ValueError:
            raise InvalidQuery("limit and offset must be whole numbers.") from None
        if offset < 0 or (limit is not None and not 1 <= limit <= _MAX_LIMIT):
            raise InvalidQuery(f"offset must be 0 or more and limit 1 to {_MAX_LIMIT}.")
        provider = params.get("provider") or None
        if provider is not None and provider not in catalog._adapters:
            raise ProviderNotFound(f"No provider named {provider!r}.")
        return await catalog.listing(
            provider,
            params.get("search"),
            limit,
            offset,
            dialect=dialect,
            after_id=params.get("after_id") or None,
        )
    provider, _, model = urllib.parse.unquote(rest[len("/models/") :]).partition("/")
    if rest.startswith("/models/") and provider and model:
        found = await catalog.one(provider, model)
        if found is not None:
            return dialect.model_entry(found)
        raise ModelNotFound(f"The model {provider}/{model} is not in the catalog.")
    raise CatalogPathNotFound("Use /v1/models or /v1/models/{provider}/{model}.")


async def handle_catalog_call(
    catalog: ModelCatalog, method: str, call: CatalogCall, query: bytes
) -> dict[str, Any]:
    """Answer a format's own catalog paths (:func:`~provider_proxy.dialects.catalog_in_path`):
    the list, paged as that format pages, or one model (``provider/model``, a route, or
    a model of the default provider named without its prefix)."""
    if method not in ("GET", "HEAD"):
        raise MethodNotAllowed("The model catalog answers GET only.")
    if call.model is None:
        limit, after = call.page(query)
        return await catalog.listing(limit=limit, dialect=call.dialect, after_id=after)
    provider, slash, model = call.model.partition("/")
    default = catalog.default_provider
    found = None
    if call.model in catalog.routes:
        found = _route_entry(call.model) if catalog.route_listed(call.model) else None
    elif slash and model and provider in catalog._adapters:
        found = await catalog.one(provider, model)
    elif default is not None and default in catalog._adapters:
        # As the gateway reads a model without a provider's prefix.
        found = await catalog.one(default, call.model)
    if found is None:
        raise ModelNotFound(
            f"The model {call.model} is not in the catalog (models are named "
            '"{provider}/{model}", or a route\'s name).'
        )
    return call.dialect.model_entry(found)
