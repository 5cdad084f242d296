"""`ClientIdentity`: the client an adapter presents to its provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: The headers the Stainless-generated SDKs (OpenAI's, Anthropic's) send to
#: name their language, version, OS and runtime.
STAINLESS_PREFIX = "x-stainless-"


@dataclass(frozen=True)
class ClientIdentity:
    """A user agent and headers that replace the client's, for gateways that only
    answer certain clients.

    Replacing ``User-Agent`` alone is not enough where the gateway also reads
    the SDK's fingerprint: the client's headers whose names start with one of
    ``drop_prefixes`` are dropped, then ``user_agent`` and ``headers`` are set
    on every request (so ``headers`` may set ``x-stainless-*`` values of the
    client presented).

    :param user_agent: the ``User-Agent`` sent upstream.
    :param headers: set on every request, replacing the client's of those names.
    :param drop_prefixes: lower-case name prefixes of the client's headers to drop.
    """

    user_agent: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    drop_prefixes: tuple[str, ...] = (STAINLESS_PREFIX,)

    def __post_init__(self) -> None:
        given: object = self.drop_prefixes  # a single prefix is one, not its letters
        prefixes = (given,) if isinstance(given, str) else self.drop_prefixes
        object.__setattr__(self, "drop_prefixes", tuple(p.lower() for p in prefixes))
        object.__setattr__(self, "headers", dict(self.headers))

    def fixed_headers(self) -> dict[str, str]:
        """The headers this identity sets on every request (names as given)."""
        fixed = dict(self.headers)
        if self.user_agent is not None:
            fixed["user-agent"] = self.user_agent
        return fixed
