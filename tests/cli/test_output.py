"""The output directory rule: new or empty is used, earlier outputs need --force,
anything else is refused; a forced run leaves only its own files."""

from __future__ import annotations

from pathlib import Path

import pytest

from corolla.cli._output import OUTPUT_FILES, check_output
from corolla.cli._report import write_outputs
from corolla.core import ConfigError
from corolla.server import History


def test_a_missing_or_empty_directory_is_used(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    check_output(tmp_path / "missing", force=False)
    check_output(tmp_path / "empty", force=False)


def test_earlier_outputs_need_force(tmp_path: Path) -> None:
    for name in OUTPUT_FILES:
        (tmp_path / name).write_text("old")

    with pytest.raises(ConfigError, match="pass --force"):
        check_output(tmp_path, force=False)
    check_output(tmp_path, force=True)


def test_a_subdirectory_is_not_an_output(tmp_path: Path) -> None:
    (tmp_path / "history.json").mkdir()

    with pytest.raises(ConfigError, match=r"holds history\.json, which a run does not write"):
        check_output(tmp_path, force=True)


def test_a_forced_run_removes_the_earlier_files_it_does_not_write(tmp_path: Path) -> None:
    for name in OUTPUT_FILES:
        (tmp_path / name).write_text("old")
    history = History()  # no metrics: no plot; no arrays: no final.npz

    written = write_outputs(tmp_path, history, None, {"run_id": 1}, "run 1")

    assert sorted(p.name for p in written) == ["history.json", "report.html", "run.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json", "report.html", "run.json"]
