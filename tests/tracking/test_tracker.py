"""A run's tracker logs each round once as it ends, the rest and the outputs at the end,
and never fails the run; read back with TensorBoard's own reader."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from corolla.core import ConfigError, Event, MissingExtraError
from corolla.server import History
from corolla.tracking import TrackingSettings, open_tracker, round_metrics

from .readers import tensorboard_run, tensorboard_scalars, tensorboard_text


def _history() -> History:
    history = History()
    history.record(0, "server", {"loss": 2.3, "accuracy": 0.1})
    for number in (1, 2):
        history.record(number, "train", {"loss": 1.0 / number, "num-examples": 100})
        history.record(number, "evaluate", {"accuracy": 0.5 + number / 10, "flag": True})
        history.record(number, "server", {"loss": 0.9 / number, "sizes": [1, 2]})
    return history


def _round_end(history: History, number: int) -> Event:
    return Event("round.end", 1, number, data=history.round(number).to_dict())


def _open(tmp_path: Path, name: str = "run"):
    settings = TrackingSettings("tensorboard", str(tmp_path / "tb"))
    return open_tracker(settings, experiment="app", run_name=name, params={"lr": 0.5, "rounds": 2})


def test_round_metrics_are_every_number_by_phase():
    metrics = round_metrics(_history().round(1))

    assert metrics == {
        "train/loss": 1.0,
        "train/num-examples": 100.0,
        "evaluate/accuracy": 0.6,
        "server/loss": 0.9,
    }


def test_rounds_are_logged_as_they_end_and_the_rest_at_the_finish(tmp_path):
    history = _history()
    np.savez(tmp_path / "final.npz", w=np.arange(6.0).reshape(2, 3), names=np.array(["a"]))
    tracker = _open(tmp_path)

    with tracker:
        tracker(_round_end(history, 0))
        tracker(_round_end(history, 1))
        tracker(_round_end(history, 1))  # a round seen twice is logged once
        tracker(_round_end(history, 0))  # and none before the last one logged
        tracker(Event("round.start", 1, 2))
        tracker.finish(history, [tmp_path / "final.npz"])  # round 2 comes now

    run = tensorboard_run(tmp_path / "tb" / "run")
    scalars = tensorboard_scalars(run)
    assert scalars["server/loss"] == [
        (0, pytest.approx(2.3)),
        (1, pytest.approx(0.9)),
        (2, pytest.approx(0.45)),
    ]
    assert [step for step, _ in scalars["evaluate/accuracy"]] == [1, 2]
    assert "evaluate/flag" not in scalars and "server/sizes" not in scalars
    assert "| lr | 0.5 |" in tensorboard_text(run, "run_config")
    assert tensorboard_text(run, "status") == "finished"
    finals = [tag for tag in run.Tags()["tensors"] if tag.startswith("final/")]
    assert finals == ["final/w"]  # a histogram of each array of numbers
    assert tracker.error is None


def test_a_second_run_of_the_same_name_gets_its_own_directory(tmp_path):
    with _open(tmp_path) as first, _open(tmp_path) as second:
        pass

    assert first.where.endswith("run") and second.where.endswith("run-2")


def test_a_run_that_fails_is_closed_as_failed(tmp_path):
    with pytest.raises(RuntimeError), _open(tmp_path):
        raise RuntimeError("the strategy broke")

    assert tensorboard_text(tensorboard_run(tmp_path / "tb" / "run"), "status") == "failed"


def test_a_tracker_that_breaks_does_not_break_the_run(tmp_path):
    history = _history()
    tracker = _open(tmp_path)
    tracker.close("stopped")  # its writer is closed: every later write fails

    tracker(_round_end(history, 1))
    tracker.finish(history, [])

    assert tracker.error is not None and "closed" in tracker.error


def test_an_unwritable_log_directory_is_refused_before_the_run(tmp_path):
    (tmp_path / "tb").write_text("a file, not a directory")

    with pytest.raises(ConfigError, match=r"cannot write TensorBoard logs to .*tb/run"):
        _open(tmp_path)


@pytest.mark.parametrize(
    ("backend", "module", "package"),
    [
        ("mlflow", "mlflow.tracking", "mlflow-skinny"),
        ("tensorboard", "tensorboard.summary.writer.event_file_writer", "tensorboard"),
    ],
)
def test_a_missing_package_names_the_extra(monkeypatch, tmp_path, backend, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed

    with pytest.raises(
        MissingExtraError, match=rf"{package} is not installed.*corolla\[tracking\]"
    ):
        open_tracker(
            TrackingSettings(backend, str(tmp_path / "x")),
            experiment="app",
            run_name="run",
            params={},
        )
