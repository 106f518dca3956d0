from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from corolla.core import ConfigError, MetricRecord
from corolla.server import History, RoundSummary


def sample_history() -> History:
    history = History()
    history.record(0, "server", {"accuracy": 0.1})
    history.record(2, "train", MetricRecord({"loss": 0.5, "num-examples": 30}))
    history.record(1, "train", MetricRecord({"loss": 0.9, "num-examples": 30}))
    history.record(1, "evaluate", {"accuracy": 0.6, "per-class": [0.5, 0.7]})
    history.record(1, "server", {"accuracy": 0.55})
    summary = history.round(1)
    summary.train_replies, summary.train_failures, summary.seconds = 3, 1, 0.25
    return history


def test_round_is_created_on_first_use_and_then_reused() -> None:
    history = History()

    first = history.round(4)
    again = history.round(4)

    assert first is again
    assert first == RoundSummary(4)
    assert len(history.rounds) == 1


def test_rounds_are_kept_in_order_whatever_the_recording_order() -> None:
    history = sample_history()

    assert [s.round for s in history.rounds] == [0, 1, 2]


def test_record_stores_metrics_by_phase_and_merges_later_ones() -> None:
    history = History()

    history.record(1, "train", {"loss": 1.0})
    history.record(1, "train", {"loss": 0.5, "num-examples": 10})
    history.record(1, "evaluate", MetricRecord({"accuracy": 0.75}))

    summary = history.round(1)
    assert summary.train == {"loss": 0.5, "num-examples": 10}
    assert summary.evaluate == {"accuracy": 0.75}
    assert summary.server == {}


def test_record_copies_the_metrics() -> None:
    history = History()
    metrics = {"loss": 1.0}

    history.record(1, "train", metrics)
    metrics["loss"] = 2.0

    assert history.round(1).train == {"loss": 1.0}


@pytest.mark.parametrize("phase", ["training", "round", "seconds", "to_dict", ""])
def test_an_unknown_phase_is_a_config_error(phase: str) -> None:
    history = History()

    with pytest.raises(ConfigError, match="unknown phase"):
        history.record(1, phase, {"loss": 1.0})
    with pytest.raises(ConfigError, match="unknown phase"):
        history.series(phase, "loss")


def test_series_gives_round_value_pairs_of_one_metric() -> None:
    history = sample_history()

    assert history.series("server", "accuracy") == [(0, 0.1), (1, 0.55)]
    assert history.series("train", "loss") == [(1, 0.9), (2, 0.5)]
    assert history.series("evaluate", "per-class") == [(1, [0.5, 0.7])]
    assert history.series("evaluate", "nothing") == []


def test_to_dict_from_dict_round_trip() -> None:
    history = sample_history()

    data = history.to_dict()
    again = History.from_dict(data)

    assert again.rounds == history.rounds
    assert again.to_dict() == data


def test_to_dict_is_the_json_format() -> None:
    data = sample_history().to_dict()

    assert json.loads(json.dumps(data)) == data
    assert list(data) == ["rounds"]
    assert data["rounds"][1] == {
        "round": 1,
        "train": {"loss": 0.9, "num-examples": 30},
        "evaluate": {"accuracy": 0.6, "per-class": [0.5, 0.7]},
        "server": {"accuracy": 0.55},
        "train_replies": 3,
        "train_failures": 1,
        "evaluate_replies": 0,
        "evaluate_failures": 0,
        "seconds": 0.25,
    }


def test_to_dict_does_not_share_state_with_the_history() -> None:
    history = sample_history()

    data = history.to_dict()
    data["rounds"][1]["train"]["loss"] = 99.0

    assert history.round(1).train["loss"] == 0.9


def test_from_dict_does_not_share_state_with_its_input() -> None:
    data = sample_history().to_dict()

    history = History.from_dict(data)
    history.record(1, "train", {"loss": 99.0})

    assert data["rounds"][1]["train"]["loss"] == 0.9


def test_from_dict_ignores_unknown_fields_and_sorts_rounds() -> None:
    data = {
        "rounds": [
            {"round": 2, "train": {"loss": 1.0}, "added_later": True},
            {"round": 1},
        ],
        "version": 9,
    }

    history = History.from_dict(data)

    assert [s.round for s in history.rounds] == [1, 2]
    assert history.round(2).train == {"loss": 1.0}
    assert History.from_dict({}).rounds == []


def test_save_writes_json_that_loads_back(tmp_path: Path) -> None:
    history = sample_history()
    path = tmp_path / "history.json"

    history.save(path)

    text = path.read_text()
    assert text.endswith("\n")
    assert History.from_dict(json.loads(text)).rounds == history.rounds


def test_save_keeps_non_finite_metrics_readable_by_python(tmp_path: Path) -> None:
    history = History()
    history.record(1, "train", {"loss": math.inf})
    path = tmp_path / "history.json"

    history.save(str(path))

    assert History.from_dict(json.loads(path.read_text())).round(1).train == {"loss": math.inf}


def test_repr_counts_rounds() -> None:
    assert repr(sample_history()) == "History(3 rounds)"
