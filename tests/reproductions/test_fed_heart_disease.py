"""The Fed-Heart-Disease reproduction, in its short form: it runs and it learns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "fed-heart-disease"


@pytest.mark.e2e
@pytest.mark.skipif(not DATA.is_dir(), reason="shared Fed-Heart-Disease data absent")
def test_quick_run_writes_results_and_learns(tmp_path):
    pytest.importorskip("sklearn")

    subprocess.run(
        [
            sys.executable,
            str(ROOT / "reproductions" / "fed_heart_disease.py"),
            "--output",
            str(tmp_path),
            "--quick",
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )

    results = json.loads((tmp_path / "results.json").read_text())
    assert {"FedAvg", "Pooled", "Local cleveland"} <= set(results)
    assert results["FedAvg"][0] > results["Initial model"][0] + 0.05
    assert results["Pooled"][0] > 0.65
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")
