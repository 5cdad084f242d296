"""Sphinx extension: the gateway's tables, rendered from the code.

``.. fidelity-table:: openai-chat request`` renders a codec's fidelity table
(``request`` or ``encode``); ``.. gateway-table:: thinking-budgets`` (also
``effort-for-budget``, ``errors anthropic-messages openai-chat``) the other
conversions; ``:gateway-value:`DEFAULT_MAX_TOKENS``` a constant. The reST is
built by :mod:`gateway_tables`, which the tests read as well.
"""

from __future__ import annotations

from typing import Any

import gateway_tables
from docutils import nodes
from docutils.parsers.rst.states import Inliner
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


class _Generated(SphinxDirective):
    """A directive whose body is reST generated from its arguments."""

    has_content = False
    optional_arguments = 3

    def generate(self) -> str:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        try:
            text = self.generate()
        except (KeyError, TypeError, ValueError) as exc:
            raise self.error(f"{self.name}: {exc}") from None
        container = nodes.container()
        source = self.get_source_info()[0] or "<generated>"
        self.state.nested_parse(
            StringList(text.splitlines(), source=source), self.content_offset, container
        )
        return list(container.children)


class FidelityTableDirective(_Generated):
    """``.. fidelity-table:: {dialect} {request|encode}``."""

    required_arguments = 2
    optional_arguments = 0

    def generate(self) -> str:
        return gateway_tables.fidelity_rst(*self.arguments)


class GatewayTableDirective(_Generated):
    """``.. gateway-table:: {name} [arguments]``."""

    required_arguments = 1

    def generate(self) -> str:
        return gateway_tables.gateway_rst(*self.arguments)


def gateway_value_role(
    name: str,
    rawtext: str,
    text: str,
    lineno: int,
    inliner: Inliner,
    options: dict[str, Any] | None = None,
    content: list[str] | None = None,
) -> tuple[list[nodes.Node], list[nodes.system_message]]:
    """``:gateway-value:`DEFAULT_MAX_TOKENS``` as the constant's value, in literal text."""
    try:
        gateway_tables.value_rst(text)
    except KeyError as exc:
        message = inliner.reporter.error(str(exc), line=lineno)
        return [inliner.problematic(rawtext, rawtext, message)], [message]
    return [nodes.literal(rawtext, str(gateway_tables.VALUES[text]))], []


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("fidelity-table", FidelityTableDirective)
    app.add_directive("gateway-table", GatewayTableDirective)
    app.add_role("gateway-value", gateway_value_role)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
