"""The FedProx Synthetic(1, 1) reproduction, in its short form: it runs and it learns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_quick_run_writes_results_and_learns(tmp_path):
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "reproductions" / "fedprox_synthetic.py"),
            "--output",
            str(tmp_path),
            "--quick",
        ],
        check=True,
        timeout=600,
        capture_output=True,
    )

    results = json.loads((tmp_path / "results.json").read_text())
    curves = results["curves"]["0%"]["FedProx mu=1"]
    assert len(curves["train-loss"]) == 11  # round 0 and 10 rounds
    assert curves["train-loss"][-1] < curves["train-loss"][0]
    assert curves["test-accuracy"][-1] > curves["test-accuracy"][0] + 0.2
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")
