"""`ParameterPolicy`: the operator's rules for request parameters and models."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, TypeGuard

from .._adapter import JSON, BodyTransform, RequestContext
from .._exceptions import ModelNotAllowed
from ..dialects import Gemini
from ..policy import EndpointRule, parse_rules
from ._compose import Composed, Transform
from ._util import (
    GENERATION_ROUTES,
    MODEL_ROUTES,
    Cow,
    check_json,
    check_names,
    posts_to,
    route,
)

Number = int | float
#: An upper bound, or ``(low, high)`` with ``None`` for an open side.
Clamp = Number | tuple[Number | None, Number | None] | Sequence[Number | None]


_GEMINI = Gemini()


class ParameterPolicy(Transform):
    """Defaults, overrides, clamps and removals of top-level body keys, and a model allowlist.

    :param defaults: set when the body lacks the key (or has it ``null``).
    :param overrides: always set, whatever the client sent.
    :param clamps: ``{"max_tokens": 4096}`` is an upper bound; ``{"temperature":
        (0, 1)}`` bounds both sides (``None`` leaves one open). Only numbers are
        clamped; a bound's own type is kept when it applies.
    :param remove: keys deleted from the body.
    :param allowed_models: globs matched case-insensitively (``"claude-sonnet-*"``);
        a request for any other model is refused with
        :class:`~provider_proxy.ModelNotAllowed` (403, in the provider's format)
        before it reaches the provider.
    :param endpoints: endpoint rules (the adapter's ``allow=`` syntax, such as
        ``"POST /chat/completions"``) for the requests whose parameters are set;
        by default every generation endpoint (chat and legacy completions,
        Responses, Anthropic messages and complete), wherever the adapter's
        base URL puts them.

    The parameter rules run in the order remove, defaults, overrides, clamps.
    The allowlist checks every JSON endpoint whose body names a model (the
    generation endpoints, ``count_tokens``, ``/responses/input_tokens``,
    embeddings, moderations, speech, image generation), and Gemini-style paths
    (``/models/{model}:generateContent``), reading those bodies whatever their
    content type says; a request there that names no model is refused too.
    Multipart uploads (transcriptions, image edits) cannot be checked: leave
    those endpoints closed where the allowlist matters. Put
    :class:`~provider_proxy.transforms.ModelAliases` first, so the allowlist
    sees resolved models.
    """

    __slots__ = ("_allowed", "_clamps", "_defaults", "_endpoints", "_overrides", "_remove")

    def __init__(
        self,
        *,
        defaults: Mapping[str, JSON] | None = None,
        overrides: Mapping[str, JSON] | None = None,
        clamps: Mapping[str, Clamp] | None = None,
        remove: Iterable[str] = (),
        allowed_models: Iterable[str] | None = None,
        endpoints: Iterable[str] | None = None,
    ) -> None:
        self._defaults = dict(defaults or {})
        self._overrides = dict(overrides or {})
        self._remove = frozenset(check_names(remove, "remove="))
        self._clamps = {key: _parse_clamp(key, bound) for key, bound in (clamps or {}).items()}
        self._allowed: tuple[str, ...] | None = None
        if allowed_models is not None:
            self._allowed = check_names(allowed_models, "allowed_models=")
            if not self._allowed:
                raise ValueError(
                    "allowed_models=[] would refuse every request; to close a provider, "
                    "leave it out of the app (or its endpoints closed)."
                )
        self._endpoints: tuple[EndpointRule, ...] | None = (
            None if endpoints is None else parse_rules(check_names(endpoints, "endpoints="))
        )
        self._check()

    def _check(self) -> None:
        if not (self._defaults or self._overrides or self._clamps or self._remove or self._allowed):
            raise ValueError(
                "ParameterPolicy() configures nothing; pass defaults=, overrides=, clamps=, "
                "remove= or allowed_models=."
            )
        for what, values in (("defaults", self._defaults), ("overrides", self._overrides)):
            for key, value in values.items():
                if not isinstance(key, str) or not key:
                    raise ValueError(f"{what}= keys are parameter names; got {key!r}.")
                check_json(value, f"{what}[{key!r}]")
                if key in self._remove:
                    raise ValueError(
                        f"{key!r} is in both remove= and {what}=; use overrides= to replace "
                        "the client's value."
                    )
                low, high = self._clamps.get(key, (None, None))
                if _is_number(value) and _clamp(value, low, high) != value:
                    raise ValueError(f"{what}[{key!r}]={value!r} is outside its clamp.")
        if both := sorted(self._defaults.keys() & self._overrides.keys()):
            raise ValueError(f"{both} are in both defaults= and overrides=; keep one.")
        if removed := sorted(self._clamps.keys() & self._remove):
            raise ValueError(f"{removed} are clamped and removed; keep one.")

    def __repr__(self) -> str:
        parts = [
            f"{name}={value!r}"
            for name, value in (
                ("defaults", self._defaults),
                ("overrides", self._overrides),
                ("clamps", self._clamps),
                ("remove", sorted(self._remove)),
                ("allowed_models", list(self._allowed or ())),
            )
            if value
        ]
        return f"ParameterPolicy({', '.join(parts)})"

    @property
    def _sets_parameters(self) -> bool:
        return bool(self._defaults or self._overrides or self._clamps or self._remove)

    def _parameters_apply(self, context: RequestContext) -> bool:
        if not self._sets_parameters:
            return False
        if self._endpoints is None:
            return posts_to(context, GENERATION_ROUTES, any_type=True)
        path = route(context)
        return any(rule.matches(context.method, path) for rule in self._endpoints)

    def _allowlist_applies(self, context: RequestContext) -> bool:
        if self._allowed is None:
            return False
        if posts_to(context, MODEL_ROUTES, any_type=True):
            return True
        # Gemini's generation methods name the model in the path, and take JSON bodies all.
        return context.method == "POST" and _GEMINI.model_in_path(context.path) is not None

    def applies_to(self, context: RequestContext) -> bool:
        """Requests whose parameters are set, and those that name a model to check."""
        return self._parameters_apply(context) or self._allowlist_applies(context)

    def __call__(self, body: JSON, context: RequestContext) -> JSON | None:
        if self._allowlist_applies(context):
            self._check_model(body, context)
        if not isinstance(body, dict) or not self._parameters_apply(context):
            return None
        cow = Cow(body)
        for key in self._remove:
            if key in body:
                cow.at().pop(key)
        for key, value in self._defaults.items():
            if body.get(key) is None:
                cow.at()[key] = value
        for key, value in self._overrides.items():
            if key not in body or not _same(body[key], value):
                cow.at()[key] = value
        for key, (low, high) in self._clamps.items():
            value = cow.root.get(key)
            if _is_number(value):
                clamped = _clamp(value, low, high)
                if clamped != value:
                    cow.at()[key] = clamped
        return cow.result

    def allows(self, model: str) -> bool:
        """Whether the allowlist admits ``model`` (every model, without one): the check
        each model a request names passes, and the one the model catalog lists by."""
        if self._allowed is None:
            return True
        folded = model.casefold()
        return any(fnmatchcase(folded, pattern.casefold()) for pattern in self._allowed)

    def _check_model(self, body: JSON, context: RequestContext) -> None:
        allowed = self._allowed or ()
        named = body.get("model") if isinstance(body, dict) else None
        # The path's model is the one served where the path names one (Azure,
        # Gemini): both must be allowed, so neither can vouch for the other.
        models = [m for m in (context.path_model, named) if isinstance(m, str) and m]
        if not models:
            raise ModelNotAllowed(
                "The request names no model, and this proxy only forwards requests for "
                f"the models {', '.join(allowed)}."
            )
        for model in models:
            if not self.allows(model):
                raise ModelNotAllowed(
                    f"The model {model!r} is not allowed through this proxy; allowed: "
                    f"{', '.join(allowed)}."
                )


def admitted(
    transforms: Iterable[BodyTransform | None], model: str, context: RequestContext
) -> bool:
    """Whether a request for ``model`` at ``context`` passes the allowlists of every
    :class:`ParameterPolicy` among ``transforms`` (composed ones included) that checks
    there: what the model catalog asks before it lists a model."""
    for transform in transforms:
        parts = transform.transforms if isinstance(transform, Composed) else (transform,)
        for part in parts:
            if (
                isinstance(part, ParameterPolicy)
                and part._allowlist_applies(context)
                and not part.allows(model)
            ):
                return False
    return True


def _parse_clamp(key: str, bound: Any) -> tuple[Number | None, Number | None]:
    if not isinstance(key, str) or not key:
        raise ValueError(f"clamps= keys are parameter names; got {key!r}.")
    if _is_number(bound):
        return None, bound
    if isinstance(bound, (tuple, list)) and len(bound) == 2:
        low, high = bound
        if (low is None or _is_number(low)) and (high is None or _is_number(high)):
            if low is None and high is None:
                raise ValueError(f"clamps[{key!r}] has no bound; give a low or a high one.")
            if low is not None and high is not None and low > high:
                raise ValueError(f"clamps[{key!r}]: the low bound {low} is over the high {high}.")
            return low, high
    raise ValueError(
        f"clamps[{key!r}] must be a number (an upper bound) or a (low, high) pair; got {bound!r}."
    )


def _is_number(value: object) -> TypeGuard[Number]:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not (isinstance(value, float) and not math.isfinite(value))
    )


def _clamp(value: Number, low: Number | None, high: Number | None) -> Number:
    if high is not None and value > high:
        return high
    if low is not None and value < low:
        return low
    return value


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``1 == True`` in Python but not in JSON."""
    return a == b and type(a) is type(b)
