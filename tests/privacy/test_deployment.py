"""End to end: central DP on a real link and nodes reports its epsilon on the link's
Prometheus endpoint and in the run's history."""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from corolla.cli._remote import submit_and_follow
from corolla.project import AppConfig
from corolla.runtime import ControlClient

from ..runtime.test_e2e import (
    Processes,
    _free_port,
    _start_link,
    _start_nodes,
    _wait_for_nodes,
)
from ..runtime.test_e2e import processes as processes  # the fixture

APP = Path(__file__).resolve().parent / "apps" / "central-dp"

pytestmark = pytest.mark.e2e


def test_a_deployed_run_s_epsilon_reaches_the_link_s_metrics_endpoint(
    processes: Processes, tmp_path: Path
) -> None:
    # Arrange: a link serving metrics, and two nodes
    metrics = _free_port()
    fleet, control = _start_link(processes, tmp_path, metrics=metrics)
    _start_nodes(processes, fleet, tmp_path, 2)
    with ControlClient(f"127.0.0.1:{control}") as client:
        _wait_for_nodes(client, 2, processes)

    # Act
    result = submit_and_follow(
        AppConfig.load(APP),
        f"127.0.0.1:{control}",
        {"seed": 0},
        tmp_path / "out",
        Console(file=io.StringIO()),
        quiet=True,
        timeout=120,
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as page:
        exposition = page.read().decode()

    # Assert: the epsilon of the last round, in the history and on the endpoint
    assert result.history is not None
    epsilons = result.history.series("server", "privacy-epsilon")
    assert [r for r, _ in epsilons] == [1, 2, 3]
    assert all(r.train_failures == 0 for r in result.history.rounds)
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name.startswith("corolla_run_privacy")
    }
    assert samples["corolla_run_privacy_epsilon"] == pytest.approx(epsilons[-1][1])
    assert samples["corolla_run_privacy_delta"] == 1e-3
