"""End to end: SecAgg+ over a link and 3 nodes as real processes gives the simulation's
result within the quantization bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corolla.privacy._secagg_encoding import levels_for
from corolla.project import AppConfig
from corolla.runtime import ControlClient
from tests.runtime.test_e2e import (
    Processes,
    _deploy_and_simulate,
    _start_link,
    _start_nodes,
    _wait_for_nodes,
)
from tests.runtime.test_e2e import processes as processes  # the fixture

APP = Path(__file__).resolve().parent / "secagg_app"


def test_secure_aggregation_on_a_link_and_three_nodes_matches_the_simulation(
    processes: Processes, tmp_path: Path
) -> None:
    # Arrange: 3 nodes with the node configs of the simulation's 3
    fleet, control = _start_link(processes, tmp_path)
    _start_nodes(processes, fleet, tmp_path, 3)
    app = AppConfig.load(APP)
    with ControlClient(f"127.0.0.1:{control}") as client:
        _wait_for_nodes(client, 3, processes)

    # Act
    deployed, simulated = _deploy_and_simulate(
        app, control, {"num-server-rounds": 1}, tmp_path / "out"
    )

    # Assert: within the bound (weights 1 + 2 + 3, max_weight 16)
    assert deployed.arrays is not None and simulated.arrays is not None
    step = 0.5 / levels_for(3)
    bound = 3 * 16 * step / (2 * 6) + 1e-6
    error = np.max(np.abs(deployed.arrays["w"] - simulated.arrays["w"]))
    assert error <= bound
    assert not np.allclose(deployed.arrays["w"], np.linspace(-1, 1, 200).reshape(10, 20))
    assert deployed.history is not None
    assert [r.train_replies for r in deployed.history.rounds] == [3]
    assert deployed.history.rounds[-1].train["loss"] == simulated.history.rounds[-1].train["loss"]


def test_nodes_noise_their_updates_for_dp_under_secure_aggregation_on_a_link(
    processes: Processes, tmp_path: Path
) -> None:
    # Arrange: DP-FedAvg with z = 1 and C = 1 over 3 nodes (the noise quorum of 0.8 is all
    # 3): each node clips its update and adds 1 / sqrt(3); the mean carries 1 / 3
    fleet, control = _start_link(processes, tmp_path)
    _start_nodes(processes, fleet, tmp_path, 3)
    app = AppConfig.load(APP)
    with ControlClient(f"127.0.0.1:{control}") as client:
        _wait_for_nodes(client, 3, processes)
    overrides = {"num-server-rounds": 1, "noise-multiplier": 1.0, "clipping-range": 4.0}

    # Act
    deployed, _ = _deploy_and_simulate(app, control, overrides, tmp_path / "out")

    # Assert: the result minus the exact clipped mean is the noise; 200 elements give
    # its sample stddev a relative error of 5%, so 25% is five standard errors away
    assert deployed.arrays is not None and deployed.history is not None
    start = np.linspace(-1, 1, 200, dtype=np.float32).reshape(10, 20)
    clipped = []
    for partition in range(3):
        rng = np.random.default_rng([partition, 1])
        update = (start + rng.uniform(-0.4, 0.4, start.shape)).astype(np.float32) - start
        clipped.append(update / max(1.0, float(np.linalg.norm(update))))
    noise = deployed.arrays["w"] - (start + sum(clipped) / 3)
    assert float(np.std(noise)) == pytest.approx(1 / 3, rel=0.25)
    server = deployed.history.rounds[-1].server
    assert server["privacy-epsilon"] > 0
    assert deployed.history.rounds[-1].train["dp-noise-stddev"] == pytest.approx(1 / 3)
