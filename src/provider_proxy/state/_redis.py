"""`RedisStore`: the :class:`~provider_proxy.Store` on Redis, shared by many proxies.

Each operation is one Lua script, so it is atomic across every instance, and
time comes from the Redis server (``TIME``) so instances with drifting clocks
agree. When Redis cannot be reached the store fails open (allows, and logs once
per outage) or closed (:class:`~provider_proxy.StoreUnavailable`, a 503), and
recovers by itself when Redis answers again. Needs the ``redis`` extra.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import anyio

from .._exceptions import StoreUnavailable
from ._store import RateResult, time_left

logger = logging.getLogger("provider_proxy")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS[1]: tat key. ARGV: cost, limit, window, force. Returns allowed, remaining,
# reset_after and retry_after (the last two as strings: Lua numbers become integers).
_RATE = (
    _NOW
    + """
local cost, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local force = ARGV[4] == '1'
local interval = window / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
local base = math.max(tat, now)
local new_tat = base + cost * interval
local allow_at = new_tat - window
local allowed = allow_at <= now + 1e-9
local ahead = base - now
if allowed or force then
  ahead = new_tat - now
  local ttl = math.ceil(ahead * 1000)
  if ttl > 0 then
    redis.call('SET', KEYS[1], tostring(new_tat), 'PX', ttl)
  end
end
local remaining = math.floor((window - ahead) / interval + 1e-9)
if remaining < 0 then remaining = 0 end
if remaining > limit then remaining = limit end
local retry = 0
if not allowed then retry = math.max(0, allow_at - now) end
return {allowed and 1 or 0, remaining, tostring(math.max(0, ahead)), tostring(retry)}
"""
)

# KEYS[1]: counter. ARGV: amount, ttl (ms). Returns the new value.
_ADD = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""

# KEYS[1]: counter. ARGV: amount, limit, ttl (ms). Adds only within the limit; returns
# whether it did and the value now.
_RESERVE = """
local value = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if value + amount > tonumber(ARGV[2]) then
  return {0, value}
end
value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {1, value}
"""

# KEYS[1]: sorted set of leases scored by expiry. ARGV: lease, limit, ttl (s).
_ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000))
return 1
"""
)


class RedisStore:
    """A :class:`~provider_proxy.Store` on Redis (``redis.asyncio``).

    :param client: a ``redis.asyncio.Redis`` client; or use :meth:`from_url`.
    :param prefix: put before every key, so several apps can share one Redis.
    :param on_error: ``"open"`` allows requests while Redis is unreachable (limits
        are not enforced), ``"closed"`` refuses them with a 503.
    :param timeout: seconds all the calls for one request may take together (the
        guards' checks, then their settling after the answer); a call past it
        counts as Redis unreachable. ``None`` leaves each call to the client's
        own socket timeouts.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "provider_proxy:",
        on_error: Literal["open", "closed"] = "closed",
        timeout: float | None = None,
    ) -> None:
        if on_error not in ("open", "closed"):
            raise ValueError(f"on_error must be 'open' or 'closed', not {on_error!r}.")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}.")
        self._client = client
        self.prefix = prefix
        self.on_error = on_error
        self.timeout = timeout
        self._rate = client.register_script(_RATE)
        self._add = client.register_script(_ADD)
        self._acquire = client.register_script(_ACQUIRE)
        self._reserve = client.register_script(_RESERVE)
        self._down = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "provider_proxy:",
        on_error: Literal["open", "closed"] = "closed",
        timeout: float = 0.5,
        max_connections: int = 50,
    ) -> RedisStore:
        """A store for ``redis://host:port/db``; ``timeout`` bounds connecting, each
        call, and all the calls for one request together."""
        try:
            from redis.asyncio import BlockingConnectionPool, Redis
        except ImportError as exc:  # pragma: no cover - the extra is installed in tests
            raise ImportError(
                "RedisStore needs redis-py: pip install 'provider-proxy[redis]'."
            ) from exc
        # A bounded pool: callers beyond it wait (up to ``timeout``) for a connection.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        return cls(Redis(connection_pool=pool), prefix=prefix, on_error=on_error, timeout=timeout)

    def __repr__(self) -> str:
        # The URL may carry a password: only the prefix and mode are shown.
        return f"RedisStore(prefix={self.prefix!r}, on_error={self.on_error!r})"

    @property
    def available(self) -> bool:
        """Whether the last call reached Redis."""
        return not self._down

    async def _call(self, what: str, call: Any, fallback: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            result = await self._within_deadline(call)
        except (RedisError, OSError) as exc:
            if not self._down:
                self._down = True
                logger.warning(
                    "Redis is unreachable (%s: %s); failing %s until it answers again",
                    type(exc).__name__,
                    exc,
                    self.on_error,
                )
            if self.on_error == "closed":
                raise StoreUnavailable(
                    "The proxy's shared store is unreachable, so limits cannot be checked; "
                    "retry shortly.",
                    headers={"Retry-After": "1"},
                ) from None
            return fallback
        if self._down:
            self._down = False
            logger.warning("Redis answers again; limits are enforced again")
        return result

    async def _within_deadline(self, call: Any) -> Any:
        """``call`` awaited within what is left of the request's time for the store."""
        if self.timeout is None:
            return await call
        left = time_left(self.timeout)
        if left > 0:
            with anyio.move_on_after(left):
                return await call
        else:
            call.close()  # never started: the time was spent by earlier calls
        raise TimeoutError(f"no answer within the request's {self.timeout:g} s for the store")

    async def get(self, key: str) -> bytes | None:
        value = await self._call("get", self._client.get(self.prefix + key), None)
        return None if value is None else bytes(value)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        ms = max(1, int(ttl * 1000))
        await self._call("set", self._client.set(self.prefix + key, value, px=ms), None)

    async def rate(
        self, key: str, cost: float, limit: int, window: float, *, force: bool = False
    ) -> RateResult:
        open_result = RateResult(True, limit, limit, 0.0, 0.0)
        call = self._rate(keys=[self.prefix + key], args=[cost, limit, window, int(force)])
        result = await self._call("rate", call, None)
        if result is None:
            return open_result
        allowed, remaining, reset_after, retry_after = result
        return RateResult(
            bool(int(allowed)), limit, int(remaining), float(reset_after), float(retry_after)
        )

    async def add(self, key: str, amount: int, ttl: float) -> int:
        ms = max(1, int(ttl * 1000))
        result = await self._call("add", self._add(keys=[self.prefix + key], args=[amount, ms]), 0)
        return int(result)

    async def acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        call = self._acquire(keys=[self.prefix + key], args=[lease, limit, ttl])
        return bool(int(await self._call("acquire", call, 1)))

    async def reserve(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]:
        ms = max(1, int(ttl * 1000))
        call = self._reserve(keys=[self.prefix + key], args=[amount, limit, ms])
        result = await self._call("reserve", call, None)
        if result is None:  # failing open: allowed, nothing known
            return True, 0
        added, value = result
        return bool(int(added)), int(value)

    async def release(self, key: str, lease: str) -> None:
        await self._call("release", self._client.zrem(self.prefix + key, lease), None)

    async def aclose(self) -> None:
        await self._client.aclose(close_connection_pool=True)
