"""App bundles: an app directory as one zip file, named by its SHA-256.

The bytes depend only on the files' relative paths and contents (sorted entries, fixed
timestamps and permissions), so the same app directory always gives the same hash and a
link or node that holds it never receives it twice.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from corolla.core import AppLoadError

__all__ = ["install_bundle", "make_bundle"]

_SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".ruff_cache"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _files(root: Path) -> list[Path]:
    found = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in sorted(names):
            if not name.endswith(_SKIPPED_SUFFIXES):
                found.append(Path(directory, name))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def make_bundle(app_dir: str | os.PathLike[str]) -> bytes:
    """Zip an app directory reproducibly (caches and virtual environments left out)."""
    root = Path(app_dir).resolve()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in _files(root):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def install_bundle(data: bytes | memoryview, destination: str | os.PathLike[str]) -> Path:
    """Unpack a bundle into ``destination`` (atomically: all of it or nothing) and return it.

    An existing ``destination`` is kept as it is: bundles are named by content.

    Raises
    ------
    AppLoadError
        If the bytes are not a zip file or an entry would land outside ``destination``.
    """
    target = Path(destination)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
                for name in archive.namelist():
                    resolved = (staging / name).resolve()
                    if not resolved.is_relative_to(staging.resolve()):
                        raise AppLoadError(f"app bundle entry {name!r} escapes its directory")
                archive.extractall(staging)
        except zipfile.BadZipFile as exc:
            raise AppLoadError(f"the app bundle is not a zip file: {exc}") from exc
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # someone else won the race: fine
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
