from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corolla.core._errors import ConfigError
from corolla.data import PartitionReport, PartitionStats, iid_partition, partition_report

from .strategies import label_arrays, seeds


@settings(deadline=None, max_examples=60)
@given(
    labels=label_arrays(min_size=10, max_size=200), num_partitions=st.integers(1, 10), seed=seeds
)
def test_histograms_count_each_partitions_labels(
    labels: np.ndarray, num_partitions: int, seed: int
) -> None:
    parts = iid_partition(labels.size, num_partitions, np.random.default_rng(seed))

    report = partition_report(labels, parts)

    assert report.num_classes == int(labels.max()) + 1
    assert report.sizes == tuple(p.size for p in parts)
    for stats, part in zip(report.partitions, parts, strict=True):
        assert sum(stats.label_counts) == stats.size
        for label, count in enumerate(stats.label_counts):
            assert count == int(np.sum(labels[part] == label))
        assert stats.num_labels == np.unique(labels[part]).size


def test_report_is_a_readable_table() -> None:
    labels = np.array([0, 0, 1, 2, 2, 2])
    parts = [np.array([0, 1, 2]), np.array([3, 4, 5])]

    text = str(partition_report(labels, parts, num_classes=4))

    lines = text.splitlines()
    assert lines[0].split() == ["partition", "size", "labels", "c0", "c1", "c2", "c3"]
    assert lines[1].split() == ["0", "3", "2", "2", "1", "0", "0"]
    assert lines[2].split() == ["1", "3", "1", "0", "0", "3", "0"]
    assert lines[3] == "2 partitions, 6 samples, size min 3 / mean 3.0 / max 3"


def test_format_drops_class_columns_when_there_are_many_classes() -> None:
    labels = np.arange(30)
    report = partition_report(labels, [np.arange(15), np.arange(15, 30)])

    narrow = report.format(max_class_columns=10)

    assert narrow.splitlines()[0].split() == ["partition", "size", "labels"]
    assert "c29" in report.format(max_class_columns=30)


def test_report_values_are_plain_immutable_records() -> None:
    report = partition_report(np.array([1, 1]), [np.array([0, 1])])

    assert report == PartitionReport(
        partitions=(PartitionStats(partition_id=0, size=2, label_counts=(0, 2)),),
        num_classes=2,
    )
    with pytest.raises(AttributeError):
        report.num_classes = 3  # type: ignore[misc]


def test_empty_partitions_are_reported() -> None:
    report = partition_report(np.array([0, 1]), [np.array([], dtype=np.int64), np.array([0, 1])])

    assert report.sizes == (0, 2)
    assert partition_report(np.array([0]), []).format().endswith("0 partitions")


@pytest.mark.parametrize(
    ("labels", "parts", "num_classes", "message"),
    [
        (np.array([0, -1]), [np.array([0])], None, "non-negative"),
        (np.array([0, 3]), [np.array([0])], 3, "not below num_classes"),
        (np.array([0, 1]), [np.array([0, 2])], None, "outside"),
        (np.array([0, 1]), [np.array([-1])], None, "outside"),
        (np.array([0, 1]), [np.array([[0]])], None, "1-D integer"),
        (np.array([0, 1]), [np.array([0.0])], None, "1-D integer"),
        (np.array([0.5, 1.0]), [np.array([0])], None, "integers"),
        (np.array([0, 1]), [np.array([0])], 0, "num_classes"),
    ],
)
def test_report_rejects_bad_input(
    labels: np.ndarray, parts: list[np.ndarray], num_classes: int | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        partition_report(labels, parts, num_classes)
