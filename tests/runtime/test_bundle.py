"""App bundles: reproducible zips, installed atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from corolla.core import AppLoadError
from corolla.runtime import install_bundle, make_bundle


def _app(root: Path) -> Path:
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("X = 1\n")
    (root / "pkg" / "__pycache__" / "junk.pyc").write_bytes(b"\0")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    return root


def test_the_same_directory_gives_the_same_bytes(tmp_path: Path) -> None:
    app = _app(tmp_path / "app")
    first = make_bundle(app)
    (app / "pkg" / "__init__.py").touch()  # a new mtime changes nothing
    assert make_bundle(app) == first


def test_install_unpacks_without_caches(tmp_path: Path) -> None:
    target = install_bundle(make_bundle(_app(tmp_path / "app")), tmp_path / "installed")
    assert (target / "pkg" / "__init__.py").read_text() == "X = 1\n"
    assert not (target / "pkg" / "__pycache__").exists()


def test_install_refuses_what_is_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(AppLoadError, match="not a zip"):
        install_bundle(b"nope", tmp_path / "installed")
    assert not (tmp_path / "installed").exists()
