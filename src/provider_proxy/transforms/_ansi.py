"""`StripAnsi`: terminal escape sequences out of tool results.

Coding agents hand command output to the model as tool results; colour codes,
cursor moves and terminal titles there cost tokens and tell the model nothing.
"""

from __future__ import annotations

import re
from typing import Any

from .._adapter import JSON, RequestContext
from ._compose import Transform
from ._util import CONVERSATION_ROUTES, Cow, posts_to

# ECMA-48 escape sequences, with their 8-bit (C1) introducers:
#   CSI  ESC [ or 0x9b, parameter bytes 0x30-0x3f, intermediates 0x20-0x2f, a final 0x40-0x7e
#   OSC, DCS, SOS, PM, APC  ESC ] P X ^ _ (or 0x9d 0x90 0x98 0x9e 0x9f), a string, then
#        BEL, ESC \ or 0x9c (terminal titles, OSC 8 hyperlinks)
#   other ESC sequences  ESC, intermediates 0x21-0x2f, a final 0x30-0x7e (ESC ( B, ESC 7, ESC c);
#        not a space, which text after a stray ESC would lose a letter to
# Introducers that start none of these are removed on their own, so no introducer
# survives and stripping twice changes nothing.
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[\x21-\x2f]*[\x30-\x7e]"
    r"|[\x1b\x90\x98\x9b\x9d\x9e\x9f]"
)
_INTRODUCER = re.compile(r"[\x1b\x90\x98\x9b\x9d\x9e\x9f]")

_TOOL_ROLES = ("tool", "function")  # tuples: a value from the body may be unhashable
_TEXT_PARTS = ("text", "input_text", "output_text")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (CSI, OSC and the like, 7- or 8-bit)."""
    return _ANSI.sub("", text) if _INTRODUCER.search(text) else text


class StripAnsi(Transform):
    """Remove terminal escape sequences from tool results (or, with ``all_text``, all text).

    Tool results are OpenAI chat ``role: "tool"`` (and legacy ``"function"``)
    messages, Responses API ``*_call_output`` items, and Anthropic blocks whose
    type ends in ``tool_result``, each as a string or as text parts/blocks.
    ``all_text=True`` also cleans every message's text, Anthropic's ``system``,
    and the Responses API's ``input`` and ``instructions``. Tool call arguments
    and other JSON are never touched. Applies to ``POST`` chat completions,
    Responses, and Anthropic messages and ``count_tokens`` (so counts match).
    """

    __slots__ = ("all_text",)

    def __init__(self, *, all_text: bool = False) -> None:
        self.all_text = all_text

    def __repr__(self) -> str:
        return f"StripAnsi(all_text={self.all_text})"

    def applies_to(self, context: RequestContext) -> bool:
        """``POST`` to chat completions, Responses, or Anthropic messages."""
        return posts_to(context, CONVERSATION_ROUTES)

    def __call__(self, body: JSON, context: RequestContext) -> JSON | None:
        if not isinstance(body, dict):
            return None
        cow = Cow(body)
        if self.all_text:
            _clean_text(cow, body, (), "system")
            _clean_text(cow, body, (), "instructions")
        for key in ("messages", "input"):
            items = body.get(key)
            if isinstance(items, str) and self.all_text:
                _clean_text(cow, body, (), key)
            elif isinstance(items, list):
                for index, item in enumerate(items):
                    if isinstance(item, dict):
                        self._clean_item(cow, item, (key, index))
        return cow.result

    def _clean_item(self, cow: Cow, item: dict[str, Any], path: tuple[str | int, ...]) -> None:
        kind = item.get("type")
        if isinstance(kind, str) and kind.endswith("_call_output"):
            _clean_text(cow, item, path, "output")
            return
        if item.get("role") in _TOOL_ROLES or self.all_text:
            _clean_text(cow, item, path, "content")
        content = item.get("content")
        if not isinstance(content, list):
            return
        for index, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if isinstance(kind, str) and kind.endswith("tool_result"):
                _clean_text(cow, block, (*path, "content", index), "content")


def _clean_text(cow: Cow, holder: dict[str, Any], path: tuple[str | int, ...], key: str) -> None:
    """Strip ``holder[key]``: a string, or a list of text parts (``holder`` is at ``path``)."""
    value = holder.get(key)
    if isinstance(value, str):
        cleaned = strip_ansi(value)
        if cleaned != value:
            cow.at(*path)[key] = cleaned
        return
    if not isinstance(value, list):
        return
    for index, part in enumerate(value):
        if isinstance(part, dict) and part.get("type") in _TEXT_PARTS:
            text = part.get("text")
            if isinstance(text, str):
                cleaned = strip_ansi(text)
                if cleaned != text:
                    cow.at(*path, key, index)["text"] = cleaned
