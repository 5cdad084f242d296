"""Short-lived tokens obtained with a long-lived credential, for any adapter.

:class:`TokenSource` holds the part every such exchange shares: the token is
cached, renewed early (in the background while the current one still
serves), fetched once however many requests wait, a failure is answered again
for a while instead of asking once per request, and a rotated credential (a key
callable that changed) fetches at once. A subclass says how one token is
fetched (:meth:`TokenSource.fetch`); the Copilot token exchange is one.
Give one to an adapter with ``token_source=``.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

import httpx

from .._exceptions import ProviderNotConfigured, ProxyError
from .._secret import Secret
from ._base import ApiKey, KeySource, current_key, key_source

logger = logging.getLogger("provider_proxy")

#: A token this close to its expiry is not sent any more (it could expire in flight).
EXPIRY_SKEW = 5.0
#: After a failed fetch, the failure is answered this long before trying again.
RETRY_SECONDS = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token and when to renew it (times in epoch seconds)."""

    value: Secret
    expires_at: float
    refresh_at: float
    #: The API base URL the issuer named for this token, if any.
    api: httpx.URL | None = None
    #: The credential it was issued for (to notice a rotated one).
    source: Secret = dataclasses.field(default_factory=lambda: Secret(""), repr=False)


class TokenSource(abc.ABC):
    """Cached, early-renewed, single-flight short-lived tokens; subclasses fetch one.

    :param credential: the long-lived credential (a string or a
        :class:`~provider_proxy.Secret`), or a callable asked at every request.
    :param clock: epoch seconds (injectable for tests).
    :param what: how messages name the credential (``"GitHub token"``).
    """

    def __init__(
        self,
        credential: ApiKey | None,
        *,
        clock: Callable[[], float] = time.time,
        what: str = "credential",
    ) -> None:
        #: The credential (checked), or the callable that returns it.
        self.source: KeySource = key_source(credential, (), f"The {what}")
        self._clock = clock
        self._what = what
        self._current: IssuedToken | None = None
        self._pending: asyncio.Task[IssuedToken] | None = None
        self._pending_source: Secret | None = None
        self._retry_at = 0.0
        # The last failed fetch (its credential and error), answered again until _retry_at.
        self._failure: tuple[Secret, ProxyError] | None = None
        #: How many fetches were started (for status and tests).
        self.exchanges = 0

    @abc.abstractmethod
    async def fetch(self, credential: Secret) -> IssuedToken:
        """Fetch one token for ``credential``; a failure is a :class:`ProxyError`."""

    async def close(self) -> None:  # noqa: B027 - a hook: most sources hold nothing
        """Release what :meth:`fetch` holds (a client of its own); nothing by default."""

    @property
    def current(self) -> IssuedToken | None:
        """The token requests are served with now (``None`` before the first fetch)."""
        return self._current

    @property
    def configured(self) -> bool:
        """Whether there is a credential (or a callable that may return one)."""
        return callable(self.source) or self.source is not None

    def credential(self) -> Secret:
        """The current credential; :class:`ProviderNotConfigured` when there is none."""
        token = current_key(self.source, f"The {self._what} callable")
        if token is None:
            raise ProviderNotConfigured(
                f"No {self._what} to exchange for a token right now: its key callable "
                "returned none."
            )
        return token

    async def token(self) -> IssuedToken:
        """A usable token, fetching a new one only when needed."""
        source = self.credential()
        current = self._current
        now = self._clock()
        if (
            current is not None
            and current.source == source
            and now < current.expires_at - EXPIRY_SKEW
        ):
            if now >= current.refresh_at and now >= self._retry_at:
                self._start(source)  # renewed in the background; this one serves meanwhile
            return current
        failure = self._failure
        if failure is not None and failure[0] == source and now < self._retry_at:
            raise failure[1].with_traceback(None)
        return await asyncio.shield(self._start(source))

    def _start(self, source: Secret) -> asyncio.Task[IssuedToken]:
        """The fetch in flight for ``source``, started if there is none."""
        task = self._pending
        loop = asyncio.get_running_loop()
        if (
            task is None
            or task.done()
            or task.get_loop() is not loop
            or self._pending_source != source
        ):
            self.exchanges += 1
            task = loop.create_task(self._refresh(source))
            task.add_done_callback(_log_failure)
            self._pending, self._pending_source = task, source
        return task

    async def _refresh(self, source: Secret) -> IssuedToken:
        try:
            token = await self.fetch(source)
        except ProxyError as exc:
            self._retry_at = self._clock() + RETRY_SECONDS
            self._failure = (source, exc)
            raise
        if self._pending is asyncio.current_task():  # not overtaken by a rotated credential
            self._current, self._failure, self._retry_at = token, None, 0.0
        return token

    async def aclose(self) -> None:
        """Cancel a renewal in flight, then :meth:`close`."""
        task, self._pending = self._pending, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
        await self.close()


def _log_failure(task: asyncio.Task[IssuedToken]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.warning("a token exchange failed: %s", exc)
