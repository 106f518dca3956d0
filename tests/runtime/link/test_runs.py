"""The ServerApp processes of a link: started in the app's directory, with the link's
module search path; their output logged as plain text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corolla.runtime.link._runs import absolute_search_path, plain_text


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


@pytest.mark.parametrize(
    ("line", "plain"),
    [
        ("\x1b[92mINFO \x1b[0m:      [ROUND 1/3]", "INFO :      [ROUND 1/3]"),
        ("\x1b[1;31mred\x1b[m and \x1b]8;;https://x\x1b\\link\x1b]8;;\x07", "red and link"),
        ("no escapes: [ROUND 1/3] 100%", "no escapes: [ROUND 1/3] 100%"),
    ],
)
def test_terminal_escape_sequences_are_taken_out_of_log_lines(line: str, plain: str) -> None:
    assert plain_text(line) == plain
