"""Unpacking a zip archive that comes from someone else: an app bundle, a Flower FAB.

An archive is unpacked within :class:`ArchiveLimits`: a bounded number of files, bounded
bytes in all, and no entry that expands more than a bounded ratio (a "zip bomb" of 1 MB
would otherwise fill the disk); no entry may land outside the destination. Unpacking is
atomic: the destination holds all of the archive or does not exist.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from ..core import AppLoadError

__all__ = ["ArchiveLimits", "check_entries", "extract_archive"]


@dataclasses.dataclass(frozen=True)
class ArchiveLimits:
    """How large an archive (an app bundle, a FAB) may be, unpacked."""

    #: Files in the archive.
    max_files: int = 10_000
    #: Bytes of all the files together.
    max_bytes: int = 256 * 1024 * 1024
    #: Unpacked size over packed size of any one file (deflate manages about 1,000 on
    #: runs of zeros; source code 3 to 10).
    max_ratio: float = 200.0


def extract_archive(
    data: bytes | memoryview,
    destination: str | os.PathLike[str],
    limits: ArchiveLimits | None = None,
    *,
    what: str = "the archive",
) -> Path:
    """Unpack a zip archive into ``destination`` (all of it or nothing) and return it.

    An existing ``destination`` is kept as it is: callers name destinations by content.
    ``what`` names the archive in error messages (``"the app bundle"``).

    Raises
    ------
    AppLoadError
        If the bytes are not a zip file, an entry would land outside ``destination``, or
        the archive exceeds ``limits`` (nothing is written then).
    """
    limits = limits or ArchiveLimits()
    target = Path(destination)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
                entries = archive.infolist()
                check_entries(entries, staging, limits, what=what)
                for entry in entries:
                    # Each entry is read up to its declared size (zipfile stops there and
                    # checks the CRC), which the limits were checked against.
                    archive.extract(entry, staging)
        except zipfile.BadZipFile as exc:
            raise AppLoadError(f"{what} is not a zip file: {exc}") from exc
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # someone else won the race: fine
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def check_entries(
    entries: list[zipfile.ZipInfo],
    staging: Path,
    limits: ArchiveLimits,
    *,
    what: str = "the archive",
) -> None:
    """Refuse an archive whose entries escape ``staging`` or exceed ``limits``.

    Raises
    ------
    AppLoadError
        Naming the first entry or figure at fault.
    """
    if len(entries) > limits.max_files:
        raise AppLoadError(
            f"{what} holds {len(entries)} files; at most {limits.max_files} are unpacked"
        )
    root = staging.resolve()
    total = 0
    for entry in entries:
        if not (staging / entry.filename).resolve().is_relative_to(root):
            raise AppLoadError(f"{what}'s entry {entry.filename!r} escapes its directory")
        total += entry.file_size
        if total > limits.max_bytes:
            raise AppLoadError(
                f"{what} unpacks to more than {limits.max_bytes} bytes; it is refused"
            )
        if entry.file_size > limits.max_ratio * max(entry.compress_size, 1):
            raise AppLoadError(
                f"{what}'s entry {entry.filename!r} expands {entry.compress_size} bytes to "
                f"{entry.file_size}, beyond {limits.max_ratio:.0f} times: it is refused"
            )
