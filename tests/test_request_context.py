"""The request context handed to adapters and transforms: a value, changed by copying."""

from __future__ import annotations

import dataclasses

from provider_proxy import RequestContext


def _context() -> RequestContext:
    return RequestContext("openai", "POST", "/chat/completions", b"", [], "rid-1")


def test_contexts_compare_by_value_and_replace_makes_a_changed_copy() -> None:
    context = _context()
    assert context == _context()
    changed = dataclasses.replace(context, identity="team-a")
    assert changed.identity == "team-a"
    assert context.identity is None
    assert changed != context
    assert changed.request_id == context.request_id


def test_each_context_has_its_own_headers_to_add_and_answer_rewriters() -> None:
    one, two = _context(), _context()
    one.upstream_headers["x-extra"] = "1"
    assert two.upstream_headers == {}
    assert one.answer_rewriters is not two.answer_rewriters


def test_a_context_is_slotted() -> None:
    assert not hasattr(_context(), "__dict__")
    assert [f.name for f in dataclasses.fields(RequestContext)][:6] == [
        "adapter",
        "method",
        "path",
        "query",
        "headers",
        "request_id",
    ]
