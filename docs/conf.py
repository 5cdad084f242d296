"""Sphinx configuration for provider_proxy's documentation.

Built by ``nox -s docs`` with warnings as errors; the package is installed in
that session, so autodoc imports it without touching ``sys.path``; only the
local extension in ``_ext`` (the gateway tables, rendered from the code) is
added to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from provider_proxy import __version__

# The gateway's tables are rendered from the code by docs/_ext/fidelity.py.
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "provider_proxy"
author = "provider_proxy contributors"
copyright = "2026, provider_proxy contributors"
release = __version__
version = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode", "fidelity"]
exclude_patterns = ["_build", "_ext"]
html_theme = "alabaster"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Show the package's aliases by name rather than expanded.
autodoc_type_aliases = {
    "ApiKey": "provider_proxy.adapters.ApiKey",
}

# No network, so no intersphinx: references to httpx, anyio and the standard
# library stay plain text instead of failing the build.
nitpicky = False
