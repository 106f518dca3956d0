"""Every strategy through the real round loop, in-process and in worker processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import corolla.strategy as cs
from corolla.client import ClientApp
from corolla.core import ArrayRecord, Context, Message, MetricRecord, RecordDict
from corolla.server import RunResult
from corolla.simulation import InlineExecutor, ProcessExecutor, SimulationGrid

INITIAL = ArrayRecord({"w": np.zeros((3, 2), np.float32), "b": np.ones(2, np.float64)})
NUM_NODES = 8


def _train(message: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    arrays = message.content["arrays"]
    rng = np.random.default_rng(pid + 100 * int(message.content["config"]["server-round"]))
    new = ArrayRecord(
        (k, (v + rng.normal(0.1 * pid, 0.05, v.shape)).astype(v.dtype)) for k, v in arrays.items()
    )
    content: dict[str, Any] = {
        "arrays": new,
        "metrics": MetricRecord({"num-examples": pid + 1, "train_loss": 1.0 + pid / 10}),
    }
    if cs.CONTROL_KEY in message.content:
        c = message.content[cs.CONTROL_KEY]
        ci = cs.load_control(context, arrays)
        new_ci, delta = cs.update_control(arrays, new, c, ci, num_steps=5, learning_rate=0.1)
        cs.store_control(context, new_ci)
        content[cs.CONTROL_DELTA_KEY] = delta
    return Message(RecordDict(content), reply_to=message)


def _evaluate(message: Message, context: Context) -> RecordDict:
    return RecordDict({"metrics": MetricRecord({"num-examples": 1, "loss": 0.5})})


app = ClientApp()
app.train()(_train)
app.evaluate()(_evaluate)

FACTORIES: dict[str, Callable[[], cs.Strategy]] = {
    "FedAvg": lambda: cs.FedAvg(seed=0),
    "FedAvgM": lambda: cs.FedAvgM(server_momentum=0.9, seed=0),
    "FedProx": lambda: cs.FedProx(proximal_mu=0.1, seed=0),
    "FedAdagrad": lambda: cs.FedAdagrad(seed=0),
    "FedAdam": lambda: cs.FedAdam(seed=0),
    "FedYogi": lambda: cs.FedYogi(seed=0),
    "QFedAvg": lambda: cs.QFedAvg(client_learning_rate=0.1, seed=0),
    "Scaffold": lambda: cs.Scaffold(fraction_train=0.5, seed=0),
    "FedMedian": lambda: cs.FedMedian(seed=0),
    "FedTrimmedAvg": lambda: cs.FedTrimmedAvg(beta=0.2, seed=0),
    "Krum": lambda: cs.Krum(num_malicious_nodes=1, seed=0),
    "MultiKrum": lambda: cs.MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3, seed=0),
    "Bulyan": lambda: cs.Bulyan(num_malicious_nodes=1, seed=0),
}


def run(strategy: cs.Strategy, executor: Any) -> RunResult:
    with executor:
        grid = SimulationGrid(executor, NUM_NODES)
        return strategy.start(grid, INITIAL, num_rounds=3)


@pytest.mark.parametrize("name", FACTORIES)
def test_each_strategy_runs_rounds_and_moves_the_arrays(name: str) -> None:
    result = run(FACTORIES[name](), InlineExecutor(app))

    assert [n for n in result.arrays] == ["w", "b"]
    assert result.arrays["w"].dtype == np.float32
    assert all(np.all(np.isfinite(a)) for a in result.arrays.values())
    assert result.arrays != INITIAL
    for summary in result.history.rounds:
        assert summary.train_failures == 0 and summary.train_replies > 0
        assert summary.evaluate["loss"] == 0.5


@pytest.mark.parametrize("name", ["QFedAvg", "Scaffold", "FedMedian", "Bulyan", "FedAdam"])
def test_worker_processes_give_the_inline_result(name: str) -> None:
    inline = run(FACTORIES[name](), InlineExecutor(app))
    workers = run(FACTORIES[name](), ProcessExecutor(app, num_workers=2))

    for key in INITIAL:
        np.testing.assert_allclose(workers.arrays[key], inline.arrays[key], rtol=1e-6)
