"""`AnthropicPromptCache`: cache breakpoints for clients that set none (or too few).

Anthropic caches a prompt prefix only up to a block marked with
``cache_control``; a client that marks nothing pays full price for the same
tools, system prompt and conversation on every turn.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .._adapter import JSON, RequestContext
from ._compose import Transform
from ._util import MESSAGES, Cow, merge_header_token, posts_to

Ttl = Literal["5m", "1h"]

#: The beta flag the one-hour cache TTL was introduced under.
EXTENDED_TTL_BETA = "extended-cache-ttl-2025-04-11"
#: The most ``cache_control`` breakpoints the API accepts in one request.
MAX_BREAKPOINTS = 4

_SECONDS: dict[str | None, int] = {None: 300, "5m": 300, "1h": 3600}
_HOUR = 3600
# Blocks the API refuses a breakpoint on (an empty text block is refused too).
_UNCACHEABLE = frozenset({"thinking", "redacted_thinking"})


@dataclass(slots=True)
class _Site:
    """Where a breakpoint could go: a block, or a string to turn into one."""

    position: tuple[int, ...]
    path: tuple[str | int, ...]  # the block, or the container of the string
    text_key: str | None = None  # the string's key, when it is one
    taken: bool = False  # the block already has a breakpoint


@dataclass(slots=True)
class _Mark:
    """A breakpoint in the final request, with what may be changed about it."""

    position: tuple[int, ...]
    seconds: int
    kind: Literal["fixed", "upgrade", "inject"]
    site: _Site | None = None
    path: tuple[str | int, ...] = ()
    control: Any = None


class AnthropicPromptCache(Transform):
    """Add ``cache_control: {"type": "ephemeral"}`` breakpoints to Messages requests.

    Candidate places, most valuable first (the API takes at most
    :data:`MAX_BREAKPOINTS`, counting the client's own, so when slots run out
    the later ones are skipped):

    1. the last content block of the last message: each turn then reads the
       whole conversation so far from the cache (skipped when the client asked
       for automatic caching with a top-level ``cache_control``, which does this);
    2. the last system block: the system prompt (and tools) shared by every
       conversation;
    3. the last tool: the tool definitions, when the system prompt varies;
    4. the last content block of the first message (a large document a
       conversation starts with).

    A place that already has a breakpoint is left as it is. ``thinking`` and
    ``redacted_thinking`` blocks and blank text cannot carry one, so the last
    other block is used; a string ``system`` or ``content`` becomes one text
    block.

    TTLs: ``ttl`` is for breakpoints before the last message and ``tail_ttl``
    for those in it (``None`` or ``"5m"``: the API's five minutes, written as no
    ``ttl``; ``"1h"``: an hour). ``upgrade=True`` also gives the client's
    ephemeral breakpoints without a ``ttl`` these TTLs. The API requires longer
    TTLs before shorter ones, so ``tail_ttl`` may not be longer than ``ttl``, and
    a breakpoint added before one of the client's ``"1h"`` breakpoints gets
    ``"1h"`` too (one added after one of its five-minute breakpoints gets five
    minutes). When a ``"1h"`` TTL is written, ``extended_ttl_beta`` is added to
    the client's ``anthropic-beta`` list (pass ``None`` to send no flag).

    Applies to ``POST /v1/messages`` only: ``count_tokens`` ignores caching.
    """

    __slots__ = ("_beta", "_tail_ttl", "_ttl", "_upgrade")

    def __init__(
        self,
        *,
        ttl: Ttl | None = None,
        tail_ttl: Ttl | None = None,
        upgrade: bool = False,
        extended_ttl_beta: str | None = EXTENDED_TTL_BETA,
    ) -> None:
        for name, value in (("ttl", ttl), ("tail_ttl", tail_ttl)):
            if value not in (None, "5m", "1h"):
                raise ValueError(
                    f"{name}= is '5m' or '1h' (or None for five minutes), not {value!r}."
                )
        if _SECONDS[tail_ttl] > _SECONDS[ttl]:
            raise ValueError(
                f"tail_ttl={tail_ttl!r} would follow breakpoints with a shorter TTL, which the "
                "API refuses (longer TTLs come first); set ttl='1h' as well."
            )
        if upgrade and _SECONDS[ttl] == _SECONDS[None]:
            raise ValueError("upgrade=True raises the client's breakpoints to ttl='1h'; set it.")
        if extended_ttl_beta is not None and (
            not extended_ttl_beta.strip() or "," in extended_ttl_beta
        ):
            raise ValueError(f"extended_ttl_beta= is one beta flag, not {extended_ttl_beta!r}.")
        self._ttl = _SECONDS[ttl]
        self._tail_ttl = _SECONDS[tail_ttl]
        self._upgrade = upgrade
        self._beta = extended_ttl_beta

    def __repr__(self) -> str:
        return (
            f"AnthropicPromptCache(ttl={self._label(self._ttl)!r}, "
            f"tail_ttl={self._label(self._tail_ttl)!r}, upgrade={self._upgrade})"
        )

    @staticmethod
    def _label(seconds: int) -> str:
        return "1h" if seconds == _HOUR else "5m"

    def applies_to(self, context: RequestContext) -> bool:
        """``POST /v1/messages``."""
        return posts_to(context, MESSAGES)

    def __call__(self, body: JSON, context: RequestContext) -> JSON | None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return None
        messages: list[Any] = body["messages"]
        last = len(messages) - 1
        automatic = body.get("cache_control")
        marks = [
            self._existing(position, path, control, last)
            for position, path, control in _breakpoints(body)
        ]
        if isinstance(automatic, dict):
            marks.append(_Mark((3,), _seconds(automatic.get("ttl")), "fixed"))
        free = MAX_BREAKPOINTS - len(marks)
        sites = [
            None if isinstance(automatic, dict) else _message_site(messages, last),
            _system_site(body.get("system")),
            _tool_site(body.get("tools")),
            _message_site(messages, 0) if last > 0 else None,
        ]
        for site in sites:
            if site is None or site.taken:
                continue
            if free <= 0:
                break
            free -= 1
            marks.append(_Mark(site.position, self._wanted(site.position, last), "inject", site))
        if not any(mark.kind != "fixed" for mark in marks):
            return None
        return self._write(body, context, _settle(marks))

    def _existing(
        self, position: tuple[int, ...], path: tuple[str | int, ...], control: Any, last: int
    ) -> _Mark:
        seconds = _seconds(control.get("ttl"))
        wanted = self._wanted(position, last)
        if (
            self._upgrade
            and control.get("type") == "ephemeral"
            and "ttl" not in control
            and wanted > seconds
        ):
            return _Mark(position, wanted, "upgrade", path=path, control=control)
        return _Mark(position, seconds, "fixed")

    def _wanted(self, position: tuple[int, ...], last: int) -> int:
        in_tail = position[0] == 2 and position[1] == last
        return self._tail_ttl if in_tail else self._ttl

    def _write(self, body: JSON, context: RequestContext, marks: list[_Mark]) -> JSON | None:
        cow = Cow(body)
        hour = False
        for mark in marks:
            if mark.kind == "upgrade" and mark.seconds == _HOUR:
                cow.at(*mark.path)["cache_control"] = {**mark.control, "ttl": "1h"}
                hour = True
            elif mark.kind == "inject" and mark.site is not None:
                control = {"type": "ephemeral"}
                if mark.seconds == _HOUR:
                    control["ttl"] = "1h"
                    hour = True
                site = mark.site
                if site.text_key is None:
                    cow.at(*site.path)["cache_control"] = control
                else:
                    holder = cow.at(*site.path)
                    text = holder[site.text_key]
                    holder[site.text_key] = [
                        {"type": "text", "text": text, "cache_control": control}
                    ]
        if hour and self._beta is not None and cow.changed:
            merge_header_token(context, "anthropic-beta", self._beta)
        return cow.result


def _seconds(ttl: Any) -> int:
    """A breakpoint's TTL in seconds (what the API does not know counts as the default)."""
    return _HOUR if ttl == "1h" else _SECONDS[None]


def _settle(marks: list[_Mark]) -> list[_Mark]:
    """Keep TTLs non-increasing in render order by moving only the proxy's own marks.

    Each mark the proxy adds or upgrades is raised to the longest TTL of a
    client's breakpoint after it and lowered to the shortest of one before it.
    """
    marks.sort(key=lambda mark: mark.position)
    fixed = [mark.seconds if mark.kind == "fixed" else None for mark in marks]
    for index, mark in enumerate(marks):
        if mark.kind == "fixed":
            continue
        later = [s for s in fixed[index + 1 :] if s is not None]
        earlier = [s for s in fixed[:index] if s is not None]
        seconds = max(mark.seconds, max(later, default=0))
        mark.seconds = min(seconds, min(earlier, default=seconds))
    return marks


def _breakpoints(
    body: dict[str, Any],
) -> Iterator[tuple[tuple[int, ...], tuple[str | int, ...], dict[str, Any]]]:
    """The client's breakpoints: position in render order, path, and ``cache_control``."""
    tools = body.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if isinstance(tool, dict) and isinstance(tool.get("cache_control"), dict):
                yield (0, i), ("tools", i), tool["cache_control"]
    system = body.get("system")
    if isinstance(system, list):
        for j, block in enumerate(system):
            if isinstance(block, dict) and isinstance(block.get("cache_control"), dict):
                yield (1, j), ("system", j), block["cache_control"]
    for i, message in enumerate(body["messages"]):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            inner = block.get("content")  # tool_result and search_result blocks nest blocks
            if isinstance(inner, list):
                for k, item in enumerate(inner):
                    if isinstance(item, dict) and isinstance(item.get("cache_control"), dict):
                        path = ("messages", i, "content", j, "content", k)
                        yield (2, i, j, 0, k), path, item["cache_control"]
            if isinstance(block.get("cache_control"), dict):
                yield (2, i, j, 1), ("messages", i, "content", j), block["cache_control"]


def _has_mark(block: dict[str, Any]) -> bool:
    return isinstance(block.get("cache_control"), dict)


def _blank(text: Any) -> bool:
    return not isinstance(text, str) or not text.strip()


def _message_site(messages: list[Any], index: int) -> _Site | None:
    message = messages[index] if 0 <= index < len(messages) else None
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        if _blank(content):
            return None
        return _Site((2, index, 0, 1), ("messages", index), text_key="content")
    if not isinstance(content, list):
        return None
    for j in range(len(content) - 1, -1, -1):
        block = content[j]
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            continue
        if block["type"] in _UNCACHEABLE or (block["type"] == "text" and _blank(block.get("text"))):
            continue
        return _Site((2, index, j, 1), ("messages", index, "content", j), taken=_has_mark(block))
    return None


def _system_site(system: Any) -> _Site | None:
    if isinstance(system, str):
        return None if _blank(system) else _Site((1, 0), (), text_key="system")
    if not isinstance(system, list):
        return None
    for j in range(len(system) - 1, -1, -1):
        block = system[j]
        if (
            isinstance(block, dict)
            and block.get("type") == "text"
            and not _blank(block.get("text"))
        ):
            return _Site((1, j), ("system", j), taken=_has_mark(block))
    return None


def _tool_site(tools: Any) -> _Site | None:
    if not isinstance(tools, list) or not tools or not isinstance(tools[-1], dict):
        return None
    index = len(tools) - 1
    return _Site((0, index), ("tools", index), taken=_has_mark(tools[-1]))
