"""``corolla run`` on Flower projects: its federations, and what it says when the project
or FAB is bad."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from corolla.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flower-numpy"


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


def test_federation_naming_a_local_simulation_simulates_with_its_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Arrange: the example, with a second local federation of 6 virtual nodes
    project = tmp_path / "flower-numpy"
    shutil.copytree(EXAMPLE, project)
    with open(project / "pyproject.toml", "a") as pyproject:
        pyproject.write("\n[tool.flwr.federations.six]\noptions.num-supernodes = 6\n")

    # Act
    code = main(
        [
            "run",
            str(project),
            "--federation",
            "six",
            "--run-config",
            "num-server-rounds=1",
            "--output",
            "out",
            "--quiet",
            "--backend",
            "inline",
        ]
    )

    # Assert: six nodes answered, where the default federation has four
    assert code == 0, capsys.readouterr().err
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert history["rounds"][0]["train_replies"] == 6


def test_an_unknown_federation_is_refused_naming_the_ones_there_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(EXAMPLE), "--federation", "nowhere", "--quiet"])

    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "no federation 'nowhere'" in err and "local-simulation" in err
