"""The fake provider's built-in web search: Anthropic's server tool and Gemini's grounding.

A request carrying Anthropic's ``web_search_20250305`` tool is answered as
Anthropic answers one: a ``server_tool_use`` block (the query: the last user
text), its ``web_search_tool_result`` (two deterministic results, each with an
``encrypted_content`` only this fake can read), and text blocks whose
``citations`` point at them. A malformed tool definition is refused (400) as
Anthropic refuses it, and so is a later turn that sends a search back
altered: a ``server_tool_use`` without its result, or results and citations
whose encrypted data is not the fake's. A Gemini request with ``googleSearch``
is answered with text and its ``groundingMetadata`` (queries, chunks, and
supports whose segments are UTF-8 byte offsets, as Gemini's).

Asked to pause (``pauses``), the search turn stops ``pause_turn`` that many
times, one more search each, as Anthropic pauses a long server-tool turn. The
client continues it by sending the content so far back as the last assistant
message; one that is not exactly the paused content (altered, lost, or a
continuation of a turn never paused) is refused (400), since the turn could
not go on from it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

from .._json import dumps
from ..types import Send

ANTHROPIC_TOOL = "web_search_20250305"
_TOOL_KEYS = {
    "type",
    "name",
    "max_uses",
    "allowed_domains",
    "blocked_domains",
    "user_location",
    "cache_control",
    "allowed_callers",
    "defer_loading",
    "strict",
}
_LOCATION_KEYS = {"type", "city", "region", "country", "timezone"}

#: The answer's text: an opening, then one sentence citing each result.
INTRO = "Here is what I found \u2014 "
SENTENCES = ("The first source says so.", " The second agrees.")


def _token(kind: str, url: str) -> str:
    digest = hashlib.sha256(f"fake {kind}\x00{url}".encode()).hexdigest()[:16]
    return base64.b64encode(f"{kind}:{digest}:{url}".encode()).decode("ascii")


def _readable(kind: str, token: Any) -> bool:
    if not isinstance(token, str):
        return False
    try:
        text = base64.b64decode(token, validate=True).decode()
    except ValueError:
        return False
    _, _, url = text.partition(":")[2].partition(":")
    return token == _token(kind, url)


def search_tool(payload: dict[str, Any], *, gemini: bool) -> tuple[int, Any] | None:
    """The request's web search tool: ``(index, definition)``, or ``None``."""
    for index, tool in enumerate(payload.get("tools") or ()):
        if not isinstance(tool, dict):
            continue
        if gemini:
            for key in ("googleSearch", "google_search"):
                if key in tool:
                    return index, (key, tool[key])
        elif tool.get("type") == ANTHROPIC_TOOL:
            return index, tool
    return None


def anthropic_refusal(index: int, tool: dict[str, Any], messages: Any) -> str | None:
    """Why Anthropic would refuse this request's search tool or its history (``None``: fine)."""
    where = f"tools.{index}.{ANTHROPIC_TOOL}"
    for key in tool:
        if key not in _TOOL_KEYS:
            return f"{where}.{key}: Extra inputs are not permitted"
    if tool.get("name") != "web_search":
        return f"{where}.name: Input should be 'web_search'"
    uses = tool.get("max_uses")
    if uses is not None and (not isinstance(uses, int) or isinstance(uses, bool) or uses < 1):
        return f"{where}.max_uses: Input should be greater than 0"
    for key in ("allowed_domains", "blocked_domains"):
        value = tool.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(d, str) for d in value)
        ):
            return f"{where}.{key}: Input should be a valid list of strings"
    if tool.get("allowed_domains") and tool.get("blocked_domains"):
        return "Cannot specify both allowed_domains and blocked_domains in web search tool"
    location = tool.get("user_location")
    if location is not None:
        if not isinstance(location, dict) or location.get("type") != "approximate":
            return f"{where}.user_location.type: Input should be 'approximate'"
        extra = set(location) - _LOCATION_KEYS
        if extra:
            return f"{where}.user_location.{sorted(extra)[0]}: Extra inputs are not permitted"
    return _history_refusal(messages)


def _history_refusal(messages: Any) -> str | None:
    for i, message in enumerate(messages or ()):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            where = f"messages.{i}.content.{j}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "server_tool_use":
                following = content[j + 1] if j + 1 < len(content) else {}
                if following.get("type") != "web_search_tool_result" or following.get(
                    "tool_use_id"
                ) != block.get("id"):
                    return (
                        f"{where}: `server_tool_use` block with id `{block.get('id')}` was "
                        "found without a corresponding `web_search_tool_result` block"
                    )
            elif kind == "web_search_tool_result":
                results = block.get("content")
                for k, result in enumerate(results if isinstance(results, list) else ()):
                    if not _readable("result", result.get("encrypted_content")):
                        return f"{where}.content.{k}.encrypted_content: invalid encrypted content"
            elif kind == "text":
                for k, citation in enumerate(block.get("citations") or ()):
                    if citation.get("type") == "web_search_result_location" and not _readable(
                        "index", citation.get("encrypted_index")
                    ):
                        return f"{where}.citations.{k}.encrypted_index: invalid encrypted index"
    return None


def query_of(payload: dict[str, Any], *, gemini: bool) -> str:
    """What the fake searches for: the last user text (Gemini: the last user part's)."""
    turns = payload.get("contents" if gemini else "messages") or ()
    for turn in reversed(turns):
        if not isinstance(turn, dict) or turn.get("role") != "user":
            continue
        pieces = turn.get("parts") if gemini else turn.get("content")
        if isinstance(pieces, str):
            return pieces[:80]
        for piece in reversed(pieces or ()):
            if isinstance(piece, dict) and isinstance(piece.get("text"), str):
                return str(piece["text"])[:80]
    return "nothing"


def results(query: str) -> list[dict[str, str]]:
    """The two pages found for ``query``: always the same ones for the same query."""
    slug = hashlib.sha256(query.encode()).hexdigest()[:8]
    return [
        {"url": f"https://example.com/{slug}/{n}", "title": f"Result {n} for {query}"}
        for n in (1, 2)
    ]


def anthropic_content(search_id: str, query: str) -> list[dict[str, Any]]:
    """The blocks of an answer that searched."""
    found = results(query)
    content: list[dict[str, Any]] = [
        {
            "type": "server_tool_use",
            "id": search_id,
            "name": "web_search",
            "input": {"query": query},
        },
        {
            "type": "web_search_tool_result",
            "tool_use_id": search_id,
            "content": [
                {
                    "type": "web_search_result",
                    "url": r["url"],
                    "title": r["title"],
                    "encrypted_content": _token("result", r["url"]),
                    "page_age": "April 1, 2026",
                }
                for r in found
            ],
        },
        {"type": "text", "text": INTRO},
    ]
    for sentence, result in zip(SENTENCES, found, strict=True):
        citation = {
            "type": "web_search_result_location",
            "url": result["url"],
            "title": result["title"],
            "encrypted_index": _token("index", result["url"]),
            "cited_text": f"{result['title']}: {sentence.strip()}",
        }
        content.append({"type": "text", "text": sentence, "citations": [citation]})
    return content


def anthropic_usage(output_tokens: int) -> dict[str, Any]:
    """An answer's usage, with the searches it ran."""
    return {
        "input_tokens": 10,
        "output_tokens": output_tokens,
        "server_tool_use": {"web_search_requests": 1},
    }


def anthropic_events(message: dict[str, Any]) -> Iterator[bytes]:
    """The answer ``message`` streamed as Anthropic streams a search and its citations."""
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": 10, "output_tokens": 1}
    yield _sse("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "server_tool_use":
            opened: dict[str, Any] = {**block, "input": {}}
        elif kind == "text":
            opened = {"type": "text", "text": ""}
        else:
            opened = block
        yield _sse(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": opened},
        )
        deltas: list[dict[str, Any]] = []
        if kind == "server_tool_use":
            text = dumps(block["input"]).decode()
            deltas = [
                {"type": "input_json_delta", "partial_json": text[:9]},
                {"type": "input_json_delta", "partial_json": text[9:]},
            ]
        elif kind == "text":
            deltas = [
                {"type": "citations_delta", "citation": c} for c in block.get("citations", ())
            ]
            deltas += [{"type": "text_delta", "text": block["text"]}]
        for delta in deltas:
            yield _sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    yield _sse(
        "message_delta", {"type": "message_delta", "delta": delta, "usage": message["usage"]}
    )
    yield _sse("message_stop", {"type": "message_stop"})


def gemini_refusal(index: int, definition: tuple[str, Any]) -> str | None:
    """Why Gemini would refuse its search tool (``None``: fine)."""
    _, value = definition
    snake = "google_search"
    if not isinstance(value, dict):
        return f"Invalid value at 'tools[{index}].{snake}' (type.googleapis.com/google.ai.generativelanguage.v1beta.GoogleSearch)"  # noqa: E501
    for name in value:
        if name not in ("timeRangeFilter", "time_range_filter"):
            return (
                f'Invalid JSON payload received. Unknown name "{name}" at '
                f"'tools[{index}].{snake}': Cannot find field."
            )
    return None


def gemini_answer(query: str) -> tuple[list[str], dict[str, Any]]:
    """The text pieces of a grounded answer, and its ``groundingMetadata``."""
    found = results(query)
    pieces = [INTRO, *SENTENCES]
    supports = []
    offset = len(INTRO.encode())
    for n, sentence in enumerate(SENTENCES):
        size = len(sentence.encode())
        segment = {"startIndex": offset, "endIndex": offset + size, "text": sentence}
        supports.append(
            {"segment": segment, "groundingChunkIndices": [n], "confidenceScores": [0.9]}
        )
        offset += size
    metadata = {
        "webSearchQueries": [query],
        "searchEntryPoint": {"renderedContent": "<div>fake search suggestions</div>"},
        "groundingChunks": [{"web": {"uri": r["url"], "title": r["title"]}} for r in found],
        "groundingSupports": supports,
    }
    return pieces, metadata


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n"


# -- answering ----------------------------------------------------------------------------


def paused_part(query: str, n: int) -> list[dict[str, Any]]:
    """The content of the ``n``-th paused part of a search turn (from 1): one more search."""
    return anthropic_content(f"srvtoolu_pause{n}", query)[:2]


def _paused_so_far(payload: dict[str, Any], query: str) -> int | str:
    """How many times the turn was paused, by the assistant content sent back (0: a new
    turn), or why that content cannot continue it."""
    messages = payload.get("messages") or []
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "assistant":
        return 0
    content = last.get("content")
    blocks = content if isinstance(content, list) else []
    done = sum(1 for b in blocks if isinstance(b, dict) and b.get("type") == "server_tool_use")
    expected = [block for n in range(1, done + 1) for block in paused_part(query, n)]
    if done == 0 or blocks != expected:
        return (
            f"messages.{len(messages) - 1}: the assistant content does not continue a "
            "paused turn: send the paused response's content back unchanged"
        )
    return done


async def answer_anthropic(
    send: Send,
    payload: dict[str, Any],
    number: int,
    index: int,
    tool: dict[str, Any],
    *,
    pauses: int = 0,
) -> None:
    """Answer a Messages request carrying the web search tool (whole or streamed),
    pausing the turn ``pauses`` times first."""
    refusal = anthropic_refusal(index, tool, payload.get("messages"))
    query = query_of(payload, gemini=False)
    so_far = _paused_so_far(payload, query) if pauses else 0
    done = so_far if isinstance(so_far, int) else 0
    if isinstance(so_far, str):
        refusal = so_far
    if refusal is not None:
        error = {"type": "invalid_request_error", "message": refusal}
        await _whole(send, 400, {"type": "error", "error": error})
        return
    content = anthropic_content(f"srvtoolu_fake{number}", query)
    stop = "end_turn"
    if pauses and done < pauses:
        content, stop = paused_part(query, done + 1), "pause_turn"
    elif pauses:
        content = content[2:]  # the searches ran in the paused parts: the text citing them
    message = {
        "id": f"msg_fake{number}",
        "type": "message",
        "role": "assistant",
        "model": str(payload.get("model", "fake-model")),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": anthropic_usage(12),
    }
    if not payload.get("stream"):
        await _whole(send, 200, message)
        return
    await _streamed(send, anthropic_events(message))


async def answer_gemini(
    send: Send,
    payload: dict[str, Any],
    number: int,
    model: str,
    found: tuple[int, Any],
    *,
    stream: bool,
) -> None:
    """Answer a ``generateContent`` request carrying ``googleSearch`` (whole or streamed)."""
    refusal = gemini_refusal(*found)
    if refusal is not None:
        error = {"code": 400, "message": refusal, "status": "INVALID_ARGUMENT"}
        await _whole(send, 400, {"error": error})
        return
    pieces, metadata = gemini_answer(query_of(payload, gemini=True))
    usage = {"promptTokenCount": 10, "candidatesTokenCount": 12, "totalTokenCount": 22}
    head = {"modelVersion": model, "responseId": f"fake{number}"}

    def chunk(parts: list[dict[str, Any]], last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if last:
            candidate.update(finishReason="STOP", groundingMetadata=metadata)
        return {"candidates": [candidate], "usageMetadata": usage, **head}

    if not stream:
        await _whole(send, 200, chunk([{"text": "".join(pieces)}], True))
        return
    events = [
        b"data: " + dumps(chunk([{"text": piece}], n == len(pieces) - 1)) + b"\r\n\r\n"
        for n, piece in enumerate(pieces)
    ]
    await _streamed(send, iter(events))


async def _whole(send: Send, status: int, payload: Any) -> None:
    body = dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _streamed(send: Send, events: Iterator[bytes]) -> None:
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for event in events:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# -- OpenAI Responses ---------------------------------------------------------------------

RESPONSES_TYPES = ("web_search", "web_search_preview", "web_search_2025_08_26")
_RESPONSES_KEYS = {
    "type",
    "filters",
    "search_context_size",
    "user_location",
    "external_web_access",
}


def responses_tool(payload: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """The request's Responses web search tool: ``(index, definition)``, or ``None``."""
    for index, tool in enumerate(payload.get("tools") or ()):
        if isinstance(tool, dict) and tool.get("type") in RESPONSES_TYPES:
            return index, tool
    return None


def responses_refusal(index: int, tool: dict[str, Any]) -> str | None:
    """Why OpenAI would refuse this web search tool (``None``: fine)."""
    for key in tool:
        if key not in _RESPONSES_KEYS:
            return f"Unknown parameter: 'tools[{index}].{key}'."
    size = tool.get("search_context_size")
    if size is not None and size not in ("low", "medium", "high"):
        return f"Invalid value: '{size}'. Supported values are: 'low', 'medium', and 'high'."
    return None


def responses_query(payload: dict[str, Any]) -> str:
    """What the fake searches for on the Responses API: the last user text of ``input``."""
    items = payload.get("input")
    if isinstance(items, str):
        return items[:80]
    turns = [
        {"role": "user", "content": item.get("content")}
        for item in items or ()
        if isinstance(item, dict) and item.get("role") == "user"
    ]
    return query_of({"messages": turns}, gemini=False)


def responses_output(number: int, query: str) -> list[dict[str, Any]]:
    """The output items of an answer that searched: the call, then the cited text."""
    found = results(query)
    text, annotations = INTRO, []
    for sentence, result in zip(SENTENCES, found, strict=True):
        start = len(text) + (len(sentence) - len(sentence.lstrip()))
        text += sentence
        annotations.append(
            {
                "type": "url_citation",
                "start_index": start,
                "end_index": len(text),
                "url": result["url"],
                "title": result["title"],
            }
        )
    sources = [{"type": "url", "url": r["url"]} for r in found]
    part = {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}
    return [
        {
            "type": "web_search_call",
            "id": f"ws_fake{number}",
            "status": "completed",
            "action": {"type": "search", "query": query, "sources": sources},
        },
        {
            "type": "message",
            "id": f"msg_fake{number}",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        },
    ]


def responses_events(response: dict[str, Any]) -> Iterator[bytes]:
    """``response`` (as :func:`responses_output` made it) streamed as OpenAI streams it."""
    sequence = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        return _sse(kind, {"type": kind, "sequence_number": next(sequence), **fields})

    started = {**response, "status": "in_progress", "output": [], "usage": None}
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    search, message = response["output"]
    yield event(
        "response.output_item.added",
        output_index=0,
        item={**search, "status": "in_progress", "action": {"type": "search"}},
    )
    for stage in ("in_progress", "searching", "completed"):
        yield event(f"response.web_search_call.{stage}", item_id=search["id"], output_index=0)
    yield event("response.output_item.done", output_index=0, item=search)
    where = {"item_id": message["id"], "output_index": 1, "content_index": 0}
    yield event(
        "response.output_item.added",
        output_index=1,
        item={**message, "status": "in_progress", "content": []},
    )
    part = message["content"][0]
    yield event(
        "response.content_part.added", **where, part={**part, "text": "", "annotations": []}
    )
    for piece in (INTRO, *SENTENCES):
        yield event("response.output_text.delta", **where, delta=piece, logprobs=[])
    for index, annotation in enumerate(part["annotations"]):
        yield event(
            "response.output_text.annotation.added",
            **where,
            annotation_index=index,
            annotation=annotation,
        )
    yield event("response.output_text.done", **where, text=part["text"], logprobs=[])
    yield event("response.content_part.done", **where, part=part)
    yield event("response.output_item.done", output_index=1, item=message)
    yield event("response.completed", response=response)
