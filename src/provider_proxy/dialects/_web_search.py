"""Built-in web search ⇄ the canonical form, for every format that has one.

A client's web search tool is canonical :class:`~.canonical.WebSearch`
(:attr:`Request.web_search`); the provider runs its own search tool with it:
Anthropic's server tool ``web_search_20250305``, Gemini's ``google_search``,
OpenAI Responses' ``web_search``. What the provider answers is a
:class:`~.canonical.WebSearchCall` part (the queries and the pages found) and
:class:`~.canonical.Citation`\\ s on the text that cites them:

================  ===================================  ===============================
format            the search                           citations
================  ===================================  ===============================
Anthropic         ``server_tool_use`` +                ``citations`` of a text block
                  ``web_search_tool_result`` blocks    (``web_search_result_location``)
Responses         a ``web_search_call`` item           ``url_citation`` annotations
Gemini            ``groundingMetadata``                ``groundingSupports`` segments
OpenAI Chat       (none)                               ``annotations`` (``url_citation``)
================  ===================================  ===============================

The options, target by target (:data:`OPTION_RULES`): a setting the target
cannot honour is refused naming it, since it changes what is searched
(domains, location, a cap on searches); ``search_context_size`` is dropped and
named where the target has no such setting (it trades cost for context, not
what is searched).

Anthropic's opaque parts (each result's ``encrypted_content``, each
citation's ``encrypted_index``) must go back to it unchanged on later turns.
They travel in the canonical parts, so a conversation the gateway keeps
(``previous_response_id``) sends them back intact. A Responses client's
``web_search_call`` item holds no such data: the gateway keeps the search by
its id and restores it (``engine/_reasoning.py``); one it cannot restore is
left out and named in ``x-proxy-dropped-fields`` (``web_search_call``), the
answer's text staying.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

from . import _codec_util as u
from .canonical import (
    Citation,
    Fidelity,
    Part,
    Rule,
    SearchResult,
    Text,
    Tool,
    ToolChoice,
    Unsupported,
    UserLocation,
    WebSearch,
    WebSearchCall,
)

M, R, D = Fidelity.MAPPED, Fidelity.REFUSED, Fidelity.DROPPED

#: Responses tool types that are OpenAI's web search.
RESPONSES_TYPES = frozenset(
    {"web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"}
)
#: Anthropic's web search server tool.
ANTHROPIC_TYPE = "web_search_20250305"
#: What a dropped search call is named in ``x-proxy-dropped-fields``.
DROPPED_CALL = "web_search_call"
#: What a dropped ``search_context_size`` is named.
DROPPED_CONTEXT_SIZE = "web_search.search_context_size"

#: Each canonical option's fate at each provider format (documented in the gateway page).
OPTION_RULES: Mapping[str, Mapping[str, Rule]] = {
    "anthropic": {
        "max_uses": Rule(M),
        "allowed_domains": Rule(M),
        "blocked_domains": Rule(M),
        "user_location": Rule(M, "approximate: city, region, country, timezone"),
        "search_context_size": Rule(D, "Anthropic has no such setting"),
    },
    "gemini": {
        "max_uses": Rule(R),
        "allowed_domains": Rule(R),
        "blocked_domains": Rule(R),
        "user_location": Rule(R),
        "search_context_size": Rule(D, "Gemini has no such setting"),
    },
    "responses": {
        "max_uses": Rule(R, "Responses caps all tool calls only (max_tool_calls)"),
        "allowed_domains": Rule(M, "as filters.allowed_domains"),
        "blocked_domains": Rule(R),
        "user_location": Rule(M),
        "search_context_size": Rule(M),
    },
}

_CONTEXT_SIZES = ("low", "medium", "high")


# -- the tool ---------------------------------------------------------------------------


def _domains(value: Any, where: str) -> tuple[str, ...]:
    return tuple(u.text(d, f"{where}[{i}]") for i, d in enumerate(u.arr(value or [], where)))


def _location(value: Any, where: str) -> UserLocation | None:
    if value is None:
        return None
    raw = u.obj(value, where)
    u.only(raw, ("type", "city", "region", "country", "timezone"), where)
    if raw.get("type") not in (None, "approximate"):
        raise Unsupported(f"{where}.type", "only an approximate location translates")
    return UserLocation(
        *(u.opt_str(raw.get(k), f"{where}.{k}") for k in ("city", "region", "country", "timezone"))
    )


def _location_json(location: UserLocation) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "approximate"}
    for key in ("city", "region", "country", "timezone"):
        value = getattr(location, key)
        if value is not None:
            out[key] = value
    return out


def _context_size(value: Any, where: str) -> str | None:
    """OpenAI's ``search_context_size``; its default, ``medium``, is as if absent."""
    size = u.opt_str(value, where)
    if size is not None and size not in _CONTEXT_SIZES:
        raise Unsupported(where, f"unknown size {size!r}")
    return None if size == "medium" else size


def decode_responses_tool(raw: dict[str, Any], where: str) -> WebSearch:
    """A Responses ``web_search`` (or ``web_search_preview``) tool."""
    u.only(
        raw,
        ("type", "filters", "search_context_size", "user_location", "external_web_access"),
        where,
    )
    if raw.get("external_web_access") is False:
        raise Unsupported(f"{where}.external_web_access", "the provider always searches live")
    filters = u.obj(raw.get("filters") or {}, f"{where}.filters")
    u.only(filters, ("allowed_domains",), f"{where}.filters")
    return WebSearch(
        allowed_domains=_domains(
            filters.get("allowed_domains"), f"{where}.filters.allowed_domains"
        ),
        user_location=_location(raw.get("user_location"), f"{where}.user_location"),
        context_size=_context_size(raw.get("search_context_size"), f"{where}.search_context_size"),
    )


def decode_anthropic_tool(raw: dict[str, Any], where: str) -> WebSearch:
    """Anthropic's ``web_search_20250305`` server tool."""
    u.only(
        raw,
        (
            "type",
            "name",
            "max_uses",
            "allowed_domains",
            "blocked_domains",
            "user_location",
            "cache_control",
        ),
        where,
    )
    if raw.get("name") != "web_search":
        raise Unsupported(f"{where}.name", "the web search tool is named 'web_search'")
    return WebSearch(
        max_uses=u.opt_int(raw.get("max_uses"), f"{where}.max_uses"),
        allowed_domains=_domains(raw.get("allowed_domains"), f"{where}.allowed_domains"),
        blocked_domains=_domains(raw.get("blocked_domains"), f"{where}.blocked_domains"),
        user_location=_location(raw.get("user_location"), f"{where}.user_location"),
    )


def decode_chat_options(value: Any) -> WebSearch:
    """OpenAI Chat's ``web_search_options`` (its search models' web search)."""
    raw = u.obj(value, "web_search_options")
    u.only(raw, ("search_context_size", "user_location"), "web_search_options")
    location = raw.get("user_location")
    if location is not None:
        wrapper = u.obj(location, "web_search_options.user_location")
        u.only(wrapper, ("type", "approximate"), "web_search_options.user_location")
        location = wrapper.get("approximate") or {}
    return WebSearch(
        user_location=_location(location, "web_search_options.user_location.approximate"),
        context_size=_context_size(
            raw.get("search_context_size"), "web_search_options.search_context_size"
        ),
    )


def _refuse(search: WebSearch, target: str) -> None:
    rules = OPTION_RULES[target]
    present = {
        "max_uses": search.max_uses is not None,
        "allowed_domains": bool(search.allowed_domains),
        "blocked_domains": bool(search.blocked_domains),
        "user_location": search.user_location is not None,
        "search_context_size": search.context_size is not None,
    }
    for option, given in present.items():
        if given and rules[option].fate is R:
            raise Unsupported(f"web_search.{option}", f"the {target} web search has no such option")


def anthropic_tool(search: WebSearch) -> dict[str, Any]:
    """The search as Anthropic's server tool."""
    _refuse(search, "anthropic")
    tool: dict[str, Any] = {"type": ANTHROPIC_TYPE, "name": "web_search"}
    if search.max_uses is not None:
        tool["max_uses"] = search.max_uses
    if search.allowed_domains:
        tool["allowed_domains"] = list(search.allowed_domains)
    if search.blocked_domains:
        tool["blocked_domains"] = list(search.blocked_domains)
    if search.user_location is not None:
        tool["user_location"] = _location_json(search.user_location)
    return tool


def gemini_tool(search: WebSearch) -> dict[str, Any]:
    """The search as Gemini's ``google_search`` tool (it has no options)."""
    _refuse(search, "gemini")
    return {"googleSearch": {}}


def responses_tool(search: WebSearch) -> dict[str, Any]:
    """The search as a Responses ``web_search`` tool."""
    _refuse(search, "responses")
    tool: dict[str, Any] = {"type": "web_search"}
    if search.allowed_domains:
        tool["filters"] = {"allowed_domains": list(search.allowed_domains)}
    if search.user_location is not None:
        tool["user_location"] = _location_json(search.user_location)
    if search.context_size is not None:
        tool["search_context_size"] = search.context_size
    return tool


def forced(choice: ToolChoice | None, search: WebSearch | None, where: str) -> None:
    """Refuse a tool choice that forces a search the request does not offer."""
    if choice is not None and choice.kind == "web_search" and search is None:
        raise Unsupported(where, "it forces a web search the request offers no tool for")


def anthropic_choice(choice: ToolChoice, tools: tuple[Tool, ...]) -> ToolChoice:
    """An Anthropic ``tool`` choice naming its web search tool (no function of that
    name) as forcing the search."""
    names = {tool.name for tool in tools}
    if choice.kind == "tool" and choice.name == "web_search" and "web_search" not in names:
        return ToolChoice("web_search", "web_search")
    return choice


def responses_choice(choice: ToolChoice) -> dict[str, Any]:
    """A choice forcing the search as a Responses ``tool_choice`` (the client's own type)."""
    kind = choice.name if choice.name in RESPONSES_TYPES else "web_search"
    return {"type": kind}


def dropped_options(search: WebSearch | None, target: str) -> tuple[str, ...]:
    """The options of ``search`` dropped (no equivalent, no effect on results) at ``target``."""
    if search is None or search.context_size is None:
        return ()
    return (DROPPED_CONTEXT_SIZE,) if OPTION_RULES[target]["search_context_size"].fate is D else ()


# -- Anthropic blocks ---------------------------------------------------------------------


def decode_server_tool_use(block: dict[str, Any], where: str) -> WebSearchCall:
    """A ``server_tool_use`` block of the web search (its result follows it)."""
    u.only(block, ("type", "id", "name", "input", "caller", "cache_control"), where)
    if block.get("name") != "web_search":
        raise Unsupported(f"{where}.name", f"server tool {block.get('name')!r} does not translate")
    query = u.obj(block.get("input") or {}, f"{where}.input").get("query")
    return WebSearchCall(
        u.text(block.get("id"), f"{where}.id"), (u.text(query, f"{where}.input.query"),)
    )


def decode_search_result(block: dict[str, Any], where: str) -> WebSearchCall:
    """A ``web_search_tool_result`` block: the results of the call it names."""
    u.only(block, ("type", "tool_use_id", "content", "caller", "cache_control"), where)
    call_id = u.text(block.get("tool_use_id"), f"{where}.tool_use_id")
    content = block.get("content")
    if isinstance(content, dict):
        code = u.opt_str(content.get("error_code"), f"{where}.content.error_code")
        return WebSearchCall(call_id, (), error=code or "unavailable")
    results = []
    for i, raw in enumerate(u.arr(content, f"{where}.content")):
        at = f"{where}.content[{i}]"
        item = u.obj(raw, at)
        u.only(item, ("type", "url", "title", "encrypted_content", "page_age"), at)
        results.append(
            SearchResult(
                url=u.text(item.get("url"), f"{at}.url"),
                title=u.opt_str(item.get("title"), f"{at}.title"),
                page_age=u.opt_str(item.get("page_age"), f"{at}.page_age"),
                opaque=u.opt_str(item.get("encrypted_content"), f"{at}.encrypted_content") or None,
            )
        )
    return WebSearchCall(call_id, (), tuple(results))


def merge_calls(parts: tuple[Part, ...]) -> tuple[Part, ...]:
    """Anthropic's pairs of blocks (the call, then its result) as one call each."""
    if len(parts) < 2:  # (most answers: one text block)
        return parts
    out: list[Part] = []
    for part in parts:
        last = out[-1] if out else None
        if (
            isinstance(part, WebSearchCall)
            and not part.queries
            and isinstance(last, WebSearchCall)
            and last.id == part.id
        ):
            out[-1] = WebSearchCall(last.id, last.queries, part.results, part.error)
        else:
            out.append(part)
    return tuple(out)


def can_send_to_anthropic(call: WebSearchCall) -> bool:
    """Whether Anthropic can take ``call`` back: its results as it gave them (opaque data)."""
    if call.error is not None:
        return True
    return bool(call.results) and all(result.opaque is not None for result in call.results)


def anthropic_blocks(call: WebSearchCall, *, answer: bool = False) -> list[dict[str, Any]]:
    """The ``server_tool_use`` and ``web_search_tool_result`` blocks of ``call``.

    ``answer``: for a client's answer (a result without Anthropic's encrypted
    copy has an empty ``encrypted_content``); else for Anthropic, which needs it.
    """
    if not answer and not can_send_to_anthropic(call):
        return []
    query = " ".join(call.queries)
    use = {
        "type": "server_tool_use",
        "id": call.id,
        "name": "web_search",
        "input": {"query": query},
    }
    return [use, search_result_block(call)]


def search_result_block(call: WebSearchCall) -> dict[str, Any]:
    """The ``web_search_tool_result`` block of ``call``."""
    content: Any
    if call.error is not None:
        content = {"type": "web_search_tool_result_error", "error_code": call.error}
    else:
        content = [
            {
                "type": "web_search_result",
                "url": r.url,
                "title": r.title or r.url,
                "encrypted_content": r.opaque or "",
                "page_age": r.page_age,
            }
            for r in call.results
        ]
    return {"type": "web_search_tool_result", "tool_use_id": call.id, "content": content}


def decode_anthropic_citation(raw: Any, where: str) -> Citation | None:
    """One citation of a text block (``None``: a kind that is not a web source)."""
    item = u.obj(raw, where)
    if item.get("type") != "web_search_result_location":
        return None  # document citations: the text is the text either way
    return Citation(
        url=u.text(item.get("url"), f"{where}.url"),
        title=u.opt_str(item.get("title"), f"{where}.title"),
        cited_text=u.opt_str(item.get("cited_text"), f"{where}.cited_text"),
        opaque=u.opt_str(item.get("encrypted_index"), f"{where}.encrypted_index") or None,
    )


def decode_anthropic_citations(value: Any, where: str) -> tuple[Citation, ...]:
    """A text block's ``citations`` (they cite the whole block)."""
    found = (
        decode_anthropic_citation(raw, f"{where}[{i}]")
        for i, raw in enumerate(u.arr(value or [], where))
    )
    return tuple(c for c in found if c is not None)


def anthropic_citation(citation: Citation) -> dict[str, Any]:
    """A citation as Anthropic writes it (``encrypted_index`` empty when it had none)."""
    return {
        "type": "web_search_result_location",
        "url": citation.url,
        "title": citation.title,
        "encrypted_index": citation.opaque or "",
        "cited_text": citation.cited_text or "",
    }


def text_block(part: Text, *, answer: bool) -> dict[str, Any]:
    """A text block with its citations: all of them in an answer; for Anthropic, only
    when each has its ``encrypted_index`` (else the text alone)."""
    block: dict[str, Any] = {"type": "text", "text": part.text}
    if part.citations and (answer or all(c.opaque is not None for c in part.citations)):
        block["citations"] = [anthropic_citation(c) for c in part.citations]
    return block


# -- Responses items ----------------------------------------------------------------------


def responses_call_item(call: WebSearchCall) -> dict[str, Any]:
    """A ``web_search_call`` output item, with the call's own id (the gateway keeps the
    provider's results by it, for the turn that sends the item back)."""
    action: dict[str, Any] = {"type": "search", "query": " ".join(call.queries)}
    if len(call.queries) > 1:
        action["queries"] = list(call.queries)
    action["sources"] = [{"type": "url", "url": r.url} for r in call.results]
    return {
        "type": "web_search_call",
        "id": call.id,
        "status": "failed" if call.error is not None else "completed",
        "action": action,
    }


def decode_responses_call(item: dict[str, Any], where: str) -> WebSearchCall:
    """A ``web_search_call`` item (a client sending an answer's items back, or an answer)."""
    u.only(item, ("type", "id", "status", "action"), where)
    action = u.obj(item.get("action") or {}, f"{where}.action")
    queries: tuple[str, ...] = ()
    results: tuple[SearchResult, ...] = ()
    if action.get("type") == "search":
        listed = action.get("queries")
        if listed:
            queries = tuple(
                u.text(q, f"{where}.action.queries[{i}]")
                for i, q in enumerate(u.arr(listed, f"{where}.action.queries"))
            )
        elif action.get("query") is not None:
            queries = (u.text(action.get("query"), f"{where}.action.query"),)
        results = tuple(
            SearchResult(u.text(u.obj(s, f"{where}.action.sources[{i}]").get("url"), "url"))
            for i, s in enumerate(u.arr(action.get("sources") or [], f"{where}.action.sources"))
        )
    status = item.get("status")
    return WebSearchCall(
        u.text(item.get("id"), f"{where}.id"),
        queries,
        results,
        error="unavailable" if status == "failed" else None,
    )


def url_citation(citation: Citation, text: str) -> dict[str, Any]:
    """A ``url_citation`` annotation of an ``output_text`` part holding ``text``."""
    start = 0 if citation.start is None else citation.start
    end = len(text) if citation.end is None else citation.end
    return {
        "type": "url_citation",
        "start_index": start,
        "end_index": end,
        "url": citation.url,
        "title": citation.title or citation.url,
    }


def decode_url_citations(value: Any, text: str, where: str) -> tuple[Citation, ...]:
    """The ``url_citation`` annotations of an ``output_text`` part (others carry no source)."""
    out: list[Citation] = []
    for i, raw in enumerate(u.arr(value or [], where)):
        item = u.obj(raw, f"{where}[{i}]")
        if item.get("type") != "url_citation":
            continue
        start = u.opt_int(item.get("start_index"), f"{where}[{i}].start_index")
        end = u.opt_int(item.get("end_index"), f"{where}[{i}].end_index")
        out.append(
            Citation(
                url=u.text(item.get("url"), f"{where}[{i}].url"),
                title=u.opt_str(item.get("title"), f"{where}[{i}].title"),
                cited_text=(text[start:end] or None)
                if start is not None and end is not None
                else None,
                start=start,
                end=end,
            )
        )
    return tuple(out)


# -- Gemini grounding ---------------------------------------------------------------------


def decode_grounding(
    metadata: Any, texts: list[str], call_id: str
) -> tuple[WebSearchCall | None, list[list[Citation]]]:
    """Gemini's ``groundingMetadata`` as the search call and each text's citations.

    ``texts`` are the answer's text parts in order; Gemini's segment offsets are
    UTF-8 byte offsets into their concatenation, converted here to character
    offsets into the text that holds each segment.
    """
    cited: list[list[Citation]] = [[] for _ in texts]
    if not isinstance(metadata, dict):
        return None, cited
    queries = tuple(str(q) for q in metadata.get("webSearchQueries") or () if isinstance(q, str))
    chunks = [
        c.get("web") or {} for c in metadata.get("groundingChunks") or () if isinstance(c, dict)
    ]
    results = tuple(
        SearchResult(
            str(c.get("uri", "")), c.get("title") if isinstance(c.get("title"), str) else None
        )
        for c in chunks
    )
    starts: list[int] = []  # each text's first byte in the concatenation
    total = 0
    for text in texts:
        starts.append(total)
        total += len(text.encode("utf-8"))
    for support in metadata.get("groundingSupports") or ():
        if not isinstance(support, dict):
            continue
        segment = support.get("segment") or {}
        start, end = int(segment.get("startIndex") or 0), int(segment.get("endIndex") or 0)
        which = next((k for k in range(len(texts) - 1, -1, -1) if starts[k] <= start), None)
        if which is None:
            continue
        encoded = texts[which].encode("utf-8")
        first = len(encoded[: start - starts[which]].decode("utf-8", "ignore"))
        last = len(encoded[: end - starts[which]].decode("utf-8", "ignore"))
        for index in support.get("groundingChunkIndices") or ():
            if isinstance(index, int) and 0 <= index < len(results):
                source = results[index]
                cited[which].append(
                    Citation(
                        source.url,
                        source.title,
                        texts[which][first:last],
                        first,
                        last,
                    )
                )
    if not queries and not results:
        return None, cited
    return WebSearchCall(call_id, queries, results), cited


# -- OpenAI Chat ----------------------------------------------------------------------------


def chat_annotations(parts: tuple[Part, ...]) -> list[dict[str, Any]]:
    """The ``url_citation`` annotations of a Chat message whose content is the parts' text."""
    out: list[dict[str, Any]] = []
    offset = 0
    for part in parts:
        if not isinstance(part, Text):
            continue
        for citation in part.citations:
            cited = url_citation(citation, part.text)
            cited["start_index"] += offset
            cited["end_index"] += offset
            kind = cited.pop("type")
            out.append({"type": kind, "url_citation": cited})
        offset += len(part.text)
    return out


def gemini_call_id(response_id: str) -> str:
    """A stable id for the search of a Gemini answer (Gemini gives its searches none)."""
    return "ws_" + hashlib.sha256(response_id.encode("utf-8")).hexdigest()[:24]


def with_grounding(parts: tuple[Part, ...], metadata: Any, response_id: str) -> tuple[Part, ...]:
    """A Gemini answer's parts with its ``groundingMetadata``: the search call first, then
    the parts, each text with the citations of its segments."""
    texts = [p.text for p in parts if isinstance(p, Text)]
    call, cited = decode_grounding(metadata, texts, gemini_call_id(response_id))
    if call is None:
        return parts
    out: list[Part] = [call]
    which = iter(cited)
    for part in parts:
        if isinstance(part, Text):
            part = dataclasses.replace(part, citations=(*part.citations, *next(which)))
        out.append(part)
    return tuple(out)


def decode_gemini_tool(raw: dict[str, Any], where: str) -> WebSearch:
    """Gemini's ``googleSearch`` tool (its only option, a time range, does not translate)."""
    u.only(raw, (), where)
    return WebSearch()


def grounding_metadata(parts: tuple[Part, ...]) -> dict[str, Any] | None:
    """The ``groundingMetadata`` of an answer for a Gemini client (``None``: it did not search)."""
    calls = [p for p in parts if isinstance(p, WebSearchCall)]
    texts = [p for p in parts if isinstance(p, Text)]
    if not calls and not any(t.citations for t in texts):
        return None
    chunks: list[dict[str, Any]] = []
    index: dict[str, int] = {}

    def chunk(url: str, title: str | None) -> int:
        if url not in index:
            index[url] = len(chunks)
            chunks.append({"web": {"uri": url, "title": title or url}})
        return index[url]

    for call in calls:
        for result in call.results:
            chunk(result.url, result.title)
    supports: list[dict[str, Any]] = []
    offset = 0
    for text in texts:
        for citation in text.citations:
            start = 0 if citation.start is None else citation.start
            end = len(text.text) if citation.end is None else citation.end
            segment = {
                "startIndex": offset + len(text.text[:start].encode("utf-8")),
                "endIndex": offset + len(text.text[:end].encode("utf-8")),
                "text": text.text[start:end],
            }
            supports.append(
                {"segment": segment, "groundingChunkIndices": [chunk(citation.url, citation.title)]}
            )
        offset += len(text.text.encode("utf-8"))
    return {
        "webSearchQueries": [q for call in calls for q in call.queries],
        "groundingChunks": chunks,
        "groundingSupports": supports,
    }
