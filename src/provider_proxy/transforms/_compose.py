"""Scoped transforms, and running several body transforms as one: parse once, serialise once."""

from __future__ import annotations

import abc
import inspect
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from .._adapter import JSON, BodyTransform, RequestContext


class Transform(abc.ABC):
    """A body transform that says which requests it concerns.

    Subclasses implement both methods; one whose ``applies_to`` is misspelt
    stays abstract and cannot be created, rather than being called on every
    body. Plain callables are transforms too, and apply to every request.
    """

    __slots__ = ()

    @abc.abstractmethod
    def applies_to(self, context: RequestContext) -> bool:
        """Whether this request's body is one to transform (else it is never parsed)."""

    @abc.abstractmethod
    def __call__(self, body: JSON, context: RequestContext) -> JSON | Awaitable[JSON | None] | None:
        """The new body, or ``None`` for "unchanged"; may be a coroutine."""


def applies(transform: BodyTransform, context: RequestContext) -> bool:
    """Whether ``transform`` wants this request's body (a :class:`Transform`'s say, else yes)."""
    return transform.applies_to(context) if isinstance(transform, Transform) else True


def checked_transforms(transforms: Iterable[BodyTransform], what: str) -> tuple[BodyTransform, ...]:
    """``transforms`` as a tuple: each callable, and a scoped one a :class:`Transform`.

    :raises TypeError: naming ``what`` and the transform.
    """
    checked = tuple(transforms)
    for transform in checked:
        if not callable(transform):
            raise TypeError(f"{what}: {transform!r} is not callable(body, context).")
        if not isinstance(transform, Transform) and hasattr(transform, "applies_to"):
            raise TypeError(
                f"{what}: {transform!r} has applies_to() but is not a "
                "provider_proxy.transforms.Transform; subclass Transform so the engine "
                "calls it only where it applies."
            )
    return checked


class Composed(Transform):
    """Transforms run in order on one parsed body; see :func:`compose`."""

    __slots__ = ("transforms",)

    def __init__(self, transforms: Sequence[BodyTransform]) -> None:
        flat: list[BodyTransform] = []
        for transform in transforms:
            flat.extend(transform.transforms if isinstance(transform, Composed) else [transform])
        self.transforms: tuple[BodyTransform, ...] = tuple(flat)

    def __repr__(self) -> str:
        return f"compose({', '.join(map(repr, self.transforms))})"

    def applies_to(self, context: RequestContext) -> bool:
        return any(applies(transform, context) for transform in self.transforms)

    async def __call__(self, body: JSON, context: RequestContext) -> JSON | None:
        changed = False
        for transform in self.transforms:
            if not applies(transform, context):
                continue
            result: Any = transform(body, context)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                body, changed = result, True
        return body if changed else None


def compose(*transforms: BodyTransform) -> Composed:
    """Chain ``transforms``: each sees the previous one's output.

    The result is itself a transform: it applies to a request when any of its
    parts does, runs only the parts that apply, and returns ``None`` when none
    of them changed the body.
    """
    return Composed(checked_transforms(transforms, "compose()"))


async def run_transform(
    transform: BodyTransform, body: JSON, context: RequestContext
) -> JSON | None:
    """Call a sync or async transform."""
    result: JSON | Awaitable[JSON | None] | None = transform(body, context)
    if inspect.isawaitable(result):
        return await result
    return result
