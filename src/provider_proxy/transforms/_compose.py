"""Running several body transforms as one: parse once, serialise once."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Sequence
from typing import Any

from .._adapter import JSON, BodyTransform, RequestContext


def applies(transform: BodyTransform, context: RequestContext) -> bool:
    """Whether ``transform`` wants this request's body (its ``applies_to``, else yes)."""
    check = getattr(transform, "applies_to", None)
    return True if check is None else bool(check(context))


class Composed:
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
    return Composed(transforms)


async def run_transform(
    transform: BodyTransform, body: JSON, context: RequestContext
) -> JSON | None:
    """Call a sync or async transform."""
    result: JSON | Awaitable[JSON | None] | None = transform(body, context)
    if inspect.isawaitable(result):
        return await result
    return result
