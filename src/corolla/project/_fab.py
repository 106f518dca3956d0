"""Flower App Bundles (FABs): the zip file ``flwr build`` writes.

A FAB holds the app's files, its ``pyproject.toml`` (without ``[tool.flwr.federations]``)
and a manifest, ``.info/CONTENT``: one line ``path,sha256,size-in-bits`` for every file.
A FAB is unpacked only if it is a zip within :class:`ArchiveLimits` and every file in it
is in the manifest with the hash and size given there (and every file of the manifest is
in it); it is unpacked into a directory named by the FAB's SHA-256, so the same FAB is
unpacked once.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

from ..core import AppLoadError
from ._archive import ArchiveLimits, check_entries, extract_archive

__all__ = ["MANIFEST", "unpack_fab"]

#: The manifest's path in a FAB.
MANIFEST = ".info/CONTENT"


def unpack_fab(
    fab: str | os.PathLike[str],
    directory: str | os.PathLike[str],
    limits: ArchiveLimits | None = None,
) -> Path:
    """Verify the FAB at ``fab`` and unpack it into ``directory/<its sha256>``; return that.

    Raises
    ------
    AppLoadError
        If the file is missing, larger than ``limits.max_bytes``, not a zip file, exceeds
        ``limits`` unpacked, has an entry that escapes its directory, lacks its manifest,
        or holds a file whose hash or size differs from the manifest's (or is not in it).
    """
    limits = limits or ArchiveLimits()
    path = Path(fab)
    what = f"the FAB {path.name}"
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise AppLoadError(f"{what} is {size} bytes; at most {limits.max_bytes} are read")
        data = path.read_bytes()
    except OSError as exc:
        raise AppLoadError(f"cannot read {what}: {exc}") from exc
    target = Path(directory) / hashlib.sha256(data).hexdigest()
    if not target.is_dir():
        _verify(data, target, limits, what)
    return extract_archive(data, target, limits, what=what)


def _verify(data: bytes, target: Path, limits: ArchiveLimits, what: str) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = [e for e in archive.infolist() if not e.is_dir()]
            check_entries(entries, target, limits, what=what)
            names = {entry.filename for entry in entries}
            if MANIFEST not in names:
                raise AppLoadError(f"{what} has no {MANIFEST}: its files cannot be verified")
            manifest = _manifest(archive.read(MANIFEST), what)
            unlisted = sorted(names - set(manifest) - {MANIFEST})
            if unlisted:
                raise AppLoadError(f"{what} holds files its {MANIFEST} does not list: {unlisted}")
            for name, (digest, bits) in manifest.items():
                if name not in names:
                    raise AppLoadError(f"{what} lacks {name!r}, which its {MANIFEST} lists")
                content = archive.read(name)
                if hashlib.sha256(content).hexdigest() != digest or len(content) * 8 != bits:
                    raise AppLoadError(
                        f"{what}'s file {name!r} does not match the hash and size in its "
                        f"{MANIFEST}: the FAB is corrupt or was altered"
                    )
    except zipfile.BadZipFile as exc:
        raise AppLoadError(f"{what} is not a zip file: {exc}") from exc


def _manifest(content: bytes, what: str) -> dict[str, tuple[str, int]]:
    entries: dict[str, tuple[str, int]] = {}
    try:
        lines = content.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise AppLoadError(f"{what}'s {MANIFEST} is not UTF-8 text") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        name, _, rest = line.rpartition(",")  # a path may hold commas; hash and size do not
        name, _, digest = name.rpartition(",")
        if not name or len(digest) != 64 or not rest.isdigit():
            raise AppLoadError(
                f"{what}'s {MANIFEST} line {number} is not 'path,sha256,size-in-bits': {line!r}"
            )
        entries[name] = (digest.lower(), int(rest))
    return entries
