"""App bundles: an app directory as one zip file, named by its SHA-256.

The bytes depend only on the files' relative paths and contents (sorted entries, fixed
timestamps and permissions), so the same app directory always gives the same hash and a
link or node that holds it never receives it twice.

A bundle comes from someone else (a user submitting a run, a link sending a node its
app), so it is unpacked within :class:`BundleLimits` (``corolla.project``'s safe
extraction: bounded files, bytes and expansion ratio, no path escapes). The same limits
refuse a bundle too large to send.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from corolla.core import AppLoadError
from corolla.project import ArchiveLimits, extract_archive

__all__ = ["BundleLimits", "install_bundle", "make_bundle"]

_SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".ruff_cache"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_EPOCH = (1980, 1, 1, 0, 0, 0)


#: How large an app bundle may be, unpacked: the limits :mod:`corolla.project` unpacks
#: every archive from elsewhere within (a Flower FAB too).
BundleLimits = ArchiveLimits


def _files(root: Path) -> list[Path]:
    found = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in sorted(names):
            if not name.endswith(_SKIPPED_SUFFIXES):
                found.append(Path(directory, name))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def make_bundle(app_dir: str | os.PathLike[str], limits: BundleLimits | None = None) -> bytes:
    """Zip an app directory reproducibly (caches and virtual environments left out).

    Raises
    ------
    AppLoadError
        If the directory holds more files or bytes than ``limits`` allow (data sets
        belong on the nodes, not in the app).
    """
    limits = limits or BundleLimits()
    root = Path(app_dir).resolve()
    files = _files(root)
    total = sum(path.stat().st_size for path in files)
    if len(files) > limits.max_files or total > limits.max_bytes:
        raise AppLoadError(
            f"the app directory {root} holds {len(files)} files, {total} bytes; a bundle "
            f"holds at most {limits.max_files} files and {limits.max_bytes} bytes "
            "(keep data sets out of the app directory: nodes load their own data)"
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def install_bundle(
    data: bytes | memoryview,
    destination: str | os.PathLike[str],
    limits: BundleLimits | None = None,
) -> Path:
    """Unpack a bundle into ``destination`` (atomically: all of it or nothing) and return it.

    An existing ``destination`` is kept as it is: bundles are named by content.

    Raises
    ------
    AppLoadError
        If the bytes are not a zip file, an entry would land outside ``destination``, or
        the bundle exceeds ``limits`` (nothing is written then).
    """
    return extract_archive(data, destination, limits, what="the app bundle")
