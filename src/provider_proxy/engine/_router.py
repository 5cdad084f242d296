"""The router: a gateway model that names a route is served by one of its deployments.

Each attempt picks a deployment (the route's strategy, among those whose
circuit is not open; a conversation's sticky one first), sends the request
there through the gateway (translated when that deployment speaks another
format), and holds its answer back (:class:`~provider_proxy.engine._holdback.Holdback`)
until it commits. A failure before that (a retried status, a connect error,
a timeout before the answer, an error as a stream's first event) is counted
against the deployment's circuit and tried again: elsewhere at once when
another deployment can serve, on the same one after a backoff otherwise.
Once a byte went to the client, nothing is retried. The rules are pure, in
:mod:`provider_proxy.policy._routing`; circuits and sticky choices live in
the app's store, so instances sharing a Redis share them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

import anyio

from .._exceptions import BodyTooLarge, ClientNotAuthorized, ProxyError, UpstreamTimeout
from ..adapters import (
    KEY_STATUSES,
    BaseAdapter,
    KeyPool,
    Provider,
    forget_used_key,
    prefer_key,
    used_key,
)
from ..dialects import Dialect
from ..guards import Guards
from ..observe import AttemptSpan, OpenTelemetry
from ..policy import (
    Candidate,
    CircuitState,
    RetryPolicy,
    Route,
    check_routes,
    choose,
    circuit_phase,
    ewma,
    path_below_mount,
    retry_after_seconds,
    sticky_key,
)
from ..state import Store
from ..types import Receive, Scope, Send
from ._circuits import Circuits, SharedKeys
from ._heads import send_error
from ._holdback import ATTEMPTS_HEADER, Holdback, too_large_to_retry, worth_retrying
from ._key_failover import MAX_KEY_RETRIES, describe_attempt, forward_with_retries
from ._report import Arrival, Outcome, Report

logger = logging.getLogger("provider_proxy")

#: Models named directly whose one-deployment route is kept (then they are made anew).
_IMPLICIT_ROUTES = 1024

#: The request's facts, as the gateway gave them: scope, receive, send, the
#: client's format, the operation, its arrival and its parsed body.
_Request = tuple[Scope, Receive, Send, Dialect, str, Arrival, dict[str, Any]]

#: Serve one model's request through the gateway: ``(model, hold)`` and the request's facts.
Serve = Callable[..., Awaitable[Report]]


class RouteUnavailable(ProxyError):
    """Every deployment of the route is cooling down (``Retry-After``: the soonest back)."""

    status_code = 503
    kind = "route_unavailable"
    retryable = True


@dataclass(frozen=True, slots=True)
class _Tried:
    """One attempt that failed before its answer committed."""

    target: str
    holdback: Holdback | None
    report: Report | None
    retry_after: float | None
    #: Whether another attempt may help (the provider failed, not the request).
    retryable: bool
    #: Whether its key failed, and another key of the same deployment may serve.
    key_retry: bool = False
    #: Why it failed when nothing answered (the proxy's error kind).
    kind: str | None = None


class Router:
    """Serves the gateway's requests for route names; one per app.

    :param routes: the routes by the model name clients use.
    :param adapters: the app's adapters by name (routes are checked against them).
    :param serve: the gateway's way to send one model's request.
    :param store: where circuits and sticky choices are kept.
    :param retry: the app's retry policy, for routes without their own.
    :param guards: the app's guards, whose identity keeps a client's conversations apart.
    :param telemetry: where each attempt gets a child span of the request's.
    """

    def __init__(
        self,
        routes: Mapping[str, Route],
        adapters: Mapping[str, Provider],
        serve: Serve,
        store: Store,
        *,
        retry: RetryPolicy | None = None,
        guards: Guards | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        telemetry: OpenTelemetry | None = None,
    ) -> None:
        check_routes(routes, list(adapters))
        self._routes = dict(routes)
        self._adapters = adapters
        self._serve = serve
        self._store = store
        self._retry = retry if retry is not None else RetryPolicy()
        self._guards = guards
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._telemetry = telemetry
        self.circuits = Circuits(store, clock)
        self._keys = SharedKeys(store)
        self._in_flight: dict[str, int] = {}
        self._latency: dict[str, float] = {}
        self._served: dict[str, int] = {}
        #: Gateway models named directly that the router serves all the same:
        #: with an app-wide ``retry=``, or an adapter holding a pool of keys.
        self._direct = retry is not None
        self._implicit: dict[str, Route] = {}
        #: The deployments of the routes: those whose load, latency and circuit are
        #: tracked (a client may name models directly without bound).
        self._known = {t for name in self._routes for t in self._leaves(name)}

    def __contains__(self, model: object) -> bool:
        if not isinstance(model, str):
            return False
        if model in self._routes:
            return True
        adapter, slash, rest = model.partition("/")
        provider = self._adapters.get(adapter)
        if provider is None or not slash or not rest:
            return False
        if self._direct:
            return True
        if not isinstance(provider, BaseAdapter):
            return False
        pool = provider.key_pool
        return provider.retry is not None or (pool is not None and pool.several)

    def _get(self, name: str) -> Route:
        """A route by name; a model named directly is a route of its own (without a
        circuit: it is the only place it can go)."""
        route = self._routes.get(name)
        if route is not None:
            return route
        route = self._implicit.get(name)
        if route is None:
            provider = self._adapters.get(name.partition("/")[0])
            retry = provider.retry if isinstance(provider, BaseAdapter) else None
            if retry is None:
                retry = self._retry if self._direct else RetryPolicy(attempts=1)
            if len(self._implicit) >= _IMPLICIT_ROUTES:
                self._implicit.clear()  # clients name models without bound: kept few
            route = self._implicit[name] = Route([name], retry=retry, sticky=False)
        return route

    @property
    def routes(self) -> Mapping[str, Route]:
        return self._routes

    # -- one request ------------------------------------------------------------------

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
    ) -> Report:
        """Serve ``model`` (a route's name): attempts, retries and fallbacks."""
        try:
            return await self._handle(
                model, parsed, size, (scope, receive, send, client, operation, arrival, parsed)
            )
        finally:
            forget_used_key()  # settled here, not again by the app
            prefer_key(None)

    async def _handle(
        self, model: str, parsed: dict[str, Any], size: int, request: _Request
    ) -> Report:
        scope, _, _, client, _, arrival, _ = request
        route = self._get(model)
        named = model if model in self._routes else None  # a route, not a model named directly
        policy = route.retry or self._retry
        attempts = policy.attempts if size <= policy.max_retry_body else 1
        not_retried = None
        if attempts < policy.attempts:
            not_retried = too_large_to_retry(size, policy.max_retry_body)
            logger.info("request %s: %s: sent once", arrival.request_id, not_retried)
        started = anyio.current_time()
        sticky = await self._sticky(model, route, parsed, scope, client)
        remembered, remembered_key = await self._recall(sticky)
        excluded: set[str] = set()
        failed: list[str] = []
        last: _Tried | None = None
        tries = key_retries = 0
        for attempt in itertools.count(1):
            target = await self._pick(model, excluded, remembered, arrival.request_id)
            if target is None and last is not None:
                target = last.target  # none left untried: the last one again, after a backoff
            if target is None:
                return await self._refuse(self._unavailable(model), request, named, ())
            remaining = None
            if policy.deadline is not None:
                remaining = policy.deadline - (anyio.current_time() - started)
            if last is not None and target == last.target and not last.key_retry:
                wait = policy.wait(tries, self._rng.random(), last.retry_after, remaining)
                if wait is None:
                    break
                await anyio.sleep(wait)
            # The conversation's key too, on its deployment (not after that key failed).
            prefer_key(remembered_key if target == remembered and not key_retries else None)
            with self.traced(target, attempt) as span:
                tried = await self._attempt(target, route, policy, attempt, remaining, request)
                _describe(span, tried)
            prefer_key(None)
            if isinstance(tried, Report):
                await self._remember(sticky, target, tried.key, route.sticky_ttl)
                return replace(
                    tried, route=named, deployments=(*failed, target), not_retried=not_retried
                )
            last = tried
            failed.append(target)
            if tried.key_retry and key_retries < MAX_KEY_RETRIES:
                key_retries += 1  # the same deployment with another key, at once
                continue
            tries += 1
            if not tried.retryable:
                break
            if model in self._routes:
                cooldown = self._route_of(tried.target, model).cooldown
                await self.circuits.failed(tried.target, cooldown, tried.retry_after)
            if tries >= attempts:
                break
            excluded.add(tried.target)
            if policy.deadline is not None and anyio.current_time() - started >= policy.deadline:
                break
        assert last is not None
        if last.holdback is None or last.report is None:  # nothing answered in time
            timeout = UpstreamTimeout(
                f"No deployment answered in time (the last tried was {last.target!r}).",
                headers={"x-proxy-attempts": str(len(failed))} if len(failed) > 1 else None,
            )
            return await self._refuse(timeout, request, named, tuple(failed))
        await last.holdback.commit()  # the last failure's answer: nothing else will serve
        return replace(last.report, route=named, deployments=tuple(failed), not_retried=not_retried)

    async def _attempt(
        self,
        target: str,
        route: Route,
        policy: RetryPolicy,
        attempt: int,
        remaining: float | None,
        request: _Request,
    ) -> Report | _Tried:
        """One try at ``target``: its report when the answer committed, else what failed."""
        scope, receive, send, client, operation, arrival, parsed = request
        limit = policy.attempt_timeout
        if remaining is not None:
            limit = remaining if limit is None else min(limit, remaining)
        cancel = anyio.CancelScope(
            deadline=math.inf if limit is None else anyio.current_time() + limit
        )
        holdbacks: list[Holdback] = []

        def hold(inner: Send, dialect: Dialect) -> Send:
            holdback = Holdback(
                inner,
                dialect,
                max_bytes=policy.hold_bytes,
                max_seconds=policy.hold_seconds,
                on_commit=lambda: setattr(cancel, "deadline", math.inf),
            )
            if attempt > 1:
                holdback.extra_headers = [(ATTEMPTS_HEADER, str(attempt).encode("ascii"))]
            holdbacks.append(holdback)
            return holdback

        lease = arrival.request_id  # as _pick took the probe slot
        probing = self.circuits.phase(target) == "half_open"
        known = target in self._known
        if known:
            self._in_flight[target] = self._in_flight.get(target, 0) + 1
        begun = time.monotonic()
        report: Report | None = None
        forget_used_key()
        pooled = self._pool_of(target)
        if pooled is not None:
            await self._keys.load(*pooled)
        try:
            with cancel:
                report = await self._serve(
                    target,
                    parsed,
                    scope,
                    receive,
                    send,
                    client,
                    operation,
                    arrival,
                    hold=hold,
                    repeat=attempt > 1,
                )
        except ProxyError as error:
            if error.status_code < 500 or isinstance(error, BodyTooLarge):
                raise  # the request itself is at fault: no deployment will do better
            logger.warning(
                "%s could not take request %s: %s", target, arrival.request_id, error.message
            )
            return _Tried(target, None, None, None, retryable=True, kind=error.kind)
        finally:
            used = used_key()
            if known:
                self._in_flight[target] -= 1
            if probing:
                await self.circuits.end_probe(target, lease)
        holdback = holdbacks[0] if holdbacks else None
        if cancel.cancelled_caught:
            logger.warning(
                "%s gave no answer to request %s within %.3g s", target, arrival.request_id, limit
            )
            return _Tried(target, None, None, None, retryable=True, kind="upstream_timeout")
        assert report is not None
        if holdback is None or holdback.state == "committed":
            if known:
                self._latency[target] = ewma(self._latency.get(target), time.monotonic() - begun)
                self._served[target] = self._served.get(target, 0) + 1
            await self.circuits.succeeded(target, route.cooldown)
            if used is not None:
                pool, name = used
                was = pool.states().get(name)
                pool.succeeded(name)
                if pooled is not None and was is not None and was != CircuitState():
                    await self._keys.save(pooled[0], pool)
                return replace(report, key=name)
            return report
        outcome = report.outcome
        if outcome.error_kind == "client_disconnected":
            return report  # nobody to answer
        retry_after = (
            retry_after_seconds(holdback.headers, self._clock()) if holdback.answered else None
        )
        retryable = worth_retrying(holdback, outcome, policy)
        key_retry = False
        status = outcome.upstream_status
        if used is not None and status is not None and status in KEY_STATUSES:
            pool, name = used
            pool.failed(name, status, retry_after)  # this key cools, not the deployment
            if pooled is not None:
                await self._keys.save(pooled[0], pool)
            key_retry = pool.ready() > 0
            logger.warning(
                "%s key %s answered %d for request %s%s",
                target,
                name,
                status,
                arrival.request_id,
                "; trying another key" if key_retry else "",
            )
        return _Tried(target, holdback, report, retry_after, retryable or key_retry, key_retry)

    async def _refuse(
        self,
        error: ProxyError,
        request: _Request,
        route: str | None,
        deployments: tuple[str, ...],
    ) -> Report:
        """Answer the router's own error in the client's format, its report naming the route."""
        scope, _, send, client, _, arrival, parsed = request
        size = await send_error(send, client, error, arrival.request_id)
        path = path_below_mount(scope).decode("ascii", "replace")
        return Report(
            Outcome.refused(error, size, None),
            path=path,
            model=client.model_of(parsed),
            client_dialect=client.name,
            route=route,
            deployments=deployments,
        )

    def _unavailable(self, model: str) -> RouteUnavailable:
        now = self._clock()
        soonest = min(
            (
                s.open_until
                for t in self._leaves(model)
                if (s := self.circuits.seen.get(t)) is not None and s.open_until > now
            ),
            default=None,
        )
        headers = {} if soonest is None else {"Retry-After": str(max(1, math.ceil(soonest - now)))}
        return RouteUnavailable(
            f"Every deployment of the route {model!r} is cooling down or not configured.",
            headers=headers,
        )

    def traced(self, deployment: str, attempt: int) -> AbstractContextManager[AttemptSpan]:
        """One attempt's child span (with ``telemetry=``), which it describes."""
        if self._telemetry is None:
            return contextlib.nullcontext(AttemptSpan())
        return self._telemetry.attempt(deployment, attempt)

    # -- key pools ----------------------------------------------------------------------

    def _pool_of(self, target: str) -> tuple[str, KeyPool] | None:
        """The adapter's name and key pool, when the target's adapter holds several keys."""
        name = target.partition("/")[0]
        provider = self._adapters.get(name)
        if not isinstance(provider, BaseAdapter):
            return None
        pool = provider.key_pool
        return (name, pool) if pool is not None and pool.several else None

    # -- choosing ---------------------------------------------------------------------

    async def _pick(
        self, name: str, excluded: set[str], remembered: str | None, lease: str
    ) -> str | None:
        """The deployment (``"{adapter}/{model}"``) of the next attempt, or ``None``;
        ``remembered`` (the conversation's) while it is usable."""
        now = self._clock()
        open_now = await self._open_targets(name, now)
        while True:
            usable = [t for t in self._leaves(name) if t not in excluded and t not in open_now]
            if not usable:
                return None
            if remembered in usable:
                target: str | None = remembered  # the conversation's, while it is healthy
            else:
                target = self._choose(name, set(usable))
            if target is None:
                return None
            if self.circuits.phase(target) != "half_open":
                return target
            if await self.circuits.probe(target, lease, self._route_of(target, name).cooldown):
                return target
            excluded = {*excluded, target}  # another request is probing it

    async def _open_targets(self, name: str, now: float) -> set[str]:
        """The route's deployments to skip now: cooling, or their adapter not configured."""
        found: set[str] = set()
        if name not in self._routes:
            return found  # a model named directly has nowhere else to go: its answer says why
        for target in self._leaves(name):
            adapter = self._adapters.get(target.partition("/")[0])
            if adapter is None or not adapter.availability().enabled:
                found.add(target)  # not configured: skipped (see /health and /status)
                continue
            if circuit_phase(await self.circuits.state(target), now) == "open":
                found.add(target)
        return found

    def _choose(self, name: str, usable: set[str]) -> str | None:
        """Walk down from route ``name`` by each route's strategy to a usable deployment."""
        route = self._get(name)
        candidates: list[Candidate] = []
        targets: dict[int, str] = {}
        for index, deployment in enumerate(route.deployments):
            target = deployment.target
            if target in self._routes:
                if not usable & set(self._leaves(target)):
                    continue
                load = sum(self._in_flight.get(t, 0) for t in self._leaves(target))
                latency = None
            elif target in usable:
                load = self._in_flight.get(target, 0)
                latency = self._latency.get(target)
            else:
                continue
            candidates.append(Candidate(index, deployment.weight, load, latency))
            targets[index] = target
        if not candidates:
            return None
        picked = targets[
            choose(route.strategy, candidates, (self._rng.random(), self._rng.random()))
        ]
        return self._choose(picked, usable) if picked in self._routes else picked

    def _leaves(self, name: str) -> list[str]:
        """Every ``"{adapter}/{model}"`` a route may reach, in order."""
        leaves: list[str] = []
        for deployment in self._get(name).deployments:
            target = deployment.target
            for leaf in self._leaves(target) if target in self._routes else [target]:
                if leaf not in leaves:
                    leaves.append(leaf)
        return leaves

    def _route_of(self, target: str, name: str) -> Route:
        """The innermost route that names ``target`` (whose cool-down applies)."""
        for deployment in self._get(name).deployments:
            if deployment.target == target:
                return self._get(name)
            if deployment.target in self._routes and target in self._leaves(deployment.target):
                return self._route_of(target, deployment.target)
        return self._get(name)  # pragma: no cover - target is one of name's leaves

    # -- stickiness -------------------------------------------------------------------

    async def _sticky(
        self, model: str, route: Route, parsed: dict[str, Any], scope: Scope, client: Dialect
    ) -> str | None:
        """The store key of this conversation's deployment, when the route is sticky."""
        if not route.sticky or len(self._leaves(model)) < 2:
            return None
        conversation = _conversation(client, parsed)
        if conversation is None:
            return None
        identity: str | None = None
        if self._guards is not None:
            try:
                identity = await self._guards.identify(scope)
            except ClientNotAuthorized:
                return None  # refused when forwarded
        return sticky_key(model, identity, conversation)

    async def _recall(self, key: str | None) -> tuple[str | None, str | None]:
        """The conversation's deployment and pooled key's name, as last remembered."""
        if key is None:
            return None, None
        try:
            raw = await self._store.get(key)
        except Exception:
            return None, None
        if raw is None:
            return None, None
        target, _, name = raw.decode("utf-8", "replace").partition("\n")
        return target, name or None

    async def _remember(
        self, key: str | None, target: str, key_name: str | None, ttl: float
    ) -> None:
        if key is None:
            return
        value = target if key_name is None else f"{target}\n{key_name}"
        try:
            await self._store.set(key, value.encode("utf-8"), ttl)
        except Exception:
            logger.warning("could not keep the sticky deployment in the store")

    # -- status -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Each route: its strategy and each deployment's health, load and latency."""
        now = self._clock()
        routes: dict[str, Any] = {}
        for name, route in self._routes.items():
            deployments = []
            for deployment in route.deployments:
                target = deployment.target
                entry: dict[str, Any] = {"target": target, "weight": deployment.weight}
                if target in self._routes:
                    entry["route"] = True
                else:
                    adapter = self._adapters.get(target.partition("/")[0])
                    state = self.circuits.seen.get(target, CircuitState())
                    pooled = self._pool_of(target)
                    if pooled is not None:
                        entry["keys"] = pooled[1].status()
                    entry.update(
                        configured=adapter is not None and adapter.availability().enabled,
                        circuit=circuit_phase(state, now),
                        cooling_for=round(max(0.0, state.open_until - now), 3),
                        in_flight=self._in_flight.get(target, 0),
                        served=self._served.get(target, 0),
                        latency=self._latency.get(target),
                    )
                deployments.append(entry)
            routes[name] = {
                "strategy": route.strategy,
                "sticky": route.sticky,
                "deployments": deployments,
            }
        return routes

    def passthrough_policy(self, provider: Provider) -> RetryPolicy | None:
        """How passthrough requests to ``provider`` are retried: its adapter's ``retry=``,
        else the app's; without either, ``attempts=1`` when it holds several keys (a
        failed key is still swapped for another); ``None``: sent once, as they are."""
        retry = provider.retry if isinstance(provider, BaseAdapter) else None
        if retry is None and self._direct:
            retry = self._retry
        if retry is not None:
            return retry
        return RetryPolicy(attempts=1) if self._pool_of(provider.name) is not None else None

    async def passthrough(
        self,
        forward: Callable[..., Awaitable[Report]],
        scope: Scope,
        receive: Receive,
        send: Send,
        provider: Provider,
        rest: bytes,
        arrival: Arrival,
        policy: RetryPolicy,
    ) -> Report:
        """A passthrough request retried under ``policy`` (see :func:`forward_with_retries`)."""
        request = (scope, receive, send, provider, rest, arrival)
        return await forward_with_retries(
            forward, request, self._keys, policy, self._clock, self._rng, self.traced
        )

    def health(self) -> dict[str, Any]:
        """Each route: its deployments skipped for want of a configured adapter."""
        skipped: dict[str, Any] = {}
        for name in self._routes:
            unconfigured = [
                t
                for t in self._leaves(name)
                if not (a := self._adapters.get(t.partition("/")[0]))
                or not a.availability().enabled
            ]
            skipped[name] = {"deployments": len(self._leaves(name)), "unconfigured": unconfigured}
        return skipped


def _conversation(client: Dialect, parsed: dict[str, Any]) -> str | None:
    """What names the conversation: the client's prompt cache key (its format's
    :attr:`cache_key_field`), else its ``user``, else its opening (system prompt and
    first message), read with the client format's codec."""
    field = getattr(client, "cache_key_field", None)  # a custom Dialect may lack it
    cache_key = parsed.get(field) if isinstance(field, str) else None
    if isinstance(cache_key, str) and cache_key:
        return f"cache:{cache_key}"
    codec = client.codec
    if codec is None:
        return None
    try:
        request, _ = codec.decode_request(parsed)
    except Exception:
        return None  # not this step's to refuse: the attempt answers it
    if request.user:
        return f"user:{request.user}"
    return repr((request.system, request.messages[:1]))


def _describe(span: AttemptSpan, tried: Report | _Tried) -> None:
    """What an attempt's span says: the status it was answered, and why it failed."""
    if isinstance(tried, Report):
        describe_attempt(span, None, tried)
        return
    if tried.holdback is None or tried.report is None:
        span.error = tried.kind or "upstream_unreachable"
        return
    describe_attempt(span, tried.holdback, tried.report)
