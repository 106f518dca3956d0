"""Running the corpus's Flower projects, unmodified: under Flower's own simulation (the
reference), under Corolla's simulation as a user runs it, and on a link with nodes; and
the checks each run's outputs must pass.

Each project writes its final model to ``final_model.npz`` in its working directory, as
Flower's examples save theirs. The sums of a round are added in another order than
Flower's, so the models agree to the last bits of their dtype, not bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from corolla.runtime import ControlClient

from ..runtime.test_e2e import Processes, _start_link, _wait_for_nodes
from .flower_reference import run_config_of

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "projects"
#: Agreement, in units of the arrays' machine epsilon: the sums of a round are added in
#: another order than Flower's.
ULPS = 64


def saved_model(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}


def assert_same_model(ours: dict[str, np.ndarray], flower: dict[str, np.ndarray]) -> None:
    assert sorted(ours) == sorted(flower)
    for name in flower:
        assert ours[name].dtype == flower[name].dtype
        eps = float(np.finfo(flower[name].dtype).eps)
        np.testing.assert_allclose(ours[name], flower[name], rtol=ULPS * eps, atol=ULPS * eps)


class FlowerModels:
    """Each project's final model from Flower's own simulation (on Ray, 127.0.0.1): the
    projects of a test module run the first time a test asks for one, together, on one
    Ray cluster."""

    def __init__(
        self, workdirs: pytest.TempPathFactory, projects: Mapping[str, tuple[Path, int]]
    ) -> None:
        self._workdirs = workdirs
        self._projects = projects
        self._models: dict[str, dict[str, np.ndarray]] = {}

    def __getitem__(self, project: str) -> dict[str, np.ndarray]:
        if not self._models:
            self._models = self._run_all()
        return self._models[project]

    def _run_all(self) -> dict[str, dict[str, np.ndarray]]:
        workdirs = {name: self._workdirs.mktemp(f"flower-{name}") for name in self._projects}
        runs = [
            (str(path), nodes, str(workdirs[name]))
            for name, (path, nodes) in self._projects.items()
        ]
        script = textwrap.dedent(
            f"""
            from pathlib import Path
            from tests.flower.flower_reference import run_all_with_flower
            runs = {runs!r}
            run_all_with_flower([(Path(p), n, Path(w)) for p, n, w in runs])
            """
        )
        env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_DISABLE_USAGE_STATS="1")
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300 * len(runs),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return {name: saved_model(workdirs[name] / "final_model.npz") for name in workdirs}


def run_simulated(project: Path, backend: str, workdir: Path) -> dict[str, np.ndarray]:
    """Run ``project`` in Corolla's simulation as a user runs it, from ``workdir``, with
    its outputs in ``workdir / "out"``; the final model the ServerApp saved there."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "corolla",
            "run",
            str(project),
            "--backend",
            backend,
            "--output",
            "out",
        ],
        cwd=workdir,
        env=dict(os.environ, COROLLA_HOME=str(workdir / "home")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "finished" in done.stdout
    return saved_model(workdir / "final_model.npz")


def start_deployment(processes: Processes, workdir: Path, nodes: int) -> tuple[int, int]:
    """Start a link and ``nodes`` nodes, node ``i`` given partition ``i`` of ``nodes``, all
    in ``workdir``; wait until every node is connected. The link's fleet and control ports.
    """
    fleet, control = _start_link(processes, workdir)
    for i in range(nodes):
        processes.start(
            f"node{i}",
            "node",
            "--link",
            f"127.0.0.1:{fleet}",
            "--state",
            str(workdir / f"node{i}"),
            "--node-config",
            f"partition-id={i}",
            f"num-partitions={nodes}",
        )
    with ControlClient(f"127.0.0.1:{control}") as client:
        _wait_for_nodes(client, nodes, processes)
    return fleet, control


def run_on_link(project: Path, control: int, workdir: Path) -> None:
    """``corolla run project --link`` as a user types it, from ``workdir``, with its
    outputs in ``workdir / "out"``; asserts that it succeeds."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "corolla",
            "run",
            str(project),
            "--link",
            f"127.0.0.1:{control}",
            "--output",
            str(workdir / "out"),
        ],
        cwd=workdir,
        env=dict(os.environ, COROLLA_HOME=str(workdir / "home")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def run_deployed(
    project: Path, nodes: int, processes: Processes, workdir: Path
) -> dict[str, np.ndarray]:
    """Run ``project`` on a link with ``nodes`` nodes (:func:`start_deployment`); the final
    model the ServerApp saved where it ran, in the link's copy of the app."""
    _, control = start_deployment(processes, workdir, nodes)
    run_on_link(project, control, workdir)
    [saved] = list((workdir / "link").rglob("final_model.npz"))
    return saved_model(saved)


def check_simulated(
    project: Path, nodes: int, backend: str, workdir: Path, flower_model: dict[str, np.ndarray]
) -> None:
    """Run ``project`` in Corolla's simulation from ``workdir``; assert it ends with
    ``flower_model`` and leaves the run's outputs (final arrays, history, plot)."""
    # Act: as a user runs it, from a directory of their own
    saved = run_simulated(project, backend, workdir)

    # Assert: the model the ServerApp saved is Flower's, and so are the run's outputs
    assert_same_model(saved, flower_model)
    final = saved_model(workdir / "out" / "final.npz")
    # In the order of the ArrayRecord, named as the strategy named them (a legacy strategy's
    # arrays by position, a state dict's by layer).
    assert [v.tolist() for v in final.values()] == [v.tolist() for v in saved.values()]
    history = json.loads((workdir / "out" / "history.json").read_text())
    rounds = int(run_config_of(project)["num-server-rounds"])
    assert [r["round"] for r in history["rounds"]] == list(range(1, rounds + 1))
    for summary in history["rounds"]:
        assert summary["train_replies"] == nodes, summary
        assert summary["evaluate_replies"] in (0, nodes), summary
        assert summary["train"] or summary["evaluate"], summary
    assert (workdir / "out" / "metrics.png").stat().st_size > 0
