"""Safe extraction of archives from elsewhere: all or nothing, within limits, no escapes."""

from __future__ import annotations

import io
import zipfile

import pytest

from corolla.core import AppLoadError
from corolla.project import ArchiveLimits, extract_archive


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return out.getvalue()


def test_an_archive_unpacks_whole_into_its_destination(tmp_path):
    target = extract_archive(_zip({"a.py": b"x = 1\n", "pkg/b.py": b""}), tmp_path / "out")

    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.py")) == [
        "a.py",
        "pkg/b.py",
    ]


def test_a_refused_archive_leaves_nothing_behind(tmp_path):
    data = _zip({"ok.py": b"", "../../evil.py": b""})

    with pytest.raises(AppLoadError, match=r"the upload's entry '../../evil.py' escapes"):
        extract_archive(data, tmp_path / "out", what="the upload")
    assert list(tmp_path.iterdir()) == []


def test_a_zip_bomb_is_refused_by_its_ratio(tmp_path):
    with pytest.raises(AppLoadError, match="beyond 10 times"):
        extract_archive(
            _zip({"zeros": bytes(100_000)}), tmp_path / "out", ArchiveLimits(max_ratio=10)
        )
