"""`DropTools`: keep some of a client's tools away from the model."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .._adapter import JSON, RequestContext
from ._compose import Transform
from ._util import CONVERSATION_ROUTES, Cow, check_names, posts_to

_SYSTEM_ROLES = ("system", "developer")  # a tuple: a role from the body may be unhashable
# Keys that only make sense while there are tools (OpenAI refuses them without).
_TOOL_ONLY_KEYS = ("tool_choice", "parallel_tool_calls")


def tool_name(tool: Any) -> str | None:
    """A tool definition's name: OpenAI chat ``function.name``, else ``name``."""
    if not isinstance(tool, dict):
        return None
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else tool.get("name")
    return name if isinstance(name, str) else None


class DropTools(Transform):
    """Remove the named tools from requests, and the system prompt's mentions of them.

    - ``tools`` entries whose name (OpenAI chat ``function.name``; Responses API
      and Anthropic ``name``) is one of ``names`` are removed; the ``tools`` key
      goes when none are left, and with it ``tool_choice`` and
      ``parallel_tool_calls``.
    - ``tool_choice`` naming a dropped tool is removed; an ``allowed_tools``
      choice loses the dropped tools (and goes when it has none left).
    - Whole-word mentions (not inside a longer name such as ``bash_exec`` or
      ``web-bash``) in system text are deleted with one adjoining space (with
      enclosing backticks when quoted so): OpenAI ``system``/``developer``
      messages, Anthropic ``system``, Responses ``instructions``. Names are
      matched case-sensitively, as the APIs do.

    Earlier turns that called a dropped tool are left as they are. Applies to
    ``POST`` chat completions, Responses, and Anthropic messages and
    ``count_tokens``.
    """

    __slots__ = ("_mention", "names")

    def __init__(self, names: Iterable[str]) -> None:
        listed = check_names(names, "DropTools(names)")
        if not listed:
            raise ValueError("DropTools needs at least one tool name to drop.")
        self.names: frozenset[str] = frozenset(listed)
        words = "|".join(re.escape(n) for n in sorted(self.names, key=len, reverse=True))
        self._mention = re.compile(
            rf"(?P<before> ?)(?<![\w-])(?:`(?:{words})`|(?:{words}))(?![\w-])(?P<after> ?)"
        )

    def __repr__(self) -> str:
        return f"DropTools({sorted(self.names)!r})"

    def applies_to(self, context: RequestContext) -> bool:
        """``POST`` to chat completions, Responses, or Anthropic messages."""
        return posts_to(context, CONVERSATION_ROUTES)

    def __call__(self, body: JSON, context: RequestContext) -> JSON | None:
        if not isinstance(body, dict):
            return None
        cow = Cow(body)
        tools = body.get("tools")
        gone = False
        if isinstance(tools, list):
            kept = [tool for tool in tools if tool_name(tool) not in self.names]
            if len(kept) != len(tools):
                if kept:
                    cow.at()["tools"] = kept
                else:
                    gone = True
                    root = cow.at()
                    for key in ("tools", *_TOOL_ONLY_KEYS):
                        root.pop(key, None)
        if not gone and "tool_choice" in body:
            self._choice(cow, body["tool_choice"])
        self._scrub(cow, body, (), "system")
        self._scrub(cow, body, (), "instructions")
        for key in ("messages", "input"):
            items = body.get(key)
            if not isinstance(items, list):
                continue
            for index, item in enumerate(items):
                if isinstance(item, dict) and item.get("role") in _SYSTEM_ROLES:
                    self._scrub(cow, item, (key, index), "content")
        return cow.result

    def _choice(self, cow: Cow, choice: Any) -> None:
        if not isinstance(choice, dict):
            return
        if tool_name(choice) in self.names:
            cow.at().pop("tool_choice")
            return
        if choice.get("type") != "allowed_tools":
            return
        # Chat nests the list under "allowed_tools"; Responses has it at the top.
        nested = isinstance(choice.get("allowed_tools"), dict)
        holder = choice["allowed_tools"] if nested else choice
        listed = holder.get("tools")
        if not isinstance(listed, list):
            return
        kept = [tool for tool in listed if tool_name(tool) not in self.names]
        if len(kept) == len(listed):
            return
        if not kept:
            cow.at().pop("tool_choice")
        elif nested:
            cow.at("tool_choice", "allowed_tools")["tools"] = kept
        else:
            cow.at("tool_choice")["tools"] = kept

    def _scrub(
        self, cow: Cow, holder: dict[str, Any], path: tuple[str | int, ...], key: str
    ) -> None:
        value = holder.get(key)
        if isinstance(value, str):
            cleaned = self._unmention(value)
            if cleaned != value:
                cow.at(*path)[key] = cleaned
            return
        if not isinstance(value, list):
            return
        for index, part in enumerate(value):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                cleaned = self._unmention(part["text"])
                if cleaned != part["text"]:
                    cow.at(*path, key, index)["text"] = cleaned

    def _unmention(self, text: str) -> str:
        return self._mention.sub(_join, text)


def _join(found: re.Match[str]) -> str:
    # "use bash now" -> "use now"; "bash, then" -> ", then": one space survives
    # only where the name stood between two.
    return " " if found["before"] and found["after"] else ""
