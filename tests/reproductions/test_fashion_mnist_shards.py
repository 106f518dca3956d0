"""The Fashion-MNIST shards reproduction, in its short form: it runs and it learns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_quick_run_learns_on_both_partitions(tmp_path):
    pytest.importorskip("torch")

    subprocess.run(
        [
            sys.executable,
            str(ROOT / "reproductions" / "fashion_mnist_shards.py"),
            "--output",
            str(tmp_path),
            "--quick",
        ],
        check=True,
        timeout=900,
        capture_output=True,
    )

    results = json.loads((tmp_path / "results.json").read_text())
    iid, shards = results["curves"]["iid"], results["curves"]["shards"]
    assert len(iid) == 4  # round 0 and 3 rounds
    assert iid[-1] > iid[0] + 0.3
    assert max(shards) > shards[0] + 0.1
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")
