"""The gateway's tables as reST, built from the code (no Sphinx needed).

:mod:`fidelity` (the Sphinx extension) renders what this module returns, and
``tests/test_docs_fidelity.py`` reads it too, so the published tables are the
codecs' own tables and cannot drift from them.

Tables, by the arguments the directives take:

- ``.. fidelity-table:: {dialect} request``: the fate of every field a client
  of that format may send (the codec's ``REQUEST_FIELDS``).
- ``.. fidelity-table:: {dialect} encode``: the fate of canonical content the
  format cannot hold, when a request is written in it (``ENCODE_FIELDS``).
- ``.. gateway-table:: thinking-budgets``, ``effort-for-budget``: the reasoning
  conversions; ``.. gateway-table:: errors {provider} {client}``: the status
  and error type a client gets for each error status of a provider.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from provider_proxy.dialects import BUILTIN, _anthropic_codec, _gemini_codec, _openai_chat_codec
from provider_proxy.dialects import _gemini_schema
from provider_proxy.dialects.canonical import Codec, Fidelity, FidelityTable, kind_for_status

#: Each translating format's codec, by dialect name (``openai-chat``, ``anthropic-messages``).
CODECS: dict[str, Codec] = {d.name: d.codec for d in BUILTIN if d.codec is not None}

#: The directions of a fidelity table.
DIRECTIONS = ("request", "encode")

#: The values prose may cite with the ``gateway-value`` role.
VALUES: dict[str, object] = {
    "DEFAULT_MAX_TOKENS": _anthropic_codec.DEFAULT_MAX_TOKENS,
    "ID_PREFIX": _anthropic_codec.ID_PREFIX,
    "GEMINI_NAME_PREFIX": _gemini_schema.NAME_PREFIX,
}

#: The error statuses each provider format answers with (the rows of an error table).
PROVIDER_STATUSES: dict[str, tuple[int, ...]] = {
    "openai-chat": (400, 401, 403, 404, 413, 429, 500, 503, 504),
    "anthropic-messages": (400, 401, 403, 404, 413, 429, 500, 504, 529),
    "gemini": (400, 401, 403, 404, 429, 500, 503, 504),
}

_FATES = {
    Fidelity.MAPPED: "mapped",
    Fidelity.REFUSED: "**refused**",
    Fidelity.DROPPED: "dropped (no effect)",
}


def fidelity_table(dialect: str, direction: str) -> FidelityTable:
    """The codec's table: ``request`` (decoding a client's body) or ``encode``."""
    if dialect not in CODECS:
        raise KeyError(f"no codec for {dialect!r}; the codecs are: {', '.join(CODECS)}")
    if direction not in DIRECTIONS:
        raise KeyError(f"direction {direction!r}: expected one of {', '.join(DIRECTIONS)}")
    codec = CODECS[dialect]
    return codec.request_fields if direction == "request" else codec.encode_fields


def fidelity_rows(dialect: str, direction: str) -> list[tuple[str, str, str]]:
    """``(field, fate, note)`` for every row, in the codec's order."""
    return [
        (name, _FATES[rule.fate], rule.note)
        for name, rule in fidelity_table(dialect, direction).items()
    ]


def fidelity_rst(dialect: str, direction: str) -> str:
    """A fidelity table as a reST list table."""
    first = "Request field" if direction == "request" else "Canonical content"
    rows = [(f"``{name}``", fate, note) for name, fate, note in fidelity_rows(dialect, direction)]
    return list_table((first, "Fate", "Condition or note"), rows, widths=(30, 25, 45))


def thinking_budgets_rst() -> str:
    """OpenAI ``reasoning_effort`` to Anthropic ``thinking`` (``THINKING_BUDGETS``)."""
    rows = [
        (
            f'``"{effort}"``',
            '``{"type": "disabled"}``'
            if budget is None
            else f'``{{"type": "enabled", "budget_tokens": {budget}}}``',
        )
        for effort, budget in _anthropic_codec.THINKING_BUDGETS.items()
    ]
    return list_table(("reasoning_effort", "thinking"), rows, widths=(30, 70))


def effort_for_budget_rst() -> str:
    """Anthropic ``thinking`` to OpenAI ``reasoning_effort`` (``EFFORT_FOR_BUDGET``)."""
    rows: list[tuple[str, str]] = []
    low = 1
    for bound, effort in _openai_chat_codec.EFFORT_FOR_BUDGET:
        rows.append((f"{low} to {bound}", f'``"{effort}"``'))
        low = bound + 1
    rows.append((f"above {low - 1}", f'``"{_openai_chat_codec.EFFORT_FOR_BUDGET[-1][1]}"``'))
    rows.append(('``{"type": "disabled"}`` (or a budget of 0)', "not sent (the model's default)"))
    return list_table(("thinking.budget_tokens", "reasoning_effort"), rows, widths=(50, 50))


def gemini_budgets_rst() -> str:
    """A reasoning effort as Gemini's ``thinkingBudget`` (``THINKING_BUDGETS``)."""
    rows = [
        (f'``"{effort}"``', f"``{budget}``")
        for effort, budget in _gemini_codec.THINKING_BUDGETS.items()
    ]
    return list_table(("reasoning effort", "thinkingConfig.thinkingBudget"), rows, widths=(40, 60))


def gemini_finishes_rst() -> str:
    """Gemini's finish reasons as canonical ones, and those that are errors."""
    rows = [
        (f"``{name}``", f"``{reason.value}``")
        for name, reason in _gemini_codec.FINISH_REASONS.items()
    ]
    rows[0] = ("``STOP``", "``stop``, or ``tool_calls`` when the answer has a function call")
    rows.extend(
        (f"``{name}``", f"an error (502): {text}")
        for name, text in _gemini_codec.FAILED_FINISHES.items()
    )
    rows.append(("any other", "an error (502): the reason is named"))
    return list_table(("finishReason", "Canonical"), rows, widths=(35, 65))


def error_rows(provider: str, client: str) -> list[tuple[int, str, int, str]]:
    """``(provider status, its kind, client status, client error type)`` per status.

    Each provider error is the provider's own body for that status (as its codec
    writes one), read by the provider's codec and written by the client's, as
    the gateway does.
    """
    source, target = CODECS[provider], CODECS[client]
    rows = []
    for status in PROVIDER_STATUSES[provider]:
        _, body = source.encode_error(status, kind_for_status(status), "message")
        error = source.decode_error(status, body)
        client_status, client_body = target.encode_error(error.status, error.kind, error.message)
        error_body = client_body["error"]
        # OpenAI and Anthropic name an error by its type, Google's APIs by its status.
        name = error_body.get("type", error_body.get("status"))
        rows.append((status, error.kind, client_status, str(name)))
    return rows


def errors_rst(provider: str, client: str) -> str:
    """The error table of one direction."""
    rows = [
        (str(status), f"``{kind}``", str(client_status), f"``{error_type}``")
        for status, kind, client_status, error_type in error_rows(provider, client)
    ]
    headers = ("Provider status", "Kind", "Client status", "Client error type")
    return list_table(headers, rows, widths=(20, 25, 20, 35))


_GATEWAY_TABLES: dict[str, Callable[..., str]] = {
    "thinking-budgets": thinking_budgets_rst,
    "effort-for-budget": effort_for_budget_rst,
    "errors": errors_rst,
    "gemini-budgets": gemini_budgets_rst,
    "gemini-finishes": gemini_finishes_rst,
}


def gateway_rst(name: str, *arguments: str) -> str:
    """One of the other gateway tables by name (see the module docstring)."""
    if name not in _GATEWAY_TABLES:
        raise KeyError(f"no gateway table {name!r}; the tables are: {', '.join(_GATEWAY_TABLES)}")
    return _GATEWAY_TABLES[name](*arguments)


def value_rst(name: str) -> str:
    """A constant of the code as inline reST (``4096``)."""
    if name not in VALUES:
        raise KeyError(f"no value {name!r}; the values are: {', '.join(VALUES)}")
    return f"``{VALUES[name]}``"


def list_table(headers: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int]) -> str:
    """A reST ``list-table``; an empty cell is written as a dash."""
    if not rows:
        raise ValueError("a table needs at least one row")
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        f"   :widths: {' '.join(str(w) for w in widths)}",
        "",
    ]
    for row in (headers, *rows):
        for i, cell in enumerate(row):
            lines.append(f"   {'*' if i == 0 else ' '} - {cell or '—'}")
    return "\n".join(lines) + "\n"
