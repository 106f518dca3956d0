"""Reading back what a run logged, with MLflow's and TensorBoard's own readers, and
checking it against the run's outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def history_metrics(output: Path) -> dict[str, list[tuple[int, float]]]:
    """``phase/metric -> [(round, value), ...]`` of every numeric metric in the run's
    ``history.json``."""
    series: dict[str, list[tuple[int, float]]] = {}
    for summary in json.loads((output / "history.json").read_text())["rounds"]:
        for phase in ("train", "evaluate", "server"):
            for name, value in summary[phase].items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    series.setdefault(f"{phase}/{name}", []).append(
                        (summary["round"], float(value))
                    )
    return series


def tensorboard_run(directory: Path) -> Any:
    """TensorBoard's accumulator over the event files in ``directory``, loaded."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(directory), size_guidance={"tensors": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def tensorboard_scalars(accumulator: Any) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series (``tag -> [(step, value), ...]``) of a run."""
    from tensorboard.util import tensor_util

    series = {}
    for tag in accumulator.Tags()["tensors"]:
        events = accumulator.Tensors(tag)
        values = [tensor_util.make_ndarray(e.tensor_proto) for e in events]
        if all(v.dtype.kind == "f" and v.ndim == 0 for v in values):
            series[tag] = [(e.step, float(v)) for e, v in zip(events, values)]
    return series


def tensorboard_text(accumulator: Any, tag: str) -> str:
    from tensorboard.util import tensor_util

    (event,) = accumulator.Tensors(tag)
    return bytes(tensor_util.make_ndarray(event.tensor_proto).item()).decode()


def assert_close_series(
    logged: dict[str, list[tuple[int, float]]], expected: dict[str, list[tuple[int, float]]]
) -> None:
    """Every metric of ``expected`` was logged, at its rounds, to float32 precision."""
    assert set(expected) <= set(logged), sorted(set(expected) - set(logged))
    for name, points in expected.items():
        steps = [step for step, _ in logged[name]]
        assert steps == [step for step, _ in points], name
        np.testing.assert_allclose(
            [v for _, v in logged[name]], [v for _, v in points], rtol=1e-6, err_msg=name
        )


def mlflow_run(uri: str, experiment: str) -> tuple[Any, Any]:
    """MLflow's client for ``uri`` and the one run of ``experiment`` in it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} at {uri}"
    (run,) = client.search_runs([found.experiment_id])
    return client, run


def mlflow_metrics(client: Any, run: Any) -> dict[str, list[tuple[int, float]]]:
    return {
        name: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]
        for name in run.data.metrics
    }
