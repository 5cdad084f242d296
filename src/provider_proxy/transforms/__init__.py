"""Body transforms: rewrite a parsed JSON request before it is forwarded.

A transform is any ``callable(body, context)`` returning the new body, or
``None`` for "unchanged" (it may be ``async``). A transform whose convention
shows in the answer too (:class:`XmlToolCalls`) adds an :class:`AnswerRewriter`
to ``context.answer_rewriters``. It may build a new body or
change ``body`` in place and return it, but must never change it and return
``None``. A :class:`Transform` subclass also says which requests it concerns
(``applies_to(context) -> bool``); bodies no configured transform applies to are
never parsed and keep streaming. Pass them per provider
(``OpenAIAdapter(transforms=[...])``) or for the whole app
(``make_asgi_app(adapters, transforms=[...])``); :func:`compose` chains them.

The ready-made transforms here never change the body they are given: they
return a new one that shares every unchanged part with it, so the engine may
keep the original.
"""

from .._adapter import AnswerRewriter
from ._aliases import ModelAliases, version_key
from ._ansi import StripAnsi, strip_ansi
from ._compose import Composed, Transform, applies, compose
from ._params import ParameterPolicy
from ._prompt_cache import EXTENDED_TTL_BETA, MAX_BREAKPOINTS, AnthropicPromptCache
from ._stream_usage import IncludeStreamUsage
from ._tools import DropTools
from ._xml_tools import XmlCall, XmlCallParser, XmlToolCalls, XmlToolsError

__all__ = [
    "EXTENDED_TTL_BETA",
    "MAX_BREAKPOINTS",
    "AnswerRewriter",
    "AnthropicPromptCache",
    "Composed",
    "DropTools",
    "IncludeStreamUsage",
    "ModelAliases",
    "ParameterPolicy",
    "StripAnsi",
    "Transform",
    "XmlCall",
    "XmlCallParser",
    "XmlToolCalls",
    "XmlToolsError",
    "applies",
    "compose",
    "strip_ansi",
    "version_key",
]
