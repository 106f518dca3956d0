"""Partition statistics: how many samples, and of which labels, each partition holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from corolla.core import ConfigError

from ._checks import check_int, check_labels

__all__ = ["PartitionReport", "PartitionStats", "partition_report"]

_MAX_CLASS_COLUMNS = 20


@dataclass(frozen=True)
class PartitionStats:
    """Size and label histogram of one partition.

    Attributes
    ----------
    partition_id
        Position of the partition in the list given to :func:`partition_report`.
    size
        Number of samples in the partition.
    label_counts
        ``label_counts[c]`` is the number of samples of class ``c``.
    """

    partition_id: int
    size: int
    label_counts: tuple[int, ...]

    @property
    def num_labels(self) -> int:
        """Number of distinct classes present in the partition."""
        return sum(1 for count in self.label_counts if count > 0)


@dataclass(frozen=True)
class PartitionReport:
    """Per-partition statistics; ``str(report)`` is a readable table.

    Attributes
    ----------
    partitions
        One :class:`PartitionStats` per partition, in order.
    num_classes
        Length of every histogram.
    """

    partitions: tuple[PartitionStats, ...]
    num_classes: int

    @property
    def sizes(self) -> tuple[int, ...]:
        """Size of each partition, in order."""
        return tuple(stats.size for stats in self.partitions)

    def format(self, *, max_class_columns: int = _MAX_CLASS_COLUMNS) -> str:
        """Render the report as a fixed-width text table.

        One row per partition: its id, size, number of classes present and, when there are
        at most ``max_class_columns`` classes, the count of each class. A last line sums up
        the sizes.

        Raises
        ------
        ConfigError
            If ``max_class_columns`` is negative.
        """
        max_class_columns = check_int("max_class_columns", max_class_columns, minimum=0)
        show_classes = self.num_classes <= max_class_columns
        header = ["partition", "size", "labels"]
        if show_classes:
            header += [f"c{c}" for c in range(self.num_classes)]
        rows = [header]
        for stats in self.partitions:
            row = [str(stats.partition_id), str(stats.size), str(stats.num_labels)]
            if show_classes:
                row += [str(count) for count in stats.label_counts]
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [
            "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
            for row in rows
        ]
        sizes = self.sizes
        if sizes:
            lines.append(
                f"{len(sizes)} partitions, {sum(sizes)} samples, size "
                f"min {min(sizes)} / mean {sum(sizes) / len(sizes):.1f} / max {max(sizes)}"
            )
        else:
            lines.append("0 partitions")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def partition_report(
    labels: ArrayLike,
    partitions: Sequence[ArrayLike],
    num_classes: int | None = None,
) -> PartitionReport:
    """Count each partition's samples and labels.

    Parameters
    ----------
    labels
        1-D non-negative integer class labels of the whole data set.
    partitions
        Index arrays into ``labels``, one per partition (as returned by the partitioners).
    num_classes
        Length of the histograms; ``max(labels) + 1`` when omitted.

    Returns
    -------
    PartitionReport
        The statistics; ``str()`` or ``.format()`` gives a text table.

    Raises
    ------
    ConfigError
        If ``labels`` is not a non-empty 1-D integer array, a label is negative or not below
        ``num_classes``, ``num_classes < 1``, or a partition is not a 1-D integer array of
        indices into ``labels``.
    """
    y = check_labels(labels)
    if int(y.min()) < 0:
        raise ConfigError(f"labels must be non-negative, found {int(y.min())}")
    if num_classes is None:
        num_classes = int(y.max()) + 1
    num_classes = check_int("num_classes", num_classes, minimum=1)
    if int(y.max()) >= num_classes:
        raise ConfigError(f"label {int(y.max())} is not below num_classes={num_classes}")
    stats = []
    for k, part in enumerate(partitions):
        indices = np.asarray(part)
        if indices.ndim != 1 or (indices.size > 0 and indices.dtype.kind not in "iu"):
            raise ConfigError(f"partition {k} must be a 1-D integer index array")
        if indices.size > 0 and (int(indices.min()) < 0 or int(indices.max()) >= y.size):
            raise ConfigError(f"partition {k} has indices outside 0..{y.size - 1}")
        counts = np.bincount(y[indices.astype(np.int64)], minlength=num_classes)
        stats.append(
            PartitionStats(
                partition_id=k,
                size=int(indices.size),
                label_counts=tuple(int(c) for c in counts),
            )
        )
    return PartitionReport(partitions=tuple(stats), num_classes=num_classes)
