"""Budgets: a cap in USD per client (or for the whole app) per day, week or month.

A request is priced before it is sent and its upper-bound cost is *reserved*
against every budget it falls under, in one atomic store step each
(:meth:`~provider_proxy.Store.reserve`: check and add together, a Lua script on
Redis), so concurrent requests cannot all see the same room left. After the
answer the reservation is *settled*: the real cost replaces it and the rest is
given back. Hence the sum of what is reserved never passes the budget, and what
is spent passes it at most by what a request's real cost exceeded its estimate
(which, with ``max_tokens`` set, it cannot).

The estimate: input tokens at one per :data:`BYTES_PER_TOKEN` bytes of the
request body (above what tokenizers make of text; base64 images are
over-estimated), every one at the dearer of the input and cache-write rates;
output tokens as the request's own limit (``max_tokens`` and its kin), else
the budget's ``max_output_tokens``, at the dearer of the output and reasoning
rates. Amounts are kept in the store as whole nano-dollars.
"""

from __future__ import annotations

import datetime
import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, Literal

from .._exceptions import Forbidden, QuotaExceeded

#: Bytes of request body counted as one input token in a reservation.
BYTES_PER_TOKEN = 3
#: Output tokens reserved for a request that sets no limit of its own.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
#: Store units per USD: amounts are whole nano-dollars.
NANOS = Decimal(1_000_000_000)
#: How long a budget without a period is kept in the store (ten years, in seconds).
_FOREVER = 10 * 366 * 86400.0

Period = Literal["day", "week", "month"]


def nanos(usd: Decimal) -> int:
    """``usd`` in whole nano-dollars, rounded up (a reservation never rounds down)."""
    return int((usd * NANOS).to_integral_value(rounding=ROUND_CEILING))


def usd(value: int) -> Decimal:
    """Nano-dollars as USD."""
    return Decimal(value) / NANOS


def period_window(
    period: Period | None, now: datetime.datetime
) -> tuple[str, datetime.datetime | None]:
    """The id of the period ``now`` is in, and when the next one starts (UTC).

    Weeks start on Monday (ISO 8601); a budget without a period never resets.
    """
    if period is None:
        return "all", None
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day.strftime("%Y-%m-%d"), day + datetime.timedelta(days=1)
    if period == "week":
        start = day - datetime.timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}", start + datetime.timedelta(days=7)
    start = day.replace(day=1)
    following = (start + datetime.timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m"), following


@dataclass(frozen=True)
class Budget:
    """At most ``amount`` USD per ``period``, per client or for the whole app.

    :param amount: the cap in USD (a ``Decimal``, a string or a number).
    :param period: ``"day"``, ``"week"`` (from Monday) or ``"month"``, in UTC; ``None``
        for a cap that never resets.
    :param per: ``"client"`` (each identity from ``client_keys`` or ``authenticate``
        has its own; the client's IP without authentication) or ``"app"`` (one for all).
    :param models: the models the budget covers, as case-insensitive shell patterns
        (``"gpt-4o*"``); ``None`` for every model.
    :param max_output_tokens: the output reserved for requests that set no limit.
    :param name: how refusals and ``/status`` name it; by default from the above.
    """

    amount: Decimal | str | float | int
    period: Period | None = "month"
    per: Literal["client", "app"] = "client"
    models: Sequence[str] | None = None
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    name: str | None = None
    _patterns: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            amount = (
                Decimal(str(self.amount))
                if isinstance(self.amount, float)
                else Decimal(self.amount)
            )
        except (InvalidOperation, TypeError):
            raise ValueError(
                f"A Budget's amount must be a number of USD, not {self.amount!r}."
            ) from None
        if not amount.is_finite() or amount <= 0:
            raise ValueError(f"A Budget's amount must be more than 0 USD, not {self.amount!r}.")
        if self.period not in ("day", "week", "month", None):
            raise ValueError(f"period must be 'day', 'week', 'month' or None, not {self.period!r}.")
        if self.per not in ("client", "app"):
            raise ValueError(f"per must be 'client' or 'app', not {self.per!r}.")
        if self.max_output_tokens < 1:
            raise ValueError("max_output_tokens must be at least 1.")
        if isinstance(self.models, str):
            raise TypeError("models must be a list of model names or patterns, not one string.")
        object.__setattr__(self, "amount", amount)
        if self.models is not None:
            object.__setattr__(self, "_patterns", tuple(m.casefold() for m in self.models))

    @property
    def limit(self) -> Decimal:
        """The cap in USD."""
        assert isinstance(self.amount, Decimal)
        return self.amount

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        every = f"/{self.period}" if self.period else ""
        on = f" on {', '.join(self.models)}" if self.models else ""
        return f"${self.amount}{every} per {self.per}{on}"

    def covers(self, model: str | None) -> bool:
        """Whether requests for ``model`` count against this budget."""
        if self._patterns is None:
            return True
        if not model:
            return False
        name = model.casefold()
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self._patterns)


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the engine knows of a request before it is sent, to price it."""

    #: The (forwarded) request body's size in bytes.
    body_bytes: int
    #: The output limit the body sets (``max_tokens``), if any.
    max_output_tokens: int | None
    #: The provider's base URL, by which the price library knows it.
    base_url: str | None = None

    def tokens(self, budget: Budget) -> tuple[int, int]:
        """Input and output tokens to reserve for under ``budget``."""
        output = self.max_output_tokens
        return (
            math.ceil(self.body_bytes / BYTES_PER_TOKEN),
            budget.max_output_tokens if output is None else output,
        )


@dataclass
class Reservation:
    """What one admitted request holds in one budget until it is settled."""

    budget: Budget
    key: str
    amount: int
    ttl: float
    subject: str
    period: str


class BudgetExceeded(QuotaExceeded):
    """A budget has less left than the request may cost; SDKs are told not to retry."""

    kind = "budget_exceeded"
    retryable = False


class ModelNotPriced(Forbidden):
    """A budget covers the request, but its model has no price, so it cannot be capped."""

    kind = "model_not_priced"


def refusal(
    budget: Budget,
    spent: int,
    needed: Decimal,
    reset: datetime.datetime | None,
    now: datetime.datetime,
) -> BudgetExceeded:
    """The 429 naming the budget, what is left, what the request needs, and when it resets."""
    left = max(Decimal(0), budget.limit - usd(spent))
    text = (
        f"The budget {budget.label} has ${money(left)} left, less than this request may "
        f"cost (up to ${money(needed)}; lower max_tokens to need less)"
    )
    headers: dict[str, Any] = {"x-proxy-budget-remaining-usd": money(left)}
    if reset is not None:
        stamp = reset.isoformat().replace("+00:00", "Z")
        text += f"; it resets at {stamp}."
        headers["Retry-After"] = str(max(1, math.ceil((reset - now).total_seconds())))
        headers["x-proxy-budget-reset"] = stamp
    else:
        text += "; it does not reset."
    return BudgetExceeded(text, headers=headers)


def money(value: Decimal) -> str:
    """An amount for people: to the micro-dollar, without trailing zeros (``0.0125``)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"
