"""The package's layers, enforced: which folder may import which, and where providers are named.

See ``docs/design.rst``. Each rule is checked over the source with :mod:`ast`,
so a forbidden import fails the build wherever it is written (also inside a
function).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "provider_proxy"

#: The shared vocabulary every layer may use: errors, JSON, secrets and their scrubbing,
#: bounded decoding, the request context and usage types, ASGI types.
VOCABULARY = {
    "_exceptions",
    "_json",
    "_secret",
    "_scrub",
    "_bounded",
    "_adapter",
    "types",
    "__version__",
}

#: Layer -> the layers (folders) and vocabulary it may import from the package.
ALLOWED: dict[str, set[str]] = {
    "policy": set(),
    "state": set(),
    "transports": set(),
    "testing": set(),
    "spend": set(),
    "observe": {"policy", "spend"},
    "dialects": {"policy"},
    "transforms": {"policy", "dialects"},
    "guards": {"policy", "state", "dialects", "spend"},
    "adapters": {"policy", "dialects", "transforms"},
    "engine": {
        "policy",
        "state",
        "transports",
        "observe",
        "dialects",
        "transforms",
        "guards",
        "adapters",
        "spend",
    },
    "config": {
        "policy",
        "state",
        "transports",
        "observe",
        "dialects",
        "transforms",
        "guards",
        "adapters",
        "engine",
    },
}

#: Modules that do I/O or schedule work: the pure layers import none of them.
IO_MODULES = {"asyncio", "anyio", "socket", "aiohttp", "redis", "uvicorn", "ssl", "select"}
PURE_LAYERS = {"policy", "dialects", "spend"}

#: Layers that must not know any provider or API format by name.
NEUTRAL_LAYERS = {"engine", "policy", "state", "transports", "observe", "guards", "spend"}
PROVIDER_NAMES = re.compile(
    r"openai|anthropic|gemini|google|azure|copilot|github|openrouter|ollama|vllm|dashscope|qwen"
    r"|claude|x-goog|x-api-key|api-key",
    re.IGNORECASE,
)


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        layer = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        found.append((layer, path))
    return found


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(level, dotted name)`` of every import in the module (``level`` 0: absolute)."""
    tree = ast.parse(path.read_text(), str(path))
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((0, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and not base:
                names.extend((node.level, alias.name) for alias in node.names)
            else:
                names.append((node.level, base))
    return names


def _target(path: Path, level: int, name: str) -> str | None:
    """The top-level part of the package an import names (a layer or vocabulary module)."""
    if level == 0:
        parts = name.split(".")
        return parts[1] if parts[0] == "provider_proxy" and len(parts) > 1 else None
    here = list(path.relative_to(PACKAGE).parent.parts)
    up = level - 1
    if up > len(here):
        return None
    base = here[: len(here) - up] if up else here
    parts = base + [p for p in name.split(".") if p]
    return parts[0] if parts else None


LAYERED = [(layer, path) for layer, path in _modules() if layer in ALLOWED]


@pytest.mark.parametrize(("layer", "path"), LAYERED, ids=lambda v: str(v))
def test_layer_imports_only_what_it_may(layer: str, path: Path) -> None:
    allowed = ALLOWED[layer] | VOCABULARY | {layer}
    for level, name in _imports(path):
        target = _target(path, level, name)
        if target is not None:
            assert target in allowed, f"{path.relative_to(PACKAGE)} imports {name!r} ({target})"
        if layer in PURE_LAYERS and level == 0:
            assert name.split(".")[0] not in IO_MODULES, f"{path} imports {name} (I/O)"


def test_the_vocabulary_imports_no_layer() -> None:
    for layer, path in _modules():
        if layer not in VOCABULARY:
            continue
        for level, name in _imports(path):
            target = _target(path, level, name)
            assert target is None or target in VOCABULARY, f"{path.name} imports {name}"


@pytest.mark.parametrize(
    "path",
    [path for layer, path in _modules() if layer in NEUTRAL_LAYERS | VOCABULARY],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_no_provider_or_format_named_outside_dialects_and_adapters(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        found = PROVIDER_NAMES.search(line)
        assert found is None, f"{path.relative_to(PACKAGE)}:{number} names {found.group(0)!r}"


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a policy module importing the engine is reported."""
    module = PACKAGE / "policy" / "_probe_for_test.py"
    module.write_text("from ..engine import _app\nimport asyncio\n")
    try:
        with pytest.raises(AssertionError, match="imports"):
            test_layer_imports_only_what_it_may("policy", module)
    finally:
        module.unlink()
