"""End to end: SecAgg+ over a link and 3 nodes as real processes gives the simulation's
result within the quantization bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
