"""Sphinx configuration for provider_proxy's documentation."""

from __future__ import annotations

from provider_proxy import __version__

project = "provider_proxy"
author = "provider_proxy contributors"
copyright = "2026, provider_proxy contributors"
release = __version__
version = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Names that live in other projects' docs; there is no network for intersphinx.
nitpicky = False
