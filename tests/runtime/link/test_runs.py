"""The ServerApp processes of a link: started in the app's directory, with the link's
module search path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corolla.runtime.link._runs import absolute_search_path


def test_relative_entries_of_pythonpath_are_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    value = os.pathsep.join(["src", "/opt/lib", ""])

    assert absolute_search_path(value).split(os.pathsep) == [
        str(tmp_path / "src"),
        "/opt/lib",
        str(tmp_path),
    ]
