"""App bundles: an app directory as one zip file, named by its SHA-256.

The bytes depend only on the files' relative paths and contents (sorted entries, fixed
timestamps and permissions), so the same app directory always gives the same hash and a
link or node that holds it never receives it twice.

A bundle comes from someone else (a user submitting a run, a link sending a node its
app), so it is unpacked within :class:`BundleLimits`: a bounded number of files, bounded
bytes in all, and no entry that expands more than a bounded ratio (a "zip bomb" of 1 MB
would otherwise fill the disk). The same limits refuse a bundle too large to send.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from corolla.core import AppLoadError

__all__ = ["BundleLimits", "install_bundle", "make_bundle"]

_SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".ruff_cache"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclasses.dataclass(frozen=True)
class BundleLimits:
    """How large an app bundle may be, unpacked."""

    #: Files in the bundle.
    max_files: int = 10_000
    #: Bytes of all the files together.
    max_bytes: int = 256 * 1024 * 1024
    #: Unpacked size over packed size of any one file (deflate manages about 1,000 on
    #: runs of zeros; source code 3 to 10).
    max_ratio: float = 200.0


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
    limits = limits or BundleLimits()
    target = Path(destination)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
                entries = archive.infolist()
                _check_entries(entries, staging, limits)
                for entry in entries:
                    # Each entry is read up to its declared size (zipfile stops there and
                    # checks the CRC), which the limits were checked against.
                    archive.extract(entry, staging)
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


def _check_entries(entries: list[zipfile.ZipInfo], staging: Path, limits: BundleLimits) -> None:
    """Refuse a bundle whose entries escape ``staging`` or exceed ``limits``.

    Raises
    ------
    AppLoadError
        Naming the first entry or figure at fault.
    """
    if len(entries) > limits.max_files:
        raise AppLoadError(
            f"the app bundle holds {len(entries)} files; at most {limits.max_files} are unpacked"
        )
    root = staging.resolve()
    total = 0
    for entry in entries:
        if not (staging / entry.filename).resolve().is_relative_to(root):
            raise AppLoadError(f"app bundle entry {entry.filename!r} escapes its directory")
        total += entry.file_size
        if total > limits.max_bytes:
            raise AppLoadError(
                f"the app bundle unpacks to more than {limits.max_bytes} bytes; it is refused"
            )
        if entry.file_size > limits.max_ratio * max(entry.compress_size, 1):
            raise AppLoadError(
                f"app bundle entry {entry.filename!r} expands {entry.compress_size} bytes to "
                f"{entry.file_size}, beyond {limits.max_ratio:.0f} times: it is refused"
            )
