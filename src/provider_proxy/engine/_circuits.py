"""Health shared through the app's store: deployments' circuits and pooled keys' cool-downs.

Every instance on one store (a :class:`~provider_proxy.RedisStore`) reads and
writes the same entries, so a deployment or a key one instance saw failing is
skipped by all. A store that fails is logged and read as healthy: routing goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from .._json import dumps, loads
from ..adapters import KeyPool
from ..policy import (
    CircuitState,
    Cooldown,
    after_failure,
    after_success,
    circuit_phase,
    decode_state,
    encode_state,
)
from ..state import Store

logger = logging.getLogger("provider_proxy")

#: Seconds a pool's shared key states are kept (longer than any cool-down).
KEY_STATE_TTL = 3600.0


class Circuits:
    """Deployments' circuits, in the app's store (``pp:circuit:{target}``).

    A store that fails is logged and read as closed circuits: routing goes on.
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        #: The last state seen of each target, for ``/status``.
        self.seen: dict[str, CircuitState] = {}

    async def state(self, target: str) -> CircuitState:
        try:
            raw = await self._store.get(_circuit_key(target))
        except Exception:  # a store outage must not stop routing
            logger.warning("could not read the circuit of %s from the store", target)
            raw = None
        state = self.seen[target] = decode_state(raw)
        return state

    async def failed(self, target: str, policy: Cooldown, retry_after: float | None) -> None:
        state = await self.state(target)
        new = after_failure(state, self._clock(), policy, retry_after)
        await self._write(target, new, policy)
        if (
            circuit_phase(new, self._clock()) == "open"
            and circuit_phase(state, self._clock()) != "open"
        ):
            logger.warning(
                "%s cools down for %.1f s", target, max(0.0, new.open_until - self._clock())
            )

    async def succeeded(self, target: str, policy: Cooldown) -> None:
        state = self.seen.get(target)
        if state is not None and state != after_success(state):
            await self._write(target, after_success(CircuitState()), policy)

    async def probe(self, target: str, lease: str, policy: Cooldown) -> bool:
        """Take the one probe slot of a cooled (half-open) target."""
        try:
            return await self._store.acquire(_probe_key(target), lease, 1, policy.probe_timeout)
        except Exception:
            return True

    async def end_probe(self, target: str, lease: str) -> None:
        try:
            await self._store.release(_probe_key(target), lease)
        except Exception:
            logger.warning("could not release the probe of %s", target)

    async def _write(self, target: str, state: CircuitState, policy: Cooldown) -> None:
        self.seen[target] = state
        try:
            await self._store.set(_circuit_key(target), encode_state(state), policy.ttl)
        except Exception:
            logger.warning("could not write the circuit of %s to the store", target)

    def phase(self, target: str) -> str:
        return circuit_phase(self.seen.get(target, CircuitState()), self._clock())


def _keys_key(adapter: str) -> str:
    return f"pp:keys:{adapter}"


def _encode_key_states(states: Mapping[str, CircuitState]) -> bytes:
    return dumps({name: encode_state(state).decode("ascii") for name, state in states.items()})


def _decode_key_states(raw: bytes) -> dict[str, CircuitState]:
    try:
        stored = loads(raw)
    except ValueError:
        return {}
    if not isinstance(stored, dict):
        return {}
    return {str(k): decode_state(str(v).encode("ascii", "replace")) for k, v in stored.items()}


def _circuit_key(target: str) -> str:
    return f"pp:circuit:{target}"


def _probe_key(target: str) -> str:
    return f"pp:probe:{target}"


class SharedKeys:
    """Pooled keys' cool-downs in the store (``pp:keys:{adapter}``), one entry per adapter."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def load(self, adapter: str, pool: KeyPool) -> None:
        """What other instances learnt of the pool's keys (one store read)."""
        try:
            raw = await self._store.get(_keys_key(adapter))
        except Exception:
            logger.warning("could not read the key cool-downs of %s from the store", adapter)
            return
        if raw:
            pool.merge(_decode_key_states(raw))

    async def save(self, adapter: str, pool: KeyPool) -> None:
        try:
            await self._store.set(
                _keys_key(adapter), _encode_key_states(pool.states()), KEY_STATE_TTL
            )
        except Exception:
            logger.warning("could not write the key cool-downs of %s to the store", adapter)
