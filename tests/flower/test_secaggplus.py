"""Flower's SecAgg+ under Corolla: a legacy FedAvg whose fit rounds run Flower's
``SecAggPlusWorkflow`` with ``secaggplus_mod`` on the clients, unmodified, ends with the
plain (unmasked) FedAvg of its nodes' updates, within the error of SecAgg+'s
quantization, simulated (both backends) and on a link with nodes.

SecAgg+ rounds stochastically, drawing from NumPy's global generator, so no two runs give
the same bits, Flower's own included: each run is checked against the plain FedAvg,
computed here from the project's update rule, with the bound of
:func:`_quantization_bound`. Flower's own run is held to the same bound, which checks the
bound itself.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from ..runtime.test_e2e import Processes
from .corpus import FlowerModels, run_deployed, run_simulated
from .flower_reference import run_config_of

PROJECT = Path(__file__).parent / "projects" / "secaggplus"
NODES = 3
#: The project, as the corpus fixtures (``conftest``) find it.
CASES = {"secaggplus": NODES}
PROJECTS = {"secaggplus": PROJECT}

pytestmark = pytest.mark.e2e


def _task() -> ModuleType:
    """The project's own update rule and partitions (plain NumPy, importable alone)."""
    spec = importlib.util.spec_from_file_location(
        "secaggplus_task", PROJECT / "secaggplus" / "task.py"
    )
    assert spec is not None and spec.loader is not None
    task = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task)
    return task


def _plain_fedavg(task: ModuleType, rounds: int) -> list[np.ndarray]:
    """The model after ``rounds`` rounds of FedAvg over every node, unmasked, unquantized."""
    model = task.initial_model()
    weights = [task.num_examples(i) for i in range(NODES)]
    for _ in range(rounds):
        updates = [task.update(model, i) for i in range(NODES)]
        model = [
            sum(w * u[layer] for w, u in zip(weights, updates)) / sum(weights)
            for layer in range(len(model))
        ]
    return model


def _quantization_bound(task: ModuleType, config: dict[str, Any]) -> float:
    """How far, per entry, SecAgg+'s final model may lie from the plain FedAvg's.

    With clipping range C, quantization range Q and max weight M, node i of k sends its
    update p_i (|p_i| <= C, so nothing is clipped) times its weight quantized,
    q_i = round(n_i Q / M) / Q, each entry shifted by C and rounded, stochastically, to an
    integer on a grid of step 2C / Q: an error e_i with |e_i| < 1 step. Unmasked and
    divided by q = sum_i q_i, the sum is sum_i (q_i / q) p_i + (2C / q) sum_i e_i: the
    average weighted by q_i / q, off by less than 2Ck / q. The weights q_i / q differ
    from n_i / N by at most k / q in total (each q_i lies within 1/2 of n_i Q / M, q
    within k / 2 of N Q / M), which moves the average by at most Ck / q. A round's error
    is thus below 3Ck / q; the next round's update, m + s (t - m), carries 1 - s of it
    on, so after any number of rounds the error is below 3Ck / (q s).
    """
    clipping = float(config["clipping-range"])
    levels = int(config["quantization-range"])
    max_weight = float(config["max-weight"])
    q = sum(round(task.num_examples(i) / max_weight * levels) for i in range(NODES))
    return 3 * clipping * NODES / (q * task.STEP)


def _assert_within_quantization_error(saved: dict[str, np.ndarray]) -> None:
    task = _task()
    config = run_config_of(PROJECT)
    plain = _plain_fedavg(task, int(config["num-server-rounds"]))
    assert max(float(np.abs(layer).max()) for layer in plain) <= float(config["clipping-range"])
    bound = _quantization_bound(task, config)
    assert sorted(saved) == [f"layer{i}" for i in range(len(plain))]
    for i, expected in enumerate(plain):
        np.testing.assert_allclose(saved[f"layer{i}"], expected, rtol=0, atol=bound)


def test_flowers_own_secaggplus_run_ends_within_the_bound(flower_models: FlowerModels) -> None:
    # Act + Assert: the bound holds for Flower's simulation of the project, as for Corolla's
    _assert_within_quantization_error(flower_models["secaggplus"])


@pytest.mark.parametrize("backend", ["process", "inline"])
def test_secaggplus_simulated_by_corolla_ends_with_the_plain_average(
    backend: str, tmp_path: Path
) -> None:
    # Act
    saved = run_simulated(PROJECT, backend, tmp_path)

    # Assert: the plain average, and each round counts each node once, over its 4 stages
    _assert_within_quantization_error(saved)
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    rounds = int(run_config_of(PROJECT)["num-server-rounds"])
    assert [r["round"] for r in history["rounds"]] == list(range(1, rounds + 1))
    for summary in history["rounds"]:
        assert (summary["train_replies"], summary["train_failures"]) == (NODES, 0), summary


def test_secaggplus_deployed_on_a_link_with_nodes_ends_with_the_plain_average(
    processes: Processes, tmp_path: Path
) -> None:
    # Act
    saved = run_deployed(PROJECT, NODES, processes, tmp_path)

    # Assert
    _assert_within_quantization_error(saved)
