"""The framework quickstarts run, learn, and give the same bits on every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from corolla.project import AppConfig, merge_run_config
from corolla.simulation import SimulationResult, run_simulation

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.e2e


def _run(app: AppConfig, backend: str) -> SimulationResult:
    # Short runs: two rounds over six nodes, every node training.
    run_config = merge_run_config(
        app.config, {"num-server-rounds": 2, "fraction-train": 1.0, "seed": 3}
    )
    return run_simulation(
        app.server_ref,
        app.client_ref,
        6,
        backend=backend,
        num_workers=2,
        run_config=run_config,
    )


@pytest.mark.parametrize(
    ("example", "module"),
    [("quickstart-pytorch", "torch"), ("quickstart-sklearn", "sklearn")],
)
def test_inline_and_process_backends_give_identical_bits(example: str, module: str) -> None:
    pytest.importorskip(module)
    pytest.importorskip("sklearn")  # the digits ship with scikit-learn
    app = AppConfig.load(EXAMPLES / example)

    inline, process = _run(app, "inline"), _run(app, "process")

    assert inline.arrays is not None and process.arrays is not None
    assert list(inline.arrays) == list(process.arrays)
    for name, array in inline.arrays.items():
        assert array.dtype == process.arrays[name].dtype
        assert array.tobytes() == process.arrays[name].tobytes()
    assert inline.history is not None and process.history is not None
    assert (
        inline.history.to_dict()["rounds"][-1]["train"]
        == (process.history.to_dict()["rounds"][-1]["train"])
    )
    rounds = inline.history.rounds
    assert [r.train_failures for r in rounds[1:]] == [0, 0]
    assert [r.evaluate_failures for r in rounds[1:]] == [0, 0]
    accuracy = dict(inline.history.series("server", "accuracy"))
    assert accuracy[2] > accuracy[0] + 0.2


def test_the_opacus_example_trains_with_dp_sgd_and_reports_each_node_s_epsilon() -> None:
    pytest.importorskip("opacus")
    pytest.importorskip("sklearn")
    app = AppConfig.load(EXAMPLES / "privacy-opacus")

    result = _run(app, "inline")

    assert result.history is not None
    rounds = result.history.rounds
    assert [r.train_failures for r in rounds[1:]] == [0, 0]
    # Each node's epsilon accumulates over its rounds (its accountant lives in its state)
    epsilons = [e for _, e in result.history.series("train", "dp-sgd-epsilon")]
    assert 0 < epsilons[0] < epsilons[1]
    accuracy = dict(result.history.series("server", "accuracy"))
    assert accuracy[2] > accuracy[0] + 0.2
