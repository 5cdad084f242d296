"""Guards: client authentication, rate limits, token quotas, budgets and concurrency caps.

They run before any upstream work and refuse with the proxy's own errors
(401, 429, 503) carrying ``Retry-After`` and ``X-RateLimit-*``. State lives in
the app's :class:`~provider_proxy.Store`, so limits hold across instances that
share a Redis.
"""

from __future__ import annotations

import calendar
import datetime
import enum
import fnmatch
import hashlib
import hmac
import inspect
import ipaddress
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal
from urllib.parse import unquote

import anyio

from .._adapter import Usage
from .._exceptions import (
    ClientNotAuthorized,
    Overloaded,
    QuotaExceeded,
    RateLimited,
    TooManyConcurrent,
)
from ..dialects import CREDENTIAL_HEADERS, KEY_PARAMS
from ..policy import param_value, path_below_mount
from ..spend import Pricing
from ..state import RateResult, Store, one_deadline
from ..types import Scope
from ._budget import (
    _FOREVER,
    BYTES_PER_TOKEN,
    Budget,
    Estimate,
    ModelNotPriced,
    Reservation,
    nanos,
    period_window,
    refusal,
    usd,
)

logger = logging.getLogger("provider_proxy")

#: Returns the identity of the client making a request, or ``None`` to refuse it.
Authenticate = Callable[[Scope], "str | Awaitable[str | None] | None"]
#: A custom rate limit key from the ASGI scope.
KeyFunction = Callable[[Scope], str]

#: Where a client may send its key, as the 401 names it.
_KEY_PLACES = ", ".join(
    [
        "Authorization: Bearer" if name == b"authorization" else name.decode("latin-1")
        for name in sorted(CREDENTIAL_HEADERS)
    ]
    + [f"?{name}=" for name in sorted(KEY_PARAMS)]
)
#: Clients whose budget spend ``/status`` shows, per budget (the most recent ones).
_MAX_SEEN = 1000
#: A lease not released (a crashed instance) frees its slot after this long.
_LEASE_TTL = 3600.0
#: The longest ``Retry-After`` (seconds) of a 429 that SDKs are told to retry
#: (``x-should-retry: true``); beyond it they would sleep inside the call.
MAX_CLIENT_RETRY_WAIT = 60


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` units per ``window`` seconds, per key.

    :param key: ``"identity"`` (the authenticated client; its IP without
        authentication), ``"ip"``, or a function of the ASGI scope.
    :param unit: ``"requests"``, ``"bytes"`` (of request bodies) or ``"tokens"``
        (input plus output, counted after each call: a call that goes over the
        limit is served, and the next ones wait until the debt is paid).
    :param per_provider: a separate budget per provider.
    :param per_model: a separate budget per model (the body is read to find it).
    :param paths: only requests whose path below the mount matches one of these
        patterns count (``fnmatch`` style: ``"/api/v1/inference*"``,
        ``"/v1/*"``); by default every request does.
    """

    limit: int
    window: float
    key: Literal["identity", "ip"] | KeyFunction = "identity"
    unit: Literal["requests", "bytes", "tokens"] = "requests"
    per_provider: bool = False
    per_model: bool = False
    name: str | None = None
    paths: Sequence[str] = ()

    def __post_init__(self) -> None:
        given: object = self.paths  # one pattern is one, not its letters
        object.__setattr__(self, "paths", (given,) if isinstance(given, str) else tuple(self.paths))
        if self.limit < 1 or self.window <= 0:
            raise ValueError("A RateLimit needs limit >= 1 and a window > 0 seconds.")
        if self.unit not in ("requests", "bytes", "tokens"):
            raise ValueError(f"unit must be requests, bytes or tokens, not {self.unit!r}.")

    @property
    def label(self) -> str:
        key = self.key if isinstance(self.key, str) else "custom"
        where = f" on {','.join(self.paths)}" if self.paths else ""
        return self.name or f"{self.limit} {self.unit}/{self.window:g}s per {key}{where}"

    def covers(self, scope: Scope) -> bool:
        """Whether a request to ``scope``'s path counts against this limit."""
        if not self.paths:
            return True
        path = unquote(path_below_mount(scope).decode("latin-1"))
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.paths)


@dataclass(frozen=True)
class Quota:
    """A budget of ``tokens`` (input plus output) per client per UTC day or month."""

    tokens: int
    period: Literal["day", "month"] = "day"
    key: Literal["identity", "ip"] | KeyFunction = "identity"

    def __post_init__(self) -> None:
        if self.tokens < 1 or self.period not in ("day", "month"):
            raise ValueError("A Quota needs tokens >= 1 and period 'day' or 'month'.")


def _period(period: str, now: datetime.datetime) -> tuple[str, datetime.datetime]:
    """The period's id and when the next one starts (UTC)."""
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start + datetime.timedelta(days=1)
    days = calendar.monthrange(now.year, now.month)[1]
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.strftime("%Y-%m"), start + datetime.timedelta(days=days)


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def client_ip(scope: Scope, trusted: Sequence[Any]) -> str:
    """The client's address; ``X-Forwarded-For`` counts only through trusted proxies.

    Walks the forwarded chain from the right, skipping trusted hops, so a client
    cannot claim an address by sending the header itself.
    """
    peer = (scope.get("client") or ("unknown", 0))[0]
    if not trusted or not _trusted(peer, trusted):
        return str(peer)
    forwarded: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded.extend(p.strip() for p in value.decode("latin-1").split(","))
    for hop in reversed(forwarded):
        if hop and not _trusted(hop, trusted):
            return hop
    return forwarded[0] if forwarded and forwarded[0] else str(peer)


def _trusted(address: str, trusted: Sequence[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def presented_key(scope: Scope) -> str | None:
    """The key a client sent, in whichever header (or query parameter) its SDK uses."""
    for name, value in scope["headers"]:
        if name in CREDENTIAL_HEADERS:
            text: str = value.decode("latin-1").strip()
            if name == b"authorization":
                scheme, _, rest = text.partition(" ")
                text = rest.strip() if scheme.lower() == "bearer" else ""
            if text:
                return text
    return param_value(scope.get("query_string", b""), KEY_PARAMS)


class Unidentified(enum.Enum):
    """The type of :data:`UNIDENTIFIED`."""

    TOKEN = 0


#: "Not identified yet", as opposed to ``None``, the identity without client auth.
UNIDENTIFIED: Final = Unidentified.TOKEN


@dataclass
class Admission:
    """A request let through: who it is, its limit headers, what it holds.

    Hold it around the exchange (``async with admission:``): leaving settles it,
    whatever happened, with what :meth:`charge` last recorded: slots released,
    tokens (and undeclared bytes) charged.
    """

    identity: str | None
    headers: Mapping[str, str]
    _guards: Guards = field(repr=False)
    _scope: Scope = field(repr=False)
    _provider: str = ""
    _model: str | None = None
    _leases: list[tuple[str, str]] = field(default_factory=list, repr=False)
    _declared_bytes: bool = False
    _finished: bool = False
    _usage: Usage | None = field(default=None, repr=False)
    _request_bytes: int = field(default=0, repr=False)
    _estimate: Estimate | None = field(default=None, repr=False)
    _reservations: list[Reservation] = field(default_factory=list, repr=False)
    _billed: bool = field(default=True, repr=False)
    _cut_after: int | None = field(default=None, repr=False)

    def charge(
        self,
        usage: Usage | None,
        request_bytes: int,
        *,
        billed: bool = True,
        cut_after: int | None = None,
    ) -> None:
        """What the request used, settled when the admission is left.

        :param billed: ``False`` when the provider cannot have billed it (never
            sent, or answered with an error status): budgets get their
            reservation back in full. With ``True`` and no usage known, the
            reservation stays spent, since what it cost is not known.
        :param cut_after: the answer broke off (the client left, the stream
            failed) after this many bytes, so its usage may be partial: budgets
            are charged the larger of that usage's cost and a bound from the
            bytes relayed, never more than the reservation.
        """
        self._usage, self._request_bytes = usage, request_bytes
        self._billed, self._cut_after = billed, cut_after

    async def __aenter__(self) -> Admission:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):  # a client that left still pays and frees
            try:
                await self.finish(self._usage, self._request_bytes)
            except Exception:
                logger.exception("could not settle the limits of a request")

    async def finish(self, usage: Usage | None, request_bytes: int) -> None:
        """Release the concurrency slots and charge tokens (and undeclared bytes)."""
        if self._finished:
            return
        self._finished = True
        await self._guards._finish(self, usage, request_bytes)


class Guards:
    """The checks a request passes before any upstream work.

    :param client_keys: keys clients must send (a list, or a mapping of key to
        identity name); only their SHA-256 hashes are kept, compared in constant time.
    :param client_key_hashes: keys as their SHA-256 hex digests, to identity names
        (for a key file that holds no key); with ``client_keys`` both are accepted.
    :param authenticate: instead of keys, a sync or async function of the ASGI
        scope returning the client's identity or ``None``, to reuse the host's auth.
    :param rate_limits: any number of :class:`RateLimit` rules.
    :param quotas: token budgets per day or month.
    :param budgets: caps in USD per client or for the app (:class:`Budget`);
        requests are priced with the app's ``prices=`` and price library.
    :param max_concurrent: requests in flight over all clients (503 beyond).
    :param max_concurrent_per_client: requests in flight per client (429 beyond).
    :param trusted_proxies: addresses or networks (``"10.0.0.0/8"``) whose
        ``X-Forwarded-For`` is believed.
    :param admins: identities (from ``client_keys`` or ``authenticate``) that may
        open the proxy's dashboard.
    :param store: where counters live; by default the app's store.
    """

    def __init__(
        self,
        *,
        client_keys: Iterable[str] | Mapping[str, str] | None = None,
        client_key_hashes: Mapping[str, str] | None = None,
        authenticate: Authenticate | None = None,
        rate_limits: Sequence[RateLimit] = (),
        quotas: Sequence[Quota] = (),
        budgets: Sequence[Budget] = (),
        max_concurrent: int | None = None,
        max_concurrent_per_client: int | None = None,
        trusted_proxies: Iterable[str] = (),
        admins: Iterable[str] = (),
        store: Store | None = None,
        now: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        keyed = client_keys is not None or client_key_hashes is not None
        if keyed and authenticate is not None:
            raise ValueError("Pass client_keys or authenticate, not both.")
        self._keys: list[tuple[bytes, str]] | None = None
        if keyed:
            self.set_client_keys(client_keys, client_key_hashes)
        self._authenticate = authenticate
        self.rate_limits = tuple(rate_limits)
        self.quotas = tuple(quotas)
        self.budgets = tuple(budgets)
        if isinstance(admins, str):
            raise TypeError("admins must be a list of identities, not one string.")
        self.admins = frozenset(admins)
        for budget in self.budgets:
            if not isinstance(budget, Budget):
                raise TypeError(f"budgets must be Budget values, not {budget!r}.")
        labels = [budget.label for budget in self.budgets]
        if len(set(labels)) != len(labels):
            raise ValueError("Two budgets have the same name; pass name= to tell them apart.")
        #: The last known spend of each budget by subject (this process's view), for /status.
        self._spent: dict[str, dict[str, tuple[str, int]]] = {label: {} for label in labels}
        self.max_concurrent = max_concurrent
        self.max_concurrent_per_client = max_concurrent_per_client
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.store = store
        self._now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
        #: Prices for budgets; the app binds its own.
        self.pricing = Pricing()

    def __repr__(self) -> str:
        auth = "keys" if self._keys else "callable" if self._authenticate else "none"
        return (
            f"Guards(auth={auth}, rate_limits={len(self.rate_limits)}, quotas={len(self.quotas)}, "
            f"budgets={len(self.budgets)})"
        )

    def set_client_keys(
        self,
        client_keys: Iterable[str] | Mapping[str, str] | None = None,
        client_key_hashes: Mapping[str, str] | None = None,
    ) -> None:
        """Replace the client keys (a rotated key file); requests after this use the new ones."""
        named = (
            dict(client_keys)
            if isinstance(client_keys, Mapping)
            else {key: f"client-{i + 1}" for i, key in enumerate(client_keys or ())}
        )
        if any(not key for key in named):
            raise ValueError("client_keys must be non-empty strings.")
        keys = [(_hash(key), identity) for key, identity in named.items()]
        for digest, identity in (client_key_hashes or {}).items():
            try:
                raw = bytes.fromhex(digest)
            except ValueError:
                raw = b""
            if len(raw) != hashlib.sha256().digest_size:
                raise ValueError(f"client_key_hashes: {identity!r} has no SHA-256 hex digest.")
            keys.append((raw, identity))
        if not keys:
            raise ValueError("client_keys must be non-empty strings.")
        self._keys = keys

    def bind(self, store: Store) -> None:
        """Use ``store`` unless one was given (the app passes its own)."""
        if self.store is None:
            self.store = store

    def is_admin(self, identity: str | None) -> bool:
        """Whether ``identity`` may open the dashboard."""
        return identity is not None and identity in self.admins

    def bind_pricing(self, pricing: Pricing) -> None:
        """Price budgeted requests with ``pricing`` (the app passes its own)."""
        self.pricing = pricing

    @property
    def needs_model(self) -> bool:
        """Whether a rule is per model or a budget prices requests, so the request body
        must be read for its model."""
        return bool(self.budgets) or any(rule.per_model for rule in self.rate_limits)

    def _store(self) -> Store:
        if self.store is None:
            raise RuntimeError("Guards have no store: pass store= or use them in a ProxyApp.")
        return self.store

    # -- admission ---------------------------------------------------------------------

    @property
    def reads_query_key(self) -> bool:
        """Whether a client may send its key as ``?key=``, which then is never forwarded."""
        return self._keys is not None

    async def admit(
        self,
        scope: Scope,
        *,
        provider: str,
        model: str | None,
        request_bytes: int | None,
        identity: str | Unidentified | None = UNIDENTIFIED,
        estimate: Estimate | None = None,
        repeat: bool = False,
    ) -> Admission:
        """Check a request; raises the refusal, or returns the :class:`Admission`.

        :param identity: only the result of :meth:`identify` for this same
            ``scope``: it is trusted as is, without checking the credentials again.
        :param estimate: the request's size and output limit, for budgets.
        :param repeat: the proxy's own retry of a request admitted once already:
            its rate limits are not charged again (quotas and slots still apply).
        """
        if isinstance(identity, Unidentified):
            identity = await self.identify(scope)
        admission = Admission(identity, {}, self, scope, provider, model, _estimate=estimate)
        with one_deadline():  # a hung store delays the request once, not per check
            if not repeat:
                await self._check_rates(scope, admission, request_bytes)
            await self._check_quotas(scope, identity, admission)
            await self._hold_slots(identity, admission)
            try:
                await self._reserve_budgets(admission)
            except BaseException:
                await self._release_leases(admission)
                raise
        return admission

    async def limit_endpoint(self, scope: Scope, identity: str | None) -> Mapping[str, str]:
        """Count a request to one of the proxy's own endpoints against the rate limits
        whose ``paths`` name it; raises the 429, or returns the limit headers.

        Rules without ``paths`` count provider requests only, as before.
        """
        admission = Admission(identity, {}, self, scope)
        with one_deadline():
            await self._check_rates(scope, admission, 0, scoped_only=True)
        return admission.headers

    async def _check_rates(
        self,
        scope: Scope,
        admission: Admission,
        request_bytes: int | None,
        *,
        scoped_only: bool = False,
    ) -> None:
        """Take the request's cost from every rule; the tightest sets the limit headers."""
        store = self._store()
        identity, provider, model = admission.identity, admission._provider, admission._model
        tightest: RateResult | None = None
        for rule in self.rate_limits:
            if not rule.covers(scope) or (scoped_only and not rule.paths):
                continue
            if scoped_only and rule.unit != "requests":
                continue
            key = self._rule_key(rule, scope, identity, provider, model)
            if rule.unit == "tokens":
                # Only a check: the call's tokens are charged when it is done, so a
                # client is stopped once its tokens went over the limit.
                result = await store.rate(key, 0, rule.limit, rule.window)
            elif rule.unit == "bytes":
                if request_bytes is None:  # charged when the body has been read
                    result = await store.rate(key, 0, rule.limit, rule.window)
                else:
                    admission._declared_bytes = True
                    result = await store.rate(key, max(request_bytes, 1), rule.limit, rule.window)
            else:
                result = await store.rate(key, 1, rule.limit, rule.window)
            if tightest is None or result.remaining < tightest.remaining or not result.allowed:
                tightest = result
            if not result.allowed:
                raise _rate_limited(rule, result)
        admission.headers = _rate_headers(tightest) if tightest is not None else {}

    async def identify(self, scope: Scope) -> str | None:
        """Who the client is (``None`` without client auth); raises the 401."""
        if self._authenticate is not None:
            result = self._authenticate(scope)
            if inspect.isawaitable(result):
                result = await result
            if result is None:
                raise ClientNotAuthorized("This proxy did not recognise the request's credentials.")
            return str(result)
        if self._keys is None:
            return None
        presented = presented_key(scope)
        if presented is not None:
            digest = _hash(presented)
            found: str | None = None
            for known, identity in self._keys:
                if hmac.compare_digest(known, digest):
                    found = identity
            if found is not None:
                return found
        raise ClientNotAuthorized(
            f"A valid client key is required: send it as the API key of your SDK ({_KEY_PLACES})."
        )

    def _subject(
        self, key: Literal["identity", "ip"] | KeyFunction, scope: Scope, identity: str | None
    ) -> str:
        if callable(key):
            return "k:" + str(key(scope))
        if key == "identity" and identity is not None:
            return "id:" + identity
        return "ip:" + client_ip(scope, self._trusted)

    def _rule_key(
        self, rule: RateLimit, scope: Scope, identity: str | None, provider: str, model: str | None
    ) -> str:
        parts = ["rate", rule.label, self._subject(rule.key, scope, identity)]
        if rule.per_provider:
            parts.append("p:" + provider)
        if rule.per_model:
            # Case variants of one model name share one budget.
            parts.append("m:" + (model.casefold() if model else "-"))
        return "|".join(parts)

    def _quota_key(
        self, quota: Quota, scope: Scope, identity: str | None
    ) -> tuple[str, float, str]:
        now = self._now()
        period, reset = _period(quota.period, now)
        key = f"quota|{quota.period}|{period}|{self._subject(quota.key, scope, identity)}"
        return key, (reset - now).total_seconds(), reset.isoformat().replace("+00:00", "Z")

    async def _check_quotas(self, scope: Scope, identity: str | None, admission: Admission) -> None:
        store = self._store()
        for quota in self.quotas:
            key, ttl, reset = self._quota_key(quota, scope, identity)
            used = await store.add(key, 0, ttl + 60)
            if used >= quota.tokens:
                raise QuotaExceeded(
                    f"The token quota of {quota.tokens} per {quota.period} is used up; it "
                    f"resets at {reset}.",
                    headers={**admission.headers, "Retry-After": _seconds(ttl)},
                )

    async def _hold_slots(self, identity: str | None, admission: Admission) -> None:
        store = self._store()
        lease = uuid.uuid4().hex
        slots: list[tuple[str, int, Any]] = []
        if self.max_concurrent_per_client is not None:
            who = self._subject("identity", admission._scope, identity)
            slots.append((f"conc|{who}", self.max_concurrent_per_client, TooManyConcurrent))
        if self.max_concurrent is not None:
            slots.append(("conc|all", self.max_concurrent, Overloaded))
        for key, limit, error in slots:
            try:
                acquired = await store.acquire(key, lease, limit, _LEASE_TTL)
            except BaseException:
                # The store failed (or the request was cancelled) between two
                # slots: the one already held must not stay taken until its TTL.
                await self._release_leases(admission)
                raise
            if not acquired:
                await self._release_leases(admission)
                scope_text = "this client" if error is TooManyConcurrent else "the proxy"
                raise error(
                    f"Too many requests in flight for {scope_text} (at most {limit}); retry "
                    "when one has finished.",
                    headers={**admission.headers, "Retry-After": "1"},
                )
            admission._leases.append((key, lease))

    async def _reserve_budgets(self, admission: Admission) -> None:
        """Reserve the request's upper-bound cost in every budget that covers it, or refuse.

        A request that names no model (a model list, a file) is not priced.
        """
        model = admission._model
        covering = [b for b in self.budgets if b.covers(model)] if model else []
        if not covering:
            return
        assert model is not None
        store = self._store()
        estimate = admission._estimate or Estimate(admission._request_bytes, None)
        now = self._now()
        for budget in covering:
            input_tokens, output_tokens = estimate.tokens(budget)
            needed, why = self.pricing.estimate(
                admission._provider, model, input_tokens, output_tokens, estimate.base_url
            )
            if needed is None:
                await self._refund(admission)
                raise ModelNotPriced(
                    f"The budget {budget.label} covers this request, but {why}, so it "
                    "cannot be capped; the operator can price the model with prices=."
                )
            period, reset = period_window(budget.period, now)
            subject = (
                "app"
                if budget.per == "app"
                else self._subject("identity", admission._scope, admission.identity)
            )
            key = f"budget|{budget.label}|{period}|{subject}"
            ttl = _FOREVER if reset is None else (reset - now).total_seconds() + 60
            amount = nanos(needed)
            try:
                added, value = await store.reserve(key, amount, nanos(budget.limit), ttl)
            except BaseException:
                await self._refund(admission)
                raise
            self._note_spent(budget, subject, period, value)
            if not added:
                await self._refund(admission)
                raise refusal(budget, value, needed, reset, now)
            admission._reservations.append(Reservation(budget, key, amount, ttl, subject, period))

    async def _refund(self, admission: Admission) -> None:
        """Give back every reservation of a request refused before it was sent."""
        reservations, admission._reservations = admission._reservations, []
        with anyio.CancelScope(shield=True):
            for held in reservations:
                try:
                    value = await self._store().add(held.key, -held.amount, held.ttl)
                    self._note_spent(held.budget, held.subject, held.period, value)
                except Exception:
                    logger.warning("could not give back a budget reservation of %s", held.subject)

    async def _settle_budgets(self, admission: Admission, usage: Usage | None) -> None:
        """Replace each reservation with the real cost (all of it when that is unknown)."""
        reservations, admission._reservations = admission._reservations, []
        if not reservations:
            return
        cost = None
        if usage is not None:
            estimate = admission._estimate
            cost, _ = self.pricing.cost(
                admission._provider,
                admission._model,
                usage,
                estimate.base_url if estimate is not None else None,
            )
        for held in reservations:
            if not admission._billed:
                spent = 0
            elif admission._cut_after is not None:
                spent = min(
                    held.amount,
                    max(self._cut_cost(admission, held), nanos(cost.total) if cost else 0),
                )
            elif cost is not None:
                spent = nanos(cost.total)
            else:
                spent = held.amount
            if spent != held.amount:
                value = await self._store().add(held.key, spent - held.amount, held.ttl)
                self._note_spent(held.budget, held.subject, held.period, value)

    def _cut_cost(self, admission: Admission, held: Reservation) -> int:
        """A bound of what an answer cut short cost: the whole prompt, and an output
        token for every :data:`BYTES_PER_TOKEN` bytes relayed."""
        estimate = admission._estimate or Estimate(0, None)
        input_tokens, _ = estimate.tokens(held.budget)
        output_tokens = math.ceil((admission._cut_after or 0) / BYTES_PER_TOKEN)
        bound, _ = self.pricing.estimate(
            admission._provider, admission._model, input_tokens, output_tokens, estimate.base_url
        )
        return held.amount if bound is None else nanos(bound)

    def _note_spent(self, budget: Budget, subject: str, period: str, value: int) -> None:
        """Remember a budget's spend as the store last told it (bounded), for /status."""
        seen = self._spent[budget.label]
        if subject not in seen and len(seen) >= _MAX_SEEN:
            seen.pop(next(iter(seen)))
        seen[subject] = (period, value)

    def budget_status(self) -> list[dict[str, Any]]:
        """Each budget and what its clients have spent in this period, as last seen here."""
        now = self._now()
        rows = []
        for budget in self.budgets:
            period, reset = period_window(budget.period, now)
            spent = {
                subject.partition(":")[2] or subject: str(usd(value))
                for subject, (seen, value) in self._spent[budget.label].items()
                if seen == period
            }
            rows.append(
                {
                    "name": budget.label,
                    "amount_usd": str(budget.limit),
                    "period": budget.period,
                    "per": budget.per,
                    "models": None if budget.models is None else list(budget.models),
                    "resets_at": None
                    if reset is None
                    else reset.isoformat().replace("+00:00", "Z"),
                    "spent_usd": spent,
                    "left_usd": {
                        who: str(max(Decimal(0), budget.limit - Decimal(value)))
                        for who, value in spent.items()
                    },
                }
            )
        return rows

    async def _release_leases(self, admission: Admission) -> None:
        """Give back the slots ``admission`` holds; a failing store is logged, not raised."""
        leases, admission._leases = admission._leases, []
        for key, lease in leases:
            try:
                # Shielded: a release cut short would hold the slot until its TTL.
                with anyio.CancelScope(shield=True):
                    await self._store().release(key, lease)
            except Exception:
                logger.warning("could not release a concurrency slot; it expires by itself")

    async def _finish(self, admission: Admission, usage: Usage | None, request_bytes: int) -> None:
        with one_deadline():
            try:
                await self._settle(admission, usage, request_bytes)
            finally:
                await self._settle_budgets(admission, usage)

    async def _settle(self, admission: Admission, usage: Usage | None, request_bytes: int) -> None:
        """Release the slots, then charge what was only known after the call."""
        store = self._store()
        await self._release_leases(admission)
        tokens = usage.total_tokens if usage is not None else 0
        scope, identity = admission._scope, admission.identity
        for rule in self.rate_limits:
            if not rule.covers(scope):
                continue
            key = self._rule_key(rule, scope, identity, admission._provider, admission._model)
            if rule.unit == "tokens" and tokens:
                await store.rate(key, tokens, rule.limit, rule.window, force=True)
            elif rule.unit == "bytes" and not admission._declared_bytes and request_bytes:
                await store.rate(key, request_bytes, rule.limit, rule.window, force=True)
        if tokens:
            for quota in self.quotas:
                key, ttl, _ = self._quota_key(quota, scope, identity)
                await store.add(key, tokens, ttl + 60)

    def status(self) -> dict[str, Any]:
        """The configuration, for ``/status``: rules and caps, never a key."""
        return {
            "authentication": "keys"
            if self._keys
            else "callable"
            if self._authenticate
            else "none",
            "client_keys": len(self._keys or ()),
            "rate_limits": [rule.label for rule in self.rate_limits],
            "quotas": [f"{q.tokens} tokens/{q.period}" for q in self.quotas],
            "budgets": self.budget_status(),
            "max_concurrent": self.max_concurrent,
            "max_concurrent_per_client": self.max_concurrent_per_client,
            "store": repr(self.store),
        }


class _LongWait(RateLimited):
    """A rate limit whose wait is longer than an SDK should sleep inside one call."""

    retryable = False


def _rate_limited(rule: RateLimit, result: RateResult) -> RateLimited:
    """The 429 for ``rule``; past :data:`MAX_CLIENT_RETRY_WAIT` it tells SDKs not to retry.

    The official SDKs sleep for ``Retry-After`` inside the call when
    ``x-should-retry`` is true: half an hour would look like a hung request.
    """
    wait = _seconds(result.retry_after)
    error = RateLimited if int(wait) <= MAX_CLIENT_RETRY_WAIT else _LongWait
    return error(
        f"Rate limit reached ({rule.label}); retry in {wait} s.",
        headers={**_rate_headers(result), "Retry-After": wait},
    )


def _seconds(value: float) -> str:
    return str(max(1, math.ceil(value - 1e-9)))


def _rate_headers(result: RateResult) -> dict[str, str]:
    """``X-RateLimit-Reset`` is seconds until the budget is full again (a delta)."""
    return {
        "X-RateLimit-Limit": str(result.limit),
        "X-RateLimit-Remaining": str(result.remaining),
        "X-RateLimit-Reset": str(math.ceil(result.reset_after)),
    }
