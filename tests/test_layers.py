"""Imports point down the layers of ARCHITECTURE.md, and no package reaches into another's
private modules.

- ``core`` and ``tuning`` import nothing of corolla; each subpackage imports only the
  layers below it (:data:`ALLOWED`).
- Inside ``runtime``, the roles stay apart (:data:`RUNTIME_ALLOWED`): the node never
  imports the link, the link never the node, and the ServerApp process neither.
- A private module (a name starting with ``_``, as in ``corolla.core._errors``) is
  imported only from inside the package that holds it; other packages use what that
  package exports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import corolla

PACKAGE = Path(corolla.__file__).parent

#: What each subpackage may import from corolla (besides itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "tuning": set(),
    "data": {"core"},
    "frameworks": {"core"},
    "project": {"core"},
    "state": {"core"},
    "transport": {"core"},
    "client": {"core"},
    "server": {"core"},
    "strategy": {"core", "server", "tuning"},
    "execution": {"core", "client", "server", "project", "tuning"},
    "simulation": {"core", "client", "server", "project", "tuning", "execution", "telemetry"},
    "flower": {"core", "client", "server", "project", "strategy"},
    "trust": {"core"},
    "telemetry": {"core"},
    "privacy": {"core", "client", "server", "strategy", "tuning"},
    "tracking": {"core", "server"},
    "runtime": {
        "core",
        "trust",
        "client",
        "server",
        "project",
        "state",
        "transport",
        "strategy",
        "tuning",
        "execution",
        "telemetry",
    },
    "dashboard": {"core", "state", "transport", "trust", "runtime"},
    "cli": {
        "core",
        "dashboard",
        "client",
        "server",
        "project",
        "strategy",
        "simulation",
        "runtime",
        "transport",
        "data",
        "tuning",
        "execution",
        "flower",
        "trust",
        "privacy",
        "tracking",
        "telemetry",
        "",
    },
}

#: What each role of ``corolla.runtime`` may import of the others ("" is what the roles
#: share: the modules of ``corolla.runtime`` itself).
RUNTIME_ALLOWED: dict[str, set[str]] = {
    "": {"link", "node", "serverapp"},  # its __init__ exports them
    "link": {"", "serverapp"},  # it starts ServerApp processes
    "node": {""},
    "serverapp": {""},
}


def _module_name(path: Path) -> list[str]:
    parts = ["corolla", *path.relative_to(PACKAGE).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path) -> Iterator[list[str]]:
    """The absolute dotted names of everything ``path`` imports from corolla: modules, and
    for ``from X import y``, ``X.y`` (which may be a module)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = [*base, *(node.module or "").split(".")] if node.module else base
                target = [part for part in target if part]
            else:
                target = (node.module or "").split(".")
            yield target
            for alias in node.names:
                yield [*target, alias.name]


def _corolla_imports(path: Path) -> Iterator[list[str]]:
    for name in _imports(path):
        if name[:1] == ["corolla"]:
            yield name


def _subpackage(name: list[str]) -> str:
    """The subpackage of corolla a name is in ("" for corolla's own module and names)."""
    if len(name) > 1 and (PACKAGE / name[1] / "__init__.py").exists():
        return name[1]
    return ""


def _sources(subpackage: str = "") -> list[Path]:
    return sorted((PACKAGE / subpackage).rglob("*.py"))


@pytest.mark.parametrize("subpackage", sorted(ALLOWED))
def test_imports_point_down(subpackage):
    offenders = {}
    for path in _sources(subpackage):
        imported = {_subpackage(name) for name in _corolla_imports(path)}
        extra = imported - ALLOWED[subpackage] - {subpackage}
        if extra:
            offenders[str(path.relative_to(PACKAGE))] = sorted(extra)

    assert offenders == {}


def test_every_subpackage_has_a_layer():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}

    assert subpackages == set(ALLOWED)


def _runtime_role(name: list[str]) -> str | None:
    """The role of ``corolla.runtime`` a module name belongs to ("" for the shared
    modules), or None outside it."""
    if name[:2] != ["corolla", "runtime"]:
        return None
    if len(name) > 2 and name[2] in RUNTIME_ALLOWED:
        return name[2]
    return ""


def test_runtime_roles_stay_apart():
    offenders = {}
    for path in _sources("runtime"):
        role = _runtime_role(_module_name(path))
        assert role is not None
        imported = {_runtime_role(name) for name in _corolla_imports(path)} - {None, role}
        extra = imported - RUNTIME_ALLOWED[role]
        if extra:
            offenders[str(path.relative_to(PACKAGE))] = sorted(str(r) for r in extra)

    assert offenders == {}


def test_every_runtime_role_is_listed():
    roles = {p.name for p in (PACKAGE / "runtime").iterdir() if (p / "__init__.py").exists()}

    assert roles | {""} == set(RUNTIME_ALLOWED)


def _private_owner(name: list[str]) -> list[str] | None:
    """The package holding the first private module of ``name``, or None if no part of
    it is private."""
    for index, part in enumerate(name):
        if part.startswith("_") and not part.startswith("__"):
            return name[:index]
    return None


def test_no_package_imports_another_packages_private_modules():
    offenders = {}
    for path in _sources():
        importer = _module_name(path)
        for name in _corolla_imports(path):
            owner = _private_owner(name)
            if owner is not None and importer[: len(owner)] != owner:
                offenders.setdefault(str(path.relative_to(PACKAGE)), []).append(".".join(name))

    assert offenders == {}


def test_the_checks_see_relative_imports():
    # The rules above are only as good as the resolution of ``from ..x import y``.
    path = PACKAGE / "runtime" / "link" / "_link.py"

    names = {".".join(name) for name in _corolla_imports(path)}

    assert "corolla.runtime.link._fleet.FleetServicer" in names
    assert "corolla.state.SqliteLinkState" in names
