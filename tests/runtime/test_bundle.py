"""App bundles: reproducible zips, installed atomically."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from corolla.core import AppLoadError
from corolla.runtime import BundleLimits, install_bundle, make_bundle


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


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    # 64 MiB of zeros deflate to about 64 KiB: a ratio near 1,000
    bomb = _zip({"pyproject.toml": b"[project]\n", "data.bin": bytes(64 * 1024 * 1024)})

    with pytest.raises(AppLoadError, match=r"'data.bin' expands .* beyond 200 times"):
        install_bundle(bomb, tmp_path / "installed")

    assert not (tmp_path / "installed").exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left either


def test_a_bundle_over_the_total_size_is_refused(tmp_path: Path) -> None:
    data = _zip({f"f{i}.py": os.urandom(1000) for i in range(5)})

    with pytest.raises(AppLoadError, match="more than 3000 bytes"):
        install_bundle(data, tmp_path / "installed", BundleLimits(max_bytes=3000))

    assert not (tmp_path / "installed").exists()


def test_a_bundle_with_too_many_files_is_refused(tmp_path: Path) -> None:
    data = _zip({f"f{i}.py": b"x = 1\n" for i in range(11)})

    with pytest.raises(AppLoadError, match="holds 11 files; at most 10"):
        install_bundle(data, tmp_path / "installed", BundleLimits(max_files=10))


def test_an_entry_escaping_the_directory_is_refused(tmp_path: Path) -> None:
    data = _zip({"../evil.py": b"x = 1\n"})

    with pytest.raises(AppLoadError, match="escapes its directory"):
        install_bundle(data, tmp_path / "sub" / "installed")

    assert not (tmp_path / "evil.py").exists()


def test_an_app_directory_too_large_to_bundle_is_refused_with_what_to_do(tmp_path: Path) -> None:
    app = _app(tmp_path / "app")
    (app / "data.bin").write_bytes(bytes(5000))

    with pytest.raises(AppLoadError, match="keep data sets out of the app directory"):
        make_bundle(app, BundleLimits(max_bytes=4000))
