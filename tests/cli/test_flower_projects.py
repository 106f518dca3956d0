"""``corolla run`` on Flower projects: what it says when the project or FAB is bad."""

from __future__ import annotations

from pathlib import Path

import pytest

from corolla.cli import main


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COROLLA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    monkeypatch.chdir(tmp_path)


def test_a_corrupt_fab_ends_in_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "app.fab").write_bytes(b"not a zip")

    code = main(["run", "app.fab", "--quiet"])

    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "the FAB app.fab is not a zip file" in err


def test_a_flower_project_without_components_ends_in_one_line_naming_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.flwr.app]\npublisher = 'alice'\n")

    code = main(["run", ".", "--quiet"])

    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "no [tool.flwr.app.components] table" in err
