"""Routing rules, pure: routes and deployments, retry timing, the strategies, the circuit.

Nothing here reads a clock, a random source or the network: callers pass
``now`` (epoch seconds, so instances sharing a store agree) and uniform random
draws in ``[0, 1)``, so every rule is a plain function, tested without an
event loop. The engine's router (:mod:`provider_proxy.engine._router`) does the I/O.
"""

from __future__ import annotations

import email.utils
import hashlib
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from ._headers import RawHeaders, header_value

Strategy = Literal["priority", "weighted", "least_busy", "latency"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)

#: The provider statuses worth another try: rate limited, or a server's failure
#: (529 is a provider's "overloaded"). A 4xx the client caused never is.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})

#: 4 MiB: a larger request body is sent once, never kept for a retry.
DEFAULT_MAX_RETRY_BODY = 4 * 1024 * 1024

Phase = Literal["closed", "open", "half_open"]

#: Seconds a conversation's deployment is remembered (``Route(sticky_ttl=)``).
DEFAULT_STICKY_TTL = 3600.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how soon a gateway request is tried again.

    :param attempts: tries in all, the first included (``1``: never retried).
    :param backoff: the first retry's backoff ceiling in seconds; it doubles per retry.
    :param max_backoff: the ceiling the doubling stops at.
    :param jitter: full jitter (wait a uniform random part of the ceiling, as AWS
        recommends) rather than the ceiling itself.
    :param retry_on: the upstream statuses that are retried.
    :param deadline: seconds all attempts together may take before the answer
        starts (``None``: no bound but each attempt's own timeouts).
    :param attempt_timeout: seconds one attempt may take until its answer is
        committed to the client (headers and the first meaningful event);
        ``None``: only the upstream timeouts of the app.
    :param max_retry_after: a provider's ``Retry-After`` longer than this means
        no retry on that deployment (another one may still serve).
    :param max_retry_body: the largest request body kept to be sent again.
    :param hold_bytes: the most of a streamed answer held back while waiting for
        its first meaningful event (so an error event first can still fail over).
    :param hold_seconds: after this long since the answer's head, a chunk that
        arrives commits the answer to the client whatever it holds.
    """

    attempts: int = 3
    backoff: float = 0.25
    max_backoff: float = 8.0
    jitter: bool = True
    retry_on: Collection[int] = RETRY_STATUSES
    deadline: float | None = None
    attempt_timeout: float | None = None
    max_retry_after: float = 30.0
    max_retry_body: int = DEFAULT_MAX_RETRY_BODY
    hold_bytes: int = 64 * 1024
    hold_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy(attempts=) counts every try, the first too: 1 or more.")
        if self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("RetryPolicy's backoff, max_backoff, max_retry_after: 0 or more.")
        for name in ("deadline", "attempt_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"RetryPolicy({name}=) is a number of seconds above 0, or None.")
        if self.max_retry_body < 0 or self.hold_bytes < 0 or self.hold_seconds < 0:
            raise ValueError(
                "RetryPolicy's max_retry_body, hold_bytes and hold_seconds are 0 or more."
            )
        object.__setattr__(self, "retry_on", frozenset(self.retry_on))

    def retries(self, status: int) -> bool:
        """Whether an upstream answer with ``status`` is worth another try."""
        return status in self.retry_on

    def ceiling(self, retry: int) -> float:
        """The backoff ceiling of retry number ``retry`` (1 for the first retry)."""
        if retry < 1:
            return 0.0
        return min(self.max_backoff, self.backoff * 2.0 ** min(retry - 1, 62))

    def wait(
        self, retry: int, draw: float, retry_after: float | None, remaining: float | None
    ) -> float | None:
        """Seconds to wait before retry number ``retry``, or ``None``: do not retry.

        The provider's ``Retry-After`` is a floor (and one over
        :attr:`max_retry_after` means no retry); a wait that would not end
        before the ``remaining`` deadline means no retry either.
        """
        ceiling = self.ceiling(retry)
        wait = draw * ceiling if self.jitter else ceiling
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            wait = max(wait, retry_after)
        if remaining is not None and wait >= remaining:
            return None
        return wait


@dataclass(frozen=True, slots=True)
class Cooldown:
    """When a deployment (or a key) is skipped, and for how long.

    :param failures: failures within ``window`` that open its circuit.
    :param window: seconds over which failures are counted.
    :param base: the first cool-down, in seconds.
    :param factor: how much each cool-down grows while failures persist.
    :param max: the longest cool-down.
    :param probe_timeout: seconds the one probe of a cooled deployment holds
        its probe slot (another may probe after that if it never reports).
    """

    failures: int = 3
    window: float = 60.0
    base: float = 5.0
    factor: float = 2.0
    max: float = 300.0
    probe_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError("Cooldown(failures=) is 1 or more.")
        if min(self.window, self.base, self.max, self.probe_timeout) <= 0 or self.factor < 1:
            raise ValueError(
                "Cooldown's window, base, max and probe_timeout are above 0; factor 1 or more."
            )

    def seconds(self, level: int) -> float:
        """The cool-down of the ``level``-th opening in a row (1 for the first)."""
        return min(self.max, self.base * self.factor ** min(max(level - 1, 0), 64))

    @property
    def ttl(self) -> float:
        """How long a circuit's state is worth keeping."""
        return self.window + self.max + self.probe_timeout


@dataclass(frozen=True, slots=True)
class CircuitState:
    """A deployment's (or key's) health: recent failures and how long it cools."""

    failures: int = 0
    #: When the failures counted began (epoch seconds).
    window_start: float = 0.0
    #: Until when it is skipped (epoch seconds; 0 when it never opened).
    open_until: float = 0.0
    #: Openings in a row: the next cool-down is :meth:`Cooldown.seconds` of it.
    level: int = 0


def circuit_phase(state: CircuitState, now: float) -> Phase:
    """``closed`` (serve), ``open`` (skip) or ``half_open`` (cooled: one probe may serve)."""
    if state.open_until and now < state.open_until:
        return "open"
    if state.level > 0:
        return "half_open"
    return "closed"


def after_failure(
    state: CircuitState, now: float, policy: Cooldown, retry_after: float | None = None
) -> CircuitState:
    """The state after a failure at ``now``; ``retry_after`` is how long the provider asked for."""
    if circuit_phase(state, now) == "half_open":  # the probe failed: cool again, longer
        level = state.level + 1
        until = now + max(policy.seconds(level), retry_after or 0.0)
        return CircuitState(0, now, until, level)
    if now - state.window_start < policy.window:
        failures, start = state.failures + 1, state.window_start
    else:
        failures, start = 1, now
    if retry_after is not None and retry_after > 0:
        # The provider said how long: cool that long, then one probe.
        until = max(state.open_until, now + retry_after)
        return CircuitState(0, now, until, max(state.level, 1))
    if failures >= policy.failures:
        level = state.level + 1
        return CircuitState(0, now, now + policy.seconds(level), level)
    return CircuitState(failures, start, state.open_until, state.level)


def after_success(state: CircuitState) -> CircuitState:
    """A success closes the circuit and forgets the failures."""
    return _CLOSED if state != _CLOSED else state


_CLOSED = CircuitState()


def encode_state(state: CircuitState) -> bytes:
    """The state as the store holds it (four numbers)."""
    return f"{state.failures} {state.window_start!r} {state.open_until!r} {state.level}".encode()


def decode_state(raw: bytes | None) -> CircuitState:
    """A stored state; anything unreadable is a closed circuit."""
    if not raw:
        return _CLOSED
    try:
        failures, start, until, level = raw.decode("ascii").split()
        return CircuitState(int(failures), float(start), float(until), int(level))
    except (ValueError, UnicodeDecodeError):
        return _CLOSED


# -- choosing a deployment ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A deployment that may serve now, with what the strategies read."""

    #: Its position in the route (the order of ``priority``).
    index: int
    weight: float = 1.0
    in_flight: int = 0
    #: EWMA of its time to the first byte in seconds; ``None`` until measured.
    latency: float | None = None


def choose(strategy: Strategy, candidates: Sequence[Candidate], draws: tuple[float, float]) -> int:
    """The index of the candidate that serves; ``draws`` are two uniform numbers in ``[0, 1)``.

    - ``priority``: the first in the route's order.
    - ``weighted``: at random, in proportion to the weights.
    - ``least_busy``: the fewest requests in flight; ties by weight.
    - ``latency``: power of two choices: two at random, the one with the lower
      latency EWMA (an unmeasured one first, so every deployment gets measured).

    :raises ValueError: no candidates.
    """
    if not candidates:
        raise ValueError("choose() needs at least one candidate.")
    if strategy == "priority" or len(candidates) == 1:
        return min(candidates, key=lambda c: c.index).index
    if strategy == "weighted":
        return weighted_pick(candidates, draws[0]).index
    if strategy == "least_busy":
        fewest = min(c.in_flight for c in candidates)
        return weighted_pick([c for c in candidates if c.in_flight == fewest], draws[0]).index
    if strategy == "latency":
        count = len(candidates)
        first = min(int(draws[0] * count), count - 1)
        second = min(int(draws[1] * (count - 1)), count - 2)
        second += second >= first
        a, b = candidates[first], candidates[second]
        return min((a, b), key=lambda c: (-1.0 if c.latency is None else c.latency, c.index)).index
    raise ValueError(f"Unknown strategy {strategy!r}; the strategies are: {', '.join(STRATEGIES)}.")


def weighted_pick(candidates: Sequence[Candidate], draw: float) -> Candidate:
    """The candidate whose share of the total weight ``draw`` falls in."""
    total = sum(c.weight for c in candidates)
    point = draw * total
    for candidate in candidates:
        point -= candidate.weight
        if point < 0:
            return candidate
    return candidates[-1]  # draw * total rounded up to the total


def ewma(previous: float | None, sample: float, alpha: float = 0.3) -> float:
    """An exponentially weighted moving average: ``alpha`` of the new sample."""
    return sample if previous is None else previous + alpha * (sample - previous)


def retry_after_seconds(headers: RawHeaders, now: float) -> float | None:
    """How long a provider asked to wait: ``retry-after-ms``, else ``Retry-After`` in
    seconds or as an HTTP date (RFC 9110, section 10.2.3); ``None`` when absent or unreadable."""
    millis = header_value(headers, b"retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = header_value(headers, b"retry-after")
    if raw is None:
        return None
    text = raw.decode("latin-1").strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, moment.timestamp() - now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def sticky_key(route: str, identity: str | None, conversation: str) -> str:
    """The store key that keeps one client's conversation on one deployment."""
    digest = hashlib.sha256(f"{identity or ''}\x00{conversation}".encode()).hexdigest()[:32]
    return f"pp:sticky:{route}:{digest}"


# -- routes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deployment:
    """One place a route sends requests: ``"{adapter}/{model}"``, or another route's name.

    :param weight: its share under the ``weighted`` strategy (and ties of ``least_busy``).
    """

    target: str
    weight: float = field(default=1.0, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target:
            raise ValueError("Deployment(target) names '{adapter}/{model}' or a route.")
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"Deployment({self.target!r}) needs a weight above 0.")


@dataclass(frozen=True, slots=True, init=False)
class Route:
    """A model name the gateway's clients use, served by one of its deployments.

    :param deployments: where it goes (a string is a :class:`Deployment` of weight 1).
    :param strategy: how a deployment is chosen: ``"priority"`` (in order, the
        next one a fallback), ``"weighted"``, ``"least_busy"`` or ``"latency"``.
    :param retry: this route's retries; by default the app's ``retry=``.
    :param sticky: keep a conversation on the deployment that served it while it is healthy.
    :param cooldown: when its deployments are skipped, and for how long.
    :param sticky_ttl: seconds a conversation's deployment is remembered.
    """

    deployments: tuple[Deployment, ...]
    strategy: Strategy
    retry: RetryPolicy | None
    sticky: bool
    cooldown: Cooldown
    sticky_ttl: float

    def __init__(
        self,
        deployments: Sequence[Deployment | str],
        *,
        strategy: Strategy = "priority",
        retry: RetryPolicy | None = None,
        sticky: bool = True,
        cooldown: Cooldown | None = None,
        sticky_ttl: float = DEFAULT_STICKY_TTL,
    ) -> None:
        items = tuple(d if isinstance(d, Deployment) else Deployment(d) for d in deployments)
        if not items:
            raise ValueError("A Route needs at least one Deployment.")
        if strategy not in STRATEGIES:
            raise ValueError(
                f"Unknown strategy {strategy!r}; the strategies are: {', '.join(STRATEGIES)}."
            )
        object.__setattr__(self, "deployments", items)
        object.__setattr__(self, "strategy", strategy)
        object.__setattr__(self, "retry", retry)
        object.__setattr__(self, "sticky", sticky)
        object.__setattr__(self, "cooldown", cooldown if cooldown is not None else Cooldown())
        if not sticky_ttl > 0:
            raise ValueError("Route(sticky_ttl=) is a number of seconds above 0.")
        object.__setattr__(self, "sticky_ttl", float(sticky_ttl))


def check_routes(routes: Mapping[str, Route], adapters: Collection[str]) -> None:
    """Refuse routes that cannot work: a name that reads as ``{adapter}/{model}``, a
    deployment naming neither a route nor a known adapter, a cycle of routes.

    :raises ValueError: naming the route and what is wrong.
    """
    for name, route in routes.items():
        if not isinstance(route, Route):
            raise TypeError(f"routes[{name!r}] must be a Route, not {type(route).__name__}.")
        prefix, slash, _ = name.partition("/")
        if not name or (slash and prefix in adapters):
            raise ValueError(
                f"The route name {name!r} reads as a model of the adapter {prefix!r}; "
                "pick a name that does not start with an adapter's name and a slash."
            )
        for deployment in route.deployments:
            target = deployment.target
            if target in routes:
                continue
            adapter, slash, model = target.partition("/")
            if not slash or not model:
                raise ValueError(
                    f"Route {name!r}: the deployment {target!r} names no route, and is not "
                    '"{adapter}/{model}".'
                )
            if adapter not in adapters:
                raise ValueError(
                    f"Route {name!r}: the deployment {target!r} names the adapter {adapter!r}, "
                    f"which is not configured; the adapters are: {', '.join(adapters) or 'none'}."
                )
    for name in routes:
        _refuse_cycle(routes, name, [])


def _refuse_cycle(routes: Mapping[str, Route], name: str, path: list[str]) -> None:
    if name in path:
        loop = " -> ".join([*path[path.index(name) :], name])
        raise ValueError(f"The routes form a cycle: {loop}.")
    for deployment in routes[name].deployments:
        if deployment.target in routes:
            _refuse_cycle(routes, deployment.target, [*path, name])
