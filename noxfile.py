"""Every check a contributor needs: ``nox`` runs lint, typecheck, tests and docs."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = ["3.11"]
LINTED = ["src", "tests", "examples", "noxfile.py", "docs/conf.py"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite, with the fast extra so both upstream transports are exercised."""
    session.install("-e", ".[test,fast,server]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[typecheck]")
    session.run("mypy", "--strict", "src/provider_proxy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Sphinx, with warnings as errors."""
    session.install("-e", ".[docs]")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The offline demo: a fake provider, the proxy and a streamed chat completion."""
    session.install("-e", ".[server]")
    session.run("provider-proxy", "demo")
