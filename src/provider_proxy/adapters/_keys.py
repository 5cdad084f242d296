"""Key pools: several keys of one provider, spread over requests, each cooled alone.

``api_key=["k1", "k2"]`` (or ``{"team-a": "k1", "team-b": "k2"}``, or a
callable returning several) makes the adapter's key a :class:`KeyPool`. Each
request takes the next key in turn among those not cooling down; a key the
provider answered 429 (rate limited) or 401/403 (rejected) is cooled by
itself, following :class:`~provider_proxy.Cooldown` (a 429's ``Retry-After``
honoured, a rejected key cooled ``auth_cooldown`` seconds), while the others
serve. The pool names keys (``#1``, ``#2``, or the mapping's names) and
never shows them: events and ``/status`` carry the name.

Which key a request took is kept in a context variable (:func:`used_key`),
read by the engine after the exchange to report the answer's status to the pool.
"""

from __future__ import annotations

import contextvars
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._exceptions import ProviderNotConfigured
from .._secret import Secret, clean_credential
from ..policy import CircuitState, Cooldown, after_failure, after_success, circuit_phase

#: The statuses that cool a pooled key (rather than its deployment): it is that
#: key that is rate limited or rejected.
KEY_STATUSES = frozenset({401, 403, 429})

#: Seconds a key the provider rejected (401/403) is not used.
DEFAULT_AUTH_COOLDOWN = 300.0

#: Several keys as given: a list (named ``#1``, ``#2``, ...) or names to keys.
Keys = Sequence[str | Secret] | Mapping[str, str | Secret]

_used: contextvars.ContextVar[tuple[KeyPool, str] | None] = contextvars.ContextVar(
    "provider_proxy.pooled_key", default=None
)


_preferred: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "provider_proxy.preferred_key", default=None
)


def prefer_key(name: str | None) -> None:
    """Ask the pools for key ``name`` in the current request while it is not cooling
    (a sticky conversation's key, so the provider's prompt cache holds)."""
    _preferred.set(name)


def used_key() -> tuple[KeyPool, str] | None:
    """The pool and the name of the key the current request took last, if pooled."""
    return _used.get()


def forget_used_key() -> None:
    """Before another attempt of the same request."""
    _used.set(None)


def is_key_list(value: object) -> bool:
    """Whether ``value`` is several keys (not one key, which is a string too)."""
    return isinstance(value, (list, tuple, Mapping))


class KeyPool:
    """A provider's keys, taken in turn; a callable, so it stands where a key callable does.

    :param keys: the keys, or a callable returning one key, several, or ``None``.
    :param what: names the keys' owner in errors (``"adapter 'openai'"``; never a key).
    :param cooldown: how a rate-limited key cools (one 429 is enough by default).
    :param auth_cooldown: seconds a rejected key (401/403) rests.
    """

    def __init__(
        self,
        keys: Keys | Callable[[], Any],
        what: str,
        *,
        cooldown: Cooldown | None = None,
        auth_cooldown: float = DEFAULT_AUTH_COOLDOWN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._what = what
        self._source: Callable[[], Any] | None = keys if callable(keys) else None
        self._static = (
            None if callable(keys) else _named(keys, f"The api_key of {what}", ValueError)
        )
        if self._static is not None and not self._static:
            raise ValueError(f"The api_key of {what} is an empty list of keys.")
        self.cooldown = cooldown if cooldown is not None else Cooldown(failures=1, base=5.0)
        self._auth_cooldown = auth_cooldown
        self._clock = clock
        self._states: dict[str, CircuitState] = {}
        self._turn = itertools.count()
        self._several = self._static is not None and len(self._static) > 1

    def __repr__(self) -> str:
        return f"KeyPool({self.names()!r})"

    def _keys(self) -> list[tuple[str, Secret]]:
        if self._static is not None:
            return self._static
        assert self._source is not None
        found = self._source()
        if not found:
            return []
        if is_key_list(found):
            keys = _named(
                found, f"The key callable of {self._what} returned keys; one", ProviderNotConfigured
            )
            self._several = self._several or len(keys) > 1
            return keys
        return _named(
            [found], f"The key callable of {self._what} returned a key that", ProviderNotConfigured
        )

    @property
    def several(self) -> bool:
        """Whether the pool holds (or its callable returned) more than one key: only
        then is there another key to fail over to."""
        return self._several

    def names(self) -> list[str]:
        """The keys' names (for ``/status``), never the keys."""
        return [name for name, _ in self._static] if self._static is not None else []

    def __call__(self) -> Secret | None:
        """The next key in turn among those not cooling (the soonest back if all are)."""
        keys = self._keys()
        if not keys:
            _used.set(None)
            return None
        if len(keys) == 1:  # one key: nothing to spread or cool
            _used.set(None)
            return keys[0][1]
        now = self._clock()
        ready = [k for k in keys if self._phase(k[0], now) != "open"]
        wanted = _preferred.get()
        chosen = next((k for k in ready if k[0] == wanted), None) if wanted else None
        if chosen is not None:
            name, key = chosen
        elif ready:
            name, key = ready[next(self._turn) % len(ready)]
        else:
            name, key = min(keys, key=lambda k: self._states[k[0]].open_until)
        _used.set((self, name))
        return key

    def peek(self) -> bool:
        """Whether there is a key now, without taking one."""
        return bool(self._keys())

    def ready(self) -> int:
        """How many keys are not cooling down now."""
        now = self._clock()
        return sum(self._phase(name, now) != "open" for name, _ in self._keys())

    def failed(self, name: str, status: int, retry_after: float | None = None) -> None:
        """The provider answered ``status`` to key ``name``: cool it when the key is at fault."""
        if status not in KEY_STATUSES:
            return
        state = self._states.get(name, CircuitState())
        if status in (401, 403):
            retry_after = max(retry_after or 0.0, self._auth_cooldown)
        self._states[name] = after_failure(state, self._clock(), self.cooldown, retry_after)

    def succeeded(self, name: str) -> None:
        state = self._states.get(name)
        if state is not None:
            self._states[name] = after_success(state)

    def states(self) -> dict[str, CircuitState]:
        """Each key's circuit by name (to share through a store)."""
        return dict(self._states)

    def merge(self, states: Mapping[str, CircuitState]) -> None:
        """Adopt what another instance learnt: for each key, the state cooling longer.

        Times are the pool's clock's; a pool whose states are shared between
        processes needs a clock they agree on (``time.time``).
        """
        for name, theirs in states.items():
            ours = self._states.get(name)
            if ours is None or (theirs.open_until, theirs.level) > (ours.open_until, ours.level):
                self._states[name] = theirs

    def status(self) -> dict[str, dict[str, Any]]:
        """Each key by name: its circuit and how long it still cools."""
        now = self._clock()
        return {
            name: {
                "circuit": self._phase(name, now),
                "cooling_for": round(
                    max(0.0, self._states.get(name, CircuitState()).open_until - now), 3
                ),
            }
            for name in self.names()
        }

    def _phase(self, name: str, now: float) -> str:
        return circuit_phase(self._states.get(name, CircuitState()), now)


def _named(keys: Any, what: str, error: type[Exception]) -> list[tuple[str, Secret]]:
    """``keys`` as (name, key) pairs, each checked as a single key is; blank ones dropped."""
    items = (
        keys.items() if isinstance(keys, Mapping) else ((f"#{i}", k) for i, k in enumerate(keys, 1))
    )
    named: list[tuple[str, Secret]] = []
    for name, key in items:
        try:
            value = clean_credential(key.reveal() if isinstance(key, Secret) else str(key), what)
        except ValueError as exc:
            raise error(str(exc)) from None
        if value:
            named.append((str(name), Secret(value)))
    return named
