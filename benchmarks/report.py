"""The results: one Markdown table (printed and saved) and the raw numbers as JSON.

``python -m benchmarks.report [latest.json]`` prints a saved run's table as
reStructuredText, for ``docs/performance.rst``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .procs import ROOT, Cores
from .scenarios import COLUMNS, EXTRA_COLUMNS, Outcome, Row

_HEADINGS = {
    "direct": "Direct",
    "floor": "Floor",
    "proxy": "Proxy",
    "proxy-transform": "Proxy + transform",
    "floor-reqwest": "Floor (pyreqwest)",
    "floor-granian": "Floor (pyreqwest, granian)",
    "proxy-reqwest": "Proxy (reqwest)",
    "proxy-granian": "Proxy (granian)",
    "gateway": "Gateway (translated)",
    "litellm": "LiteLLM",
}
_PACKAGES = (
    "provider-proxy",
    "aiohttp",
    "orjson",
    "httpx",
    "uvicorn",
    "httptools",
    "uvloop",
    "pyreqwest",
    "granian",
)


def machine(cores: Cores, generator: str, quick: bool) -> dict[str, Any]:
    """What the numbers were measured on, read from the machine."""
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": model,
        "nproc": os.cpu_count(),
        "cores": {"server": cores.server, "upstream_and_client": cores.other},
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "load_generator": generator,
        "mode": "quick" if quick else "full",
        "load_average": os.getloadavg(),
        "commit": _commit(),
        "versions": versions,
    }


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}" if head else "unknown"


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit in ("req/s", "frames/s"):
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.3f}"
    if unit == "KiB":
        return f"{value:.1f}"
    return f"{value:g}"


def _columns(rows: list[Row]) -> list[str]:
    """The columns of numbers: the usual ones, and the gateway's when a row has them."""
    extra = [c for c in EXTRA_COLUMNS if any(c in row.values for row in rows)]
    return [*COLUMNS, *extra]


def _header(columns: list[str]) -> list[str]:
    headings = (_HEADINGS[c] for c in columns)
    return ["Scenario", "Metric", *headings, "Proxy vs reference", "Target", "Met"]


def _cells(row: Row, columns: list[str]) -> list[str]:
    unit = f" ({row.unit})" if row.unit else ""
    met = "" if row.met is None else ("yes" if row.met else "**no**")
    cells = [row.scenario, row.metric + unit]
    cells += [_number(row.values.get(column), row.unit) for column in columns]
    return [*cells, row.result, row.target, met]


def table(rows: list[Row]) -> str:
    """The results as one Markdown table."""
    columns = _columns(rows)
    header = _header(columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(row, columns)) + " |" for row in rows]
    return "\n".join(lines)


def rst_table(rows: list[Row]) -> str:
    """The results as a reStructuredText list-table."""
    columns = _columns(rows)
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for cells in [_header(columns), *(_cells(row, columns) for row in rows)]:
        lines.append("   * - " + (cells[0] or "\\"))
        lines += [f"     - {cell}" if cell else "     -" for cell in cells[1:]]
    return "\n".join(lines)


def markdown(meta: dict[str, Any], outcomes: dict[str, Outcome]) -> str:
    """The whole report: the machine, the table and the notes."""
    rows = [row for outcome in outcomes.values() for row in outcome.rows]
    notes = _notes(outcomes)
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    parts = [
        "# provider_proxy benchmarks",
        "",
        f"{meta['date']}, {meta['mode']} run, commit {meta['commit']}.",
        f"CPU: {meta['cpu']}, {meta['nproc']} cores; server under test pinned to core "
        f"{meta['cores']['server']}, upstream and load generator to core "
        f"{meta['cores']['upstream_and_client']}. {meta['python']} on {meta['platform']}.",
        f"Load generator: {meta['load_generator']}. {versions}.",
        "",
        table(rows),
    ]
    if notes:
        parts += ["", "Notes:", "", *(f"- {note}" for note in notes)]
    return "\n".join(parts) + "\n"


def _notes(outcomes: dict[str, Outcome]) -> list[str]:
    notes = [note for outcome in outcomes.values() for note in outcome.notes]
    return list(dict.fromkeys(notes))


def save(
    directory: Path, meta: dict[str, Any], outcomes: dict[str, Outcome], text: str
) -> tuple[Path, Path]:
    """Write ``latest.md`` and ``latest.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    md, raw = directory / "latest.md", directory / "latest.json"
    md.write_text(text)
    document = {
        "meta": meta,
        "rows": [dataclasses.asdict(row) for outcome in outcomes.values() for row in outcome.rows],
        "notes": _notes(outcomes),
        "raw": {name: outcome.raw for name, outcome in outcomes.items()},
    }
    raw.write_text(json.dumps(document, indent=1, default=str) + "\n")
    return md, raw


def echo(text: str) -> None:
    """Print progress to stderr, so stdout holds only the report."""
    print(text, file=sys.stderr, flush=True)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks/results/latest.json"
    document = json.loads(path.read_text())
    print(rst_table([Row(**row) for row in document["rows"]]))


if __name__ == "__main__":
    main()
