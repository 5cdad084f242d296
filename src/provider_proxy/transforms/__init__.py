"""Body transforms: rewrite a parsed JSON request before it is forwarded.

A transform is any ``callable(body, context)`` returning the new body, or
``None`` for "unchanged" (it may be ``async``). Objects may add
``applies_to(context) -> bool``; bodies no configured transform applies to are
never parsed and keep streaming.
"""

from ._compose import Composed, applies, compose

__all__ = ["Composed", "applies", "compose"]
