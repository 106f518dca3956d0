"""The Fed-Heart-Disease reproduction: FLamby's initial models and batch stream, and its
short form end to end (it runs and it learns)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "fed-heart-disease"


@pytest.fixture
def app(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "reproductions"))
    import _heart_app

    return _heart_app


def test_initial_model_is_flambys_for_seed_42(app):
    arrays = app.initial_arrays(42)

    # torch.manual_seed(42); nn.Linear(13, 1): the weight's first values and the bias.
    np.testing.assert_array_equal(
        arrays["weight"][:3],
        np.float32([0.2120448350906372, 0.230202779173851, -0.06497549265623093]),
    )
    np.testing.assert_array_equal(arrays["bias"], np.float32([0.03756168484687805]))


def test_initial_model_matches_torch_bit_for_bit(app):
    torch = pytest.importorskip("torch")

    for seed in [0, 1, 42, 43, 44, 45, 46, 12345]:
        torch.manual_seed(seed)
        layer = torch.nn.Linear(13, 1)

        arrays = app.initial_arrays(seed)

        np.testing.assert_array_equal(arrays["weight"], layer.weight.detach().numpy()[0])
        np.testing.assert_array_equal(arrays["bias"], layer.bias.detach().numpy())


def test_batch_stream_covers_each_epoch_once_with_a_short_last_batch(app):
    stream = app.BatchStream(10, [0, 1])

    batches = [stream.next(4) for _ in range(3)]

    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))


def test_batch_stream_carries_on_across_rounds(app):
    straight = app.BatchStream(10, [3, 2])
    expected = [straight.next(4).tolist() for _ in range(7)]
    first = app.BatchStream(10, [3, 2])
    got = [first.next(4).tolist() for _ in range(4)]

    resumed = app.BatchStream.from_record(first.to_record(), 10, [3, 2])
    got += [resumed.next(4).tolist() for _ in range(3)]

    assert got == expected


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
