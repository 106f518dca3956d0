"""Imports point down the layers of ARCHITECTURE.md; ``core`` imports nothing of corolla."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import corolla

PACKAGE = Path(corolla.__file__).parent

#: What each subpackage may import from corolla (besides itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "data": {"core"},
    "frameworks": {"core"},
    "project": {"core"},
    "state": {"core"},
    "transport": {"core"},
    "client": {"core"},
    "server": {"core"},
    "strategy": {"core", "server"},
    "simulation": {"core", "client", "server", "project"},
    "runtime": {"core", "client", "server", "project", "state", "transport", "strategy"},
    "cli": {
        "core",
        "client",
        "server",
        "project",
        "strategy",
        "simulation",
        "runtime",
        "transport",
        "data",
        "",
    },
}


def _imported_subpackages(path: Path, subpackage: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    depth = len(path.relative_to(PACKAGE).parts) - 1
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = list(path.relative_to(PACKAGE).parts[:-1])
                base = parts[: depth - node.level + 1] if node.level <= depth else []
                module = [*base, *(node.module or "").split(".")] if node.module else base
                module = [m for m in module if m]
                if not module and node.level > depth:
                    found.add("")
                elif module:
                    found.add(module[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "corolla":
                found.add(node.module.split(".")[1] if "." in node.module else "")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "corolla":
                    found.add(parts[1] if len(parts) > 1 else "")
    found.discard(subpackage)
    return found


@pytest.mark.parametrize("subpackage", sorted(ALLOWED))
def test_imports_point_down(subpackage):
    offenders = {}
    for path in sorted((PACKAGE / subpackage).rglob("*.py")):
        extra = _imported_subpackages(path, subpackage) - ALLOWED[subpackage]
        if extra:
            offenders[str(path.relative_to(PACKAGE))] = sorted(extra)

    assert offenders == {}


def test_every_subpackage_has_a_layer():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}

    assert subpackages == set(ALLOWED)
